//! Training data: campaign analytics (CSV with a header row, a JSON array of
//! objects, or JSON lines) and processed feedback (JSON lines or JSON), one
//! item per record; and design tokens turned into CSS for the typography
//! extractor.

use concierto_content::{Kind, NewItem};
use concierto_core::config::ContentSource;
use serde_json::{Map, Value};

type Record = Map<String, Value>;

/// Whether a file in a training-data folder is read.
pub(crate) fn is_data_file(rel: &str) -> bool {
    let lower = rel.to_ascii_lowercase();
    [".csv", ".json", ".jsonl", ".ndjson"]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// Feedback when the source's name or folder says so (the folder's last two
/// names: the location is resolved against the studio's folder, whose own
/// path says nothing about the source); analytics otherwise.
fn kind_of(source: &ContentSource) -> Kind {
    let says = |s: &str| s.to_ascii_lowercase().contains("feedback");
    let folder: Vec<String> = std::path::Path::new(&source.location)
        .components()
        .rev()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .take(2)
        .collect();
    if says(&source.name) || folder.iter().any(|n| says(n)) {
        Kind::Feedback
    } else {
        Kind::Analytics
    }
}

/// Parses CSV (RFC 4180, with the `csv` crate; rows may differ in length) into rows.
pub(crate) fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| e.to_string())?;
        let row: Vec<String> = record.iter().map(str::to_string).collect();
        if row.len() == 1 && row[0].trim().is_empty() {
            continue;
        }
        rows.push(row);
    }
    Ok(rows)
}

fn csv_records(text: &str) -> Result<Vec<Record>, String> {
    let mut rows = parse_csv(text)?.into_iter();
    let header: Vec<String> = rows
        .next()
        .ok_or("empty CSV: a header row is expected")?
        .into_iter()
        .map(|h| h.trim().to_string())
        .collect();
    rows.enumerate()
        .map(|(i, r)| {
            if r.len() != header.len() {
                return Err(format!(
                    "row {}: {} fields where the header has {}",
                    i + 2,
                    r.len(),
                    header.len()
                ));
            }
            Ok(header
                .iter()
                .cloned()
                .zip(r.into_iter().map(|v| csv_value(v.trim())))
                .collect())
        })
        .collect()
}

fn csv_value(v: &str) -> Value {
    if let Ok(i) = v.parse::<i64>() {
        return Value::from(i);
    }
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() => Value::from(f),
        _ => Value::from(v),
    }
}

fn json_records(bytes: &[u8], lines: bool) -> Result<Vec<Record>, String> {
    let objects = |v: Value| -> Result<Vec<Record>, String> {
        match v {
            Value::Array(a) => a
                .into_iter()
                .map(|v| match v {
                    Value::Object(o) => Ok(o),
                    other => Err(format!("expected objects, found {other}")),
                })
                .collect(),
            Value::Object(mut o) => {
                for key in ["records", "items", "data", "campaigns", "feedback"] {
                    if let Some(Value::Array(_)) = o.get(key)
                        && let Some(Value::Array(a)) = o.remove(key)
                    {
                        return a
                            .into_iter()
                            .filter_map(|v| match v {
                                Value::Object(o) => Some(Ok(o)),
                                _ => None,
                            })
                            .collect();
                    }
                }
                Ok(vec![o])
            }
            other => Err(format!("expected a JSON array of objects, found {other}")),
        }
    };
    if lines {
        let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
            out.extend(objects(v).map_err(|e| format!("line {}: {e}", i + 1))?);
        }
        return Ok(out);
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    objects(v)
}

fn field<'a>(r: &'a Record, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| r.get(*n))
        .filter(|v| !v.is_null())
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

/// The items of one training-data file: one per record.
pub(crate) fn items(
    source: &ContentSource,
    rel: &str,
    bytes: &[u8],
) -> Result<Vec<NewItem>, String> {
    let lower = rel.to_ascii_lowercase();
    let records = if lower.ends_with(".csv") {
        csv_records(&String::from_utf8_lossy(bytes))?
    } else {
        json_records(
            bytes,
            lower.ends_with(".jsonl") || lower.ends_with(".ndjson"),
        )?
    };
    let kind = kind_of(source);
    let stem = rel.rsplit('/').next().unwrap_or(rel);
    Ok(records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let id = field(&r, &["id", "campaign_id", "feedback_id", "uuid"]).map(as_text);
            let key = match &id {
                Some(id) => format!("{rel}#{id}"),
                None => format!("{rel}#{}", i + 1),
            };
            let title = field(
                &r,
                &["title", "name", "campaign", "campaign_name", "subject"],
            )
            .map(as_text)
            .unwrap_or_else(|| format!("{stem} record {}", i + 1));
            let text = r
                .iter()
                .map(|(k, v)| format!("{k}: {}", as_text(v)))
                .collect::<Vec<_>>()
                .join("\n");
            let mut item = NewItem::new(kind, &source.name, key)
                .title(title)
                .text(text);
            if let Some(t) = field(
                &r,
                &["published_at", "date", "created_at", "timestamp", "sent_at"],
            )
            .map(as_text)
            .as_deref()
            .and_then(parse_time)
            {
                item = item.published_ms(t);
            }
            if let Some(tags) = field(&r, &["tags", "topics", "category", "channel"]) {
                let list: Vec<String> = match tags {
                    Value::Array(a) => a.iter().map(as_text).collect(),
                    other => as_text(other)
                        .split([';', '|'])
                        .map(str::to_string)
                        .collect(),
                };
                item = item.tags(
                    list.into_iter()
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty() && t.len() <= 100)
                        .take(32),
                );
            }
            item
        })
        .collect())
}

/// Design tokens (any JSON nesting; W3C `$value` or `value` leaves) as CSS
/// rules the typography extractor reads: every leaf under a key naming a font
/// family, size or weight.
pub(crate) fn tokens_css(json: &Value) -> String {
    fn leaf(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Object(o) => o.get("$value").or_else(|| o.get("value")).and_then(leaf),
            Value::Array(a) => Some(a.iter().filter_map(leaf).collect::<Vec<_>>().join(", ")),
            _ => None,
        }
    }
    fn walk(path: &str, v: &Value, out: &mut Vec<String>) {
        let lower = path.to_ascii_lowercase();
        if lower.contains("font") || lower.contains("typ") {
            let prop = if lower.contains("family") || lower.ends_with("font") {
                Some("font-family")
            } else if lower.contains("size") {
                Some("font-size")
            } else if lower.contains("weight") {
                Some("font-weight")
            } else {
                None
            };
            if let (Some(prop), Some(value)) = (prop, leaf(v))
                && !matches!(v, Value::Object(o) if !o.contains_key("$value") && !o.contains_key("value"))
            {
                out.push(format!(".token-{} {{ {prop}: {value}; }}", out.len()));
                return;
            }
        }
        if let Value::Object(o) = v {
            for (k, v) in o {
                if !k.starts_with('$') {
                    walk(&format!("{path}.{k}"), v, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk("", json, &mut out);
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use concierto_core::config::{Refresh, SourceKind};

    fn source(name: &str) -> ContentSource {
        ContentSource {
            name: name.into(),
            group: "training_data".into(),
            kind: SourceKind::TrainingData,
            location: "/analytics/high-performing/".into(),
            role: "growth-hacker".into(),
            refresh: Refresh::Every(std::time::Duration::from_secs(60)),
            extract: Vec::new(),
            allow_hosts: Vec::new(),
            allow_private_networks: false,
            enabled: true,
        }
    }

    #[test]
    fn csv_handles_quotes_and_crlf() {
        let rows = parse_csv("a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\r\n").unwrap();
        assert_eq!(rows, vec![vec!["a", "b"], vec!["x, y", "say \"hi\""]]);
        assert_eq!(parse_csv("\u{feff}a\n\nb\n").unwrap(), [["a"], ["b"]]);
    }

    #[test]
    fn csv_rows_become_analytics_items() {
        let csv = "campaign_id,name,ctr,date,tags\nc1,Spring launch,0.12,2026-03-01,email;spring\nc2,Summer,0.08,2026-06-01,social\n";
        let items = items(&source("successful_campaigns"), "q1.csv", csv.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].kind, Kind::Analytics);
        assert_eq!(items[0].source_key, "q1.csv#c1");
        assert_eq!(items[0].title, "Spring launch");
        assert!(items[0].text.contains("ctr: 0.12"));
        assert_eq!(items[0].tags, vec!["email", "spring"]);
        assert!(items[0].published_ms.is_some());
    }

    #[test]
    fn json_lines_become_feedback_items_and_bad_json_is_an_error() {
        let jl =
            "{\"feedback_id\":\"f1\",\"text\":\"Love the colours\"}\n\n{\"feedback_id\":\"f2\"}\n";
        let items = items(&source("user_feedback"), "week.jsonl", jl.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].kind, Kind::Feedback);
        assert!(super::items(&source("user_feedback"), "x.json", b"{nope").is_err());
    }

    #[test]
    fn tokens_become_css() {
        let json: Value = serde_json::from_str(
            r##"{"font":{"family":{"body":{"$value":"Inter"}},"size":{"base":{"value":"16px"}}},"color":{"red":"#f00"}}"##,
        )
        .unwrap();
        let css = tokens_css(&json);
        assert!(css.contains("font-family: Inter"), "{css}");
        assert!(css.contains("font-size: 16px"), "{css}");
        assert!(!css.contains("#f00"));
    }
}
