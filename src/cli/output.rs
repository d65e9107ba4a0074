//! What commands print: text for people, JSON documents for scripts.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value as Json, json};

use crate::{
    app::{IssuedKey, StoredDefinition},
    storage::{ApiKeyRecord, Workspace},
};

pub(super) fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// A time for scripts: RFC 3339, UTC, microseconds (what the databases keep).
pub(super) fn json_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A time for people.
pub(super) fn human_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub(super) fn workspace_json(w: &Workspace) -> Json {
    json!({"id": w.id.to_string(), "name": w.name, "created_at": json_time(w.created_at)})
}

pub(super) fn key_json(k: &ApiKeyRecord) -> Json {
    json!({
        "id": k.id.to_string(),
        "display_prefix": k.display_prefix,
        "kind": k.kind.as_str(),
        "mode": k.mode.as_str(),
        "created_at": json_time(k.created_at),
        "revoked_at": k.revoked_at.map(json_time),
    })
}

/// A new key: its record and, this once, the key itself.
pub(super) fn new_key_json(issued: &IssuedKey) -> Json {
    let mut value = key_json(&issued.record);
    value["key"] = Json::String(issued.key.expose().to_owned());
    value
}

pub(super) fn definition_json(r: &StoredDefinition) -> Json {
    let d = &r.definition;
    json!({
        "key": d.key().as_str(),
        "type": d.config().attribute_type().as_str(),
        "config": d.config().to_json(),
        "display_name": d.display_name(),
        "description": d.description(),
        "archived": d.archived(),
        "client_writable": d.client_writable(),
        "created_at": json_time(r.created_at),
        "updated_at": json_time(r.updated_at),
    })
}

/// Rows under a header, in columns as wide as their widest cell.
pub(super) fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.push('\n');
    }
    text
}
