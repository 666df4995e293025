//! Who the weekly trend report is for: the content sources that select
//! `design_trends` and their roles. A source selects it with an
//! `extractor`/`extract` list naming it, or with no list at all (every
//! default extractor runs, `design_trends` among them); training data never
//! counts (its items are not inspiration and its role is a learner). The
//! ingest service reads only those sources' items for the report and hands it
//! to their `processor`/`indexer` roles.

use super::model::{ContentSource, SourceKind, Studio};

/// Whether `source`'s items count in the trend report.
pub fn selects_design_trends(source: &ContentSource) -> bool {
    source.kind != SourceKind::TrainingData
        && (source.extract.is_empty()
            || source
                .extract
                .iter()
                .any(|x| x.trim().eq_ignore_ascii_case("design_trends")))
}

/// The sources the trend report reads, in file order.
pub fn trend_sources(studio: &Studio) -> Vec<&ContentSource> {
    studio
        .content_sources
        .iter()
        .filter(|s| selects_design_trends(s))
        .collect()
}

/// The roles the trend report goes to: the trend sources' roles, each once,
/// in file order.
pub fn trend_roles(studio: &Studio) -> Vec<String> {
    let mut roles: Vec<String> = Vec::new();
    for s in trend_sources(studio) {
        if !s.role.is_empty() && !roles.contains(&s.role) {
            roles.push(s.role.clone());
        }
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_studio_reports_trends_to_the_processors_that_ask() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/studio/concierto.yaml");
        let studio = crate::config::load(&path).expect("the example studio loads");
        let names: Vec<&str> = trend_sources(&studio)
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        // No list: every default extractor; siteinspire names design_trends;
        // FigsFromPlums's list lacks it; training data never counts.
        assert_eq!(names, ["internal_assets", "design_patterns", "siteinspire"]);
        assert_eq!(
            trend_roles(&studio),
            ["visual-storyteller", "ui-designer", "innovation-catalyst"]
        );
    }
}
