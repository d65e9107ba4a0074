//! Small text helpers shared by validation, coercion and error messages.

/// How many characters of a client's input an error message quotes; inputs
/// can be megabytes long and a message must stay readable.
const QUOTE_LIMIT: usize = 64;

/// How many options an error message lists before it says "and N more".
const LISTED_OPTIONS: usize = 10;

/// The caseless form used to compare options and choice values.
///
/// std has no Unicode case folding, so this upper-cases then lower-cases:
/// that maps `É`/`é`, `ß`/`SS`/`ss` and `Σ`/`σ`/`ς` together, which plain
/// `to_lowercase` does not. Both option validation and matching use this one
/// function, so "duplicate" and "matches" can never disagree. Strings are not
/// Unicode-normalized (no dependency for it): a decomposed `é` (e + U+0301)
/// does not match a precomposed one.
pub(crate) fn fold(s: &str) -> String {
    s.to_uppercase().to_lowercase()
}

/// Length in Unicode scalar values, the unit of every limit in the contract.
pub(crate) fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// `s` quoted for a message, escaped like a Rust string literal (so control
/// characters are visible) and shortened when long.
pub(crate) fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// The options of a choice attribute as a message lists them: the first ten,
/// then how many more there are.
pub(crate) fn list_options(options: &[String]) -> String {
    let shown: Vec<&str> = options
        .iter()
        .take(LISTED_OPTIONS)
        .map(String::as_str)
        .collect();
    let shown = shown.join(", ");
    match options.len().saturating_sub(LISTED_OPTIONS) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// The canonical text of a number, as JavaScript's `String(x)` prints it,
/// since most clients are JavaScript: whole numbers below 1e21 as integers
/// (`42`, `-0` as `0`), other numbers from 1e-6 to 1e21 as the shortest
/// decimal that reads back as the same double (`2.5`), and numbers outside
/// that range in exponent form (`1e+21`, `1.5e-7`) rather than hundreds of
/// digits. Non-finite numbers never reach this: coercion rejects them first.
pub(crate) fn number_text(x: f64) -> String {
    if x == 0.0 {
        return "0".to_owned();
    }
    if (1e-6..1e21).contains(&x.abs()) {
        // Rust's Display for f64 is the shortest round-trip decimal and never
        // uses an exponent, and prints whole numbers without ".0".
        return format!("{x}");
    }
    let exp = format!("{x:e}");
    match exp.split_once('e') {
        Some((mantissa, power)) if !power.starts_with('-') => format!("{mantissa}e+{power}"),
        _ => exp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn number_text_matches_javascript() {
        let cases: &[(f64, &str)] = &[
            (42.0, "42"),
            (-42.0, "-42"),
            (0.0, "0"),
            (-0.0, "0"),
            (2.5, "2.5"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (9007199254740992.0, "9007199254740992"),
            (9007199254740993.0, "9007199254740992"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (-1e300, "-1e+300"),
            (0.000001, "0.000001"),
            (1e-7, "1e-7"),
            (-1.5e-7, "-1.5e-7"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
        ];
        for &(x, want) in cases {
            assert_eq!(number_text(x), want, "number_text({x:e})");
        }
    }

    #[test]
    fn fold_maps_case_variants_together() {
        assert_eq!(fold("É"), fold("é"));
        assert_eq!(fold("Math"), fold("MATH"));
        assert_eq!(fold("straße"), fold("STRASSE"));
        assert_eq!(fold("ΟΔΟΣ"), fold("οδοσ"));
        assert_ne!(fold("e"), fold("é"));
    }

    #[test]
    fn quote_escapes_and_shortens() {
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        let long = "é".repeat(100);
        let quoted = quote(&long);
        assert_eq!(quoted, format!("\"{}\"…", "é".repeat(64)));
    }

    #[test]
    fn list_options_names_how_many_are_left_out() {
        let few: Vec<String> = ["teacher", "student"].map(String::from).to_vec();
        assert_eq!(list_options(&few), "teacher, student");
        let many: Vec<String> = (0..13).map(|i| format!("o{i}")).collect();
        assert_eq!(
            list_options(&many),
            "o0, o1, o2, o3, o4, o5, o6, o7, o8, o9 and 3 more"
        );
    }

    proptest! {
        #[test]
        fn number_text_reads_back_as_the_same_number(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
            let text = number_text(x);
            let back: f64 = text.parse().unwrap();
            prop_assert!(back == x, "{x:e} -> {text} -> {back:e}");
        }
    }
}
