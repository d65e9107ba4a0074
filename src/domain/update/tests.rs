use prost_types::value::Kind;
use serde_json::json;

use super::*;
use crate::domain::config::{ChoiceConfig, MultiChoiceConfig, TextConfig};
use crate::domain::key::AttributeKey;

fn def(key: &str, config: AttributeConfig) -> AttributeDefinition {
    AttributeDefinition::new(AttributeKey::parse(key).unwrap(), config, None, None).unwrap()
}
fn number(min: Option<f64>, max: Option<f64>, integer: bool) -> AttributeDefinition {
    def(
        "logins",
        AttributeConfig::Number(NumberConfig::new(min, max, integer).unwrap()),
    )
}
fn topics(max_items: u32) -> AttributeDefinition {
    let options = ["history", "math", "science", "art"]
        .map(String::from)
        .to_vec();
    def(
        "topics",
        AttributeConfig::MultiChoice(MultiChoiceConfig::new(options, false, max_items).unwrap()),
    )
}
fn s(text: &str) -> Option<prost_types::Value> {
    Some(prost_types::Value {
        kind: Some(Kind::StringValue(text.into())),
    })
}
fn strs(items: &[&str]) -> Option<prost_types::Value> {
    Some(prost_types::Value {
        kind: Some(Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(|i| s(i).unwrap()).collect(),
        })),
    })
}
fn written(applied: Applied) -> Json {
    match applied {
        Applied::Write(v) => v.to_json(),
        other => panic!("expected a write, got {other:?}"),
    }
}

#[test]
fn increment_adds_to_the_stored_number_and_none_counts_as_zero() {
    let c = number(None, None, false)
        .change(&Operation::Increment(2.5))
        .unwrap();
    assert_eq!(written(c.apply(None).unwrap()), json!(2.5));
    assert_eq!(written(c.apply(Some(&json!(10))).unwrap()), json!(12.5));
}

#[test]
fn increment_results_are_checked_against_min_max_and_integer() {
    let bounded = number(Some(0.0), Some(10.0), true);
    let up = bounded.change(&Operation::Increment(1.0)).unwrap();
    assert_eq!(written(up.apply(Some(&json!(9))).unwrap()), json!(10.0));
    let e = up.apply(Some(&json!(10))).unwrap_err();
    assert_eq!(e.reason(), Reason::AttributeValueInvalid);
    assert_eq!(e.attribute(), Some("logins"));
    assert!(
        e.message()
            .starts_with("Incrementing 10 by 1 would store 11"),
        "{}",
        e.message()
    );
    let down = bounded.change(&Operation::Increment(-1.0)).unwrap();
    assert!(down.apply(None).is_err(), "below min");
    let half = bounded.change(&Operation::Increment(0.5)).unwrap();
    assert!(half.apply(Some(&json!(1))).is_err(), "not an integer");
    let nan = bounded.change(&Operation::Increment(f64::NAN)).unwrap_err();
    assert_eq!(nan.reason(), Reason::AttributeValueInvalid);
}

#[test]
fn operations_that_do_not_fit_the_type_are_refused() {
    let text = def("bio", AttributeConfig::Text(TextConfig::default()));
    for op in [
        Operation::Increment(1.0),
        Operation::Add(s("a")),
        Operation::Remove(s("a")),
    ] {
        let e = text.change(&op).unwrap_err();
        assert_eq!(e.reason(), Reason::AttributeOperationInvalid, "{op:?}");
        assert_eq!(e.attribute(), Some("bio"));
    }
    let e = topics(100).change(&Operation::Increment(1.0)).unwrap_err();
    assert_eq!(e.reason(), Reason::AttributeOperationInvalid);
    let choice = def(
        "persona",
        AttributeConfig::SingleChoice(ChoiceConfig::new(vec!["a".into()], false).unwrap()),
    );
    assert_eq!(
        choice.change(&Operation::Add(s("a"))).unwrap_err().reason(),
        Reason::AttributeOperationInvalid
    );
}

#[test]
fn set_once_writes_only_where_nothing_is_stored() {
    let text = def("referrer", AttributeConfig::Text(TextConfig::default()));
    let c = text.change(&Operation::SetOnce(s("ads"))).unwrap();
    assert_eq!(written(c.apply(None).unwrap()), json!("ads"));
    assert_eq!(c.apply(Some(&json!("seo"))).unwrap(), Applied::Keep);
}

#[test]
fn add_appends_matched_new_elements_in_order_within_max_items() {
    let c = topics(3)
        .change(&Operation::Add(strs(&["ART", "math", "cooking"])))
        .unwrap();
    assert_eq!(
        written(c.apply(Some(&json!(["math"]))).unwrap()),
        json!(["math", "art"])
    );
    assert_eq!(written(c.apply(None).unwrap()), json!(["art", "math"]));
    assert_eq!(
        c.apply(Some(&json!(["art", "math"]))).unwrap(),
        Applied::Keep
    );
    let e = c.apply(Some(&json!(["history", "science"]))).unwrap_err();
    assert_eq!(e.reason(), Reason::AttributeValueInvalid);
    assert!(e.message().contains("at most 3"), "{}", e.message());
}

#[test]
fn remove_takes_out_matches_and_ignores_what_is_absent() {
    let c = topics(100)
        .change(&Operation::Remove(strs(&[" MATH ", "cooking"])))
        .unwrap();
    assert_eq!(
        written(c.apply(Some(&json!(["history", "math", "art"]))).unwrap()),
        json!(["history", "art"])
    );
    assert_eq!(c.apply(Some(&json!(["art"]))).unwrap(), Applied::Keep);
    assert_eq!(c.apply(None).unwrap(), Applied::Keep);
    let null = topics(100).change(&Operation::Remove(None)).unwrap_err();
    assert_eq!(null.reason(), Reason::AttributeValueInvalid);
}

#[test]
fn clear_deletes_what_is_there_and_works_on_archived_attributes() {
    let mut d = topics(100);
    d.set_archived(true);
    let c = d.change(&Operation::Clear).unwrap();
    assert_eq!(c.apply(Some(&json!(["art"]))).unwrap(), Applied::Delete);
    assert_eq!(c.apply(None).unwrap(), Applied::Keep);
    for op in [
        Operation::Set(strs(&["art"])),
        Operation::Add(strs(&["art"])),
        Operation::Remove(strs(&["art"])),
    ] {
        assert_eq!(
            d.change(&op).unwrap_err().reason(),
            Reason::AttributeArchived
        );
    }
    let mut n = number(None, None, false);
    n.set_archived(true);
    assert_eq!(
        n.change(&Operation::Increment(1.0)).unwrap_err().reason(),
        Reason::AttributeArchived
    );
}
