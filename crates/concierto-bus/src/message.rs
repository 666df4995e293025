use bytes::Bytes;

/// Header carrying the message id that JetStream (and the embedded bus)
/// deduplicate on within a stream's duplicate window.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";
/// Content type header; protobuf bodies say
/// `application/protobuf; proto=concierto.v1.<Type>`.
pub const CONTENT_TYPE: &str = "content-type";

/// Message headers: an ordered list of name/value pairs. Names compare
/// case-sensitively, as in NATS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` to `value`, replacing any earlier value.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Every name/value pair in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut h = Headers::new();
        for (k, v) in iter {
            h.insert(k, v);
        }
        h
    }
}

/// A message to send: headers and a body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// Headers to send.
    pub headers: Headers,
    /// The body.
    pub payload: Bytes,
}

impl Outgoing {
    /// A message with this body and no headers.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Outgoing {
            headers: Headers::new(),
            payload: payload.into(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the deduplication id (`Nats-Msg-Id`).
    pub fn msg_id(self, id: impl Into<String>) -> Self {
        self.header(MSG_ID, id)
    }

    /// Sets the W3C `traceparent`.
    pub fn traceparent(self, value: impl Into<String>) -> Self {
        self.header(TRACEPARENT, value)
    }
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The subject, without the studio's prefix.
    pub subject: String,
    /// Where a reply goes, for a request (pass it to `Bus::respond`).
    pub reply: Option<String>,
    /// The headers.
    pub headers: Headers,
    /// The body.
    pub payload: Bytes,
}

impl Message {
    /// The `Nats-Msg-Id`, if any.
    pub fn msg_id(&self) -> Option<&str> {
        self.headers.get(MSG_ID)
    }

    /// The `traceparent`, if any.
    pub fn traceparent(&self) -> Option<&str> {
        self.headers.get(TRACEPARENT)
    }
}

/// The content type of a protobuf body of type `full_name`.
pub fn protobuf_content_type(full_name: &str) -> String {
    format!("application/protobuf; proto={full_name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replaces_and_keeps_order() {
        let mut h = Headers::new();
        h.insert("a", "1");
        h.insert("b", "2");
        h.insert("a", "3");
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("a", "3"), ("b", "2")]);
        assert_eq!(h.get("a"), Some("3"));
        assert_eq!(h.get("c"), None);
    }

    #[test]
    fn outgoing_builder_sets_known_headers() {
        let m = Outgoing::new("x")
            .msg_id("id-1")
            .traceparent("00-abc-def-01");
        assert_eq!(m.headers.get(MSG_ID), Some("id-1"));
        assert_eq!(m.headers.get(TRACEPARENT), Some("00-abc-def-01"));
    }
}
