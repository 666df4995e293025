//! `library.search`: the content library searched over the bus
//! (`SearchContentRequest` → `SearchContentResponse`), for the admin API's
//! `SearchContent`. The ingest service answers it because it owns the library.

use std::sync::Arc;

use concierto_bus::{Bus, BusExt, Outgoing, encode};
use concierto_content::{ContentLibrary, Kind, Query};
use concierto_core::service::StopSignal;
use concierto_core::subjects;
use concierto_proto::v1::{SearchContentRequest, SearchContentResponse};

use crate::announce::content_item;

/// Items per page when a request gives no size.
pub const DEFAULT_PAGE: usize = 20;
/// Most items per page.
pub const MAX_PAGE: usize = 100;

/// Why a search request was refused: `(code, message)` for the error header.
fn invalid(message: impl Into<String>) -> (&'static str, String) {
    ("invalid_argument", message.into())
}

/// Answers one search request.
pub fn search(
    library: &ContentLibrary,
    req: &SearchContentRequest,
) -> Result<SearchContentResponse, (&'static str, String)> {
    let mut query = if req.query.trim().is_empty() {
        Query::browse()
    } else {
        Query::text(req.query.trim())
    };
    if !req.source.is_empty() {
        query = query.source(&req.source);
    }
    if !req.kind.is_empty() {
        let kind: Kind = req.kind.parse().map_err(|_| {
            invalid(format!(
                "kind {:?} is not one of {}",
                req.kind,
                Kind::ALL.map(Kind::as_str).join(", ")
            ))
        })?;
        query = query.kind(kind);
    }
    for t in &req.tags {
        query = query.tag(t);
    }
    let size = match req.page_size {
        0 => DEFAULT_PAGE,
        n => (n as usize).min(MAX_PAGE),
    };
    let offset = match req.page_token.as_str() {
        "" => 0,
        t => t
            .parse::<usize>()
            .map_err(|_| invalid(format!("page_token {t:?} is not one this server gave")))?,
    };
    let page = library
        .search(&query.page(size, offset))
        .map_err(|e| match e.kind() {
            // Search text over a limit (length, words, nesting) among them.
            concierto_content::ErrorKind::Invalid | concierto_content::ErrorKind::TooLarge => {
                invalid(e.to_string())
            }
            _ => ("internal", e.to_string()),
        })?;
    let next = offset + page.hits.len();
    Ok(SearchContentResponse {
        items: page.hits.iter().map(|h| content_item(&h.item)).collect(),
        next_page_token: if next < page.total && !page.hits.is_empty() {
            next.to_string()
        } else {
            String::new()
        },
    })
}

/// Answers `library.search` until `stop`.
pub(crate) async fn serve(
    bus: Arc<dyn Bus>,
    library: Arc<ContentLibrary>,
    mut stop: StopSignal,
) -> Result<(), concierto_bus::BusError> {
    let mut sub = bus
        .queue_subscribe_proto::<SearchContentRequest>(subjects::LIBRARY_SEARCH, "ingest")
        .await?;
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = stop.stopped() => break,
                n = sub.next() => n,
            };
            let Some((req, msg)) = next else { break };
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let lib = library.clone();
            let answer = tokio::task::spawn_blocking(move || search(&lib, &req))
                .await
                .unwrap_or_else(|e| Err(("internal", format!("search thread: {e}"))));
            let out = match answer {
                Ok(r) => encode(&r),
                Err((code, m)) => {
                    Outgoing::new(Vec::new()).header(subjects::ERROR_HEADER, format!("{code}: {m}"))
                }
            };
            if let Err(e) = bus.respond(&reply, out).await {
                tracing::warn!(error = %e, "answering library.search failed");
            }
        }
    });
    Ok(())
}
