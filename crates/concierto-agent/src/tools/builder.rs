//! The toolbox of a role: exactly the tools its `tools:` line names.
//!
//! | name | tool |
//! |---|---|
//! | `Read`, `Grep`, `Glob` | read-only, inside the role's folder sources and the brand folder ([`files`](super::files)) |
//! | `WebFetch` | a page through the ingester's rules (`ingest.fetch`) |
//! | `WebSearch` | the configured search API (`agents.tools.web_search`), else the content library |
//! | `Write`, `Edit` | the step's deliverable, never a file |
//! | `library_search`, `metrics_get`, `runs_recent`, `brand_check` | Concierto's own, over the bus |
//!
//! The `tools:` line is opt-in: a role without one gets no tool. Names
//! starting with `mcp__` are MCP tools, built elsewhere; other names
//! (`Bash`, `TodoWrite`, …) are skipped (`concierto validate` warns about
//! them). `agents.tools.max_calls` and `agents.tools.max_answer_bytes` set the
//! toolbox's limits.

use std::sync::Arc;

use concierto_bus::Bus;
use concierto_core::config::Studio;
use concierto_core::roles::RoleDef;

use super::deliverable::{EditTool, WriteTool};
use super::files::{GlobTool, GrepTool, ReadTool, Roots};
use super::studio::{BrandCheckTool, LibrarySearchTool, MetricsGetTool, RunsRecentTool};
use super::web::{WebFetchTool, WebSearchTool};
use super::{Tool, Toolbox};
use crate::builtin::{BRAND_DIR, BrandRules};

pub use concierto_core::config::KNOWN_TOOLS;

/// The names of Concierto's own tools (what `concierto mcp` serves).
pub const CONCIERTO_TOOLS: &[&str] = &[
    "library_search",
    "metrics_get",
    "runs_recent",
    "brand_check",
];

/// The studio's brand rules (its `brand/` folder's rules file), or the
/// defaults when it has none or the file does not parse (logged).
pub fn brand_rules(studio: &Studio) -> BrandRules {
    let dir = studio.base_dir.join(BRAND_DIR);
    if !dir.is_dir() {
        return BrandRules::default();
    }
    BrandRules::load_dir(&dir).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "brand rules unreadable; brand_check uses the defaults");
        BrandRules::default()
    })
}

/// An empty toolbox with the studio's limits.
fn empty(studio: &Studio) -> Toolbox {
    let mut tb = Toolbox::new();
    tb.max_calls = studio.agents.tools.max_calls;
    tb.max_answer_bytes = studio.agents.tools.max_answer_bytes;
    tb
}

/// The tool named `name` for `role`, if Concierto builds it.
fn tool(
    studio: &Studio,
    role: &str,
    name: &str,
    bus: &Arc<dyn Bus>,
    roots: &mut Option<Roots>,
) -> Option<Arc<dyn Tool>> {
    let mut roots = || {
        roots
            .get_or_insert_with(|| Roots::for_role(studio, role))
            .clone()
    };
    let t: Arc<dyn Tool> = match name {
        "Read" => Arc::new(ReadTool::new(roots())),
        "Grep" => Arc::new(GrepTool::new(roots())),
        "Glob" => Arc::new(GlobTool::new(roots())),
        "WebFetch" => Arc::new(WebFetchTool::new(
            bus.clone(),
            &studio.agents.tools.web_fetch,
        )),
        "WebSearch" => Arc::new(WebSearchTool::new(
            bus.clone(),
            studio.agents.tools.web_search.as_ref(),
        )),
        "Write" => Arc::new(WriteTool),
        "Edit" => Arc::new(EditTool),
        "library_search" => Arc::new(LibrarySearchTool::new(bus.clone())),
        "metrics_get" => Arc::new(MetricsGetTool::new(bus.clone())),
        "runs_recent" => Arc::new(RunsRecentTool::new(bus.clone())),
        "brand_check" => Arc::new(BrandCheckTool::new(brand_rules(studio))),
        _ => return None,
    };
    Some(t)
}

/// The built-in tools `role`'s `tools:` line names, in its order (each once),
/// with the studio's limits. `mcp__…` names and names Concierto does not know
/// are left out; a role without a `tools:` line gets an empty toolbox.
pub fn builtin_toolbox(studio: &Studio, role: &RoleDef, bus: Arc<dyn Bus>) -> Toolbox {
    let mut tb = empty(studio);
    let mut roots = None;
    let mut seen: Vec<&str> = Vec::new();
    for name in &role.tools {
        let name = name.trim();
        if name.starts_with("mcp__") || seen.contains(&name) {
            continue;
        }
        seen.push(name);
        match tool(studio, &role.name, name, &bus, &mut roots) {
            Some(t) => tb.push(t),
            None => {
                tracing::debug!(role = %role.name, tool = %name, "not a Concierto tool; the role does not get it")
            }
        }
    }
    tb
}

/// Concierto's own four tools (`library_search`, `metrics_get`,
/// `runs_recent`, `brand_check`), with the studio's limits: what
/// `concierto mcp` serves.
pub fn concierto_toolbox(studio: &Studio, bus: Arc<dyn Bus>) -> Toolbox {
    let mut tb = empty(studio);
    let mut roots = None;
    for name in CONCIERTO_TOOLS {
        if let Some(t) = tool(studio, "", name, &bus, &mut roots) {
            tb.push(t);
        }
    }
    tb
}
