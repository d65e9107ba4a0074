//! A person's data as a whole (CONTRACT.md section 9): erasing a person,
//! and listing every person of a workspace and mode for exports.

use chrono::{DateTime, Utc};

use super::{App, Error, Principal};
use crate::{
    domain::{DistinctId, Etag, PersonId, Reason},
    storage::PersonsQuery,
};

/// Persons per page when a listing names no page size.
pub const DEFAULT_PERSONS_PAGE_SIZE: u32 = 100;
/// The largest page size a listing may ask for.
pub const MAX_PERSONS_PAGE_SIZE: u32 = 1000;

/// One person of a listing and their values, sorted by attribute key.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedPerson {
    /// The person.
    pub person_id: PersonId,
    /// Their distinct_id.
    pub distinct_id: String,
    /// Each value as stored (JSON), when it was written and its etag.
    pub values: Vec<(String, serde_json::Value, DateTime<Utc>, Etag)>,
}

/// One page of persons, by person_id.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonPage {
    /// The persons of the page.
    pub persons: Vec<ListedPerson>,
    /// The token of the next page; empty on the last.
    pub next_page_token: String,
}

/// An opaque page token: the hex of the last person_id of the page. Keyset
/// pagination on person_id, which never changes, so a page never repeats
/// or skips a person whatever is written in between.
fn token_after(last: PersonId) -> String {
    last.0.simple().to_string()
}

fn parse_page_token(token: &str) -> Result<Option<PersonId>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    // Only the form `token_after` writes: 32 lower-case hex digits.
    let ours = token.len() == 32
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ours.then(|| uuid::Uuid::try_parse(token).ok())
        .flatten()
        .map(|id| Some(PersonId(id)))
        .ok_or_else(|| {
            Error::refused(
                Reason::InvalidArgument,
                "page_token: not a token this service returned; pass the next_page_token of \
                 the previous page, or an empty token for the first page.",
            )
        })
}

/// The page size a listing asked for: 0 takes the default; negative or
/// over the maximum is refused rather than silently changed, so an export
/// script learns of its mistake.
fn page_size(asked: i32) -> Result<u32, Error> {
    match u32::try_from(asked) {
        Ok(0) => Ok(DEFAULT_PERSONS_PAGE_SIZE),
        Ok(n) if n <= MAX_PERSONS_PAGE_SIZE => Ok(n),
        _ => Err(Error::refused(
            Reason::InvalidArgument,
            format!(
                "page_size: {asked} is out of range; ask for 1 to {MAX_PERSONS_PAGE_SIZE} \
                 persons per page, or 0 for {DEFAULT_PERSONS_PAGE_SIZE}."
            ),
        )),
    }
}

impl App {
    /// Erases the person of `distinct_id` in the caller's workspace and
    /// mode, with every value and request record of theirs; `false` if
    /// there was no such person.
    pub async fn delete_person(&self, who: Principal, distinct_id: &str) -> Result<bool, Error> {
        let distinct_id = DistinctId::parse(distinct_id)?;
        let deleted = self
            .values()
            .delete_person(who.workspace, who.mode, distinct_id.as_str())
            .await?;
        Ok(deleted.is_some())
    }

    /// One page of the persons of the caller's workspace and mode after
    /// `page_token` (empty: the first page), each with their values (only
    /// `filter`'s when it names any; each must be declared), archived
    /// attributes' only with `include_archived`.
    pub async fn list_persons(
        &self,
        who: Principal,
        page_size: i32,
        page_token: &str,
        filter: &[String],
        include_archived: bool,
    ) -> Result<PersonPage, Error> {
        let size = self::page_size(page_size)?;
        let after = parse_page_token(page_token)?;
        let mut keys = Vec::with_capacity(filter.len());
        for key in filter {
            keys.push(self.declared(who, key).await?.key().to_string());
        }
        // One more than a page tells whether another page follows.
        let mut persons = self
            .values()
            .list_persons(PersonsQuery {
                workspace: who.workspace,
                mode: who.mode,
                after,
                limit: size + 1,
                keys: (!keys.is_empty()).then_some(keys),
                include_archived,
            })
            .await?;
        let more = persons.len() > size as usize;
        persons.truncate(size as usize);
        let next_page_token = match persons.last() {
            Some(last) if more => token_after(last.person_id),
            _ => String::new(),
        };
        Ok(PersonPage {
            persons: persons
                .into_iter()
                .map(|p| ListedPerson {
                    person_id: p.person_id,
                    distinct_id: p.distinct_id,
                    values: p
                        .values
                        .into_iter()
                        .map(|v| (v.key, v.value, v.updated_at, v.etag))
                        .collect(),
                })
                .collect(),
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let id = PersonId(uuid::Uuid::now_v7());
        assert_eq!(parse_page_token(&token_after(id)).unwrap(), Some(id));
        assert_eq!(parse_page_token("").unwrap(), None);
        let upper = token_after(id).to_uppercase();
        let hyphenated = id.0.to_string();
        for bad in [
            "x",
            "zz",
            &upper,
            &hyphenated,
            "0123456789abcdef0123456789abcdeg",
        ] {
            assert!(parse_page_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_sizes_default_and_out_of_range_ones_are_refused() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PERSONS_PAGE_SIZE);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(1000).unwrap(), 1000);
        assert!(page_size(1001).is_err());
        assert!(page_size(-1).is_err());
    }
}
