//! Concierto's wire contracts: every bus message and the gRPC AdminService,
//! generated from `proto/concierto/v1/` at build time.
//!
//! Every message implements [`prost::Name`], so the bus can label a payload with
//! `content-type: application/protobuf; proto=concierto.v1.Task` and a dead letter
//! can say which type it failed to decode as.

/// Package `concierto.v1`.
pub mod v1 {
    #![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]
    tonic::include_proto!("concierto.v1");
}

/// The encoded `FileDescriptorSet` of every Concierto proto and its imports,
/// for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/concierto_descriptor.bin"));

pub use prost::Name;

/// Converts between `SystemTime` and the protobuf `Timestamp`.
pub mod time {
    use prost_types::Timestamp;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// A `Timestamp` for `t`; times before 1970 clamp to the epoch.
    pub fn timestamp(t: SystemTime) -> Timestamp {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Timestamp {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        }
    }

    /// The current time as a `Timestamp`.
    pub fn now() -> Timestamp {
        timestamp(SystemTime::now())
    }

    /// `ts` as a `SystemTime`; a negative or malformed timestamp gives the epoch.
    pub fn system_time(ts: &Timestamp) -> SystemTime {
        let secs = u64::try_from(ts.seconds).unwrap_or(0);
        let nanos = u32::try_from(ts.nanos).unwrap_or(0).min(999_999_999);
        UNIX_EPOCH + Duration::new(secs, nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::v1;
    use prost::{Message, Name};

    #[test]
    fn messages_carry_their_full_names() {
        assert_eq!(v1::Task::full_name(), "concierto.v1.Task");
        assert_eq!(v1::DeadLetter::full_name(), "concierto.v1.DeadLetter");
    }

    #[test]
    fn a_task_round_trips() {
        let task = v1::Task {
            task_id: "r1/draft/1".into(),
            run_id: "r1".into(),
            step_id: "draft".into(),
            attempt: 1,
            role: "content-creator".into(),
            priority: v1::Priority::Urgent as i32,
            ..Default::default()
        };
        let bytes = task.encode_to_vec();
        assert_eq!(v1::Task::decode(bytes.as_slice()).ok(), Some(task));
    }

    #[test]
    fn descriptor_set_names_the_admin_service() {
        let fds = <prost_types::FileDescriptorSet as Message>::decode(super::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let services: Vec<_> = fds
            .file
            .iter()
            .flat_map(|f| f.service.iter().map(|s| s.name().to_string()))
            .collect();
        assert!(services.contains(&"AdminService".to_string()));
    }

    #[test]
    fn timestamps_convert_both_ways() {
        let now = std::time::SystemTime::now();
        let back = super::time::system_time(&super::time::timestamp(now));
        assert_eq!(back, now);
    }
}
