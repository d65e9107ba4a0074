//! Attribute definitions: what may be stored under a key.

use crate::domain::coerce::{Coerced, coerce_named};
use crate::domain::config::AttributeConfig;
use crate::domain::error::{Error, Reason};
use crate::domain::key::AttributeKey;
use crate::domain::text::{char_len, quote};

/// A declared attribute: key, typed config, optional names, archived state,
/// and whether public keys may write it.
///
/// Timestamps (`created_at`, `updated_at`) are not part of it: they are
/// facts about a stored row, set by the storage layer and returned beside the
/// definition, and keeping them out means the domain never reads a clock.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeDefinition {
    key: AttributeKey,
    config: AttributeConfig,
    display_name: Option<String>,
    description: Option<String>,
    archived: bool,
    /// Whether public keys (browser writes) may set or clear it; secret keys
    /// always may.
    client_writable: bool,
}

impl AttributeDefinition {
    /// The most characters a display name may have: it is a one-line label.
    pub const MAX_DISPLAY_NAME_CHARS: usize = 255;
    /// The most characters a description may have: a paragraph or a few.
    pub const MAX_DESCRIPTION_CHARS: usize = 4096;

    /// A new, unarchived definition. The key and config are valid by
    /// construction (their errors come from [`AttributeKey::parse`] and the
    /// config constructors, which know no key yet, so the caller names the
    /// attribute on those); this checks the names, with errors naming it: `display_name` at most 255
    /// characters without control characters, `description` at most 4096
    /// characters without control characters other than newline, carriage
    /// return and tab. An empty string is the same as no name.
    pub fn new(
        key: AttributeKey,
        config: AttributeConfig,
        display_name: Option<String>,
        description: Option<String>,
    ) -> Result<Self, Error> {
        let named = |e: Error| e.with_attribute(key.as_str());
        Ok(AttributeDefinition {
            display_name: display_name_from(display_name).map_err(named)?,
            description: description_from(description).map_err(named)?,
            key,
            config,
            archived: false,
            client_writable: true,
        })
    }

    /// Applies UpdateAttributeDefinition: fields that are `None` are left as
    /// they are, a config replaces the whole config, and an empty string
    /// clears a name. A config of another type is `invalid_attribute_definition`
    /// naming the field `config`.
    pub fn update(
        mut self,
        config: Option<AttributeConfig>,
        display_name: Option<String>,
        description: Option<String>,
    ) -> Result<Self, Error> {
        if let Some(config) = config {
            let (from, to) = (self.config.attribute_type(), config.attribute_type());
            if from != to {
                return Err(Error::invalid_definition_at(
                    "config",
                    format!(
                        "{} is a {from} attribute and its type cannot change to {to}; send a \
                         {from} config, or create a new attribute with another key.",
                        quote(self.key.as_str())
                    ),
                )
                .with_attribute(self.key.as_str()));
            }
            self.config = config;
        }
        let named = |e: Error| e.with_attribute(self.key.as_str());
        if display_name.is_some() {
            self.display_name = display_name_from(display_name).map_err(named)?;
        }
        if description.is_some() {
            self.description = description_from(description).map_err(named)?;
        }
        Ok(self)
    }

    /// Archives (`true`) or unarchives (`false`) the attribute. Stored values
    /// are kept either way.
    pub fn set_archived(&mut self, archived: bool) {
        self.archived = archived;
    }

    /// Lets public keys write the attribute (`true`, the default) or keeps it
    /// for secret keys (`false`).
    pub fn set_client_writable(&mut self, client_writable: bool) {
        self.client_writable = client_writable;
    }

    /// Refuses a public-key write (set or clear) of an attribute that is not
    /// `client_writable`, with `attribute_not_client_writable` naming it.
    pub fn check_client_write(&self) -> Result<(), Error> {
        if self.client_writable {
            return Ok(());
        }
        let key = self.key.as_str();
        Err(Error::new(
            Reason::AttributeNotClientWritable,
            format!(
                "The attribute {} can only be written with a secret key, from your backend: \
                 its definition has client_writable false.",
                quote(key)
            ),
        )
        .with_attribute(key))
    }

    /// Coerces a value for a write to this attribute. An archived attribute
    /// refuses every write with `attribute_archived` before the value is
    /// looked at, since no value could help. Errors name the attribute, in
    /// the message and in [`Error::attribute`].
    pub fn coerce(&self, value: Option<&prost_types::Value>) -> Result<Coerced, Error> {
        self.writable()?;
        let key = self.key.as_str();
        coerce_named(&self.config, value, Some(key)).map_err(|e| e.with_attribute(key))
    }

    /// `attribute_archived` when the attribute is archived: it takes no new
    /// values (only clears).
    pub(crate) fn writable(&self) -> Result<(), Error> {
        if !self.archived {
            return Ok(());
        }
        let key = self.key.as_str();
        Err(Error::new(
            Reason::AttributeArchived,
            format!(
                "The attribute {} is archived and takes no new values; unarchive it to \
                 write to it again (its values can still be cleared).",
                quote(key)
            ),
        )
        .with_attribute(key))
    }

    /// The key.
    pub fn key(&self) -> &AttributeKey {
        &self.key
    }

    /// The config, which also tells the type.
    pub fn config(&self) -> &AttributeConfig {
        &self.config
    }

    /// The display name, if one is set.
    pub fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }

    /// The description, if one is set.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Whether the attribute is archived.
    pub fn archived(&self) -> bool {
        self.archived
    }

    /// Whether public keys may write the attribute.
    pub fn client_writable(&self) -> bool {
        self.client_writable
    }
}

fn display_name_from(name: Option<String>) -> Result<Option<String>, Error> {
    checked_text(
        name,
        "display_name",
        AttributeDefinition::MAX_DISPLAY_NAME_CHARS,
        |_| false,
    )
}

fn description_from(description: Option<String>) -> Result<Option<String>, Error> {
    checked_text(
        description,
        "description",
        AttributeDefinition::MAX_DESCRIPTION_CHARS,
        |c| matches!(c, '\n' | '\r' | '\t'),
    )
}

/// `None` for an absent or empty text; else the text if it is short enough
/// and has no control characters but those `allowed`.
fn checked_text(
    text: Option<String>,
    field: &str,
    max_chars: usize,
    allowed: fn(char) -> bool,
) -> Result<Option<String>, Error> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let len = char_len(&text);
    if len > max_chars {
        return Err(Error::invalid_definition_at(
            field,
            format!("it is {len} characters long; at most {max_chars} are allowed."),
        ));
    }
    if let Some(c) = text.chars().find(|&c| c.is_control() && !allowed(c)) {
        return Err(Error::invalid_definition_at(
            field,
            format!(
                "it contains the control character U+{:04X}; remove it.",
                u32::from(c)
            ),
        ));
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::config::{ChoiceConfig, DateConfig, TextConfig};
    use prost_types::value::Kind;

    fn persona() -> AttributeDefinition {
        AttributeDefinition::new(
            AttributeKey::parse("persona").unwrap(),
            AttributeConfig::SingleChoice(
                ChoiceConfig::new(vec!["teacher".into(), "student".into()], false).unwrap(),
            ),
            Some("Persona".into()),
            None,
        )
        .unwrap()
    }

    fn string(s: &str) -> prost_types::Value {
        prost_types::Value {
            kind: Some(Kind::StringValue(s.to_owned())),
        }
    }

    fn assert_definition_error<T: std::fmt::Debug>(result: Result<T, Error>, field: &str) {
        let e = result.unwrap_err();
        assert_eq!(e.reason(), Reason::InvalidAttributeDefinition);
        assert!(
            e.message().starts_with(&format!("{field}: ")),
            "{}",
            e.message()
        );
        assert_eq!(e.field(), Some(field));
    }

    #[test]
    fn a_new_definition_keeps_its_fields_and_is_not_archived() {
        let d = persona();
        assert_eq!(d.key().as_str(), "persona");
        assert_eq!(d.display_name(), Some("Persona"));
        assert_eq!(d.description(), None);
        assert!(!d.archived());
        assert_eq!(d.config().attribute_type().as_str(), "single_choice");
    }

    #[test]
    fn names_are_limited_and_empty_means_none() {
        let key = || AttributeKey::parse("bio").unwrap();
        let text = || AttributeConfig::Text(TextConfig::default());
        let ok = AttributeDefinition::new(
            key(),
            text(),
            Some("é".repeat(255)),
            Some(format!("line one\nline two\t{}", "x".repeat(4000))),
        )
        .unwrap();
        assert_eq!(ok.display_name().map(char_len), Some(255));
        let empty =
            AttributeDefinition::new(key(), text(), Some(String::new()), Some(String::new()))
                .unwrap();
        assert_eq!((empty.display_name(), empty.description()), (None, None));

        let too_long = AttributeDefinition::new(key(), text(), Some("é".repeat(256)), None);
        assert_eq!(too_long.as_ref().unwrap_err().attribute(), Some("bio"));
        assert_definition_error(too_long, "display_name");
        assert_definition_error(
            AttributeDefinition::new(key(), text(), Some("two\nlines".into()), None),
            "display_name",
        );
        assert_definition_error(
            AttributeDefinition::new(key(), text(), None, Some("x".repeat(4097))),
            "description",
        );
        assert_definition_error(
            AttributeDefinition::new(key(), text(), None, Some("nul\0".into())),
            "description",
        );
    }

    #[test]
    fn update_leaves_unset_fields_and_replaces_the_config() {
        let new_config = AttributeConfig::SingleChoice(
            ChoiceConfig::new(vec!["teacher".into(), "parent".into()], true).unwrap(),
        );
        let d = persona()
            .update(Some(new_config.clone()), None, Some("Who they are".into()))
            .unwrap();
        assert_eq!(d.config(), &new_config);
        assert_eq!(d.display_name(), Some("Persona"));
        assert_eq!(d.description(), Some("Who they are"));
        let cleared = d.update(None, Some(String::new()), None).unwrap();
        assert_eq!(cleared.display_name(), None);
        assert_eq!(cleared.description(), Some("Who they are"));
        assert_definition_error(
            persona().update(None, Some("a\u{7}".into()), None),
            "display_name",
        );
    }

    #[test]
    fn the_type_cannot_change_on_update() {
        let e = persona()
            .update(
                Some(AttributeConfig::Date(DateConfig::new(false))),
                None,
                None,
            )
            .unwrap_err();
        assert_eq!(e.reason(), Reason::InvalidAttributeDefinition);
        assert_eq!(
            e.message(),
            "config: \"persona\" is a single_choice attribute and its type cannot change to \
             date; send a single_choice config, or create a new attribute with another key."
        );
        assert_eq!(e.field(), Some("config"));
        assert_eq!(e.attribute(), Some("persona"));
    }

    #[test]
    fn archived_attributes_refuse_writes_and_unarchived_ones_take_them() {
        let mut d = persona();
        d.set_archived(true);
        assert!(d.archived());
        let e = d.coerce(Some(&string("teacher"))).unwrap_err();
        assert_eq!(e.reason(), Reason::AttributeArchived);
        assert_eq!(e.attribute(), Some("persona"));
        assert!(
            e.message().contains("\"persona\" is archived"),
            "{}",
            e.message()
        );
        d.set_archived(false);
        assert_eq!(
            d.coerce(Some(&string("Teacher"))).unwrap().value.as_str(),
            Some("teacher")
        );
    }

    #[test]
    fn coercion_errors_name_the_attribute() {
        let e = persona().coerce(Some(&string("cooking"))).unwrap_err();
        assert_eq!(e.reason(), Reason::AttributeValueInvalid);
        assert_eq!(e.attribute(), Some("persona"));
        assert_eq!(
            e.message(),
            "\"cooking\" is not one of the options of \"persona\": teacher, student."
        );
        let e = persona().coerce(None).unwrap_err();
        assert_eq!(e.attribute(), Some("persona"));
    }
}
