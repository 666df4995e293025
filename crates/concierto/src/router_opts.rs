//! The feedback router's options from the studio file and the environment:
//! Slack replies with the bot token `server.feedback.slack_bot_token_env`
//! names (API base `server.feedback.slack_api_base`), email replies through
//! `server.feedback.smtp` (login and password from the variables it names),
//! answered feedback exported to the folder of the content source
//! `user_feedback`.

use std::path::PathBuf;
use std::time::Duration;

use concierto_core::config::Studio;
use concierto_router::{RouterOptions, Senders, SlackSettings, SmtpSettings, SmtpTls};

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

/// The options `concierto serve feedback-router` and `up` run with; warns
/// about a missing Slack token or SMTP server.
pub fn options(studio: &Studio) -> RouterOptions {
    let o = build(studio);
    let f = &studio.server.feedback;
    if o.senders.slack.is_none() {
        tracing::warn!(var = %f.slack_bot_token_env, "no Slack bot token: feedback from Slack cannot be answered in its thread");
    }
    if o.senders.smtp.is_none() {
        tracing::warn!("no server.feedback.smtp: emailed feedback cannot be answered by email");
    }
    o
}

/// [`options`] without the warnings (each changed studio is built again).
pub fn build(studio: &Studio) -> RouterOptions {
    let f = &studio.server.feedback;
    let slack = env(&f.slack_bot_token_env).map(|token| SlackSettings {
        api_base: f.slack_api_base.clone(),
        token,
    });
    let smtp = f.smtp.as_ref().map(|s| SmtpSettings {
        host: s.host.clone(),
        port: s.port,
        from: s.from.clone(),
        username: s.username_env.as_deref().and_then(env),
        password: s.password_env.as_deref().and_then(env),
        tls: match s.tls.as_str() {
            "required" => SmtpTls::Required,
            "off" => SmtpTls::Off,
            _ => SmtpTls::Opportunistic,
        },
    });
    let export_dir = studio
        .content_sources
        .iter()
        .find(|s| s.name == "user_feedback")
        .map(|s| PathBuf::from(&s.location));
    RouterOptions {
        export_dir,
        senders: Senders::new(slack, smtp, Duration::from_secs(30)),
        ..RouterOptions::default()
    }
}
