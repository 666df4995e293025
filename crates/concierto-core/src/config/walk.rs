//! A reader over the merged configuration tree that records every problem with
//! its key path and line instead of stopping at the first.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};

use super::problem::Problem;
use super::spans::{Spans, child, item};
use crate::grammar::parse_duration;

pub(crate) struct Walker<'a> {
    pub file: &'a Path,
    pub spans: &'a Spans,
    pub problems: Vec<Problem>,
}

pub(crate) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

impl<'a> Walker<'a> {
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        let line = self.spans.line(path);
        self.problems
            .push(Problem::error(self.file, line, path, message));
    }

    pub fn warning(&mut self, path: &str, message: impl Into<String>) {
        let line = self.spans.line(path);
        self.problems
            .push(Problem::warning(self.file, line, path, message));
    }

    /// `v` as a map; null counts as an empty map.
    pub fn map<'v>(&mut self, v: Option<&'v Value>, path: &str) -> Option<&'v Map<String, Value>> {
        match v {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                self.error(
                    path,
                    format!("must be a map of keys, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// Reports keys of `m` that are not in `allowed`.
    pub fn known_keys(&mut self, m: &Map<String, Value>, path: &str, allowed: &[&str]) {
        for k in m.keys() {
            if !allowed.contains(&k.as_str()) {
                self.error(
                    &child(path, k),
                    format!("unknown key `{k}`; expected one of: {}", allowed.join(", ")),
                );
            }
        }
    }

    /// A text value (numbers are taken as their text).
    pub fn opt_string(&mut self, m: &Map<String, Value>, key: &str, path: &str) -> Option<String> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                self.error(
                    &child(path, key),
                    format!("must be text, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// A required text value.
    pub fn string(&mut self, m: &Map<String, Value>, key: &str, path: &str) -> Option<String> {
        let v = self.opt_string(m, key, path);
        if v.is_none() && !m.contains_key(key) {
            self.error(path, format!("`{key}` is required"));
        }
        v
    }

    /// A list of text (a single text is taken as a list of one).
    pub fn strings(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
        required: bool,
    ) -> Vec<String> {
        let p = child(path, key);
        match m.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.error(path, format!("`{key}` is required"));
                }
                Vec::new()
            }
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, v) in items.iter().enumerate() {
                    match v {
                        Value::String(s) => out.push(s.clone()),
                        other => self.error(
                            &item(&p, i),
                            format!("must be text, found {}", describe(other)),
                        ),
                    }
                }
                out
            }
            Some(other) => {
                self.error(&p, format!("must be a list, found {}", describe(other)));
                Vec::new()
            }
        }
    }

    /// A duration such as `"6 hours"`, or `default` when absent.
    pub fn duration(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
        default: Duration,
    ) -> Duration {
        match self.opt_string(m, key, path) {
            None => default,
            Some(s) => match parse_duration(&s) {
                Ok(d) => d,
                Err(e) => {
                    self.error(&child(path, key), format!("bad duration: {e}"));
                    default
                }
            },
        }
    }

    /// A whole number, or `default` when absent.
    pub fn count(&mut self, m: &Map<String, Value>, key: &str, path: &str, default: u64) -> u64 {
        match m.get(key) {
            None | Some(Value::Null) => default,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or(default),
            Some(Value::String(s)) if s.trim().parse::<u64>().is_ok() => {
                s.trim().parse().unwrap_or(default)
            }
            Some(other) => {
                self.error(
                    &child(path, key),
                    format!("must be a whole number ≥ 0, found {}", describe(other)),
                );
                default
            }
        }
    }

    /// A number, if present.
    pub fn number(&mut self, m: &Map<String, Value>, key: &str, path: &str) -> Option<f64> {
        match m.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) if s.trim().parse::<f64>().is_ok() => s.trim().parse().ok(),
            Some(other) => {
                self.error(
                    &child(path, key),
                    format!("must be a number, found {}", describe(other)),
                );
                None
            }
        }
    }

    /// The seed's shape: a list of one-key maps, `- name: {fields}`. Returns
    /// `(name, value, path of the value)`.
    pub fn named_list<'v>(
        &mut self,
        v: Option<&'v Value>,
        path: &str,
    ) -> Vec<(String, &'v Value, String)> {
        let items = match v {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.error(
                    path,
                    format!(
                        "must be a list of `- name: {{...}}` entries, found {}",
                        describe(other)
                    ),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, entry) in items.iter().enumerate() {
            let p = item(path, i);
            match entry {
                Value::Object(m) if m.len() == 1 => {
                    if let Some((name, value)) = m.iter().next() {
                        let vp = child(&p, name);
                        out.push((name.clone(), value, vp));
                    }
                }
                Value::Object(m) => self.error(
                    &p,
                    format!(
                        "each entry is one `name: {{...}}` map, found {} keys ({}); indent the fields under the name",
                        m.len(),
                        m.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ),
                other => self.error(
                    &p,
                    format!("each entry is one `name: {{...}}` map, found {}", describe(other)),
                ),
            }
        }
        out
    }
}
