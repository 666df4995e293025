//! Where each key of a YAML file is: a map from key path to line, built from
//! the parser's marked events, so that problems found after deserialisation
//! can still name their line. Also finds keys repeated within one map.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Deepest nesting of maps and lists a studio file may have.
pub const MAX_DEPTH: usize = 64;

/// Most nodes a studio file may have with its aliases expanded.
pub const MAX_NODES: u64 = 200_000;

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
    /// Indexes `text` (its first document), or says where its YAML is
    /// broken or too big to load: nested deeper than [`MAX_DEPTH`], or more
    /// than [`MAX_NODES`] nodes once its aliases are expanded (a few lines of
    /// aliases of aliases expand to billions, and the loaders copy every one).
    pub fn index(text: &str) -> Result<Spans, SyntaxError> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        // Event by event: the parser's own loader recurses once per level of
        // nesting, so a text nested deep enough would overflow the stack.
        loop {
            let (ev, mark) = parser.next_token().map_err(|e| SyntaxError {
                line: e.marker().line(),
                col: e.marker().col() + 1,
                message: e.info().to_string(),
            })?;
            if matches!(ev, Event::StreamEnd | Event::DocumentEnd) {
                break;
            }
            builder.on_event(ev, mark);
            if let Some(message) = builder.refused.take() {
                return Err(SyntaxError {
                    line: mark.line(),
                    col: mark.col() + 1,
                    message,
                });
            }
        }
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
    /// Of each open map or list: its anchor and its nodes so far, aliases
    /// expanded.
    sizes: Vec<(usize, u64)>,
    /// Nodes of each anchored node, aliases expanded.
    anchored: HashMap<usize, u64>,
    /// Nodes so far, aliases expanded.
    nodes: u64,
    /// Why the text is refused (too deep, too many nodes).
    refused: Option<String>,
}

impl Builder {
    /// Counts a node of `n` nodes (a scalar is 1, an alias its anchor's).
    fn count(&mut self, n: u64) {
        self.nodes = self.nodes.saturating_add(n);
        if let Some((_, size)) = self.sizes.last_mut() {
            *size = size.saturating_add(n);
        }
        if self.nodes > MAX_NODES && self.refused.is_none() {
            self.refused = Some(format!(
                "more than {MAX_NODES} values once its aliases are expanded; \
                 write the values out or use fewer aliases"
            ));
        }
    }

    /// A map or list starts (`anchor` 0: none).
    fn open(&mut self, anchor: usize) {
        self.nodes = self.nodes.saturating_add(1);
        if self.sizes.len() >= MAX_DEPTH && self.refused.is_none() {
            self.refused = Some(format!("nested more than {MAX_DEPTH} levels deep"));
        }
        self.sizes.push((anchor, 1));
    }

    /// A map or list ends: its size counts in its parent's.
    fn close(&mut self) {
        if let Some((anchor, size)) = self.sizes.pop() {
            if anchor > 0 {
                self.anchored.insert(anchor, size);
            }
            if let Some((_, parent)) = self.sizes.last_mut() {
                *parent = parent.saturating_add(size);
            }
        }
    }

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
        match &ev {
            Event::Scalar(_, _, anchor, _) => {
                if *anchor > 0 {
                    self.anchored.insert(*anchor, 1);
                }
                self.count(1);
            }
            Event::Alias(id) => {
                let n = self.anchored.get(id).copied().unwrap_or(1);
                self.count(n);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => self.open(*anchor),
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            _ => {}
        }
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

    /// Ten aliases of ten aliases ... `levels` deep: 10^levels values.
    fn laughs(levels: usize) -> String {
        let mut doc = String::from("l0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..levels {
            let a = format!("*a{}", i - 1);
            doc.push_str(&format!("l{i}: &a{i} [{}]\n", vec![a; 10].join(", ")));
        }
        doc
    }

    #[test]
    fn aliases_that_expand_to_too_many_values_are_refused() {
        // Nine lines that the loaders would expand to a billion values.
        let e = Spans::index(&laughs(9)).unwrap_err();
        assert!(e.message.contains("aliases"), "{e:?}");
        assert_eq!(e.line, 6, "{e:?}");
        // A few aliases are fine.
        assert!(Spans::index(&laughs(3)).is_ok());
        let s = Spans::index("base: &b {x: 1}\nother: *b\n").unwrap();
        assert_eq!(s.line("other"), Some(2));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let e = Spans::index(&format!("{}x\n", "- ".repeat(200_000))).unwrap_err();
        assert!(e.message.contains("nested more than"), "{e:?}");
        let ok = format!("{}x\n", "- ".repeat(MAX_DEPTH));
        assert!(Spans::index(&ok).is_ok());
    }

    #[test]
    fn only_the_first_document_is_indexed() {
        let s = Spans::index("a: 1\n---\nb: 2\n").unwrap();
        assert!(s.has("a"));
        assert!(!s.has("b"));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let e = Spans::index("a:\n  b: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.line >= 2, "{e:?}");
    }
}
