//! Role definitions: Markdown files with YAML front matter (`name`,
//! `description`, optional `tools`, `model`, `executor`, `color`) whose body is
//! the system prompt — the format of Claude Code sub-agents, so an existing
//! `agents/` tree (with department sub-folders) loads as it is.

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

use crate::config::problem::Problem;

/// One role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDef {
    /// `name`: how workflows refer to it.
    pub name: String,
    /// `description`: when to use it.
    pub description: String,
    /// `tools`: the tools it may use; a role without the line gets none
    /// (see `config::tools::KNOWN_TOOLS`).
    pub tools: Vec<String>,
    /// `model`, if set.
    pub model: Option<String>,
    /// `executor`, if set.
    pub executor: Option<String>,
    /// `color`, if set.
    pub color: Option<String>,
    /// The body: its system prompt.
    pub prompt: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Line of `name:` in that file.
    pub line: usize,
}

/// Every `*.md` under `dir`, recursively, sorted. Entries whose name starts
/// with `.` are skipped: `.git`, editors' files, and the `..data` and
/// `..<timestamp>` folders of a Kubernetes ConfigMap volume, which hold a
/// second and third copy of every file the volume shows.
pub fn role_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Parses one role file. Every problem found is returned.
pub fn parse_role(file: &Path, text: &str) -> Result<RoleDef, Vec<Problem>> {
    let err =
        |line: Option<usize>, key: &str, msg: String| vec![Problem::error(file, line, key, msg)];
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return Err(err(
            Some(1),
            "",
            "a role file starts with YAML front matter between `---` lines (name, description, tools)".into(),
        ));
    };
    let Some((front, body)) = split_front_matter(rest) else {
        return Err(err(
            Some(1),
            "",
            "front matter has no closing `---` line".into(),
        ));
    };
    let docs = YamlLoader::load_from_str(front).map_err(|e| {
        err(
            Some(e.marker().line() + 1),
            "",
            format!("front matter is not valid YAML: {}", e.info()),
        )
    })?;
    let Some(Yaml::Hash(map)) = docs.into_iter().next() else {
        return Err(err(
            Some(2),
            "",
            "front matter must be a map of keys (name, description, ...)".into(),
        ));
    };
    let line_of = |key: &str| {
        front
            .lines()
            .position(|l| l.starts_with(&format!("{key}:")))
            .map(|i| i + 2)
    };
    let mut problems = Vec::new();
    let mut text_field = |key: &str, required: bool| -> Option<String> {
        match map.get(&Yaml::String(key.to_string())) {
            None | Some(Yaml::Null) => {
                if required {
                    problems.push(Problem::error(
                        file,
                        Some(2),
                        key,
                        format!("`{key}` is required"),
                    ));
                }
                None
            }
            Some(Yaml::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(Yaml::String(_)) => {
                problems.push(Problem::error(file, line_of(key), key, "is empty"));
                None
            }
            Some(Yaml::Integer(i)) => Some(i.to_string()),
            Some(Yaml::Real(r)) => Some(r.clone()),
            Some(other) => {
                problems.push(Problem::error(
                    file,
                    line_of(key),
                    key,
                    format!("must be text, found {}", kind(other)),
                ));
                None
            }
        }
    };
    let name = text_field("name", true);
    let description = text_field("description", true);
    let model = text_field("model", false);
    let executor = text_field("executor", false);
    let color = text_field("color", false);
    let tools = match map.get(&Yaml::String("tools".into())) {
        None | Some(Yaml::Null) => Vec::new(),
        Some(Yaml::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        Some(Yaml::Array(items)) => items
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        Some(other) => {
            problems.push(Problem::error(
                file,
                line_of("tools"),
                "tools",
                format!(
                    "must be a comma-separated list or a YAML list, found {}",
                    kind(other)
                ),
            ));
            Vec::new()
        }
    };
    if let Some(n) = &name
        && !is_role_name(n)
    {
        problems.push(Problem::error(
            file,
            line_of("name"),
            "name",
            format!("{n:?} is not a role name: use lowercase letters, digits and `-` (e.g. content-creator)"),
        ));
    }
    let prompt = body.trim().to_string();
    if prompt.is_empty() {
        problems.push(Problem::error(
            file,
            None,
            "",
            "the body (the role's system prompt) is empty",
        ));
    }
    match (name, description) {
        (Some(name), Some(description)) if problems.is_empty() => Ok(RoleDef {
            line: line_of("name").unwrap_or(2),
            name,
            description,
            tools,
            model,
            executor,
            color,
            prompt,
            file: file.to_path_buf(),
        }),
        _ => Err(problems),
    }
}

fn split_front_matter(rest: &str) -> Option<(&str, &str)> {
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Some((&rest[..offset], &rest[offset + line.len()..]));
        }
        offset += line.len();
    }
    None
}

/// Lowercase letters, digits and inner dashes.
pub fn is_role_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn kind(y: &Yaml) -> &'static str {
    match y {
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a map",
        Yaml::Boolean(_) => "a boolean",
        _ => "another kind of value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_configmap_volume_gives_each_role_file_once() {
        // The layout the kubelet writes: files in `..<timestamp>/`, `..data`
        // linked to it, and a link per file beside them.
        let dir = tempfile::tempdir().unwrap();
        let stamp = dir.path().join("..2026_01_01_00_00_00.000000001");
        std::fs::create_dir(&stamp).unwrap();
        std::fs::write(stamp.join("a.md"), "x").unwrap();
        std::fs::write(stamp.join("b.md"), "x").unwrap();
        std::os::unix::fs::symlink(&stamp, dir.path().join("..data")).unwrap();
        for f in ["a.md", "b.md"] {
            std::os::unix::fs::symlink(Path::new("..data").join(f), dir.path().join(f)).unwrap();
        }
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/c.md"), "x").unwrap();
        let files = role_files(dir.path()).unwrap();
        assert_eq!(files, [dir.path().join("a.md"), dir.path().join("b.md")]);
    }

    fn parse(text: &str) -> Result<RoleDef, Vec<Problem>> {
        parse_role(Path::new("agents/x.md"), text)
    }

    #[test]
    fn claude_code_format_loads() {
        let r = parse(
            "---\nname: content-creator\ndescription: Writes posts.\ntools: Read, Write, WebSearch\nmodel: sonnet\n---\nYou write.\n",
        )
        .unwrap();
        assert_eq!(r.name, "content-creator");
        assert_eq!(r.tools, ["Read", "Write", "WebSearch"]);
        assert_eq!(r.model.as_deref(), Some("sonnet"));
        assert_eq!(r.prompt, "You write.");
        assert_eq!(r.line, 2);
    }

    #[test]
    fn tools_may_be_a_list_or_absent() {
        let r = parse("---\nname: a\ndescription: d\ntools: [Read, Bash]\n---\nbody").unwrap();
        assert_eq!(r.tools, ["Read", "Bash"]);
        let r = parse("---\nname: a\ndescription: d\n---\nbody").unwrap();
        assert!(r.tools.is_empty());
    }

    #[test]
    fn broken_files_say_what_is_wrong() {
        let e = parse("no front matter").unwrap_err();
        assert!(e[0].message.contains("front matter"));
        let e = parse("---\nname: a\n").unwrap_err();
        assert!(e[0].message.contains("closing"));
        let e = parse("---\nname: [a\n---\nbody").unwrap_err();
        assert!(e[0].message.contains("not valid YAML"), "{e:?}");
        let e = parse("---\ndescription: d\n---\nbody").unwrap_err();
        assert_eq!(e[0].key, "name");
        let e = parse("---\nname: Content Creator\ndescription: d\n---\nbody").unwrap_err();
        assert_eq!(e[0].line, Some(2));
        let e = parse("---\nname: a\ndescription: d\n---\n  \n").unwrap_err();
        assert!(e[0].message.contains("system prompt"));
    }
}
