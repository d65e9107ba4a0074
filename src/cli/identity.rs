//! `identity-secrets create|list|revoke`: the same use cases as the
//! identity-secret RPCs of WorkspaceSettingsService.

use serde_json::{Value as Json, json};

use super::{
    Error, Scoped,
    output::{human_time, json_time, table},
    scoped_session,
};
use crate::storage::IdentitySecretRecord;

/// A secret for scripts, without the secret itself.
fn secret_json(s: &IdentitySecretRecord) -> Json {
    json!({
        "id": s.id.to_string(),
        "prefix": s.display_prefix,
        "created_at": json_time(s.created_at),
        "revoked_at": s.revoked_at.map(json_time),
    })
}

pub(super) async fn create(scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let issued = session.app.create_identity_secret(workspace.id).await?;
    let record = &issued.record;
    let mut out = secret_json(record);
    out["secret"] = json!(record.secret);
    session.print(&out, || {
        format!(
            "Created identity secret {} (shown only this once; keep it on your backends):\n  {}\n\
             Sign each user's distinct_id as hex(HMAC-SHA256(secret, distinct_id)) and pass it to \
             the page (x-vevee-identity).\n",
            record.id, record.secret
        )
    });
    Ok(())
}

pub(super) async fn list(scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let secrets = session.app.identity_secrets(workspace.id).await?;
    let json = Json::Array(secrets.iter().map(secret_json).collect());
    session.print(&json, || {
        table(
            &["ID", "PREFIX", "CREATED", "REVOKED"],
            secrets
                .iter()
                .map(|s| {
                    vec![
                        s.id.to_string(),
                        format!("{}...", s.display_prefix),
                        human_time(s.created_at),
                        s.revoked_at.map_or_else(|| "-".to_owned(), human_time),
                    ]
                })
                .collect(),
        )
    });
    Ok(())
}

pub(super) async fn revoke(id: &str, scoped: Scoped) -> Result<(), Error> {
    let (session, workspace) = scoped_session(&scoped).await?;
    let record = session.app.revoke_identity_secret(workspace.id, id).await?;
    session.print(&secret_json(&record), || {
        format!(
            "Revoked identity secret {} ({}...); servers stop accepting its signatures within \
             their --cache-ttl.\n",
            record.id, record.display_prefix
        )
    });
    Ok(())
}
