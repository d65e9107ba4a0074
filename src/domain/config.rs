//! Attribute types and their configs, each validated when built.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use serde_path_to_error::{Path, Segment};

use crate::domain::error::Error;
use crate::domain::text::{char_len, fold, number_text, quote};

/// The type of an attribute, fixed when it is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttributeType {
    /// Free text.
    Text,
    /// A finite number.
    Number,
    /// true or false.
    Boolean,
    /// A calendar date, or an instant when `include_time`.
    Date,
    /// One of a declared list of options.
    SingleChoice,
    /// A subset of a declared list of options.
    MultiChoice,
}

impl AttributeType {
    /// Every type, in the order of the contract's table.
    pub const ALL: [AttributeType; 6] = [
        AttributeType::Text,
        AttributeType::Number,
        AttributeType::Boolean,
        AttributeType::Date,
        AttributeType::SingleChoice,
        AttributeType::MultiChoice,
    ];

    /// The name used in the API, storage and messages (`single_choice`).
    pub const fn as_str(self) -> &'static str {
        match self {
            AttributeType::Text => "text",
            AttributeType::Number => "number",
            AttributeType::Boolean => "boolean",
            AttributeType::Date => "date",
            AttributeType::SingleChoice => "single_choice",
            AttributeType::MultiChoice => "multi_choice",
        }
    }

    /// Parses the name given by [`AttributeType::as_str`]; anything else is
    /// `invalid_attribute_definition` naming the field `type`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        AttributeType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Error::invalid_definition_at(
                    "type",
                    format!(
                        "{} is not an attribute type; use one of text, number, boolean, date, \
                         single_choice or multi_choice.",
                        quote(s)
                    ),
                )
            })
    }

    /// The config fields this type takes, by their JSON (and proto) names,
    /// in the order messages list them. Boolean takes none.
    pub const fn config_fields(self) -> &'static [&'static str] {
        match self {
            AttributeType::Text => &["max_length", "truncate"],
            AttributeType::Number => &["min", "max", "integer"],
            AttributeType::Boolean => &[],
            AttributeType::Date => &["include_time"],
            AttributeType::SingleChoice => &["options", "allow_custom"],
            AttributeType::MultiChoice => &["options", "allow_custom", "max_items"],
        }
    }
}

impl std::fmt::Display for AttributeType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Config of a `text` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextConfig {
    max_length: u32,
    truncate: bool,
}

impl TextConfig {
    /// The default `max_length`.
    pub const DEFAULT_MAX_LENGTH: u32 = 255;
    /// The largest `max_length` a definition may set.
    pub const MAX_MAX_LENGTH: u32 = 65_535;

    /// A text config; `max_length` must be 1-65535.
    pub fn new(max_length: u32, truncate: bool) -> Result<Self, Error> {
        if !(1..=Self::MAX_MAX_LENGTH).contains(&max_length) {
            return Err(Error::invalid_definition_at(
                "config.max_length",
                format!(
                    "{max_length} is out of range; it must be from 1 to {}.",
                    Self::MAX_MAX_LENGTH
                ),
            ));
        }
        Ok(TextConfig {
            max_length,
            truncate,
        })
    }

    /// The most characters (Unicode scalar values) a value may have.
    pub fn max_length(&self) -> u32 {
        self.max_length
    }

    /// Whether longer values are cut to `max_length` instead of refused.
    pub fn truncate(&self) -> bool {
        self.truncate
    }
}

impl Default for TextConfig {
    fn default() -> Self {
        TextConfig {
            max_length: Self::DEFAULT_MAX_LENGTH,
            truncate: false,
        }
    }
}

/// Config of a `number` attribute.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NumberConfig {
    min: Option<f64>,
    max: Option<f64>,
    integer: bool,
}

impl NumberConfig {
    /// A number config: bounds are inclusive and finite, `min <= max`, and
    /// with `integer` at least one whole number must lie within them (else no
    /// value could ever be stored).
    pub fn new(min: Option<f64>, max: Option<f64>, integer: bool) -> Result<Self, Error> {
        for (field, bound) in [("min", min), ("max", max)] {
            if let Some(b) = bound.filter(|b| !b.is_finite()) {
                return Err(Error::invalid_definition_at(
                    format!("config.{field}"),
                    format!("{b} is not a finite number; leave it unset for no bound."),
                ));
            }
        }
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                return Err(Error::invalid_definition_at(
                    "config.min",
                    format!(
                        "{} is greater than config.max {}; min must not exceed max.",
                        number_text(lo),
                        number_text(hi)
                    ),
                ));
            }
            if integer && lo.ceil() > hi.floor() {
                return Err(Error::invalid_definition_at(
                    "config.integer",
                    format!(
                        "no whole number lies between min {} and max {}, so no value could be \
                         stored; widen the range or set integer to false.",
                        number_text(lo),
                        number_text(hi)
                    ),
                ));
            }
        }
        // -0.0 would print as "0" in messages yet is a distinct JSON value;
        // adding 0.0 makes it +0.0 so stored configs are canonical.
        Ok(NumberConfig {
            min: min.map(|b| b + 0.0),
            max: max.map(|b| b + 0.0),
            integer,
        })
    }

    /// The inclusive lower bound, if any.
    pub fn min(&self) -> Option<f64> {
        self.min
    }

    /// The inclusive upper bound, if any.
    pub fn max(&self) -> Option<f64> {
        self.max
    }

    /// Whether only whole numbers are accepted.
    pub fn integer(&self) -> bool {
        self.integer
    }
}

/// Config of a `date` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DateConfig {
    include_time: bool,
}

impl DateConfig {
    /// A date config; every combination is valid.
    pub const fn new(include_time: bool) -> Self {
        DateConfig { include_time }
    }

    /// Whether values are instants (`YYYY-MM-DDTHH:MM:SS[.fff]Z`) rather
    /// than dates (`YYYY-MM-DD`).
    pub fn include_time(&self) -> bool {
        self.include_time
    }
}

/// The declared options of a choice attribute, with the caseless index that
/// matching uses (built once here so that coercing a long list stays linear).
#[derive(Debug, Clone)]
pub(crate) struct ChoiceOptions {
    options: Vec<String>,
    by_folded: HashMap<String, usize>,
}

impl PartialEq for ChoiceOptions {
    fn eq(&self, other: &Self) -> bool {
        // The index is derived from the options.
        self.options == other.options
    }
}

impl Eq for ChoiceOptions {}

impl ChoiceOptions {
    /// The most options a choice attribute may declare.
    const MAX_OPTIONS: usize = 1000;
    /// The most characters an option (or a custom value) may have.
    pub(crate) const MAX_OPTION_CHARS: usize = 255;

    /// Validates options: 1-1000 of them, each 1-255 characters, without
    /// leading or trailing whitespace (values are trimmed before matching, so
    /// such an option could never match; refusing it is clearer than quietly
    /// storing a different spelling than was declared), without control
    /// characters (options are one-line labels), and unique caseless.
    fn parse(options: Vec<String>) -> Result<Self, Error> {
        if options.is_empty() {
            return Err(Error::invalid_definition_at(
                "config.options",
                "no options given; declare at least one.",
            ));
        }
        if options.len() > Self::MAX_OPTIONS {
            return Err(Error::invalid_definition_at(
                "config.options",
                format!(
                    "{} options given; at most {} are allowed.",
                    options.len(),
                    Self::MAX_OPTIONS
                ),
            ));
        }
        let mut by_folded: HashMap<String, usize> = HashMap::with_capacity(options.len());
        for (i, option) in options.iter().enumerate() {
            let invalid = |problem: String| {
                Err(Error::invalid_definition_at(
                    format!("config.options[{i}]"),
                    problem,
                ))
            };
            if option.trim().is_empty() {
                return invalid(format!(
                    "{} is blank; every option needs at least one visible character.",
                    quote(option)
                ));
            }
            if option.trim() != option {
                return invalid(format!(
                    "{} has leading or trailing whitespace; remove it (values are trimmed \
                     before they are matched, so it could never match).",
                    quote(option)
                ));
            }
            let len = char_len(option);
            if len > Self::MAX_OPTION_CHARS {
                return invalid(format!(
                    "the option is {len} characters long; at most {} are allowed.",
                    Self::MAX_OPTION_CHARS
                ));
            }
            if let Some(c) = option.chars().find(|c| c.is_control()) {
                return invalid(format!(
                    "{} contains the control character U+{:04X}; options are one-line labels.",
                    quote(option),
                    u32::from(c)
                ));
            }
            if let Some(&first) = by_folded.get(&fold(option)) {
                return invalid(format!(
                    "{} duplicates {} (config.options[{first}]); options are compared \
                     case-insensitively.",
                    quote(option),
                    quote(options[first].as_str())
                ));
            }
            by_folded.insert(fold(option), i);
        }
        Ok(ChoiceOptions { options, by_folded })
    }

    pub(crate) fn as_slice(&self) -> &[String] {
        &self.options
    }

    /// The declared spelling of the option that `value` matches caselessly;
    /// the caller trims `value` first.
    pub(crate) fn find(&self, value: &str) -> Option<&str> {
        self.by_folded
            .get(&fold(value))
            .map(|&i| self.options[i].as_str())
    }
}

/// Config of a `single_choice` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoiceConfig {
    options: ChoiceOptions,
    allow_custom: bool,
}

impl ChoiceConfig {
    /// A single_choice config; see [`MultiChoiceConfig::new`] for the option rules.
    pub fn new(options: Vec<String>, allow_custom: bool) -> Result<Self, Error> {
        Ok(ChoiceConfig {
            options: ChoiceOptions::parse(options)?,
            allow_custom,
        })
    }

    /// The options in their declared spelling and order.
    pub fn options(&self) -> &[String] {
        self.options.as_slice()
    }

    /// Whether values that match no option are stored (trimmed) instead of refused.
    pub fn allow_custom(&self) -> bool {
        self.allow_custom
    }

    pub(crate) fn choices(&self) -> &ChoiceOptions {
        &self.options
    }
}

/// Config of a `multi_choice` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiChoiceConfig {
    options: ChoiceOptions,
    allow_custom: bool,
    max_items: u32,
}

impl MultiChoiceConfig {
    /// The default `max_items`.
    pub const DEFAULT_MAX_ITEMS: u32 = 100;

    /// A multi_choice config. Options: 1-1000, each 1-255 characters, none
    /// blank, none with leading or trailing whitespace or control characters,
    /// unique case-insensitively. `max_items` must be at least 1.
    pub fn new(options: Vec<String>, allow_custom: bool, max_items: u32) -> Result<Self, Error> {
        let options = ChoiceOptions::parse(options)?;
        if max_items == 0 {
            return Err(Error::invalid_definition_at(
                "config.max_items",
                "0 is out of range; it must be at least 1.",
            ));
        }
        Ok(MultiChoiceConfig {
            options,
            allow_custom,
            max_items,
        })
    }

    /// The options in their declared spelling and order.
    pub fn options(&self) -> &[String] {
        self.options.as_slice()
    }

    /// Whether values that match no option are kept (trimmed) instead of dropped.
    pub fn allow_custom(&self) -> bool {
        self.allow_custom
    }

    /// The most items a stored list may have.
    pub fn max_items(&self) -> u32 {
        self.max_items
    }

    pub(crate) fn choices(&self) -> &ChoiceOptions {
        &self.options
    }
}

/// The config of an attribute: one variant per type, so a config can never
/// disagree with its type.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeConfig {
    /// `text`.
    Text(TextConfig),
    /// `number`.
    Number(NumberConfig),
    /// `boolean`, which has no config.
    Boolean,
    /// `date`.
    Date(DateConfig),
    /// `single_choice`.
    SingleChoice(ChoiceConfig),
    /// `multi_choice`.
    MultiChoice(MultiChoiceConfig),
}

impl AttributeConfig {
    /// The type this config belongs to.
    pub fn attribute_type(&self) -> AttributeType {
        match self {
            AttributeConfig::Text(_) => AttributeType::Text,
            AttributeConfig::Number(_) => AttributeType::Number,
            AttributeConfig::Boolean => AttributeType::Boolean,
            AttributeConfig::Date(_) => AttributeType::Date,
            AttributeConfig::SingleChoice(_) => AttributeType::SingleChoice,
            AttributeConfig::MultiChoice(_) => AttributeType::MultiChoice,
        }
    }

    /// The config of a type with every field at its default. Choice types
    /// have no default options, so for them this is an error naming
    /// `config.options`.
    pub fn default_for(attribute_type: AttributeType) -> Result<Self, Error> {
        Self::from_json(attribute_type, &Json::Object(Map::new()))
    }

    /// The config as stored: a JSON object with the stable field names
    /// `max_length`, `truncate`, `min`, `max`, `integer`, `include_time`,
    /// `options`, `allow_custom`, `max_items` (unset bounds are left out;
    /// boolean is `{}`).
    pub fn to_json(&self) -> Json {
        match self {
            AttributeConfig::Text(c) => json!({"max_length": c.max_length, "truncate": c.truncate}),
            AttributeConfig::Number(c) => {
                let mut object = Map::new();
                if let Some(min) = c.min {
                    object.insert("min".to_owned(), json!(min));
                }
                if let Some(max) = c.max {
                    object.insert("max".to_owned(), json!(max));
                }
                object.insert("integer".to_owned(), json!(c.integer));
                Json::Object(object)
            }
            AttributeConfig::Boolean => json!({}),
            AttributeConfig::Date(c) => json!({"include_time": c.include_time}),
            AttributeConfig::SingleChoice(c) => {
                json!({"options": c.options(), "allow_custom": c.allow_custom})
            }
            AttributeConfig::MultiChoice(c) => json!({
                "options": c.options(),
                "allow_custom": c.allow_custom,
                "max_items": c.max_items,
            }),
        }
    }

    /// Reads a config of the given type from JSON as [`AttributeConfig::to_json`]
    /// writes it, validating it like the constructors do. Missing fields (and
    /// `null`) take their defaults; unknown fields are refused so that a typo
    /// such as `maxLength` is not silently ignored.
    pub fn from_json(attribute_type: AttributeType, json: &Json) -> Result<Self, Error> {
        let t = attribute_type;
        let config = match t {
            AttributeType::Text => {
                let c: TextJson = read(t, json)?;
                AttributeConfig::Text(TextConfig::new(
                    c.max_length.unwrap_or(TextConfig::DEFAULT_MAX_LENGTH),
                    c.truncate.unwrap_or(false),
                )?)
            }
            AttributeType::Number => {
                let c: NumberJson = read(t, json)?;
                AttributeConfig::Number(NumberConfig::new(
                    c.min,
                    c.max,
                    c.integer.unwrap_or(false),
                )?)
            }
            AttributeType::Boolean => {
                let BooleanJson {} = read(t, json)?;
                AttributeConfig::Boolean
            }
            AttributeType::Date => {
                let c: DateJson = read(t, json)?;
                AttributeConfig::Date(DateConfig::new(c.include_time.unwrap_or(false)))
            }
            AttributeType::SingleChoice => {
                let c: SingleChoiceJson = read(t, json)?;
                AttributeConfig::SingleChoice(ChoiceConfig::new(
                    c.options.unwrap_or_default(),
                    c.allow_custom.unwrap_or(false),
                )?)
            }
            AttributeType::MultiChoice => {
                let c: MultiChoiceJson = read(t, json)?;
                AttributeConfig::MultiChoice(MultiChoiceConfig::new(
                    c.options.unwrap_or_default(),
                    c.allow_custom.unwrap_or(false),
                    c.max_items.unwrap_or(MultiChoiceConfig::DEFAULT_MAX_ITEMS),
                )?)
            }
        };
        Ok(config)
    }
}

// The JSON forms of the configs, one per type, as `to_json` writes them.
// Their fields are the type's `config_fields` (a test reads each of them);
// each is an `Option` because a missing field and `null` both mean the
// default, which `from_json` fills in.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TextJson {
    max_length: Option<u32>,
    truncate: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NumberJson {
    min: Option<f64>,
    max: Option<f64>,
    integer: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct BooleanJson {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DateJson {
    include_time: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SingleChoiceJson {
    options: Option<Vec<String>>,
    allow_custom: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MultiChoiceJson {
    options: Option<Vec<String>>,
    allow_custom: Option<bool>,
    max_items: Option<u32>,
}

/// Reads the JSON form of a config of type `t`: `null` is every default and
/// an object is read by serde. Anything else is refused here, because a
/// derived struct would also read a list, by position.
fn read<'a, T: Deserialize<'a> + Default>(t: AttributeType, json: &'a Json) -> Result<T, Error> {
    match json {
        Json::Null => Ok(T::default()),
        Json::Object(_) => {
            serde_path_to_error::deserialize(json).map_err(|e| misread(t, json, e.path()))
        }
        other => Err(not_an_object(other)),
    }
}

/// The error for a config object that serde could not read, told by where
/// it stopped, not by serde's text (whose wording is not this service's): at
/// a name that is not one of the type's fields (`deny_unknown_fields`), or
/// at a field, or an item of `options`, whose value has the wrong type or
/// is out of range.
fn misread(t: AttributeType, json: &Json, path: &Path) -> Error {
    let mut segments = path.iter();
    let Some(Segment::Map { key: field }) = segments.next() else {
        // serde stops at the root only for a value that is not an object,
        // which `read` refuses before; handled all the same.
        return not_an_object(json);
    };
    let fields = t.config_fields();
    let error = if fields.is_empty() {
        Error::invalid_definition_at(field, "this type has no config fields; leave config empty.")
    } else if !fields.contains(&field.as_str()) {
        Error::invalid_definition_at(
            field,
            format!(
                "unknown field; the fields of this type are {}.",
                fields.join(", ")
            ),
        )
    } else {
        let wrong =
            |expected: &str, got: &Json| format!("expected {expected}, got {}.", json_preview(got));
        match segments.next() {
            // Only `options` has items.
            Some(Segment::Seq { index }) => Error::invalid_definition_at(
                format!("{field}[{index}]"),
                wrong("a string", &json[field][*index]),
            ),
            _ => Error::invalid_definition_at(field, wrong(holds(field), &json[field])),
        }
    };
    error.at("config")
}

/// What a config field holds, as a message about a wrong value says it.
fn holds(field: &str) -> &'static str {
    match field {
        "max_length" | "max_items" => "a whole number from 0 to 4294967295",
        "min" | "max" => "a number",
        "options" => "a list of strings",
        // truncate, integer, include_time, allow_custom
        _ => "true or false",
    }
}

fn not_an_object(json: &Json) -> Error {
    Error::invalid_definition_at(
        "config",
        format!("expected an object, got {}.", json_preview(json)),
    )
}

/// A JSON value shortened for a message.
fn json_preview(json: &Json) -> String {
    let text = json.to_string();
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
pub(crate) mod tests;
