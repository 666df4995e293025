//! Human feedback's routing (the seed's `FeedbackProcessor`): the category the
//! feedback-synthesizer gives decides the specialists it goes to. One table,
//! used by the builtin synthesizer and by the orchestrator when a model's
//! answer names a category but no roles.

/// The categories, in the order the synthesizer weighs ties.
pub const CATEGORIES: &[&str] = &["technical", "brand", "growth", "other"];

/// Step id of the categorisation in a feedback run.
pub const CATEGORISE: &str = "categorise";
/// Step ids of the specialists' responses start with this (`respond-<role>`).
pub const RESPOND_PREFIX: &str = "respond-";

/// The workflow name of the runs that process feedback (`feedback:<id>`).
pub const FEEDBACK_WORKFLOW: &str = "human-feedback";

/// The roles each category is routed to: brand → brand-guardian and
/// creative-director; technical → backend-architect and test-writer-fixer;
/// growth → growth-hacker and analytics-reporter; anything else →
/// studio-orchestrator.
pub fn roles_for(category: &str) -> &'static [&'static str] {
    match category {
        "brand" => &["brand-guardian", "creative-director"],
        "technical" => &["backend-architect", "test-writer-fixer"],
        "growth" => &["growth-hacker", "analytics-reporter"],
        _ => &["studio-orchestrator"],
    }
}

/// The run that processes feedback `feedback_id`.
pub fn run_id(feedback_id: &str) -> String {
    format!("feedback:{feedback_id}")
}

/// The category of a synthesizer's answer and the roles it goes to: the roles
/// the answer names; when it names none, the studio's routing table
/// (`feedback_capture.routing`, the seed's table by default) for its category,
/// else the table's `other`.
pub fn route(
    output: &str,
    table: &indexmap::IndexMap<String, Vec<String>>,
) -> (String, Vec<String>) {
    let (category, named) = answer(output);
    if !named.is_empty() {
        return (category, named);
    }
    let roles = table
        .get(&category)
        .filter(|r| !r.is_empty())
        .or_else(|| table.get("other"))
        .cloned()
        .unwrap_or_default();
    (category, roles)
}

/// The category and roles a synthesizer's answer gives (its `roles`, else the
/// seed's table for its category).
pub fn routing(output: &str) -> (String, Vec<String>) {
    let (category, roles) = answer(output);
    let roles = if roles.is_empty() {
        roles_for(&category).iter().map(|r| r.to_string()).collect()
    } else {
        roles
    };
    (category, roles)
}

/// The answer's category (`other` when it gives none) and the roles it names.
fn answer(output: &str) -> (String, Vec<String>) {
    let m = crate::structured::json_object(output).unwrap_or_default();
    let category = m
        .get("category")
        .and_then(|v| v.as_str())
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "other".to_string());
    let roles: Vec<String> = match m.get("roles") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|r| r.as_str().map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    (category, roles)
}

#[cfg(test)]
mod route_tests {
    use super::*;

    #[test]
    fn the_answers_roles_else_the_studio_table_else_its_other() {
        let table: indexmap::IndexMap<String, Vec<String>> = [
            ("brand".to_string(), vec!["creative-director".to_string()]),
            ("other".to_string(), vec!["support-responder".to_string()]),
        ]
        .into_iter()
        .collect();
        let answer = r#"{"category": "brand", "roles": ["brand-guardian"]}"#;
        assert_eq!(
            route(answer, &table),
            ("brand".to_string(), vec!["brand-guardian".to_string()])
        );
        let answer = r#"{"category": "brand"}"#;
        assert_eq!(
            route(answer, &table),
            ("brand".to_string(), vec!["creative-director".to_string()])
        );
        let answer = r#"{"category": "legal", "roles": []}"#;
        assert_eq!(
            route(answer, &table),
            ("legal".to_string(), vec!["support-responder".to_string()])
        );
    }
}
