//! `server.feedback.smtp`: where the feedback router's email replies go out.
//!
//! ```yaml
//! server:
//!   feedback:
//!     smtp:
//!       host: smtp.example.com
//!       port: 587                 # default 587
//!       from: "Studio <studio@example.com>"
//!       username_env: CONCIERTO_SMTP_USER       # optional
//!       password_env: CONCIERTO_SMTP_PASSWORD   # optional
//!       tls: starttls             # starttls (when offered, default) | required | off
//! ```
//!
//! Without it, emailed feedback is answered nowhere: its reply is recorded as
//! failed with the reason.

use serde_json::{Map, Value};

use super::spans::child;
use super::walk::Walker;

/// `server.feedback.smtp`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpSection {
    /// The server's host name.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The `From` of replies (`addr` or `Name <addr>`).
    pub from: String,
    /// Variable holding the login, if any.
    pub username_env: Option<String>,
    /// Variable holding the password, if any.
    pub password_env: Option<String>,
    /// `starttls`, `required` or `off`.
    pub tls: String,
}

fn env_name(v: &str) -> bool {
    !v.is_empty()
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !v.starts_with(|c: char| c.is_ascii_digit())
}

/// Parses `server.feedback.smtp` (`fp` = `server.feedback`).
pub(crate) fn smtp(w: &mut Walker, f: &Map<String, Value>, fp: &str) -> Option<SmtpSection> {
    let p = child(fp, "smtp");
    let m = w.map(f.get("smtp"), &p)?;
    w.known_keys(
        m,
        &p,
        &[
            "host",
            "port",
            "from",
            "username_env",
            "password_env",
            "tls",
        ],
    );
    let host = w.opt_string(m, "host", &p).unwrap_or_default();
    if host.trim().is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        w.error(
            &child(&p, "host"),
            "is required: the SMTP server's host name",
        );
        return None;
    }
    let port = w.count(m, "port", &p, 587);
    let port = match u16::try_from(port) {
        Ok(n) if n > 0 => n,
        _ => {
            w.error(
                &child(&p, "port"),
                format!("must be a port from 1 to 65535, found {port}"),
            );
            return None;
        }
    };
    let from = w.opt_string(m, "from", &p).unwrap_or_default();
    if !from.contains('@') || from.len() > 320 {
        w.error(
            &child(&p, "from"),
            "is required: the address replies come from (`studio@example.com` or `Studio <studio@example.com>`)",
        );
        return None;
    }
    let mut envs = [None, None];
    for (i, k) in ["username_env", "password_env"].iter().enumerate() {
        if let Some(v) = w.opt_string(m, k, &p) {
            if env_name(&v) {
                envs[i] = Some(v);
            } else {
                w.error(&child(&p, k), "is not an environment variable name (letters, digits and `_`): name the variable that holds the secret, never the secret");
            }
        }
    }
    if envs[0].is_some() != envs[1].is_some() {
        w.error(&p, "username_env and password_env go together");
    }
    let tls = w
        .opt_string(m, "tls", &p)
        .unwrap_or_else(|| "starttls".into());
    if !["starttls", "required", "off"].contains(&tls.as_str()) {
        w.error(
            &child(&p, "tls"),
            format!("must be starttls, required or off, found {tls:?}"),
        );
        return None;
    }
    let [username_env, password_env] = envs;
    Some(SmtpSection {
        host: host.trim().to_string(),
        port,
        from,
        username_env,
        password_env,
        tls,
    })
}
