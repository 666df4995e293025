//! Bus requests to the services that own the data, with the admin API's
//! mapping of their refusals ([`concierto_admin::ask_service`]), and that
//! mapping turned into HTTP statuses and sentences for a page.

use axum::http::StatusCode;
use concierto_bus::ProtoMessage;
use tonic::{Code, Status};

use crate::DashboardState;

/// Why a service could not answer, ready for a page.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn from_status(s: &Status) -> Self {
        let status = match s.code() {
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::FailedPrecondition | Code::AlreadyExists => StatusCode::CONFLICT,
            _ => StatusCode::BAD_GATEWAY,
        };
        Refusal {
            status,
            message: s.message().to_string(),
        }
    }
}

/// A request to the service `owner` on `subject`, as `identity` when given.
pub(crate) async fn ask<Q: ProtoMessage, R: ProtoMessage>(
    state: &DashboardState,
    owner: &str,
    subject: &str,
    req: &Q,
    identity: Option<&str>,
) -> Result<R, Refusal> {
    concierto_admin::ask_service(
        state.bus(),
        owner,
        subject,
        req,
        identity,
        state.opts().request_timeout,
    )
    .await
    .map_err(|s| Refusal::from_status(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_that_is_not_running_is_named_with_503() {
        let s = concierto_admin::bus_status(
            "orchestrator",
            concierto_bus::BusError::NoResponders("orchestrator.runs.list".into()),
        );
        let r = Refusal::from_status(&s);
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.message.contains("orchestrator is not running"), "{r:?}");
        let r = Refusal::from_status(&concierto_admin::remote_status(
            "permission_denied: not a reviewer",
        ));
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.message, "not a reviewer");
    }
}
