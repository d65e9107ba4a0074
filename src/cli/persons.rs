//! `persons export`: every person of a workspace and mode as NDJSON, through
//! the same use case as ListPersons, page by page.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Map, Value as Json, json};

use super::{Common, Error, ExportArgs, Schema, Session, select_workspace};
use crate::{
    app::{ListedPerson, MAX_PERSONS_PAGE_SIZE, Principal},
    domain::ApiKeyId,
};

/// How often a long export says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// One person as one line of the export.
fn person_json(person: &ListedPerson) -> Json {
    let attributes: Map<String, Json> = person
        .values
        .iter()
        .map(|(key, value, _, _)| (key.clone(), value.clone()))
        .collect();
    json!({
        "distinct_id": person.distinct_id,
        "person_id": person.person_id.to_string(),
        "attributes": attributes,
    })
}

pub(super) async fn export(args: ExportArgs) -> Result<(), Error> {
    let session = Session::open(
        &Common {
            json: false,
            database: args.database,
        },
        Schema::Current,
    )
    .await?;
    let workspace = select_workspace(&session.app, args.workspace.as_deref()).await?;
    let who = Principal {
        // The operator holds no key: the nil id stands for the CLI in logs.
        key_id: ApiKeyId(uuid::Uuid::nil()),
        workspace: workspace.id,
        mode: args.mode.into(),
        secret: true,
        identity: None,
    };
    let cannot_write = |e: std::io::Error| Error::Invalid(format!("cannot write the export: {e}"));
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| Error::Invalid(format!("cannot create {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(&mut out);
    let (mut token, mut count) = (String::new(), 0u64);
    let mut shown = Instant::now();
    loop {
        let page = session
            .app
            .list_persons(
                who,
                MAX_PERSONS_PAGE_SIZE as i32,
                &token,
                &args.attributes,
                args.include_archived,
            )
            .await?;
        for person in &page.persons {
            serde_json::to_writer(&mut out, &person_json(person))
                .map_err(|e| cannot_write(e.into()))?;
            out.write_all(b"\n").map_err(cannot_write)?;
        }
        count += page.persons.len() as u64;
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        if shown.elapsed() >= PROGRESS_EVERY {
            eprintln!("exported {count} persons so far");
            shown = Instant::now();
        }
    }
    out.flush().map_err(cannot_write)?;
    eprintln!("exported {count} persons");
    Ok(())
}
