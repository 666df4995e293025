//! A small YAML writer for the deploy files: a JSON value (keys in insertion
//! order) as block-style YAML, strings plain when that reads back as the same
//! string, else double-quoted (JSON escapes are YAML's), multi-line text as
//! literal blocks. Deterministic: the same value gives the same text.

use serde_json::Value;

/// `v` as a YAML document (no `---`), ending in a newline.
pub(crate) fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other, 0));
            out.push('\n');
        }
    }
    out
}

/// Several documents, `---` between them.
pub(crate) fn docs(vs: &[Value]) -> String {
    vs.iter().map(to_yaml).collect::<Vec<_>>().join("---\n")
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    let mut first = true;
    for (k, v) in m {
        if !first {
            pad(out, indent);
        }
        first = false;
        out.push_str(&string(k, indent));
        out.push(':');
        value_after_key(out, v, indent);
    }
}

fn value_after_key(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            pad(out, indent + 2);
            map(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            pad(out, indent + 2);
            seq(out, a, indent + 2);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other, indent + 2));
            out.push('\n');
        }
    }
}

/// A sequence whose first `- ` is already indented.
fn seq(out: &mut String, a: &[Value], indent: usize) {
    let mut first = true;
    for v in a {
        if !first {
            pad(out, indent);
        }
        first = false;
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => map(out, m, indent + 2),
            Value::Array(inner) if !inner.is_empty() => seq(out, inner, indent + 2),
            other => {
                out.push_str(&scalar(other, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s, indent),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// Words YAML 1.1 or 1.2 reads as something other than a string.
const RESERVED: &[&str] = &[
    "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
];

fn plain_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '/' || c == '.' || c == '_')
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '-' | '_' | '.' | '/' | ':' | ' ' | '(' | ')' | ',' | '=' | '+'
                )
        })
        && !s.ends_with(' ')
        && !s.ends_with(':')
        && !s.contains(": ")
        && !s.contains(" #")
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str())
        && s.parse::<f64>().is_err()
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

fn string(s: &str, indent: usize) -> String {
    if plain_ok(s) {
        return s.to_string();
    }
    // Literal block: text of whole lines, no carriage returns or tabs at a
    // line's start, ending in exactly one newline.
    let block = s.ends_with('\n')
        && !s.ends_with("\n\n")
        && !s.contains('\r')
        && !s.starts_with([' ', '\n'])
        && s.lines().all(|l| !l.ends_with(' ') && !l.starts_with('\t'));
    if block {
        let mut out = String::from("|\n");
        for line in s.lines() {
            if !line.is_empty() {
                out.extend(std::iter::repeat_n(' ', indent));
                out.push_str(line);
            }
            out.push('\n');
        }
        // The caller adds the line end after a scalar.
        out.pop();
        return out;
    }
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_block_yaml_that_quotes_what_would_change_type() {
        let v = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"a": "true", "b": "8080", "c": "on"}},
            "data": {"f.yaml": "a: 1\n\nb: [x]\n", "one": "x: y"},
            "list": [{"name": "a", "value": "0.0.0.0:8081"}, "plain", 3, []],
            "empty": {}
        });
        let y = to_yaml(&v);
        assert_eq!(
            y,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels:\n    a: \"true\"\n    b: \"8080\"\n    c: \"on\"\n\
data:\n  f.yaml: |\n    a: 1\n\n    b: [x]\n  one: \"x: y\"\n\
list:\n  - name: a\n    value: \"0.0.0.0:8081\"\n  - plain\n  - 3\n  - []\nempty: {}\n"
        );
    }
}
