//! Who the notifiers may tell (reviewers with their Slack ids) and whom each
//! quality gate escalates to: [`SharedRecipients`] is read per event, so a
//! changed studio reaches running notifiers (see [`crate::FeedbackState::take_studio`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use concierto_core::config::Studio;

use crate::notify::{Person, escalations_of, failure_contacts_of, people_of};

/// People by id and escalation contacts by gate name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipients {
    /// Who may be told, by reviewer id.
    pub people: HashMap<String, Person>,
    /// Escalation contacts by gate name ([`escalations_of`]).
    pub escalations: HashMap<String, Vec<String>>,
    /// Who is told of a run that failed with no `on_failure` path
    /// ([`failure_contacts_of`]).
    pub failure_contacts: Vec<String>,
}

impl Recipients {
    /// From a list of people and the escalation contacts (no failure
    /// contacts: set [`Recipients::failure_contacts`]).
    pub fn new(people: Vec<Person>, escalations: HashMap<String, Vec<String>>) -> Self {
        Recipients {
            people: people.into_iter().map(|p| (p.id.clone(), p)).collect(),
            escalations,
            failure_contacts: Vec::new(),
        }
    }

    /// The studio's reviewers, its gates' escalation contacts and the contacts
    /// told of failed runs.
    pub fn of_studio(studio: &Studio) -> Self {
        Recipients {
            failure_contacts: failure_contacts_of(studio),
            ..Recipients::new(people_of(studio), escalations_of(studio))
        }
    }

    /// The display name of `id` (the id itself when unknown).
    pub fn name_of<'a>(&'a self, id: &'a str) -> &'a str {
        self.people.get(id).map_or(id, |p| p.name.as_str())
    }

    /// The Slack user id of `id`, if they have one.
    pub fn slack_of(&self, id: &str) -> Option<String> {
        self.people
            .get(id)
            .and_then(|p| p.slack.clone())
            .filter(|s| !s.trim().is_empty())
    }
}

/// [`Recipients`] shared by the notifiers and replaced whole on a change.
#[derive(Debug, Clone, Default)]
pub struct SharedRecipients(Arc<RwLock<Arc<Recipients>>>);

impl SharedRecipients {
    /// Starts with `recipients`.
    pub fn new(recipients: Recipients) -> Self {
        SharedRecipients(Arc::new(RwLock::new(Arc::new(recipients))))
    }

    /// The recipients now.
    pub fn get(&self) -> Arc<Recipients> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces them; the next event reads `recipients`.
    pub fn set(&self, recipients: Recipients) {
        let next = Arc::new(recipients);
        match self.0.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
    }
}
