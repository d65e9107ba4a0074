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

#[test]
fn each_adjustment_is_reported_where_coercion_makes_it() {
    use crate::domain::Adjustment::*;
    let text = AttributeConfig::Text(TextConfig::default());
    let short = AttributeConfig::Text(TextConfig::new(3, true).unwrap());
    let number = AttributeConfig::Number(NumberConfig::default());
    let boolean = AttributeConfig::Boolean;
    let day = AttributeConfig::Date(DateConfig::new(false));
    let instant = AttributeConfig::Date(DateConfig::new(true));
    let single = AttributeConfig::SingleChoice(
        ChoiceConfig::new(options(&["teacher", "student"]), false).unwrap(),
    );
    let multi = AttributeConfig::MultiChoice(
        MultiChoiceConfig::new(options(&["history", "math"]), false, 100).unwrap(),
    );
    let cases: Vec<(
        &AttributeConfig,
        Option<prost_types::Value>,
        Vec<Adjustment>,
    )> = vec![
        (&text, s(" as given "), vec![]),
        (&text, n(42.0), vec![Converted]),
        (&text, b(true), vec![Converted]),
        (&short, s("abcdef"), vec![Truncated { original_length: 6 }]),
        (&short, s("abc"), vec![]),
        (&number, n(42.0), vec![]),
        (&number, s("42"), vec![Converted]),
        (&number, s(" 42 "), vec![Trimmed, Converted]),
        (&boolean, b(true), vec![]),
        (&boolean, s("TRUE"), vec![Converted]),
        (&boolean, n(0.0), vec![Converted]),
        (&day, s("2024-05-01"), vec![]),
        (&day, s(" 2024-05-01 "), vec![Trimmed]),
        (&day, s("2024-05-01T23:30:00-02:00"), vec![Converted]),
        (&day, n(0.0), vec![Converted]),
        (&instant, s("2024-05-01T09:30:00Z"), vec![]),
        (&instant, s("2024-05-01T11:30:00+02:00"), vec![Converted]),
        (&single, s("teacher"), vec![]),
        (&single, s("Teacher"), vec![CaseNormalized]),
        (&single, s(" teacher "), vec![Trimmed]),
        (&multi, strs(&["history", "math"]), vec![]),
        (
            &multi,
            strs(&["history", "math", "cooking"]),
            vec![OptionsDropped {
                dropped: vec!["cooking".into()],
            }],
        ),
        (
            &multi,
            strs(&["math", "MATH", "math"]),
            vec![
                CaseNormalized,
                DuplicatesDropped {
                    dropped: vec!["MATH".into(), "math".into()],
                },
            ],
        ),
        (&multi, strs(&[" Math "]), vec![Trimmed, CaseNormalized]),
    ];
    for (config, input, want) in cases {
        let got = coerce_named(config, input.as_ref(), None).unwrap();
        assert_eq!(got.adjustments, want, "{config:?} {input:?}");
    }
}
