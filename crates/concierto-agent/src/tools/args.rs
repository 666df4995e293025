//! Reading a model's tool arguments: every mistake is a [`ToolError`] the
//! model sees, naming the argument.

use serde_json::{Map, Value, json};

use super::ToolError;

/// The arguments as an object.
pub(crate) fn object(args: &Value) -> Result<&Map<String, Value>, ToolError> {
    match args {
        Value::Object(m) => Ok(m),
        Value::Null => Err(ToolError::new(
            "arguments missing: pass a JSON object with the tool's parameters",
        )),
        other => Err(ToolError::new(format!(
            "arguments must be a JSON object, not {other}"
        ))),
    }
}

/// A required text argument of at most `max` bytes.
pub(crate) fn text<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<&'a str, ToolError> {
    opt_text(m, key, max)?.ok_or_else(|| ToolError::new(format!("`{key}` is required")))
}

/// An optional text argument of at most `max` bytes (null counts as absent).
pub(crate) fn opt_text<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    max: usize,
) -> Result<Option<&'a str>, ToolError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s)),
        Some(Value::String(s)) => Err(ToolError::new(format!(
            "`{key}` is {} bytes; at most {max} are accepted",
            s.len()
        ))),
        Some(other) => Err(ToolError::new(format!("`{key}` must be text, not {other}"))),
    }
}

/// An optional whole number in `min..=max` (a number written as text is taken).
pub(crate) fn opt_count(
    m: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ToolError> {
    let n = match m.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(ToolError::new(format!(
            "`{key}` must be a whole number from {min} to {max}"
        ))),
    }
}

/// An optional true/false.
pub(crate) fn opt_flag(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, ToolError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ToolError::new(format!(
            "`{key}` must be true or false, not {other}"
        ))),
    }
}

/// An optional list of at most `max_items` texts of at most `max_len` bytes
/// (a single text counts as a list of one).
pub(crate) fn opt_texts(
    m: &Map<String, Value>,
    key: &str,
    max_items: usize,
    max_len: usize,
) -> Result<Vec<String>, ToolError> {
    let items: Vec<&Value> = match m.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::String(_)) => vec![v],
        Some(other) => {
            return Err(ToolError::new(format!(
                "`{key}` must be a list of text, not {other}"
            )));
        }
    };
    if items.len() > max_items {
        return Err(ToolError::new(format!(
            "`{key}` has {} entries; at most {max_items} are accepted",
            items.len()
        )));
    }
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) if s.len() <= max_len => Ok(s.clone()),
            Value::String(_) => Err(ToolError::new(format!(
                "an entry of `{key}` is over {max_len} bytes"
            ))),
            other => Err(ToolError::new(format!(
                "entries of `{key}` must be text, not {other}"
            ))),
        })
        .collect()
}

/// An `object` JSON Schema with these `(name, type, description)` properties,
/// `required` among them.
pub(crate) fn schema(props: &[(&str, &str, &str)], required: &[&str]) -> Value {
    let mut p = Map::new();
    for (name, ty, desc) in props {
        let mut prop = json!({ "description": desc });
        if *ty == "array" {
            prop["type"] = json!("array");
            prop["items"] = json!({ "type": "string" });
        } else {
            prop["type"] = json!(ty);
        }
        p.insert((*name).to_string(), prop);
    }
    json!({ "type": "object", "properties": p, "required": required })
}

/// `text` cut to at most `max` bytes on a character boundary; true when cut.
pub(crate) fn cut(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}
