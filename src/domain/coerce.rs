//! Coercion of client input (`google.protobuf.Value`) to what a config allows.

use std::collections::HashSet;

use prost_types::value::Kind;

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
    coerce_named(config, value, None)
}

/// [`coerce`], with messages naming the attribute `name` when given.
pub(crate) fn coerce_named(
    config: &AttributeConfig,
    value: Option<&prost_types::Value>,
    name: Option<&str>,
) -> Result<StoredValue, Error> {
    let c = Coercion {
        config,
        subject: Subject(name),
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
    Ok(StoredValue::new(repr))
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
            text.truncate(cut);
        }
        Ok(Repr::Text(text))
    }

    fn number(&self, config: &NumberConfig, scalar: Scalar<'_>) -> Result<Repr, Error> {
        let n = match scalar {
            Scalar::Number(n) => n,
            Scalar::Bool(_) => return Err(self.refuse("true or false")),
            Scalar::String(s) => self.parse_decimal(s)?,
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
                let t = s.trim();
                if t.eq_ignore_ascii_case("true") || t == "1" {
                    Some(true)
                } else if t.eq_ignore_ascii_case("false") || t == "0" {
                    Some(false)
                } else {
                    None
                }
            }
        };
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
        Ok(Repr::Date(date.format(config.include_time())))
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
        if let Some(option) = options.find(trimmed) {
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
                    }
                }
                Choice::Blank => {}
                Choice::NoMatch => unmatched.push(scalar),
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
mod tests {
    use super::*;
    use crate::domain::config::tests::{OPTION_POOL, arb_config};
    use proptest::prelude::*;
    use serde_json::{Value as Json, json};

    fn v(kind: Kind) -> Option<prost_types::Value> {
        Some(prost_types::Value { kind: Some(kind) })
    }
    fn s(text: &str) -> Option<prost_types::Value> {
        v(Kind::StringValue(text.to_owned()))
    }
    fn n(x: f64) -> Option<prost_types::Value> {
        v(Kind::NumberValue(x))
    }
    fn b(x: bool) -> Option<prost_types::Value> {
        v(Kind::BoolValue(x))
    }
    fn null() -> Option<prost_types::Value> {
        v(Kind::NullValue(0))
    }
    fn no_kind() -> Option<prost_types::Value> {
        Some(prost_types::Value { kind: None })
    }
    fn list(items: Vec<Option<prost_types::Value>>) -> Option<prost_types::Value> {
        v(Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(Option::unwrap_or_default).collect(),
        }))
    }
    fn strs(items: &[&str]) -> Option<prost_types::Value> {
        list(items.iter().map(|i| s(i)).collect())
    }
    fn object() -> Option<prost_types::Value> {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("a".to_owned(), n(1.0).unwrap());
        v(Kind::StructValue(prost_types::Struct { fields }))
    }
    fn options(o: &[&str]) -> Vec<String> {
        o.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Expected outcome: the stored JSON, or a reason and a message fragment.
    enum Want {
        Stores(Json),
        Fails(Reason, &'static str),
    }
    use Want::{Fails, Stores};

    const INVALID: Reason = Reason::AttributeValueInvalid;
    const TOO_LONG: Reason = Reason::AttributeValueTooLong;

    fn check(config: &AttributeConfig, cases: Vec<(Option<prost_types::Value>, Want)>) {
        for (input, want) in cases {
            let got = coerce(config, input.as_ref());
            match (got, want) {
                (Ok(stored), Stores(json)) => {
                    assert_eq!(stored.to_json(), json, "{input:?}");
                    assert_eq!(stored.attribute_type(), config.attribute_type());
                }
                (Err(e), Fails(reason, needle)) => {
                    assert_eq!(e.reason(), reason, "{input:?}: {}", e.message());
                    assert!(
                        e.message().contains(needle),
                        "{input:?}: {needle:?} not in {:?}",
                        e.message()
                    );
                    assert_eq!(e.attribute(), None);
                }
                (got, Stores(json)) => panic!("{input:?}: want {json}, got {got:?}"),
                (got, Fails(reason, _)) => panic!("{input:?}: want {reason}, got {got:?}"),
            }
        }
    }

    /// Rows every type shares: null, absent, objects and (except
    /// multi_choice) lists are refused.
    fn shape_rows() -> Vec<(Option<prost_types::Value>, Want)> {
        vec![
            (None, Fails(INVALID, "A value is required; null")),
            (null(), Fails(INVALID, "A value is required")),
            (no_kind(), Fails(INVALID, "A value is required")),
            (object(), Fails(INVALID, "does not accept an object")),
            (n(f64::NAN), Fails(INVALID, "not finite")),
            (n(f64::INFINITY), Fails(INVALID, "not finite")),
        ]
    }

    fn list_rows() -> Vec<(Option<prost_types::Value>, Want)> {
        vec![
            (strs(&["a"]), Fails(INVALID, "does not accept a list")),
            (list(vec![]), Fails(INVALID, "does not accept a list")),
        ]
    }

    fn text(max_length: u32, truncate: bool) -> AttributeConfig {
        AttributeConfig::Text(TextConfig::new(max_length, truncate).unwrap())
    }

    #[test]
    fn text_row() {
        let mut cases = vec![
            (s("hello"), Stores(json!("hello"))),
            (s(""), Stores(json!(""))),
            (s("  padded  "), Stores(json!("  padded  "))),
            (n(42.0), Stores(json!("42"))),
            (n(-0.0), Stores(json!("0"))),
            (n(2.5), Stores(json!("2.5"))),
            (n(0.1), Stores(json!("0.1"))),
            (n(1e21), Stores(json!("1e+21"))),
            (b(true), Stores(json!("true"))),
            (b(false), Stores(json!("false"))),
            (s(&"a".repeat(255)), Stores(json!("a".repeat(255)))),
            (s(&"é".repeat(255)), Stores(json!("é".repeat(255)))),
            (s(&"😀".repeat(255)), Stores(json!("😀".repeat(255)))),
            (
                s(&"a".repeat(256)),
                Fails(
                    TOO_LONG,
                    "256 characters long but this attribute allows at most 255",
                ),
            ),
            (s(&"😀".repeat(256)), Fails(TOO_LONG, "256 characters")),
            (s("a\0b"), Fails(INVALID, "NUL character")),
        ];
        cases.extend(shape_rows());
        cases.extend(list_rows());
        check(
            &AttributeConfig::default_for(AttributeType::Text).unwrap(),
            cases,
        );

        check(
            &text(3, false),
            vec![
                (s("abc"), Stores(json!("abc"))),
                (s("éèê"), Stores(json!("éèê"))),
                (s("abcd"), Fails(TOO_LONG, "4 characters long")),
                (n(1234.0), Fails(TOO_LONG, "4 characters long")),
            ],
        );
        check(
            &text(3, true),
            vec![
                (s("abcdef"), Stores(json!("abc"))),
                (s("é😀ü🎉x"), Stores(json!("é😀ü"))),
                (s("ab😀🎉"), Stores(json!("ab😀"))),
                (s("ab"), Stores(json!("ab"))),
                (b(false), Stores(json!("fal"))),
            ],
        );
    }

    fn number(min: Option<f64>, max: Option<f64>, integer: bool) -> AttributeConfig {
        AttributeConfig::Number(NumberConfig::new(min, max, integer).unwrap())
    }

    #[test]
    fn number_row() {
        let mut cases = vec![
            (n(42.0), Stores(json!(42.0))),
            (n(-2.5), Stores(json!(-2.5))),
            (n(-0.0), Stores(json!(0.0))),
            (n(f64::MAX), Stores(json!(f64::MAX))),
            (s("42"), Stores(json!(42.0))),
            (s("  -2.5\t"), Stores(json!(-2.5))),
            (s("+7"), Stores(json!(7.0))),
            (s(".5"), Stores(json!(0.5))),
            (s("5."), Stores(json!(5.0))),
            (s("1e3"), Stores(json!(1000.0))),
            (s("1.5E-2"), Stores(json!(0.015))),
            (s("-1e+2"), Stores(json!(-100.0))),
            (s("007"), Stores(json!(7.0))),
            (s(""), Fails(INVALID, "\"\" is not a decimal number")),
            (s("   "), Fails(INVALID, "not a decimal number")),
            (s("NaN"), Fails(INVALID, "not a decimal number")),
            (s("inf"), Fails(INVALID, "not a decimal number")),
            (s("-Infinity"), Fails(INVALID, "not a decimal number")),
            (s("0x1A"), Fails(INVALID, "not a decimal number")),
            (s("1,5"), Fails(INVALID, "not a decimal number")),
            (s("."), Fails(INVALID, "not a decimal number")),
            (s("1e"), Fails(INVALID, "not a decimal number")),
            (s("e5"), Fails(INVALID, "not a decimal number")),
            (s("--1"), Fails(INVALID, "not a decimal number")),
            (s("1 2"), Fails(INVALID, "not a decimal number")),
            (s("１２"), Fails(INVALID, "not a decimal number")),
            (s("1e400"), Fails(INVALID, "too large")),
            (b(true), Fails(INVALID, "does not accept true or false")),
        ];
        cases.extend(shape_rows());
        cases.extend(list_rows());
        check(
            &AttributeConfig::default_for(AttributeType::Number).unwrap(),
            cases,
        );

        check(
            &number(Some(0.0), Some(10.0), false),
            vec![
                (n(0.0), Stores(json!(0.0))),
                (n(10.0), Stores(json!(10.0))),
                (s("9.99"), Stores(json!(9.99))),
                (n(-0.0), Stores(json!(0.0))),
                (
                    n(-0.001),
                    Fails(
                        INVALID,
                        "-0.001 is out of range: this attribute accepts numbers from 0 to 10",
                    ),
                ),
                (n(10.000001), Fails(INVALID, "out of range")),
                (s("11"), Fails(INVALID, "out of range")),
            ],
        );
        check(
            &number(Some(1.5), None, false),
            vec![
                (n(1.5), Stores(json!(1.5))),
                (n(1.4), Fails(INVALID, "accepts numbers at least 1.5")),
            ],
        );
        check(
            &number(None, Some(-1.0), false),
            vec![(n(0.0), Fails(INVALID, "accepts numbers at most -1"))],
        );
        check(
            &number(None, None, true),
            vec![
                (n(3.0), Stores(json!(3.0))),
                (s("3.0"), Stores(json!(3.0))),
                (s("1e2"), Stores(json!(100.0))),
                (n(1e300), Stores(json!(1e300))),
                (n(2.5), Fails(INVALID, "2.5 is not a whole number")),
                (s("0.1"), Fails(INVALID, "not a whole number")),
            ],
        );
    }

    #[test]
    fn boolean_row() {
        let mut cases = vec![
            (b(true), Stores(json!(true))),
            (b(false), Stores(json!(false))),
            (s("true"), Stores(json!(true))),
            (s("TRUE"), Stores(json!(true))),
            (s(" False "), Stores(json!(false))),
            (s("1"), Stores(json!(true))),
            (s("0"), Stores(json!(false))),
            (s(" 1\n"), Stores(json!(true))),
            (n(1.0), Stores(json!(true))),
            (n(0.0), Stores(json!(false))),
            (n(-0.0), Stores(json!(false))),
            (n(2.0), Fails(INVALID, "2 is not a boolean")),
            (n(0.5), Fails(INVALID, "not a boolean")),
            (s("yes"), Fails(INVALID, "\"yes\" is not a boolean")),
            (s(""), Fails(INVALID, "not a boolean")),
            (s("01"), Fails(INVALID, "not a boolean")),
            (s("1.0"), Fails(INVALID, "not a boolean")),
            (s("t"), Fails(INVALID, "not a boolean")),
        ];
        cases.extend(shape_rows());
        cases.extend(list_rows());
        check(&AttributeConfig::Boolean, cases);
    }

    #[test]
    fn date_row() {
        let mut cases = vec![
            (s("2024-05-01"), Stores(json!("2024-05-01"))),
            (s(" 2024-05-01 "), Stores(json!("2024-05-01"))),
            (s("2024-05-01T23:30:00-02:00"), Stores(json!("2024-05-02"))),
            (s("2024-05-01T09:30:00.250Z"), Stores(json!("2024-05-01"))),
            (n(1714555800.0), Stores(json!("2024-05-01"))),
            (n(-1.0), Stores(json!("1969-12-31"))),
            (
                s("2024-02-30"),
                Fails(INVALID, "2024-02-30 is not a day of the calendar"),
            ),
            (
                s("0000-12-31"),
                Fails(INVALID, "outside the years 0001 to 9999"),
            ),
            (
                s("May 1, 2024"),
                Fails(INVALID, "neither a date YYYY-MM-DD nor an RFC 3339"),
            ),
            (s(""), Fails(INVALID, "neither")),
            (n(1e13), Fails(INVALID, "outside the years")),
            (b(true), Fails(INVALID, "does not accept true or false")),
        ];
        cases.extend(shape_rows());
        cases.extend(list_rows());
        check(
            &AttributeConfig::default_for(AttributeType::Date).unwrap(),
            cases,
        );

        check(
            &AttributeConfig::Date(DateConfig::new(true)),
            vec![
                (s("2024-05-01"), Stores(json!("2024-05-01T00:00:00Z"))),
                (
                    s("2024-05-01T09:30:00+02:00"),
                    Stores(json!("2024-05-01T07:30:00Z")),
                ),
                (
                    s("2024-05-01T09:30:00.5Z"),
                    Stores(json!("2024-05-01T09:30:00.500Z")),
                ),
                (
                    s("2024-05-01T09:30:00.1239Z"),
                    Stores(json!("2024-05-01T09:30:00.123Z")),
                ),
                (
                    s("2024-05-01T09:30:00.000Z"),
                    Stores(json!("2024-05-01T09:30:00Z")),
                ),
                (n(1714555800.25), Stores(json!("2024-05-01T09:30:00.250Z"))),
                (n(0.0), Stores(json!("1970-01-01T00:00:00Z"))),
                (s("10000-01-01"), Fails(INVALID, "neither")),
            ],
        );
    }

    fn single(o: &[&str], allow_custom: bool) -> AttributeConfig {
        AttributeConfig::SingleChoice(ChoiceConfig::new(options(o), allow_custom).unwrap())
    }

    #[test]
    fn single_choice_row() {
        let mut cases = vec![
            // The seed's example.
            (s("teacher"), Stores(json!("teacher"))),
            (s("  Student "), Stores(json!("student"))),
            (s("TEACHER"), Stores(json!("teacher"))),
            (
                s("cooking"),
                Fails(
                    INVALID,
                    "\"cooking\" is not one of the options: teacher, student.",
                ),
            ),
            (s(""), Fails(INVALID, "\"\" is not one of the options")),
            (n(1.0), Fails(INVALID, "\"1\" is not one of the options")),
        ];
        cases.extend(shape_rows());
        cases.extend(list_rows());
        check(&single(&["teacher", "student"], false), cases);

        check(
            &single(&["é", "Straße", "ΟΔΟΣ", "42", "true", "2.5"], false),
            vec![
                (s("É"), Stores(json!("é"))),
                (s("STRASSE"), Stores(json!("Straße"))),
                (s("οδος"), Stores(json!("ΟΔΟΣ"))),
                (n(42.0), Stores(json!("42"))),
                (n(2.5), Stores(json!("2.5"))),
                (b(true), Stores(json!("true"))),
                (s("TRUE"), Stores(json!("true"))),
                (s("e"), Fails(INVALID, "not one of the options")),
            ],
        );
        check(
            &single(&["teacher", "student"], true),
            vec![
                (s(" Teacher"), Stores(json!("teacher"))),
                (s("  cooking  "), Stores(json!("cooking"))),
                (s("Cooking Class"), Stores(json!("Cooking Class"))),
                (n(7.0), Stores(json!("7"))),
                (s(&"é".repeat(255)), Stores(json!("é".repeat(255)))),
                (
                    s(&format!(" {} ", "é".repeat(255))),
                    Stores(json!("é".repeat(255))),
                ),
                (
                    s(&"é".repeat(256)),
                    Fails(
                        TOO_LONG,
                        "is 256 characters long but custom values of this attribute can have at most 255",
                    ),
                ),
                (s(""), Fails(INVALID, "empty after trimming")),
                (s(" \t "), Fails(INVALID, "empty after trimming")),
            ],
        );

        let many: Vec<String> = (0..25).map(|i| format!("o{i}")).collect();
        let config = AttributeConfig::SingleChoice(ChoiceConfig::new(many, false).unwrap());
        check(
            &config,
            vec![(
                s("x"),
                Fails(
                    INVALID,
                    "options: o0, o1, o2, o3, o4, o5, o6, o7, o8, o9 and 15 more.",
                ),
            )],
        );
    }

    fn multi(o: &[&str], allow_custom: bool, max_items: u32) -> AttributeConfig {
        AttributeConfig::MultiChoice(
            MultiChoiceConfig::new(options(o), allow_custom, max_items).unwrap(),
        )
    }

    #[test]
    fn multi_choice_row() {
        let topics = multi(&["history", "math", "science", "art"], false, 100);
        check(
            &topics,
            vec![
                // The seed's example.
                (
                    strs(&["history", "math", "cooking"]),
                    Stores(json!(["history", "math"])),
                ),
                (
                    strs(&["history", "math"]),
                    Stores(json!(["history", "math"])),
                ),
                (
                    strs(&["Math", " HISTORY "]),
                    Stores(json!(["math", "history"])),
                ),
                (
                    strs(&["math", "MATH", " math", "art", "math"]),
                    Stores(json!(["math", "art"])),
                ),
                (strs(&[]), Stores(json!([]))),
                (s("Art"), Stores(json!(["art"]))),
                (strs(&["", "art"]), Stores(json!(["art"]))),
                (
                    strs(&["cooking"]),
                    Fails(
                        INVALID,
                        "None of the values given (\"cooking\") is one of the options: history, math, science, art.",
                    ),
                ),
                (s("cooking"), Fails(INVALID, "None of the values given")),
                (
                    strs(&["a", "b", "c", "d", "e"]),
                    Fails(INVALID, "(\"a\", \"b\", \"c\", and 2 more)"),
                ),
                (
                    list(vec![s("math"), null()]),
                    Fails(INVALID, "index 1 is null"),
                ),
                (list(vec![no_kind()]), Fails(INVALID, "index 0 is null")),
                (
                    list(vec![s("math"), strs(&["art"])]),
                    Fails(INVALID, "index 1 is a list"),
                ),
                (list(vec![object()]), Fails(INVALID, "index 0 is an object")),
                (
                    list(vec![n(f64::NAN)]),
                    Fails(INVALID, "index 0 is a number that is not finite"),
                ),
                (None, Fails(INVALID, "A value is required")),
                (null(), Fails(INVALID, "A value is required")),
                (object(), Fails(INVALID, "does not accept an object")),
                (n(f64::NAN), Fails(INVALID, "not finite")),
            ],
        );
        check(
            &multi(&["é", "1", "true"], false, 100),
            vec![
                (strs(&["É", "é"]), Stores(json!(["é"]))),
                (
                    list(vec![n(1.0), b(true), s("TRUE")]),
                    Stores(json!(["1", "true"])),
                ),
                (b(true), Stores(json!(["true"]))),
            ],
        );
        check(
            &multi(&["a", "b", "c"], false, 2),
            vec![
                (strs(&["a", "b"]), Stores(json!(["a", "b"]))),
                (strs(&["a", "b", "a", "x"]), Stores(json!(["a", "b"]))),
                (
                    strs(&["c", "b", "a"]),
                    Fails(
                        INVALID,
                        "3 items are left after matching options and removing duplicates, but this attribute takes at most 2",
                    ),
                ),
            ],
        );
        check(
            &multi(&["history", "math"], true, 3),
            vec![
                (
                    strs(&[" Cooking ", "math", "cooking", "COOKING", "History"]),
                    Stores(json!(["Cooking", "math", "history"])),
                ),
                (strs(&["", "  ", "math"]), Stores(json!(["math"]))),
                (
                    strs(&["", " "]),
                    Fails(INVALID, "Every value given is empty after trimming"),
                ),
                (list(vec![n(2.5)]), Stores(json!(["2.5"]))),
                (
                    strs(&[&"x".repeat(256)]),
                    Fails(TOO_LONG, "256 characters long"),
                ),
                (
                    strs(&["a", "b", "c", "d"]),
                    Fails(INVALID, "4 items are left"),
                ),
            ],
        );
    }

    #[test]
    fn messages_name_the_attribute_when_it_is_known() {
        let persona = single(&["teacher", "student"], false);
        let e = coerce_named(&persona, s("cooking").as_ref(), Some("persona")).unwrap_err();
        assert_eq!(
            e.message(),
            "\"cooking\" is not one of the options of \"persona\": teacher, student."
        );
        let e = coerce_named(&persona, None, Some("persona")).unwrap_err();
        assert!(
            e.message()
                .starts_with("A value is required for \"persona\";"),
            "{}",
            e.message()
        );
        let e = coerce_named(&text(255, false), object().as_ref(), Some("bio")).unwrap_err();
        assert_eq!(
            e.message(),
            "\"bio\" is a text attribute and does not accept an object; send a string."
        );
        let e = coerce(&number(None, None, false), strs(&["1"]).as_ref()).unwrap_err();
        assert_eq!(
            e.message(),
            "This is a number attribute and does not accept a list; send a number such as 42 or 2.5."
        );
    }

    /// Strings likely to matter: options in other cases and padding,
    /// numbers, booleans, dates, long text, and anything at all.
    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            (
                proptest::sample::select(OPTION_POOL),
                any::<bool>(),
                " {0,2}",
                "[ \t]{0,2}"
            )
                .prop_map(|(o, upper, l, r)| {
                    let o = if upper {
                        o.to_uppercase()
                    } else {
                        o.to_owned()
                    };
                    format!("{l}{o}{r}")
                }),
            " ?[+-]?[0-9]{0,4}(\\.[0-9]{0,3})?([eE][+-]?[0-9]{1,3})? ?",
            "[tT][rR][uU][eE]|[fF][aA][lL][sS][eE]|1|0| true |yes",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2}))?",
            "(000[1-9]|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-9]|3[01])([Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))?",
            "[a-zé😀 ]{20,60}",
        ]
    }

    fn arb_leaf() -> impl Strategy<Value = prost_types::Value> {
        let kind = prop_oneof![
            Just(Kind::NullValue(0)),
            any::<bool>().prop_map(Kind::BoolValue),
            any::<f64>().prop_map(Kind::NumberValue),
            (-3i32..50).prop_map(|i| Kind::NumberValue(f64::from(i))),
            (-1e10f64..1e10).prop_map(Kind::NumberValue),
            arb_string().prop_map(Kind::StringValue),
            arb_string().prop_map(Kind::StringValue),
        ];
        prop_oneof![
            1 => Just(prost_types::Value { kind: None }),
            20 => kind.prop_map(|k| prost_types::Value { kind: Some(k) }),
        ]
    }

    /// Arbitrary input, nested lists and objects included; `None` is "no value".
    fn arb_input() -> impl Strategy<Value = Option<prost_types::Value>> {
        let nested = arb_leaf().prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(|values| {
                    prost_types::Value {
                        kind: Some(Kind::ListValue(prost_types::ListValue { values })),
                    }
                }),
                proptest::collection::btree_map("[a-z]{0,3}", inner, 0..4).prop_map(|fields| {
                    prost_types::Value {
                        kind: Some(Kind::StructValue(prost_types::Struct { fields })),
                    }
                }),
            ]
        });
        // Flat lists of strings are what multi_choice mostly receives.
        let strings =
            proptest::collection::vec(arb_string(), 0..8).prop_map(|items| prost_types::Value {
                kind: Some(Kind::ListValue(prost_types::ListValue {
                    values: items
                        .into_iter()
                        .map(|s| prost_types::Value {
                            kind: Some(Kind::StringValue(s)),
                        })
                        .collect(),
                })),
            });
        prop_oneof![
            1 => Just(None),
            8 => arb_leaf().prop_map(Some),
            4 => strings.prop_map(Some),
            3 => nested.prop_map(Some),
        ]
    }

    /// Input shaped for `config`, so that many cases get past the type check
    /// and exercise bounds, matching and de-duplication.
    fn arb_input_for(config: &AttributeConfig) -> BoxedStrategy<Option<prost_types::Value>> {
        let string = |s: String| v(Kind::StringValue(s));
        let with_case_and_padding = |o: String| {
            (any::<bool>(), " {0,2}", "[ \t]{0,2}").prop_map(move |(upper, l, r)| {
                let o = if upper { o.to_uppercase() } else { o.clone() };
                format!("{l}{o}{r}")
            })
        };
        match config {
            AttributeConfig::Number(c) => {
                let lo = c.min().unwrap_or(-1e9);
                let hi = c.max().unwrap_or(1e9);
                (lo..=hi, any::<bool>(), any::<bool>())
                    .prop_map(move |(x, round, as_text)| {
                        let x = if round { x.round() } else { x };
                        if as_text { s(&format!(" {x} ")) } else { n(x) }
                    })
                    .boxed()
            }
            AttributeConfig::SingleChoice(c) => proptest::sample::select(c.options().to_vec())
                .prop_flat_map(with_case_and_padding)
                .prop_map(string)
                .boxed(),
            AttributeConfig::MultiChoice(c) => {
                let item = prop_oneof![
                    3 => proptest::sample::select(c.options().to_vec())
                        .prop_flat_map(with_case_and_padding),
                    1 => arb_string(),
                    // Custom values that differ only in case and padding.
                    2 => " ?([cC][oO][oO][kK][iI][nN][gG]|[üÜ][nN][ïÏ]) ?",
                ];
                proptest::collection::vec(item, 0..5)
                    .prop_map(|items| list(items.into_iter().map(|i| s(&i)).collect()))
                    .boxed()
            }
            AttributeConfig::Boolean => prop_oneof![
                any::<bool>().prop_map(b),
                (0..=1).prop_map(|i| n(f64::from(i))),
                " ?([tT][rR][uU][eE]|[fF][aA][lL][sS][eE]|1|0) ?".prop_map(string),
            ]
            .boxed(),
            AttributeConfig::Date(_) => prop_oneof![
                (-7e10f64..2e11).prop_map(n),
                "(000[1-9]|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])([Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))?"
                    .prop_map(string),
            ]
            .boxed(),
            AttributeConfig::Text(_) => arb_string().prop_map(string).boxed(),
        }
    }

    /// A config and an input for it: half generic, half shaped for it.
    fn arb_case() -> impl Strategy<Value = (AttributeConfig, Option<prost_types::Value>)> {
        arb_config().prop_flat_map(|config| {
            let input = prop_oneof![arb_input(), arb_input_for(&config)];
            (Just(config), input)
        })
    }

    /// Whether `value` is something `config` allows to be stored.
    fn satisfies(config: &AttributeConfig, value: &StoredValue) -> Result<(), String> {
        let ok = |cond: bool, what: &str| {
            if cond {
                Ok(())
            } else {
                Err(format!("{what}: {value:?} for {config:?}"))
            }
        };
        let choice_ok = |options: &ChoiceOptions, allow_custom: bool, item: &str| {
            options.as_slice().iter().any(|o| o == item)
                || (allow_custom
                    && item.trim() == item
                    && !item.is_empty()
                    && char_len(item) <= MAX_CUSTOM_CHARS
                    && options.find(item).is_none())
        };
        ok(value.attribute_type() == config.attribute_type(), "type")?;
        match config {
            AttributeConfig::Text(c) => ok(
                char_len(value.as_str().unwrap()) <= c.max_length() as usize,
                "max_length",
            ),
            AttributeConfig::Number(c) => {
                let n = value.as_f64().unwrap();
                ok(
                    n.is_finite() && !(n == 0.0 && n.is_sign_negative()),
                    "finite",
                )?;
                ok(
                    c.min().is_none_or(|lo| n >= lo) && c.max().is_none_or(|hi| n <= hi),
                    "range",
                )?;
                ok(!c.integer() || n.fract() == 0.0, "integer")
            }
            AttributeConfig::Boolean => ok(value.as_bool().is_some(), "bool"),
            AttributeConfig::Date(c) => {
                let text = value.as_str().unwrap();
                let reparsed = DateInput::parse(text).map(|d| d.format(c.include_time()));
                ok(reparsed.as_deref() == Ok(text), "normalized date")?;
                ok((text.len() == 10) != c.include_time(), "date shape")
            }
            AttributeConfig::SingleChoice(c) => ok(
                choice_ok(c.choices(), c.allow_custom(), value.as_str().unwrap()),
                "option",
            ),
            AttributeConfig::MultiChoice(c) => {
                let items = value.as_list().unwrap();
                ok(items.len() <= c.max_items() as usize, "max_items")?;
                let folded: HashSet<String> = items.iter().map(|i| fold(i)).collect();
                ok(folded.len() == items.len(), "distinct")?;
                ok(
                    items
                        .iter()
                        .all(|i| choice_ok(c.choices(), c.allow_custom(), i)),
                    "options",
                )
            }
        }
    }

    proptest! {
        #[test]
        fn coercion_stores_only_what_the_definition_allows_and_is_idempotent(
            (config, input) in arb_case(),
        ) {
            match coerce(&config, input.as_ref()) {
                Ok(stored) => {
                    satisfies(&config, &stored).map_err(TestCaseError::fail)?;
                    let again = coerce(&config, Some(&stored.to_proto_value()));
                    prop_assert_eq!(again.as_ref(), Ok(&stored));
                    let read_back = StoredValue::from_json(config.attribute_type(), &stored.to_json());
                    prop_assert_eq!(read_back.as_ref(), Some(&stored));
                }
                Err(e) => {
                    prop_assert!(
                        matches!(e.reason(), Reason::AttributeValueInvalid | Reason::AttributeValueTooLong),
                        "unexpected reason {}", e.reason()
                    );
                    prop_assert!(e.message().ends_with('.'), "not a sentence: {}", e.message());
                }
            }
        }

        #[test]
        fn truncated_text_is_a_prefix_of_at_most_max_length(
            max_length in 1u32..20,
            input in any::<String>(),
        ) {
            let stored = coerce(&text(max_length, true), s(&input).as_ref()).unwrap();
            let got = stored.as_str().unwrap();
            prop_assert!(input.starts_with(got));
            prop_assert_eq!(char_len(got), char_len(&input).min(max_length as usize));
        }

        #[test]
        fn canonical_number_text_reads_back_as_the_same_number(
            x in any::<f64>().prop_filter("finite", |x| x.is_finite()),
        ) {
            let as_text = coerce(&text(65535, false), n(x).as_ref()).unwrap();
            let back = coerce(&number(None, None, false), Some(&as_text.to_proto_value())).unwrap();
            prop_assert_eq!(back.as_f64(), Some(x + 0.0));
        }
    }
}
