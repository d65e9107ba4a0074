//! Attribute keys: `^[a-z][a-z0-9_]{0,63}$`.

use crate::domain::error::{Error, Reason};
use crate::domain::text::quote;

/// The longest key, in characters (all ASCII, so also bytes).
const MAX_KEY_LEN: usize = 64;

/// A syntactically valid attribute key. Once built it is known to match
/// `^[a-z][a-z0-9_]{0,63}$`, so storage and lookups never re-check it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributeKey(String);

impl AttributeKey {
    /// Parses a key for an RPC that declares it (CreateAttributeDefinition):
    /// a bad key is `invalid_attribute_definition`, with a message naming the
    /// field `key` and the rule that was broken.
    pub fn parse(s: &str) -> Result<Self, Error> {
        Self::parse_with(s, Reason::InvalidAttributeDefinition)
    }

    /// Parses a key for an RPC that refers to an attribute by key (writes,
    /// ClearAttribute, GetAttributes filters): a string that cannot be a key
    /// cannot have been declared either, so the contract makes it
    /// `attribute_not_defined`, whose ErrorInfo names the attribute as sent
    /// (`metadata.attribute`), like that of a well-formed undeclared key, so
    /// a client finds the offending one by the same field either way.
    pub fn parse_reference(s: &str) -> Result<Self, Error> {
        Self::parse_with(s, Reason::AttributeNotDefined).map_err(|e| e.with_attribute(s))
    }

    fn parse_with(s: &str, reason: Reason) -> Result<Self, Error> {
        let problem = if s.is_empty() {
            Some("it is empty".to_owned())
        } else if s.len() > MAX_KEY_LEN {
            Some(format!("it is {} bytes long", s.len()))
        } else if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            Some("it does not start with a lower-case letter a-z".to_owned())
        } else {
            s.char_indices()
                .find(|&(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .map(|(i, c)| format!("it contains {c:?} at byte {i}"))
        };
        match problem {
            None => Ok(AttributeKey(s.to_owned())),
            Some(problem) => Err(Error::new_at(
                reason,
                "key",
                format!(
                    "{} is not a valid attribute key because {problem}; a key starts with a \
                     lower-case letter a-z, continues with a-z, 0-9 or _ and is at most \
                     {MAX_KEY_LEN} characters long, e.g. \"favorite_color\".",
                    quote(s)
                ),
            )),
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for AttributeKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for AttributeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_keys_parse() {
        for key in [
            "a",
            "persona",
            "favorite_color",
            "a1",
            "x_",
            &"a".repeat(64),
        ] {
            let parsed = AttributeKey::parse(key).unwrap();
            assert_eq!(parsed.as_str(), key);
            assert_eq!(parsed.as_ref(), key);
            assert_eq!(parsed.to_string(), key);
        }
    }

    #[test]
    fn invalid_keys_are_rejected_with_the_broken_rule() {
        let cases = [
            ("", "it is empty"),
            (&*"a".repeat(65), "65 bytes long"),
            ("Persona", "does not start with a lower-case letter"),
            ("1abc", "does not start with a lower-case letter"),
            ("_abc", "does not start with a lower-case letter"),
            ("ab-c", "contains '-' at byte 2"),
            ("abC", "contains 'C' at byte 2"),
            ("ab c", "contains ' ' at byte 2"),
            ("aé", "contains 'é' at byte 1"),
        ];
        for (key, problem) in cases {
            let e = AttributeKey::parse(key).unwrap_err();
            assert_eq!(e.reason(), Reason::InvalidAttributeDefinition, "{key:?}");
            assert!(e.message().starts_with("key: "), "{}", e.message());
            assert_eq!(e.field(), Some("key"));
            assert!(e.message().contains(problem), "{key:?}: {}", e.message());
            assert_eq!(e.attribute(), None);
        }
    }

    #[test]
    fn references_to_invalid_keys_are_not_defined() {
        let e = AttributeKey::parse_reference("Nope").unwrap_err();
        assert_eq!(e.reason(), Reason::AttributeNotDefined);
        assert!(AttributeKey::parse_reference("nope").is_ok());
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_contract_regex(s in "[a-zA-Z0-9_é -]{0,70}") {
            let matches = !s.is_empty()
                && s.len() <= 64
                && s.as_bytes()[0].is_ascii_lowercase()
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            prop_assert_eq!(AttributeKey::parse(&s).is_ok(), matches);
        }
    }
}
