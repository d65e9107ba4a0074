use super::*;
use crate::domain::error::Reason;
use proptest::prelude::*;

fn strings(options: &[&str]) -> Vec<String> {
    options.iter().map(|s| (*s).to_owned()).collect()
}

/// Asserts a definition error whose message starts with `field`.
fn assert_definition_error<T: std::fmt::Debug>(
    result: Result<T, Error>,
    field: &str,
    needle: &str,
) {
    let e = result.unwrap_err();
    assert_eq!(e.reason(), Reason::InvalidAttributeDefinition);
    assert!(
        e.message().starts_with(&format!("{field}: ")),
        "expected field {field}: {}",
        e.message()
    );
    assert_eq!(e.field(), Some(field), "{}", e.message());
    assert!(
        e.message().contains(needle),
        "{needle:?} in {}",
        e.message()
    );
}

#[test]
fn attribute_types_round_trip_through_their_names() {
    for t in AttributeType::ALL {
        assert_eq!(AttributeType::parse(t.as_str()).unwrap(), t);
        assert_eq!(t.to_string(), t.as_str());
    }
    assert_definition_error(AttributeType::parse("Text"), "type", "\"Text\" is not");
    assert_definition_error(AttributeType::parse("string"), "type", "single_choice");
}

#[test]
fn text_config_max_length_is_1_to_65535_and_defaults_to_255() {
    let default = TextConfig::default();
    assert_eq!((default.max_length(), default.truncate()), (255, false));
    assert_eq!(TextConfig::new(1, true).unwrap().max_length(), 1);
    assert_eq!(TextConfig::new(65535, false).unwrap().max_length(), 65535);
    assert_definition_error(
        TextConfig::new(0, false),
        "config.max_length",
        "0 is out of range",
    );
    assert_definition_error(TextConfig::new(65536, false), "config.max_length", "65536");
}

#[test]
fn number_config_bounds_are_finite_and_ordered() {
    assert!(NumberConfig::new(None, None, false).is_ok());
    assert!(NumberConfig::new(Some(1.0), Some(1.0), true).is_ok());
    assert!(NumberConfig::new(Some(-1.5), None, false).is_ok());
    assert_definition_error(
        NumberConfig::new(Some(f64::NAN), None, false),
        "config.min",
        "not a finite number",
    );
    assert_definition_error(
        NumberConfig::new(None, Some(f64::INFINITY), false),
        "config.max",
        "not a finite number",
    );
    assert_definition_error(
        NumberConfig::new(Some(2.0), Some(1.0), false),
        "config.min",
        "2 is greater than config.max 1",
    );
    assert_definition_error(
        NumberConfig::new(Some(0.2), Some(0.8), true),
        "config.integer",
        "no whole number lies between min 0.2 and max 0.8",
    );
    assert!(NumberConfig::new(Some(0.2), Some(0.8), false).is_ok());
    let zero = NumberConfig::new(Some(-0.0), None, false).unwrap().min();
    assert!(zero.is_some_and(f64::is_sign_positive), "-0 is stored as 0");
}

#[test]
fn option_lists_follow_every_rule() {
    assert_eq!(
        ChoiceConfig::new(strings(&["teacher", "student"]), false)
            .unwrap()
            .options(),
        ["teacher", "student"]
    );
    let max_len = "é".repeat(255);
    assert!(ChoiceConfig::new(vec![max_len], false).is_ok());
    let thousand: Vec<String> = (0..1000).map(|i| format!("o{i}")).collect();
    assert!(ChoiceConfig::new(thousand.clone(), false).is_ok());

    assert_definition_error(
        ChoiceConfig::new(vec![], false),
        "config.options",
        "no options",
    );
    let too_many: Vec<String> = (0..1001).map(|i| format!("o{i}")).collect();
    assert_definition_error(
        ChoiceConfig::new(too_many, false),
        "config.options",
        "1001 options given; at most 1000",
    );
    assert_definition_error(
        ChoiceConfig::new(strings(&["a", ""]), false),
        "config.options[1]",
        "blank",
    );
    assert_definition_error(
        ChoiceConfig::new(strings(&["a", " \t"]), false),
        "config.options[1]",
        "blank",
    );
    assert_definition_error(
        ChoiceConfig::new(strings(&[" math"]), false),
        "config.options[0]",
        "leading or trailing whitespace",
    );
    assert_definition_error(
        ChoiceConfig::new(strings(&["math\u{a0}"]), false),
        "config.options[0]",
        "leading or trailing whitespace",
    );
    assert_definition_error(
        ChoiceConfig::new(vec!["é".repeat(256)], false),
        "config.options[0]",
        "256 characters long; at most 255",
    );
    assert_definition_error(
        ChoiceConfig::new(strings(&["a\nb"]), false),
        "config.options[0]",
        "U+000A",
    );
    assert_definition_error(
        ChoiceConfig::new(strings(&["math", "art", "Math"]), false),
        "config.options[2]",
        "\"Math\" duplicates \"math\" (config.options[0]); options are compared case-insensitively",
    );
    assert_definition_error(
        ChoiceConfig::new(strings(&["é", "É"]), false),
        "config.options[1]",
        "duplicates",
    );
    assert_definition_error(
        MultiChoiceConfig::new(strings(&["straße", "STRASSE"]), false, 5),
        "config.options[1]",
        "duplicates",
    );
}

#[test]
fn multi_choice_max_items_is_at_least_one_and_defaults_to_100() {
    assert_definition_error(
        MultiChoiceConfig::new(strings(&["a"]), false, 0),
        "config.max_items",
        "at least 1",
    );
    assert_eq!(
        MultiChoiceConfig::new(strings(&["a"]), true, 1)
            .unwrap()
            .max_items(),
        1
    );
    let AttributeConfig::MultiChoice(c) =
        AttributeConfig::from_json(AttributeType::MultiChoice, &json!({"options": ["a"]})).unwrap()
    else {
        panic!("wrong type")
    };
    assert_eq!((c.max_items(), c.allow_custom()), (100, false));
    assert_definition_error(
        MultiChoiceConfig::new(strings(&["a", "A"]), false, 1),
        "config.options[1]",
        "duplicates",
    );
}

#[test]
fn configs_read_from_json_take_defaults_and_refuse_bad_fields() {
    let text = AttributeConfig::default_for(AttributeType::Text).unwrap();
    assert_eq!(text, AttributeConfig::Text(TextConfig::default()));
    assert_eq!(
        AttributeConfig::from_json(AttributeType::Text, &Json::Null).unwrap(),
        text
    );
    assert_eq!(
        AttributeConfig::default_for(AttributeType::Number).unwrap(),
        AttributeConfig::Number(NumberConfig::default())
    );
    assert_eq!(
        AttributeConfig::default_for(AttributeType::Boolean).unwrap(),
        AttributeConfig::Boolean
    );
    assert_eq!(
        AttributeConfig::default_for(AttributeType::Date).unwrap(),
        AttributeConfig::Date(DateConfig::new(false))
    );
    assert_definition_error(
        AttributeConfig::default_for(AttributeType::SingleChoice),
        "config.options",
        "no options",
    );
    let cases = [
        (
            AttributeType::Text,
            json!({"maxLength": 3}),
            "config.maxLength",
            "unknown field",
        ),
        (
            AttributeType::Text,
            json!({"max_length": "3"}),
            "config.max_length",
            "whole number",
        ),
        (
            AttributeType::Text,
            json!({"max_length": 2.5}),
            "config.max_length",
            "whole number",
        ),
        (
            AttributeType::Text,
            json!({"max_length": 0}),
            "config.max_length",
            "out of range",
        ),
        (
            AttributeType::Text,
            json!({"truncate": 1}),
            "config.truncate",
            "true or false",
        ),
        (
            AttributeType::Number,
            json!({"min": "1"}),
            "config.min",
            "a number",
        ),
        (
            AttributeType::Number,
            json!({"min": 3, "max": 1}),
            "config.min",
            "greater",
        ),
        (
            AttributeType::Boolean,
            json!({"x": 1}),
            "config.x",
            "no config fields",
        ),
        (
            AttributeType::Date,
            json!([]),
            "config",
            "expected an object",
        ),
        (
            AttributeType::SingleChoice,
            json!({"options": "a"}),
            "config.options",
            "list of strings",
        ),
        (
            AttributeType::SingleChoice,
            json!({"options": ["a", 1]}),
            "config.options[1]",
            "a string",
        ),
        (
            AttributeType::MultiChoice,
            json!({"options": ["a"], "max_items": -1}),
            "config.max_items",
            "whole number",
        ),
    ];
    for (t, json, field, needle) in cases {
        assert_definition_error(AttributeConfig::from_json(t, &json), field, needle);
    }
}

#[test]
fn each_type_reads_exactly_its_config_fields() {
    for t in AttributeType::ALL {
        let choice = matches!(t, AttributeType::SingleChoice | AttributeType::MultiChoice);
        let with = |field: &str, value: Json| {
            let mut json = if choice {
                json!({"options": ["a"]})
            } else {
                json!({})
            };
            json[field] = value;
            AttributeConfig::from_json(t, &json)
        };
        for &field in t.config_fields() {
            // Each listed field is read: null is its default...
            if field != "options" {
                assert!(with(field, Json::Null).is_ok(), "{t}.{field}");
            }
            // ...and a value of the wrong type is refused at that field.
            let e = with(field, json!({})).unwrap_err();
            assert_eq!(e.field(), Some(format!("config.{field}").as_str()));
            assert!(e.detail().starts_with("expected "), "{}", e.message());
            assert!(e.detail().ends_with(", got {}."), "{}", e.message());
        }
        let e = with("zzz", Json::Null).unwrap_err();
        assert_eq!(e.field(), Some("config.zzz"), "{t}: {}", e.message());
    }
    assert!(AttributeType::Boolean.config_fields().is_empty());
    assert_eq!(
        AttributeType::MultiChoice.config_fields(),
        ["options", "allow_custom", "max_items"]
    );
}

#[test]
fn config_json_errors_keep_their_wording() {
    let cases = [
        (
            AttributeType::Text,
            json!({"max_length": "3"}),
            "config.max_length: expected a whole number from 0 to 4294967295, got \"3\".",
        ),
        (
            AttributeType::MultiChoice,
            json!({"options": ["a"], "max_items": 4294967296u64}),
            "config.max_items: expected a whole number from 0 to 4294967295, got 4294967296.",
        ),
        (
            AttributeType::Number,
            json!({"max": true}),
            "config.max: expected a number, got true.",
        ),
        (
            AttributeType::Date,
            json!({"include_time": "yes"}),
            "config.include_time: expected true or false, got \"yes\".",
        ),
        (
            AttributeType::SingleChoice,
            json!({"options": ["a", null]}),
            "config.options[1]: expected a string, got null.",
        ),
        (
            AttributeType::Text,
            json!({"maxLength": 3}),
            "config.maxLength: unknown field; the fields of this type are max_length, truncate.",
        ),
        (
            AttributeType::Boolean,
            json!({"x": 1}),
            "config.x: this type has no config fields; leave config empty.",
        ),
        // A list is not read by position into the fields.
        (
            AttributeType::Date,
            json!([true]),
            "config: expected an object, got [true].",
        ),
        (
            AttributeType::Boolean,
            json!([]),
            "config: expected an object, got [].",
        ),
        (
            AttributeType::Number,
            json!("x"),
            "config: expected an object, got \"x\".",
        ),
    ];
    for (t, json, message) in cases {
        let e = AttributeConfig::from_json(t, &json).unwrap_err();
        assert_eq!(e.message(), message, "{t} {json}");
    }
}

#[test]
fn config_json_uses_the_stable_field_names() {
    let cases = [
        (
            AttributeConfig::Text(TextConfig::new(10, true).unwrap()),
            json!({"max_length": 10, "truncate": true}),
        ),
        (
            AttributeConfig::Number(NumberConfig::new(Some(0.0), Some(2.5), true).unwrap()),
            json!({"min": 0.0, "max": 2.5, "integer": true}),
        ),
        (
            AttributeConfig::Number(NumberConfig::default()),
            json!({"integer": false}),
        ),
        (AttributeConfig::Boolean, json!({})),
        (
            AttributeConfig::Date(DateConfig::new(true)),
            json!({"include_time": true}),
        ),
        (
            AttributeConfig::SingleChoice(
                ChoiceConfig::new(strings(&["teacher", "student"]), false).unwrap(),
            ),
            json!({"options": ["teacher", "student"], "allow_custom": false}),
        ),
        (
            AttributeConfig::MultiChoice(MultiChoiceConfig::new(strings(&["a"]), true, 3).unwrap()),
            json!({"options": ["a"], "allow_custom": true, "max_items": 3}),
        ),
    ];
    for (config, want) in cases {
        assert_eq!(config.to_json(), want);
        assert_eq!(
            AttributeConfig::from_json(config.attribute_type(), &want).unwrap(),
            config
        );
    }
}

/// Option spellings chosen to collide caselessly and to need trimming,
/// so generated inputs hit matches, near misses and custom values.
pub(crate) const OPTION_POOL: &[&str] = &[
    "teacher", "student", "history", "Math", "science", "art", "é", "Straße", "ΟΔΟΣ", "a b", "42",
    "true", "😀", "x",
];

/// Arbitrary valid configs of every type, for property tests.
pub(crate) fn arb_config() -> impl Strategy<Value = AttributeConfig> {
    let options = proptest::sample::subsequence(OPTION_POOL, 1..=6)
        .prop_map(|o| o.into_iter().map(str::to_owned).collect::<Vec<_>>());
    let bound = prop_oneof![
        Just(None),
        (-1000i32..1000).prop_map(|n| Some(f64::from(n))),
        (-1e6f64..1e6).prop_map(Some),
    ];
    prop_oneof![
        (1u32..40, any::<bool>())
            .prop_map(|(m, t)| AttributeConfig::Text(TextConfig::new(m, t).unwrap())),
        (bound.clone(), bound, any::<bool>()).prop_filter_map(
            "bounds in order",
            |(lo, hi, int)| NumberConfig::new(lo, hi, int)
                .ok()
                .map(AttributeConfig::Number)
        ),
        Just(AttributeConfig::Boolean),
        any::<bool>().prop_map(|t| AttributeConfig::Date(DateConfig::new(t))),
        (options.clone(), any::<bool>())
            .prop_map(|(o, c)| AttributeConfig::SingleChoice(ChoiceConfig::new(o, c).unwrap())),
        (options, any::<bool>(), 1u32..8).prop_map(|(o, c, m)| AttributeConfig::MultiChoice(
            MultiChoiceConfig::new(o, c, m).unwrap()
        )),
    ]
}

proptest! {
    #[test]
    fn config_json_round_trips(config in arb_config()) {
        let back = AttributeConfig::from_json(config.attribute_type(), &config.to_json()).unwrap();
        prop_assert_eq!(back, config);
    }
}
