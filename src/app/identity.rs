//! Identity verification (CONTRACT.md section 11, as Intercom's
//! `user_hash`): a workspace's identity secrets, and the check of a
//! public-key write's signature, `hex(HMAC-SHA256(secret, distinct_id))`.
//!
//! # Why the secret is stored as it is
//! An API key is stored as a SHA-256 hash because the client sends the key
//! itself: hashing what arrives and comparing hashes is enough. An identity
//! secret never travels; the client sends an HMAC made with it, and to
//! check an HMAC the server must compute the same one, which needs the
//! secret. A one-way hash cannot serve, so the secret is stored as issued,
//! in the workspace's row set, readable only by whoever can read the
//! database. Encrypting it with a key kept beside the database (a flag or
//! an environment variable of the same process) would not change who can
//! read it; whoever reads the database can already read and write every
//! attribute directly, which is more than a forged signature gives. A
//! key-management service holding the encryption key is the step up if
//! that threat model changes.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{App, Error, Principal};
use crate::{
    domain::{ApiKeyId, DistinctId, IdentityVerification, Reason, WorkspaceId},
    storage::IdentitySecretRecord,
};

/// Active identity secrets a workspace may hold at once: the one in use and
/// its successor while backends roll over.
pub const MAX_ACTIVE_IDENTITY_SECRETS: u32 = 2;

const SECRET_PREFIX: &str = "vis_";
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Random characters after the prefix: 43 base62 characters, 256 bits.
const RANDOM_LEN: usize = 43;
/// How much of a secret a listing shows.
const DISPLAY_LEN: usize = SECRET_PREFIX.len() + 6;

/// A new secret: its record and, this once, the secret itself.
#[derive(Debug, Clone)]
pub struct IssuedSecret {
    /// As stored (`secret` included: the caller shows it once).
    pub record: IdentitySecretRecord,
}

/// A new random secret: `vis_` and 43 base62 characters.
fn generate() -> Result<String, getrandom::Error> {
    let mut text = String::with_capacity(SECRET_PREFIX.len() + RANDOM_LEN);
    text.push_str(SECRET_PREFIX);
    while text.len() < SECRET_PREFIX.len() + RANDOM_LEN {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes)?;
        // Rejection sampling keeps every character uniform: 248 = 4 * 62.
        for b in bytes.into_iter().filter(|b| *b < 248) {
            if text.len() == SECRET_PREFIX.len() + RANDOM_LEN {
                break;
            }
            text.push(char::from(ALPHABET[usize::from(b % 62)]));
        }
    }
    Ok(text)
}

/// The signature sent in `x-vevee-identity`, decoded from 64 hex digits;
/// `None` when it is not that.
pub(super) fn parse_signature(header: &[u8]) -> Option<[u8; 32]> {
    let text = std::str::from_utf8(header).ok()?.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Whether `signature` is HMAC-SHA256(`secret`, `distinct_id`); compared in
/// constant time (the `hmac` crate's `verify_slice`).
fn verifies(secret: &str, distinct_id: &str, signature: &[u8; 32]) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(distinct_id.as_bytes());
    mac.verify_slice(signature).is_ok()
}

fn secret_not_found(id: &str) -> Error {
    Error::refused(
        Reason::IdentitySecretNotFound,
        format!("No identity secret {id:?} in this workspace; list them to see their ids."),
    )
}

impl App {
    /// Refuses a public-key write of `distinct_id` without a valid identity
    /// signature when the workspace requires one. Secrets and settings come
    /// from the catalog: no database round trip in the steady state.
    pub(super) async fn verify_identity(
        &self,
        who: Principal,
        distinct_id: &DistinctId,
    ) -> Result<(), Error> {
        let settings = self.catalog().settings(who.workspace).await?;
        if settings.identity_verification == IdentityVerification::Off {
            return Ok(());
        }
        let secrets = self.catalog().identity_secrets(who.workspace).await?;
        let valid = who.identity.is_some_and(|signature| {
            // Every active secret is tried, without stopping at the first
            // match, so the time does not tell which one matched.
            secrets.iter().fold(false, |ok, secret| {
                verifies(secret, distinct_id.as_str(), &signature) | ok
            })
        });
        if valid {
            return Ok(());
        }
        Err(Error::refused(
            Reason::IdentityVerificationFailed,
            "This workspace requires identity verification: send x-vevee-identity = \
             hex(HMAC-SHA256(identity secret, distinct_id)), computed by your backend for \
             this distinct_id.",
        ))
    }

    /// Creates an identity secret; `too_many_identity_secrets` when
    /// [`MAX_ACTIVE_IDENTITY_SECRETS`] are active (revoke one first).
    pub async fn create_identity_secret(&self, ws: WorkspaceId) -> Result<IssuedSecret, Error> {
        let secret =
            generate().map_err(|e| Error::Internal(format!("no randomness: {e}").into()))?;
        let record = self
            .admin()
            .insert_identity_secret(
                ws,
                &secret,
                &secret[..DISPLAY_LEN],
                MAX_ACTIVE_IDENTITY_SECRETS,
            )
            .await?
            .ok_or_else(|| {
                Error::refused(
                    Reason::TooManyIdentitySecrets,
                    format!(
                        "This workspace already has {MAX_ACTIVE_IDENTITY_SECRETS} active \
                         identity secrets; revoke the one your backends no longer use first."
                    ),
                )
            })?;
        self.catalog().identity_secrets_changed(ws);
        Ok(IssuedSecret { record })
    }

    /// A workspace's identity secrets, revoked ones too, oldest first (the
    /// caller shows only their prefixes).
    pub async fn identity_secrets(
        &self,
        ws: WorkspaceId,
    ) -> Result<Vec<IdentitySecretRecord>, Error> {
        Ok(self.admin().list_identity_secrets(ws).await?)
    }

    /// Revokes the identity secret `id` (a UUID from the listing); this
    /// replica refuses its signatures at once, others within the TTL.
    pub async fn revoke_identity_secret(
        &self,
        ws: WorkspaceId,
        id: &str,
    ) -> Result<IdentitySecretRecord, Error> {
        let uuid = uuid::Uuid::parse_str(id.trim()).map_err(|_| secret_not_found(id))?;
        if !self
            .admin()
            .revoke_identity_secret(ws, ApiKeyId(uuid))
            .await?
        {
            return Err(secret_not_found(id));
        }
        self.catalog().identity_secrets_changed(ws);
        self.identity_secrets(ws)
            .await?
            .into_iter()
            .find(|s| s.id.0 == uuid)
            .ok_or_else(|| secret_not_found(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's test vector, which Node's and Python's HMAC give too.
    #[test]
    fn the_readme_test_vector_verifies_and_no_other_distinct_id_does() {
        let secret = "vis_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
        let signature =
            parse_signature(b"fb3e488705e0b2584bf18167eb7b773c3d6ca859041aae87f63c66e2f886367a")
                .unwrap();
        assert!(verifies(secret, "user-42", &signature));
        assert!(!verifies(secret, "user-43", &signature));
        assert!(!verifies("vis_another", "user-42", &signature));
    }

    #[test]
    fn signatures_must_be_64_hex_digits() {
        assert!(parse_signature(&[b'a'; 64]).is_some());
        assert!(parse_signature(&[b'a'; 63]).is_none());
        assert!(parse_signature(&[b'g'; 64]).is_none());
        assert!(parse_signature("é".repeat(32).as_bytes()).is_none());
    }

    #[test]
    fn secrets_are_long_random_and_prefixed() {
        let a = generate().unwrap();
        assert!(a.starts_with("vis_") && a.len() == 47, "{a}");
        assert_ne!(a, generate().unwrap());
    }
}
