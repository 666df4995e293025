//! Bearer tokens to identities. A person's token is never stored: the studio
//! file holds its SHA-256 (`reviewers.<id>.token_sha256`), and a call's token is
//! hashed and looked up. Roles: `reviewer` (read, decide the gates they review,
//! give feedback), `admin` (also start and cancel runs, fire triggers, record
//! metric values) and `metrics` (record metric values: a machine feeding the
//! tracker).

use std::collections::HashMap;

use concierto_core::config::Studio;
use sha2::{Digest, Sha256};
use tonic::{Request, Status};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The reviewer id in the studio file.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `reviewer`, `admin`, `metrics`.
    pub roles: Vec<String>,
}

impl Identity {
    /// True when they have the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }

    /// True when they have one of `roles`.
    pub fn has_any_role(&self, roles: &[&str]) -> bool {
        self.roles.iter().any(|r| roles.contains(&r.as_str()))
    }

    /// `PERMISSION_DENIED` unless they are an admin.
    pub fn require_admin(&self, what: &str) -> Result<(), Status> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{} may not {what}: it needs the admin role (reviewers.{}.roles: [admin])",
                self.id, self.id
            )))
        }
    }
}

/// Token hashes to identities.
#[derive(Debug, Clone, Default)]
pub struct Identities {
    by_hash: HashMap<String, Identity>,
}

/// SHA-256 of a token, lowercase hex: what goes in `token_sha256`.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Identities {
    /// Everyone in the studio's `reviewers` with a `token_sha256`.
    pub fn from_studio(studio: &Studio) -> Self {
        let by_hash = studio
            .reviewers
            .values()
            .filter_map(|r| {
                r.token_sha256.as_ref().map(|h| {
                    (
                        h.to_ascii_lowercase(),
                        Identity {
                            id: r.id.clone(),
                            name: r.name.clone(),
                            roles: r.roles.clone(),
                        },
                    )
                })
            })
            .collect();
        Identities { by_hash }
    }

    /// How many tokens are known.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// True when no token is configured (every call is refused).
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The identity a bearer token stands for, if any.
    pub fn by_token(&self, token: &str) -> Option<&Identity> {
        self.by_hash.get(&token_sha256(token))
    }

    /// The caller of `req`: `UNAUTHENTICATED` without a valid `authorization:
    /// Bearer <token>`.
    pub fn authenticate<T>(&self, req: &Request<T>) -> Result<Identity, Status> {
        let value =
            match req.metadata().get("authorization") {
                None => None,
                Some(v) => Some(v.to_str().map_err(|_| {
                    Status::unauthenticated("the authorization metadata is not text")
                })?),
            };
        self.from_authorization(value)
            .map_err(Status::unauthenticated)
    }

    /// The caller named by an `authorization` value (`Bearer <token>`), for
    /// HTTP servers that take the admin API's tokens (the tracker's
    /// `POST /api/metrics`). The error says what is wrong, for a 401.
    pub fn from_authorization(&self, value: Option<&str>) -> Result<Identity, String> {
        let Some(value) = value else {
            return Err("missing `authorization: Bearer <token>`".to_string());
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "authorization must be `Bearer <token>`".to_string())?;
        self.by_hash
            .get(&token_sha256(token))
            .cloned()
            .ok_or_else(|| "unknown token".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_sha256_hex_as_sha256sum_prints_it() {
        // printf %s secret | sha256sum
        assert_eq!(
            token_sha256("secret"),
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
    }
}
