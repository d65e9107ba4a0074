//! The customer's own identifier of a person.

use crate::domain::error::{Error, Reason};

/// The most characters (Unicode scalar values) a distinct_id may have.
const MAX_DISTINCT_ID_CHARS: usize = 200;

/// A distinct_id known to be 1-200 Unicode scalar values with no control
/// character (Unicode category Cc: C0, DEL, C1).
///
/// It is kept exactly as given, not trimmed: it must equal the id the customer
/// uses elsewhere, and `" 42"` and `"42"` may well be different users.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DistinctId(String);

impl DistinctId {
    /// Parses a distinct_id; failures are `invalid_distinct_id`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let invalid = |message: String| Err(Error::new(Reason::InvalidDistinctId, message));
        if s.is_empty() {
            return invalid(
                "distinct_id is empty; send your user's identifier (1-200 characters).".to_owned(),
            );
        }
        let len = s.chars().count();
        if len > MAX_DISTINCT_ID_CHARS {
            return invalid(format!(
                "distinct_id is {len} characters long; at most {MAX_DISTINCT_ID_CHARS} are allowed."
            ));
        }
        // char::is_control is exactly Unicode category Cc.
        if let Some((position, c)) = s.chars().enumerate().find(|(_, c)| c.is_control()) {
            return invalid(format!(
                "distinct_id contains the control character U+{:04X} at character {}; \
                 remove control characters (such as newlines and tabs) from it.",
                u32::from(c),
                position + 1
            ));
        }
        Ok(DistinctId(s.to_owned()))
    }

    /// The distinct_id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for DistinctId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DistinctId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn distinct_id_rules() {
        let ok = [
            "u".to_owned(),
            "user-42".to_owned(),
            " spaced ".to_owned(),
            "é".repeat(200),
            "😀".repeat(200),
            "zero\u{200B}width".to_owned(),
        ];
        for s in ok {
            let id = DistinctId::parse(&s).unwrap();
            assert_eq!(id.as_str(), s);
            assert_eq!(id.as_ref(), s);
            assert_eq!(id.to_string(), s);
        }
        let bad = [
            (String::new(), "empty"),
            ("a".repeat(201), "201 characters"),
            ("😀".repeat(201), "201 characters"),
            ("a\0b".to_owned(), "U+0000 at character 2"),
            ("a\nb".to_owned(), "U+000A"),
            ("tab\t".to_owned(), "U+0009"),
            ("del\u{7F}".to_owned(), "U+007F"),
            ("c1\u{85}".to_owned(), "U+0085"),
            ("c1\u{9F}".to_owned(), "U+009F"),
        ];
        for (s, needle) in bad {
            let e = DistinctId::parse(&s).unwrap_err();
            assert_eq!(e.reason(), Reason::InvalidDistinctId);
            assert!(e.message().contains(needle), "{s:?}: {}", e.message());
        }
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_short_strings_without_cc(s in any::<String>()) {
            let n = s.chars().count();
            let ok = (1..=200).contains(&n) && !s.chars().any(|c| c.is_control());
            prop_assert_eq!(DistinctId::parse(&s).is_ok(), ok);
        }
    }
}
