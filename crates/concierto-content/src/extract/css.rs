//! A small, forgiving CSS scanner: rules, declarations and `@import`s, enough
//! to find fonts. Never fails: malformed input yields what could be read.

/// One `name: value` declaration (name lowercased, value trimmed, `!important` dropped).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decl {
    pub name: String,
    pub value: String,
}

/// A style rule or an `@font-face` block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    /// The selector (empty for inline styles); `@font-face` for font faces.
    pub selector: String,
    pub decls: Vec<Decl>,
}

/// What a stylesheet holds.
#[derive(Debug, Default)]
pub(crate) struct Sheet {
    pub rules: Vec<Rule>,
    /// The text of each `@import` rule.
    pub imports: Vec<String>,
}

const MAX_DEPTH: usize = 24;

/// Scans a stylesheet.
pub(crate) fn parse_sheet(css: &str) -> Sheet {
    let css = strip_comments(css);
    let mut sheet = Sheet::default();
    let mut pos = 0;
    parse_block(css.as_bytes(), &css, &mut pos, &mut sheet, 0, false);
    sheet
}

/// Scans the declarations of a `style` attribute.
pub(crate) fn parse_inline(style: &str) -> Vec<Decl> {
    split_top_level(style, b';')
        .into_iter()
        .filter_map(|d| parse_decl(&d))
        .collect()
}

fn strip_comments(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find("*/") {
            Some(end) => rest = &rest[start + 2 + end + 2..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Reads items until the end or (when `nested`) the `}` closing this block;
/// returns the declarations found directly in it.
fn parse_block(
    b: &[u8],
    s: &str,
    pos: &mut usize,
    sheet: &mut Sheet,
    depth: usize,
    nested: bool,
) -> Vec<Decl> {
    let mut decls = Vec::new();
    loop {
        while *pos < b.len() && b[*pos].is_ascii_whitespace() {
            *pos += 1;
        }
        if *pos >= b.len() {
            return decls;
        }
        let start = *pos;
        let end = scan_segment(b, pos);
        let segment = s.get(start..end).unwrap_or("").trim();
        match b.get(*pos) {
            None => {
                push_decl(segment, sheet, &mut decls);
                return decls;
            }
            Some(b';') => {
                *pos += 1;
                push_decl(segment, sheet, &mut decls);
            }
            Some(b'}') => {
                *pos += 1;
                push_decl(segment, sheet, &mut decls);
                if nested {
                    return decls;
                }
            }
            Some(_) => {
                // '{'
                *pos += 1;
                let prelude = segment.to_ascii_lowercase();
                if depth >= MAX_DEPTH {
                    skip_block(b, pos);
                    continue;
                }
                if prelude.starts_with("@font-face") {
                    let inner = parse_block(b, s, pos, sheet, depth + 1, true);
                    sheet.rules.push(Rule {
                        selector: "@font-face".into(),
                        decls: inner,
                    });
                } else if prelude.starts_with("@media")
                    || prelude.starts_with("@supports")
                    || prelude.starts_with("@layer")
                    || prelude.starts_with("@container")
                    || prelude.starts_with("@document")
                    || prelude.starts_with("@scope")
                {
                    parse_block(b, s, pos, sheet, depth + 1, true);
                } else if prelude.starts_with('@') {
                    // @keyframes, @page, @property ...: nothing about fonts in use.
                    skip_block(b, pos);
                } else {
                    let inner = parse_block(b, s, pos, sheet, depth + 1, true);
                    sheet.rules.push(Rule {
                        selector: segment.to_string(),
                        decls: inner,
                    });
                }
            }
        }
    }
}

fn push_decl(segment: &str, sheet: &mut Sheet, decls: &mut Vec<Decl>) {
    if segment.is_empty() {
        return;
    }
    if let Some(rest) = segment
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("@import"))
        .and_then(|_| segment.get(7..))
    {
        sheet.imports.push(rest.trim().to_string());
    } else if let Some(d) = parse_decl(segment) {
        decls.push(d);
    }
}

/// Advances to the next top-level `;`, `{` or `}` (outside strings and
/// parentheses) and returns where the segment ends.
fn scan_segment(b: &[u8], pos: &mut usize) -> usize {
    let mut parens = 0usize;
    while *pos < b.len() {
        match b[*pos] {
            q @ (b'"' | b'\'') => skip_string(b, pos, q),
            b'(' => parens += 1,
            b')' => parens = parens.saturating_sub(1),
            b';' | b'{' | b'}' if parens == 0 => return *pos,
            _ => {}
        }
        *pos += 1;
    }
    *pos
}

/// Leaves `pos` on the closing quote (or the end).
fn skip_string(b: &[u8], pos: &mut usize, quote: u8) {
    *pos += 1;
    while *pos < b.len() && b[*pos] != quote {
        if b[*pos] == b'\\' {
            *pos += 1;
        }
        *pos += 1;
    }
}

/// Skips past the `}` that closes the block whose `{` was just read.
fn skip_block(b: &[u8], pos: &mut usize) {
    let mut depth = 1usize;
    while *pos < b.len() {
        match b[*pos] {
            q @ (b'"' | b'\'') => skip_string(b, pos, q),
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    *pos += 1;
                    return;
                }
            }
            _ => {}
        }
        *pos += 1;
    }
}

fn parse_decl(segment: &str) -> Option<Decl> {
    let (name, value) = segment.split_once(':')?;
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let mut value = value.trim();
    if let Some(i) = value.to_ascii_lowercase().rfind("!important") {
        value = value[..i].trim_end();
    }
    Some(Decl {
        name,
        value: value.to_string(),
    })
}

/// Splits on `sep` outside strings and parentheses.
pub(crate) fn split_top_level(s: &str, sep: u8) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    let mut parens = 0usize;
    while pos < b.len() {
        match b[pos] {
            q @ (b'"' | b'\'') => skip_string(b, &mut pos, q),
            b'(' => parens += 1,
            b')' => parens = parens.saturating_sub(1),
            c if c == sep && parens == 0 => {
                out.push(s.get(start..pos).unwrap_or("").to_string());
                start = pos + 1;
            }
            _ => {}
        }
        pos += 1;
    }
    out.push(s.get(start..).unwrap_or("").to_string());
    out
}

/// Splits on whitespace outside strings and parentheses, keeping byte offsets.
pub(crate) fn tokens(s: &str) -> Vec<(usize, &str)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        while pos < b.len() && b[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos >= b.len() {
            break;
        }
        let start = pos;
        let mut parens = 0usize;
        while pos < b.len() && (parens > 0 || !b[pos].is_ascii_whitespace()) {
            match b[pos] {
                q @ (b'"' | b'\'') => skip_string(b, &mut pos, q),
                b'(' => parens += 1,
                b')' => parens = parens.saturating_sub(1),
                _ => {}
            }
            pos += 1;
        }
        let end = pos.min(b.len());
        out.push((start, s.get(start..end).unwrap_or("")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_rules_media_font_faces_and_imports() {
        let css = r#"
            @import url("https://fonts.googleapis.com/css2?family=Inter");
            /* comment { with braces } */
            body { font-family: "Inter", sans-serif; font-size: 16px !important }
            @media (min-width: 600px) { h1 { font: 700 3rem/1.1 Georgia, serif; } }
            @keyframes spin { from { font-size: 1px } to { font-size: 2px } }
            @font-face { font-family: 'Brand Sans'; src: url(data:font/woff2;base64,AAAA) format("woff2"); font-weight: 100 900; }
            a { content: "}{;"; color: red }
        "#;
        let sheet = parse_sheet(css);
        assert_eq!(sheet.imports.len(), 1);
        let sels: Vec<&str> = sheet.rules.iter().map(|r| r.selector.as_str()).collect();
        assert_eq!(sels, ["body", "h1", "@font-face", "a"]);
        assert_eq!(sheet.rules[0].decls[1].value, "16px");
        assert_eq!(sheet.rules[2].decls[0].value, "'Brand Sans'");
        assert_eq!(sheet.rules[3].decls[0].value, "\"}{;\"");
    }

    #[test]
    fn malformed_and_deep_input_does_not_panic() {
        for css in [
            "{{{{",
            "}}}}",
            "a { font-family: \"unclosed",
            "/* open",
            "a{b:c",
            "@media {",
            "é{ü:ö}",
        ] {
            parse_sheet(css);
        }
        let deep = "a{".repeat(10_000);
        parse_sheet(&deep);
    }
}
