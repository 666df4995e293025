//! Dead letters over the admin API: what the bus gave up on is kept in stream
//! `DEADLETTER` (`concierto.v1.DeadLetter` on `dlq.<subject>`); an operator
//! lists it and replays a letter, which publishes the original message again
//! on its subject (durably when a stream stores it) and removes the letter.
//! Shared by the gRPC service and the dashboard.

use concierto_bus::{Bus, BusError, Outgoing, decode};
use concierto_proto::v1;
use tonic::Status;

/// The stream dead letters are stored in.
pub const STREAM: &str = "DEADLETTER";
/// Most letters one page holds.
pub const MAX_PAGE: usize = 200;

fn status(e: BusError) -> Status {
    match e {
        BusError::NotFound(what) => Status::unavailable(format!(
            "no dead-letter stream ({what}): nothing was dead-lettered on this bus yet, or no service declared the streams"
        )),
        other => Status::unavailable(format!("bus: {other}")),
    }
}

/// One page of dead letters, oldest first, whose original subject starts
/// with `req.subject_prefix`.
pub async fn list(
    bus: &dyn Bus,
    req: &v1::ListDeadLettersRequest,
) -> Result<v1::ListDeadLettersResponse, Status> {
    let size = match req.page_size {
        0 => 50,
        n => (n as usize).min(MAX_PAGE),
    };
    let mut from: u64 = if req.page_token.is_empty() {
        0
    } else {
        req.page_token
            .parse()
            .map_err(|_| Status::invalid_argument("page_token is not one this API gave"))?
    };
    let mut out = Vec::new();
    let mut next = String::new();
    // Letters filtered out still count toward a bounded read per call.
    let mut read = 0usize;
    while out.len() < size && read < MAX_PAGE * 10 {
        let batch = bus
            .stream_messages(STREAM, from, MAX_PAGE)
            .await
            .map_err(status)?;
        if batch.is_empty() {
            break;
        }
        for (seq, m) in batch {
            read += 1;
            from = seq + 1;
            let Ok(letter) = decode::<v1::DeadLetter>(&m) else {
                continue;
            };
            if !letter.subject.starts_with(&req.subject_prefix) {
                continue;
            }
            if out.len() == size {
                next = seq.to_string();
                break;
            }
            out.push(v1::DeadLetterEntry {
                sequence: seq,
                letter: Some(letter),
            });
        }
        if !next.is_empty() {
            break;
        }
    }
    if next.is_empty() && read >= MAX_PAGE * 10 {
        next = from.to_string();
    }
    Ok(v1::ListDeadLettersResponse {
        dead_letters: out,
        next_page_token: next,
    })
}

/// Publishes the letter `seq` again on its subject, then removes it. The
/// message keeps its headers, but its message id gets `@replay<seq>` appended
/// so the stream's duplicate window does not swallow it.
pub async fn replay(bus: &dyn Bus, seq: u64) -> Result<v1::ReplayDeadLetterResponse, Status> {
    let found = bus
        .stream_messages(STREAM, seq, 1)
        .await
        .map_err(status)?
        .into_iter()
        .find(|(s, _)| *s == seq);
    let Some((_, m)) = found else {
        return Err(Status::not_found(format!("no dead letter {seq}")));
    };
    let letter: v1::DeadLetter = decode(&m).map_err(|e| {
        Status::failed_precondition(format!("dead letter {seq} does not decode: {e}"))
    })?;
    if letter.subject.is_empty()
        || letter
            .subject
            .starts_with(&format!("{}.", concierto_bus::DEAD_LETTER_PREFIX))
    {
        return Err(Status::failed_precondition(format!(
            "dead letter {seq} has no subject to go back to"
        )));
    }
    let mut out = Outgoing::new(letter.payload.clone());
    for (k, v) in &letter.headers {
        if k.eq_ignore_ascii_case(concierto_bus::MSG_ID) {
            out = out.header(k.clone(), format!("{v}@replay{seq}"));
        } else {
            out = out.header(k.clone(), v.clone());
        }
    }
    if !letter
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case(concierto_bus::MSG_ID))
    {
        out = out.msg_id(format!("replay{seq}"));
    }
    let stream = match bus.publish_durable(&letter.subject, out.clone()).await {
        Ok(ack) => ack.stream,
        Err(BusError::NoStream(_)) => {
            bus.publish(&letter.subject, out).await.map_err(status)?;
            String::new()
        }
        Err(e) => return Err(status(e)),
    };
    if let Err(e) = bus.delete_stream_message(STREAM, seq).await {
        tracing::warn!(seq, error = %e, "replayed a dead letter but could not remove it");
    }
    tracing::info!(seq, subject = %letter.subject, "dead letter replayed");
    Ok(v1::ReplayDeadLetterResponse {
        subject: letter.subject,
        stream,
    })
}
