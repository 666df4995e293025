//! The admin API's `SearchContent` over a real nats-server: a tonic client asks
//! the admin service, which asks the ingest service (`library.search`).

use std::sync::Arc;
use std::time::Duration;

use concierto_admin::{AdminOptions, token_sha256};
use concierto_bus::{Bus, NatsBus, NatsOptions, encode, ensure_standard_streams};
use concierto_content::{ContentLibrary, Kind, NewItem};
use concierto_core::clock::{ManualClock, SharedClock};
use concierto_core::config::{self, Reviewer, Studio};
use concierto_core::store::SledStore;
use concierto_core::subjects;
use concierto_ingest::IngestOptions;
use concierto_proto::v1::SearchContentRequest;
use concierto_proto::v1::admin_service_client::AdminServiceClient;
use concierto_testkit::NatsServer;
use tonic::Code;

const TOKEN: &str = "search-token-0123456789";

fn studio(dir: &std::path::Path) -> Arc<Studio> {
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/studio/agents");
    let path = dir.join("concierto.yaml");
    std::fs::write(
        &path,
        format!(
            "studio: {{ name: Search, timezone: UTC }}\nagents:\n  paths: [\"{}\"]\n",
            agents.display()
        ),
    )
    .unwrap();
    let mut st = config::load_with_env(&path, Vec::new()).expect("studio loads");
    st.reviewers.insert(
        "ana".into(),
        Reviewer {
            id: "ana".into(),
            name: "Ana".into(),
            email: None,
            slack: None,
            token_sha256: Some(token_sha256(TOKEN)),
            roles: vec!["reviewer".into()],
            escalation: Vec::new(),
        },
    );
    Arc::new(st)
}

fn ask<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

#[actix_rt::test]
async fn search_content_pages_through_the_library() {
    let nats = NatsServer::start().expect("nats-server");
    let dir = tempfile::tempdir().unwrap();
    let st = studio(dir.path());
    let bus: Arc<dyn Bus> = Arc::new(
        NatsBus::connect(&nats.url(), NatsOptions::default())
            .await
            .unwrap(),
    );
    ensure_standard_streams(bus.as_ref(), &Default::default())
        .await
        .unwrap();
    let (admin, addr) = concierto_admin::start(st.clone(), bus.clone(), AdminOptions::loopback())
        .await
        .unwrap();
    let mut client = AdminServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    // No ingest service yet: the owner is named.
    let err = client
        .search_content(ask(SearchContentRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("ingest"), "{err}");

    let clock: SharedClock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let library = Arc::new(
        ContentLibrary::temporary()
            .unwrap()
            .with_clock(clock.clone()),
    );
    let mut items = Vec::new();
    for n in 0..5 {
        items.push(
            NewItem::new(Kind::Post, "FigsFromPlums", format!("post-{n}"))
                .title(format!("Risograph poster series {n}"))
                .text("Two-colour risograph prints with a halftone grain.")
                .tags(["print"]),
        );
    }
    items.push(
        NewItem::new(Kind::Page, "siteinspire", "page-1")
            .title("Bento grid portfolio")
            .text("A bento grid of case studies."),
    );
    library.put_many(items).unwrap();
    let ingest = concierto_ingest::start(
        st.clone(),
        bus.clone(),
        library,
        Arc::new(SledStore::temporary().unwrap()),
        clock,
        IngestOptions::default(),
    )
    .await
    .unwrap();

    // Two pages of two, then the last one.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = client
            .search_content(ask(SearchContentRequest {
                query: "risograph".into(),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(r.items.len() <= 2);
        seen.extend(r.items.into_iter().map(|i| (i.source, i.kind, i.title)));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(
        seen.iter()
            .all(|(s, k, t)| s == "FigsFromPlums" && k == "post" && t.contains("Risograph"))
    );

    // Filters: kind and source.
    let pages = client
        .search_content(ask(SearchContentRequest {
            kind: "page".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pages.items.len(), 1);
    assert_eq!(pages.items[0].title, "Bento grid portfolio");
    assert!(pages.items[0].item_id.starts_with("sha256:"));

    // Bad input gets INVALID_ARGUMENT with the reason; no token, UNAUTHENTICATED.
    let err = client
        .search_content(ask(SearchContentRequest {
            kind: "hologram".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("hologram"), "{err}");
    let err = client
        .search_content(ask(SearchContentRequest {
            page_token: "x".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let err = client
        .search_content(tonic::Request::new(SearchContentRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    // Search text that would overflow the query parser's stack: refused with
    // the limit named, over the bus (`library.search`, the error header) and
    // through the admin API (INVALID_ARGUMENT); the service keeps answering.
    let hostile = SearchContentRequest {
        query: "(".repeat(1000),
        ..Default::default()
    };
    let reply = bus
        .request(
            subjects::LIBRARY_SEARCH,
            encode(&hostile),
            Duration::from_secs(10),
        )
        .await
        .expect("the ingest service answers");
    let header = reply
        .headers
        .get(subjects::ERROR_HEADER)
        .expect("an error header");
    assert!(header.starts_with("invalid_argument: "), "{header}");
    assert!(header.contains("limit of 8"), "{header}");
    let err = client.search_content(ask(hostile)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("nests groups or NOTs"), "{err}");
    let err = client
        .search_content(ask(SearchContentRequest {
            query: "riso ".repeat(100),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("limit of 64"), "{err}");
    let r = client
        .search_content(ask(SearchContentRequest {
            query: "(risograph OR bento) -zine".into(),
            ..Default::default()
        }))
        .await
        .expect("a normal search still works")
        .into_inner();
    assert_eq!(r.items.len(), 6);

    ingest.stop().await.unwrap();
    admin.stop().await.unwrap();
}
