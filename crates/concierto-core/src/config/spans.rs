//! Where each key of a YAML file is: a map from key path to line, built from
//! the parser's marked events, so that problems found after deserialisation
//! can still name their line. Also finds keys repeated within one map.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Key path → 1-based line, plus keys that appear twice in one map.
#[derive(Debug, Default, Clone)]
pub struct Spans {
    lines: HashMap<String, usize>,
    /// `(path, line)` of every repeated key.
    pub duplicates: Vec<(String, usize)>,
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// The parser's message.
    pub message: String,
}

impl Spans {
    /// Indexes `text`, or says where its YAML is broken.
    pub fn index(text: &str) -> Result<Spans, SyntaxError> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        parser.load(&mut builder, false).map_err(|e| SyntaxError {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        Ok(builder.spans)
    }

    /// True when `path` itself is in the file.
    pub fn has(&self, path: &str) -> bool {
        self.lines.contains_key(path)
    }

    /// Every recorded key path with its line.
    pub fn paths(&self) -> impl Iterator<Item = (&str, usize)> {
        self.lines.iter().map(|(p, l)| (p.as_str(), *l))
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// Joins a key to a path.
pub fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Joins a list index to a path.
pub fn item(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

enum Frame {
    Map {
        path: String,
        pending_key: Option<String>,
        seen: Vec<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    spans: Spans,
    stack: Vec<Frame>,
}

impl Builder {
    /// The path of the node that starts now, recording its line.
    fn enter(&mut self, line: usize) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = item(path, *next);
                *next += 1;
                self.spans.lines.entry(p.clone()).or_insert(line);
                Some(p)
            }
            Some(Frame::Map {
                path, pending_key, ..
            }) => {
                // A value: its path was recorded with its key.
                pending_key.take().map(|k| child(path, &k))
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map {
                    path,
                    pending_key,
                    seen,
                }) = self.stack.last_mut()
                    && pending_key.is_none()
                {
                    let p = child(path, &value);
                    if seen.contains(&value) {
                        self.spans.duplicates.push((p.clone(), line));
                    } else {
                        seen.push(value.clone());
                        self.spans.lines.insert(p, line);
                    }
                    *pending_key = Some(value);
                    return;
                }
                self.enter(line);
            }
            Event::Alias(_) => {
                self.enter(line);
            }
            Event::SequenceStart(..) => {
                let path = self.enter(line).unwrap_or_default();
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingStart(..) => {
                let path = self.enter(line).unwrap_or_default();
                self.stack.push(Frame::Map {
                    path,
                    pending_key: None,
                    seen: Vec::new(),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
triggers:
  scheduled:
    - daily:
        time: \"09:00\"
        agents: [content-creator, brand-guardian]
    - weekly:
        time: \"Monday 10:00\"
        agents:
          - trend-researcher
server:
  grpc_addr: x
  grpc_addr: y
";

    #[test]
    fn lines_of_keys_and_items() {
        let s = Spans::index(DOC).unwrap();
        assert_eq!(s.line("triggers"), Some(1));
        assert_eq!(s.line("triggers.scheduled[0].daily.time"), Some(4));
        assert_eq!(s.line("triggers.scheduled[0].daily.agents[1]"), Some(5));
        assert_eq!(s.line("triggers.scheduled[1].weekly.agents[0]"), Some(9));
        assert_eq!(s.line("triggers.scheduled[1]"), Some(6));
        // Unknown paths fall back to the nearest known ancestor.
        assert_eq!(s.line("triggers.scheduled[1].weekly.nope"), Some(6));
    }

    #[test]
    fn repeated_keys_are_reported() {
        let s = Spans::index(DOC).unwrap();
        assert_eq!(s.duplicates, vec![("server.grpc_addr".to_string(), 12)]);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = Spans::index("a:\n  b: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
    }
}
