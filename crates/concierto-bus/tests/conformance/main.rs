//! The bus conformance suite, run against both implementations: the embedded
//! bus, and the NATS bus against a real `nats-server` started by the testkit on a
//! free port with JetStream and a temporary store.

mod suite;

use std::sync::Arc;

use concierto_bus::{Bus, EmbeddedBus, NatsBus, NatsOptions};
use concierto_testkit::NatsServer;

/// Makes buses for one test. `bus()` gives independent connections where the
/// implementation has connections, so a test can drop one as a dying process.
pub trait Harness {
    fn bus(&self) -> impl std::future::Future<Output = Arc<dyn Bus>> + Send;
}

pub struct Embedded(EmbeddedBus);

impl Harness for Embedded {
    async fn bus(&self) -> Arc<dyn Bus> {
        Arc::new(self.0.clone())
    }
}

pub struct Nats(NatsServer);

impl Harness for Nats {
    async fn bus(&self) -> Arc<dyn Bus> {
        Arc::new(
            NatsBus::connect(&self.0.url(), NatsOptions::default())
                .await
                .expect("connect to the test nats-server"),
        )
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::suite::$name(&super::Embedded(concierto_bus::EmbeddedBus::default())).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let server = concierto_testkit::NatsServer::start().expect("start nats-server");
                    super::suite::$name(&super::Nats(server)).await;
                }
            )*
        }
    };
}

conformance!(
    wildcards_route_as_nats_does,
    queue_group_members_share_messages,
    request_gets_the_reply_with_headers,
    request_without_reply_times_out,
    request_without_subscriber_fails_fast_with_no_responders,
    ensure_stream_is_idempotent,
    durable_publish_reaches_core_subscribers_too,
    core_publish_on_a_stream_subject_is_kept_by_the_stream,
    handles_on_one_durable_share_its_work,
    unacked_message_is_redelivered_after_ack_wait_when_its_consumer_dies,
    nak_with_delay_redelivers_after_the_delay,
    exhausting_max_deliver_dead_letters_the_message,
    duplicate_message_id_is_stored_and_delivered_once,
    malformed_payload_on_a_subscription_is_dead_lettered,
    malformed_payload_on_a_work_queue_is_dead_lettered_and_terminated,
    term_dead_letters_with_the_reason,
    standard_streams_are_declared_idempotently_with_limits,
    a_prefetching_handle_delivers_each_message_once_and_redelivers_the_unacked,
    a_prefetching_handle_let_go_hands_back_what_it_pulled,
    a_deliver_new_consumer_skips_what_was_stored_before_it_and_keeps_its_place,
    stored_dead_letters_are_listed_in_order_and_deleted_one_by_one,
    a_lease_has_one_holder_and_passes_on_when_released,
);
