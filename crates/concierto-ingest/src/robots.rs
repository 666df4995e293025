//! A small robots.txt reader: `User-agent` groups with `Allow` and `Disallow`
//! rules (`*` and `$` wildcards), the most specific (longest) matching rule
//! wins and `Allow` wins a tie (RFC 9309).

/// The rules of one robots.txt that apply to one user agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Robots {
    /// `(allow, pattern)` pairs.
    rules: Vec<(bool, String)>,
}

impl Robots {
    /// Everything allowed (no robots.txt, or a 4xx for it).
    pub fn allow_all() -> Self {
        Robots::default()
    }

    /// Everything disallowed (robots.txt unreachable: assume the worst).
    pub fn disallow_all() -> Self {
        Robots {
            rules: vec![(false, "/".into())],
        }
    }

    /// The rules of `text` for `agent` (matched case-insensitively against the
    /// product token, e.g. `concierto-ingest` for `concierto-ingest/0.1`): the
    /// groups naming it, else the `*` groups.
    pub fn parse(text: &str, agent: &str) -> Self {
        let token = agent
            .split('/')
            .next()
            .unwrap_or(agent)
            .trim()
            .to_ascii_lowercase();
        let mut specific: Vec<(bool, String)> = Vec::new();
        let mut star: Vec<(bool, String)> = Vec::new();
        let mut found_specific = false;
        let mut agents: Vec<String> = Vec::new();
        let mut in_rules = false;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            match key.as_str() {
                "user-agent" => {
                    if in_rules {
                        agents.clear();
                        in_rules = false;
                    }
                    agents.push(value.to_ascii_lowercase());
                }
                "allow" | "disallow" => {
                    in_rules = true;
                    if value.is_empty() {
                        continue; // `Disallow:` with nothing allows everything
                    }
                    let rule = (key == "allow", value.to_string());
                    let mine = agents
                        .iter()
                        .any(|a| a != "*" && !a.is_empty() && token.contains(a.as_str()));
                    if mine {
                        found_specific = true;
                        specific.push(rule);
                    } else if agents.iter().any(|a| a == "*") {
                        star.push(rule);
                    }
                }
                _ => {}
            }
        }
        Robots {
            rules: if found_specific { specific } else { star },
        }
    }

    /// Whether `path` (with its query) may be fetched.
    pub fn allowed(&self, path: &str) -> bool {
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if matches(pattern, path) {
                let len = pattern.len();
                best = match best {
                    Some((l, a)) if l > len || (l == len && a) => Some((l, a)),
                    _ => Some((len, *allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// Whether `pattern` (`*` any run of characters, a final `$` the end) matches
/// the start of `path`.
fn matches(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut pos = 0;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            if !path.starts_with(part) {
                return false;
            }
            pos = part.len();
        } else if let Some(at) = path[pos..].find(part) {
            pos += at + part.len();
        } else {
            return false;
        }
    }
    if anchored {
        // The last literal part must end the path.
        let last = parts.last().copied().unwrap_or("");
        return if parts.len() == 1 {
            path.len() == pos
        } else {
            path.ends_with(last)
        };
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const TXT: &str = "User-agent: *\nDisallow: /private/\nAllow: /private/open\n\nUser-agent: concierto-ingest\nUser-agent: other\nDisallow: /no-bots\nDisallow: /*.pdf$\n";

    #[test]
    fn the_specific_group_wins_over_star() {
        let r = Robots::parse(TXT, "concierto-ingest/0.1");
        assert!(!r.allowed("/no-bots/page"));
        assert!(!r.allowed("/files/a.pdf"));
        assert!(r.allowed("/files/a.pdf?x=1"));
        assert!(r.allowed("/private/x"), "the star group does not apply");
    }

    #[test]
    fn longest_rule_wins_and_allow_wins_ties() {
        let r = Robots::parse(TXT, "somebot/1.0");
        assert!(!r.allowed("/private/x"));
        assert!(r.allowed("/private/open/page"));
        assert!(r.allowed("/"));
        let tie = Robots::parse("User-agent: *\nDisallow: /a\nAllow: /a\n", "x");
        assert!(tie.allowed("/a"));
    }

    #[test]
    fn empty_disallow_allows_everything() {
        let r = Robots::parse("User-agent: *\nDisallow:\n", "x");
        assert!(r.allowed("/anything"));
        assert!(!Robots::disallow_all().allowed("/"));
    }
}
