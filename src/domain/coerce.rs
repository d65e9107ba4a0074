//! Coercion of client input (`google.protobuf.Value`) to what a config allows.

use std::cell::RefCell;
use std::collections::HashSet;

use prost_types::value::Kind;

use crate::domain::adjustment::{Adjustment, Notes};
use crate::domain::config::{
    AttributeConfig, AttributeType, ChoiceConfig, ChoiceOptions, DateConfig, MultiChoiceConfig,
    NumberConfig, TextConfig,
};
use crate::domain::date::DateInput;
use crate::domain::error::{Error, Reason};
use crate::domain::text::{char_len, fold, list_options, number_text, quote};
use crate::domain::value::{Repr, StoredValue};

/// Coerces a client's value to what `config` allows, as CONTRACT.md section
/// 3 describes, and returns what is to be stored.
///
/// `None` means the request had no value at all, which is treated like
/// `null`. Failures are `attribute_value_invalid` or
/// `attribute_value_too_long` and name no attribute; use
/// [`AttributeDefinition::coerce`](crate::domain::AttributeDefinition::coerce)
/// to have messages and error metadata name it.
pub fn coerce(
    config: &AttributeConfig,
    value: Option<&prost_types::Value>,
) -> Result<StoredValue, Error> {
    coerce_named(config, value, None).map(|c| c.value)
}

/// A coerced value and what coercion did to the input to get it.
#[derive(Debug, Clone, PartialEq)]
pub struct Coerced {
    /// What is to be stored.
    pub value: StoredValue,
    /// What changed on the way; empty when the value is stored exactly as
    /// sent.
    pub adjustments: Vec<Adjustment>,
}

/// [`coerce`], with messages naming the attribute `name` when given, and
/// the adjustments made.
pub(crate) fn coerce_named(
    config: &AttributeConfig,
    value: Option<&prost_types::Value>,
    name: Option<&str>,
) -> Result<Coerced, Error> {
    let c = Coercion {
        config,
        subject: Subject(name),
        notes: RefCell::default(),
    };
    let repr = match (config, shape(value)) {
        (AttributeConfig::MultiChoice(m), Shape::List(items)) => {
            c.choices(m, items.iter().map(Some))?
        }
        // One scalar counts as a list of one.
        (AttributeConfig::MultiChoice(m), Shape::Scalar(_)) => {
            c.choices(m, std::iter::once(value))?
        }
        (_, Shape::Null) => {
            return Err(Error::invalid_value(format!(
                "A value is required{}; null or a missing value cannot be stored. To remove a \
                 value, use ClearAttribute.",
                c.subject.for_suffix()
            )));
        }
        (_, Shape::Struct) => return Err(c.refuse("an object")),
        (_, Shape::List(_)) => return Err(c.refuse("a list")),
        (_, Shape::Scalar(Scalar::Number(n))) if !n.is_finite() => {
            return Err(c.refuse("a number that is not finite (NaN or infinity)"));
        }
        (AttributeConfig::Text(t), Shape::Scalar(s)) => c.text(t, s)?,
        (AttributeConfig::Number(n), Shape::Scalar(s)) => c.number(n, s)?,
        (AttributeConfig::Boolean, Shape::Scalar(s)) => c.boolean(s)?,
        (AttributeConfig::Date(d), Shape::Scalar(s)) => c.date(d, s)?,
        (AttributeConfig::SingleChoice(sc), Shape::Scalar(s)) => c.choice(sc, s)?,
    };
    Ok(Coerced {
        value: StoredValue::new(repr),
        adjustments: c.notes.into_inner().into_vec(),
    })
}

/// The elements a `remove` names, trimmed and in their caseless form: a
/// scalar counts as a list of one, as for writes. Elements need not be
/// options: removing what isn't there is not an error. Null, objects and
/// nested lists are `attribute_value_invalid`.
pub(crate) fn folded_elements(
    value: Option<&prost_types::Value>,
    name: &str,
) -> Result<HashSet<String>, Error> {
    let items: Vec<Option<&prost_types::Value>> = match shape(value) {
        Shape::List(items) => items.iter().map(Some).collect(),
        Shape::Scalar(_) => vec![value],
        Shape::Null => {
            return Err(Error::invalid_value(format!(
                "remove needs the elements to take out of {}: a string or a list of strings.",
                quote(name)
            )));
        }
        Shape::Struct => {
            return Err(Error::invalid_value(format!(
                "remove takes a string or a list of strings for {}, not an object.",
                quote(name)
            )));
        }
    };
    let mut folded = HashSet::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        match shape(item) {
            Shape::Scalar(Scalar::Number(n)) if !n.is_finite() => {
                return Err(Error::invalid_value(format!(
                    "The element at index {index} of the remove of {} is a number that is not                      finite; send strings.",
                    quote(name)
                )));
            }
            Shape::Scalar(scalar) => {
                folded.insert(fold(scalar.text().trim()));
            }
            _ => {
                return Err(Error::invalid_value(format!(
                    "The element at index {index} of the remove of {} is not a string, number or                      bool; send strings.",
                    quote(name)
                )));
            }
        }
    }
    Ok(folded)
}

/// A scalar of client input.
#[derive(Debug, Clone, Copy)]
enum Scalar<'a> {
    String(&'a str),
    Number(f64),
    Bool(bool),
}

impl Scalar<'_> {
    /// The text of a scalar, for types that take text: numbers in their
    /// canonical form (see [`number_text`]), bools as `true`/`false`.
    fn text(self) -> String {
        match self {
            Scalar::String(s) => s.to_owned(),
            Scalar::Number(n) => number_text(n),
            Scalar::Bool(b) => b.to_string(),
        }
    }

    /// The scalar as a message quotes it.
    fn describe(self) -> String {
        match self {
            Scalar::String(s) => quote(s),
            other => other.text(),
        }
    }
}

/// The shape of client input.
enum Shape<'a> {
    /// `null`, a `Value` with no kind, or no value at all.
    Null,
    Scalar(Scalar<'a>),
    List(&'a [prost_types::Value]),
    Struct,
}

fn shape(value: Option<&prost_types::Value>) -> Shape<'_> {
    match value.and_then(|v| v.kind.as_ref()) {
        None | Some(Kind::NullValue(_)) => Shape::Null,
        Some(Kind::NumberValue(n)) => Shape::Scalar(Scalar::Number(*n)),
        Some(Kind::StringValue(s)) => Shape::Scalar(Scalar::String(s)),
        Some(Kind::BoolValue(b)) => Shape::Scalar(Scalar::Bool(*b)),
        Some(Kind::StructValue(_)) => Shape::Struct,
        Some(Kind::ListValue(list)) => Shape::List(&list.values),
    }
}

/// How messages name the attribute: by key when known, else generically.
#[derive(Clone, Copy)]
struct Subject<'a>(Option<&'a str>);

impl Subject<'_> {
    /// `"age"` or `this attribute`, for the middle of a sentence.
    fn noun(self) -> String {
        self.0.map_or_else(|| "this attribute".to_owned(), quote)
    }

    /// ` for "age"` or nothing.
    fn for_suffix(self) -> String {
        self.0
            .map_or_else(String::new, |n| format!(" for {}", quote(n)))
    }

    /// ` of "age"` or nothing.
    fn of_suffix(self) -> String {
        self.0
            .map_or_else(String::new, |n| format!(" of {}", quote(n)))
    }

    /// `"age" is a number attribute` or `This is a number attribute`, to
    /// start a sentence.
    fn is_a(self, attribute_type: AttributeType) -> String {
        match self.0 {
            Some(n) => format!("{} is a {attribute_type} attribute", quote(n)),
            None => format!("This is a {attribute_type} attribute"),
        }
    }
}

/// The longest custom choice value, in characters.
const MAX_CUSTOM_CHARS: usize = ChoiceOptions::MAX_OPTION_CHARS;

/// How many unmatched inputs a message quotes before "and N more".
const QUOTED_INPUTS: usize = 3;

struct Coercion<'a> {
    config: &'a AttributeConfig,
    subject: Subject<'a>,
    /// What the coercion did so far; a cell because the steps only read
    /// the rest.
    notes: RefCell<Notes>,
}

/// The outcome of matching one input against choice options.
enum Choice {
    /// The declared spelling of the matched option, or a trimmed custom value.
    Keep(String),
    /// Empty after trimming, with allow_custom: no custom value to keep.
    Blank,
    /// No option matches and custom values are not allowed.
    NoMatch,
}

impl Coercion<'_> {
    fn note(&self, adjustment: Adjustment) {
        self.notes.borrow_mut().add(adjustment);
    }

    /// Notes `Trimmed` when `text` had surrounding whitespace, and returns
    /// it trimmed.
    fn trimmed<'t>(&self, text: &'t str) -> &'t str {
        let t = text.trim();
        if t.len() != text.len() {
            self.note(Adjustment::Trimmed);
        }
        t
    }

    /// Notes `Converted` unless the scalar is a string.
    fn converted_unless_string(&self, scalar: Scalar<'_>) {
        if !matches!(scalar, Scalar::String(_)) {
            self.note(Adjustment::Converted);
        }
    }

    /// What a client should send instead, for refusals.
    fn hint(&self) -> String {
        match self.config {
            AttributeConfig::Text(_) => "a string".to_owned(),
            AttributeConfig::Number(_) => "a number such as 42 or 2.5".to_owned(),
            AttributeConfig::Boolean => "true or false".to_owned(),
            AttributeConfig::Date(_) => "a date such as \"2024-05-01\", an RFC 3339 date-time \
                                         such as \"2024-05-01T09:30:00Z\", or Unix seconds"
                .to_owned(),
            AttributeConfig::SingleChoice(c) => {
                format!("one of its options: {}", list_options(c.options()))
            }
            AttributeConfig::MultiChoice(c) => format!(
                "a list of strings from its options: {}",
                list_options(c.options())
            ),
        }
    }

    /// The value's kind does not fit the type at all.
    fn refuse(&self, what: &str) -> Error {
        Error::invalid_value(format!(
            "{} and does not accept {what}; send {}.",
            self.subject.is_a(self.config.attribute_type()),
            self.hint()
        ))
    }

    /// U+0000 can't be stored on every backend (PostgreSQL's jsonb refuses
    /// it), so it is refused everywhere rather than failing on one backend.
    fn refuse_nul(&self, text: &str) -> Result<(), Error> {
        if text.contains('\0') {
            return Err(Error::invalid_value(format!(
                "The value contains a NUL character (U+0000), which {} cannot store; remove it.",
                self.subject.noun()
            )));
        }
        Ok(())
    }

    fn text(&self, config: &TextConfig, scalar: Scalar<'_>) -> Result<Repr, Error> {
        // Text is stored as given: not trimmed, and "" is a value.
        self.converted_unless_string(scalar);
        let mut text = scalar.text();
        self.refuse_nul(&text)?;
        let max = config.max_length() as usize;
        if let Some((cut, _)) = text.char_indices().nth(max) {
            if !config.truncate() {
                return Err(Error::new(
                    Reason::AttributeValueTooLong,
                    format!(
                        "The value is {} characters long but {} allows at most {max} \
                         (counted in Unicode characters); shorten it.",
                        char_len(&text),
                        self.subject.noun()
                    ),
                ));
            }
            // A char boundary, so the cut never splits a character.
            self.note(Adjustment::Truncated {
                original_length: char_len(&text),
            });
            text.truncate(cut);
        }
        Ok(Repr::Text(text))
    }

    fn number(&self, config: &NumberConfig, scalar: Scalar<'_>) -> Result<Repr, Error> {
        let n = match scalar {
            Scalar::Number(n) => n,
            Scalar::Bool(_) => return Err(self.refuse("true or false")),
            Scalar::String(s) => {
                let n = self.parse_decimal(s)?;
                self.trimmed(s);
                self.note(Adjustment::Converted);
                n
            }
        };
        // -0 becomes 0: the same number, and JSON clients rarely expect "-0".
        let n = n + 0.0;
        let range = match (config.min(), config.max()) {
            (Some(lo), Some(hi)) => format!("from {} to {}", number_text(lo), number_text(hi)),
            (Some(lo), None) => format!("at least {}", number_text(lo)),
            (None, Some(hi)) => format!("at most {}", number_text(hi)),
            (None, None) => String::new(),
        };
        let below = config.min().is_some_and(|lo| n < lo);
        let above = config.max().is_some_and(|hi| n > hi);
        if below || above {
            return Err(Error::invalid_value(format!(
                "{} is out of range: {} accepts numbers {range}.",
                number_text(n),
                self.subject.noun()
            )));
        }
        if config.integer() && n.fract() != 0.0 {
            return Err(Error::invalid_value(format!(
                "{} is not a whole number, but {} accepts only whole numbers.",
                number_text(n),
                self.subject.noun()
            )));
        }
        Ok(Repr::Number(n))
    }

    /// Reads a decimal number: optional sign, digits with an optional
    /// fraction (or only a fraction, `.5`; `5.` is accepted too, as
    /// JavaScript's `Number()` does), optional exponent; surrounding
    /// whitespace ignored. The syntax is checked here because
    /// `f64::from_str` also accepts `inf`, `NaN` and `infinity`.
    fn parse_decimal(&self, s: &str) -> Result<f64, Error> {
        let not_decimal = || {
            Error::invalid_value(format!(
                "{} is not a decimal number, so {} cannot store it; send a number such as 42, \
                 -2.5 or 1e3 (NaN, infinity, hex and empty strings are not numbers here).",
                quote(s),
                self.subject.noun()
            ))
        };
        let t = s.trim();
        if !is_decimal(t) {
            return Err(not_decimal());
        }
        let n: f64 = t.parse().map_err(|_| not_decimal())?;
        if !n.is_finite() {
            return Err(Error::invalid_value(format!(
                "{} is too large to be stored as a number in {}.",
                quote(s),
                self.subject.noun()
            )));
        }
        Ok(n)
    }

    fn boolean(&self, scalar: Scalar<'_>) -> Result<Repr, Error> {
        let b = match scalar {
            Scalar::Bool(b) => Some(b),
            // Float patterns compare with ==, so -0 matches 0.0 too.
            Scalar::Number(1.0) => Some(true),
            Scalar::Number(0.0) => Some(false),
            Scalar::Number(_) => None,
            Scalar::String(s) => {
                let t = self.trimmed(s);
                if t.eq_ignore_ascii_case("true") || t == "1" {
                    Some(true)
                } else if t.eq_ignore_ascii_case("false") || t == "0" {
                    Some(false)
                } else {
                    None
                }
            }
        };
        if !matches!(scalar, Scalar::Bool(_)) {
            self.note(Adjustment::Converted);
        }
        b.map(Repr::Boolean).ok_or_else(|| {
            Error::invalid_value(format!(
                "{} is not a boolean, so {} cannot store it; send true or false (the strings \
                 \"true\" and \"false\" in any case, and 1 and 0, are accepted too).",
                scalar.describe(),
                self.subject.noun()
            ))
        })
    }

    fn date(&self, config: &DateConfig, scalar: Scalar<'_>) -> Result<Repr, Error> {
        let parsed = match scalar {
            Scalar::Bool(_) => return Err(self.refuse("true or false")),
            // Surrounding whitespace is ignored, as for numbers.
            Scalar::String(s) => DateInput::parse(s.trim()),
            Scalar::Number(n) => DateInput::from_unix_seconds(n),
        };
        let date = parsed.map_err(|problem| {
            Error::invalid_value(format!(
                "{} is not a date {} can store: {problem}.",
                scalar.describe(),
                self.subject.noun()
            ))
        })?;
        let stored = date.format(config.include_time());
        match scalar {
            // Another spelling of the same instant (an offset, a dropped
            // time or fraction, an added midnight) is a conversion.
            Scalar::String(s) if self.trimmed(s) == stored => {}
            _ => self.note(Adjustment::Converted),
        }
        Ok(Repr::Date(stored))
    }

    /// Matches one input against options: the caseless match of the trimmed
    /// text wins; otherwise, with `allow_custom`, the trimmed text itself.
    fn match_choice(
        &self,
        options: &ChoiceOptions,
        allow_custom: bool,
        scalar: Scalar<'_>,
    ) -> Result<Choice, Error> {
        let text = scalar.text();
        let trimmed = text.trim();
        // Only what is kept is reported; a dropped element is reported as
        // dropped by the caller.
        let kept = |value: &str| {
            self.converted_unless_string(scalar);
            self.trimmed(&text);
            if value != trimmed {
                self.note(Adjustment::CaseNormalized);
            }
        };
        if let Some(option) = options.find(trimmed) {
            kept(option);
            return Ok(Choice::Keep(option.to_owned()));
        }
        if !allow_custom {
            return Ok(Choice::NoMatch);
        }
        if trimmed.is_empty() {
            return Ok(Choice::Blank);
        }
        self.refuse_nul(trimmed)?;
        let len = char_len(trimmed);
        if len > MAX_CUSTOM_CHARS {
            return Err(Error::new(
                Reason::AttributeValueTooLong,
                format!(
                    "The custom value {} is {len} characters long but custom values of {} can \
                     have at most {MAX_CUSTOM_CHARS}; shorten it.",
                    quote(trimmed),
                    self.subject.noun()
                ),
            ));
        }
        kept(trimmed);
        Ok(Choice::Keep(trimmed.to_owned()))
    }

    fn choice(&self, config: &ChoiceConfig, scalar: Scalar<'_>) -> Result<Repr, Error> {
        let options = config.choices();
        match self.match_choice(options, config.allow_custom(), scalar)? {
            Choice::Keep(value) => Ok(Repr::Choice(value)),
            Choice::Blank => Err(Error::invalid_value(format!(
                "The value is empty after trimming spaces, so {} cannot store it; send one of \
                 its options ({}) or a non-empty custom value.",
                self.subject.noun(),
                list_options(options.as_slice())
            ))),
            Choice::NoMatch => Err(Error::invalid_value(format!(
                "{} is not one of the options{}: {}.",
                quote(scalar.text().trim()),
                self.subject.of_suffix(),
                list_options(options.as_slice())
            ))),
        }
    }

    /// multi_choice: each item matched as for single_choice; unmatched and
    /// blank ones dropped; duplicates (compared caselessly, custom values
    /// too, first spelling kept) dropped; input order kept.
    fn choices<'v>(
        &self,
        config: &MultiChoiceConfig,
        items: impl Iterator<Item = Option<&'v prost_types::Value>>,
    ) -> Result<Repr, Error> {
        let (options, max_items) = (config.choices(), config.max_items());
        let mut kept = Vec::new();
        let mut seen = HashSet::new();
        let mut unmatched = Vec::new();
        let mut given = 0;
        for (index, item) in items.enumerate() {
            given += 1;
            let scalar = match shape(item) {
                Shape::Scalar(Scalar::Number(n)) if !n.is_finite() => {
                    return Err(self.bad_item(index, "a number that is not finite"));
                }
                Shape::Scalar(scalar) => scalar,
                Shape::Null => return Err(self.bad_item(index, "null")),
                Shape::List(_) => return Err(self.bad_item(index, "a list")),
                Shape::Struct => return Err(self.bad_item(index, "an object")),
            };
            match self.match_choice(options, config.allow_custom(), scalar)? {
                Choice::Keep(value) => {
                    if seen.insert(fold(&value)) {
                        kept.push(value);
                    } else {
                        self.note(Adjustment::DuplicatesDropped {
                            dropped: vec![scalar.text().trim().to_owned()],
                        });
                    }
                }
                Choice::Blank => self.note(Adjustment::OptionsDropped {
                    dropped: vec![scalar.text()],
                }),
                Choice::NoMatch => {
                    self.note(Adjustment::OptionsDropped {
                        dropped: vec![scalar.text().trim().to_owned()],
                    });
                    unmatched.push(scalar);
                }
            }
        }
        if given > 0 && kept.is_empty() {
            let message = if unmatched.is_empty() {
                format!(
                    "Every value given is empty after trimming spaces, so {} has nothing to \
                     store; send an empty list to store no items.",
                    self.subject.noun()
                )
            } else {
                let mut quoted: Vec<String> = unmatched
                    .iter()
                    .take(QUOTED_INPUTS)
                    .map(|s| quote(s.text().trim()))
                    .collect();
                if unmatched.len() > QUOTED_INPUTS {
                    quoted.push(format!("and {} more", unmatched.len() - QUOTED_INPUTS));
                }
                format!(
                    "None of the values given ({}) is one of the options{}: {}.",
                    quoted.join(", "),
                    self.subject.of_suffix(),
                    list_options(options.as_slice())
                )
            };
            return Err(Error::invalid_value(message));
        }
        if kept.len() > max_items as usize {
            return Err(Error::invalid_value(format!(
                "{} items are left after matching options and removing duplicates, but {} \
                 takes at most {max_items}; send fewer.",
                kept.len(),
                self.subject.noun()
            )));
        }
        Ok(Repr::Choices(kept))
    }

    fn bad_item(&self, index: usize, what: &str) -> Error {
        Error::invalid_value(format!(
            "The list item at index {index} is {what}, but {} takes only strings (numbers and \
             booleans count as their text) as items; send {}.",
            self.subject.noun(),
            self.hint()
        ))
    }
}

/// Whether `s` is decimal syntax: `[+-]? (digits (. digits?)? | . digits) ([eE] [+-]? digits)?`.
fn is_decimal(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits_from = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut mantissa = digits_from(&mut i);
    if b.get(i) == Some(&b'.') {
        i += 1;
        mantissa += digits_from(&mut i);
    }
    if mantissa == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits_from(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests;
