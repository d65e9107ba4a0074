//! Reading dates and instants from client input and printing them as stored.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

/// What a date input denotes: a calendar date, or an instant in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateInput {
    /// `YYYY-MM-DD`.
    Date(NaiveDate),
    /// A date-time or Unix seconds, kept to whole milliseconds.
    Instant(DateTime<Utc>),
}

/// Unix seconds beyond this are certainly outside years 0001-9999; checking
/// first keeps the millisecond arithmetic far from overflow.
const MAX_UNIX_SECONDS: f64 = 1e12;

impl DateInput {
    /// Parses `YYYY-MM-DD` or an RFC 3339 date-time. The separator may be
    /// `T`, `t` or a space and the zone `Z`, `z` or `±HH:MM`, as RFC 3339
    /// allows. A leap second (`:60`) counts as the first instant of the next
    /// minute, as Unix time does. Fractions of a second are cut to whole
    /// milliseconds. On failure the error says what is wrong, to be put into
    /// a sentence.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let b = s.as_bytes();
        // chrono also takes U+2212 (−) as an offset's minus sign; the
        // contract's syntax is ASCII.
        if b.len() < 10 || !s.is_ascii() {
            return Err(SHAPE.to_owned());
        }
        // The date is read here, not by chrono: its `%Y-%m-%d` also takes
        // `2024-5-1`, and its RFC 3339 parser takes the year 0000, which an
        // offset could carry into 0001.
        let date = parse_date(&b[..10])?;
        if b.len() == 10 {
            return Ok(DateInput::Date(date));
        }
        // chrono converts the offset, cuts the fraction to nanoseconds (so
        // to milliseconds below, never rounding up) and keeps a leap second
        // as a 60th second, which in Unix time is the next minute's first.
        let at = DateTime::parse_from_rfc3339(s).map_err(|_| refusal(b))?;
        instant(at.timestamp_millis()).map(DateInput::Instant)
    }

    /// Reads Unix seconds, cut (towards the past) to whole milliseconds.
    ///
    /// The fraction is taken from the number's shortest decimal text rather
    /// than by multiplying by 1000, because `1.001 * 1000.0` is
    /// `1000.9999999999999` and would lose the millisecond the client wrote.
    pub(crate) fn from_unix_seconds(seconds: f64) -> Result<Self, String> {
        if !seconds.is_finite() || seconds.abs() >= MAX_UNIX_SECONDS {
            return Err(RANGE.to_owned());
        }
        // Display for f64 never uses an exponent, so the text is digits with
        // an optional sign and fraction.
        let text = format!("{}", seconds.abs());
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        let whole: i64 = whole.parse().map_err(|_| RANGE.to_owned())?;
        let mut millis = whole * 1000
            + fraction
                .bytes()
                .chain(*b"000")
                .take(3)
                .fold(0, |n, d| n * 10 + i64::from(d - b'0'));
        let below_millis = fraction.bytes().skip(3).any(|d| d != b'0');
        if seconds < 0.0 {
            millis = -millis - i64::from(below_millis);
        }
        instant(millis).map(DateInput::Instant)
    }

    /// The stored text: `YYYY-MM-DD`, or with `include_time` the UTC instant
    /// as `YYYY-MM-DDTHH:MM:SS[.fff]Z` (milliseconds only when non-zero). A
    /// plain date with `include_time` is its midnight UTC; an instant without
    /// it is its UTC date.
    pub(crate) fn format(self, include_time: bool) -> String {
        let at = match self {
            DateInput::Date(date) => date.and_time(chrono::NaiveTime::MIN).and_utc(),
            DateInput::Instant(at) => at,
        };
        let date = format!("{:04}-{:02}-{:02}", at.year(), at.month(), at.day());
        if !include_time {
            return date;
        }
        let millis = at.timestamp_subsec_millis();
        let fraction = if millis == 0 {
            String::new()
        } else {
            format!(".{millis:03}")
        };
        format!(
            "{date}T{:02}:{:02}:{:02}{fraction}Z",
            at.hour(),
            at.minute(),
            at.second()
        )
    }
}

const SHAPE: &str = "it is neither a date YYYY-MM-DD nor an RFC 3339 date-time such as \
                     2024-05-01T09:30:00Z or 2024-05-01T11:30:00+02:00";

const RANGE: &str = "it is outside the years 0001 to 9999";

fn digits(b: &[u8]) -> Result<i64, String> {
    b.iter().try_fold(0, |n, d| {
        if d.is_ascii_digit() {
            Ok(n * 10 + i64::from(d - b'0'))
        } else {
            Err(SHAPE.to_owned())
        }
    })
}

/// Why a date-time with a valid date is not RFC 3339. chrono's error tells
/// the kind of failure but not the part, so this reads the fixed-width parts
/// to name a time of day or an offset that is out of range, and otherwise
/// describes the shape.
fn refusal(b: &[u8]) -> String {
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return SHAPE.to_owned();
    }
    let (Ok(hour), Ok(minute), Ok(second)) =
        (digits(&b[11..13]), digits(&b[14..16]), digits(&b[17..19]))
    else {
        return SHAPE.to_owned();
    };
    if hour > 23 || minute > 59 || second > 60 {
        return format!("{hour:02}:{minute:02}:{second:02} is not a time of day");
    }
    let mut zone = &b[19..];
    if let Some(fraction) = zone.strip_prefix(b".") {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return SHAPE.to_owned();
        }
        zone = &fraction[len..];
    }
    if let [b'+' | b'-', h1, h2, b':', m1, m2] = zone
        && let (Ok(h), Ok(m)) = (digits(&[*h1, *h2]), digits(&[*m1, *m2]))
        && (h > 23 || m > 59)
    {
        return format!("the offset {h:02}:{m:02} is out of range");
    }
    SHAPE.to_owned()
}

fn parse_date(b: &[u8]) -> Result<NaiveDate, String> {
    if b[4] != b'-' || b[7] != b'-' {
        return Err(SHAPE.to_owned());
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    if year == 0 {
        return Err(RANGE.to_owned());
    }
    // The values are at most 9999, 99 and 99, so the conversions cannot fail.
    let (y, m, d) = (year as i32, month as u32, day as u32);
    NaiveDate::from_ymd_opt(y, m, d)
        .ok_or_else(|| format!("{year:04}-{month:02}-{day:02} is not a day of the calendar"))
}

fn instant(millis: i64) -> Result<DateTime<Utc>, String> {
    DateTime::from_timestamp_millis(millis)
        .filter(|at| (1..=9999).contains(&at.year()))
        .ok_or_else(|| RANGE.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(input: &str, include_time: bool) -> Result<String, String> {
        DateInput::parse(input).map(|d| d.format(include_time))
    }

    #[test]
    fn date_strings_are_normalized() {
        let cases: &[(&str, bool, &str)] = &[
            ("2024-05-01", false, "2024-05-01"),
            ("2024-05-01", true, "2024-05-01T00:00:00Z"),
            ("2024-02-29", false, "2024-02-29"),
            ("0001-01-01", false, "0001-01-01"),
            ("9999-12-31", true, "9999-12-31T00:00:00Z"),
            ("2024-05-01T09:30:00Z", true, "2024-05-01T09:30:00Z"),
            ("2024-05-01t09:30:00z", true, "2024-05-01T09:30:00Z"),
            ("2024-05-01 09:30:00Z", true, "2024-05-01T09:30:00Z"),
            ("2024-05-01T09:30:00+02:00", true, "2024-05-01T07:30:00Z"),
            ("2024-05-01T23:30:00-02:00", true, "2024-05-02T01:30:00Z"),
            ("2024-05-01T23:30:00-02:00", false, "2024-05-02"),
            ("2024-05-01T01:30:00+02:00", false, "2024-04-30"),
            ("2024-05-01T09:30:00.5Z", true, "2024-05-01T09:30:00.500Z"),
            (
                "2024-05-01T09:30:00.123456789Z",
                true,
                "2024-05-01T09:30:00.123Z",
            ),
            ("2024-05-01T09:30:00.000Z", true, "2024-05-01T09:30:00Z"),
            ("2024-05-01T09:30:00.0009Z", true, "2024-05-01T09:30:00Z"),
            ("2016-12-31T23:59:60Z", true, "2017-01-01T00:00:00Z"),
            ("0001-01-01T00:30:00+00:30", true, "0001-01-01T00:00:00Z"),
        ];
        for &(input, include_time, want) in cases {
            assert_eq!(stored(input, include_time).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn bad_date_strings_say_what_is_wrong() {
        let cases = [
            ("2024-13-01", "2024-13-01 is not a day of the calendar"),
            ("2023-02-29", "2023-02-29 is not a day of the calendar"),
            ("0000-01-01", "outside the years 0001 to 9999"),
            (
                "0001-01-01T00:00:00+00:01",
                "outside the years 0001 to 9999",
            ),
            (
                "9999-12-31T23:00:00-01:00",
                "outside the years 0001 to 9999",
            ),
            ("2024-05-01T24:00:00Z", "24:00:00 is not a time of day"),
            ("2024-05-01T09:30:00+24:00", "offset 24:00"),
            ("2024-5-1", "neither"),
            ("20240501", "neither"),
            ("2024-05-01T09:30:00", "neither"),
            ("2024-05-01T09:30Z", "neither"),
            ("2024-05-01T09:30:00.Z", "neither"),
            ("2024-05-01T09:30:00+0200", "neither"),
            ("2024-05-01X09:30:00Z", "neither"),
            ("２０２４-05-01", "neither"),
            ("", "neither"),
            ("+2024-05-01", "neither"),
            // chrono would take these two; see DateInput::parse.
            ("2024-05-01T09:30:00\u{2212}02:00", "neither"),
            (
                "0000-12-31T23:30:00-01:00",
                "outside the years 0001 to 9999",
            ),
        ];
        for (input, needle) in cases {
            let e = DateInput::parse(input).unwrap_err();
            assert!(e.contains(needle), "{input}: {e}");
        }
    }

    #[test]
    fn unix_seconds_are_kept_to_milliseconds() {
        let cases: &[(f64, &str)] = &[
            (0.0, "1970-01-01T00:00:00Z"),
            (1714555800.0, "2024-05-01T09:30:00Z"),
            (1.001, "1970-01-01T00:00:01.001Z"),
            (1.0019, "1970-01-01T00:00:01.001Z"),
            (-0.5, "1969-12-31T23:59:59.500Z"),
            (-0.0005, "1969-12-31T23:59:59.999Z"),
            (-62135596800.0, "0001-01-01T00:00:00Z"),
            (253402300799.999, "9999-12-31T23:59:59.999Z"),
        ];
        for &(seconds, want) in cases {
            let got = DateInput::from_unix_seconds(seconds).map(|d| d.format(true));
            assert_eq!(got.as_deref(), Ok(want), "{seconds}");
        }
        assert_eq!(
            DateInput::from_unix_seconds(1714555800.0).map(|d| d.format(false)),
            Ok("2024-05-01".to_owned())
        );
        for bad in [
            -62135596800.001,
            253402300800.0,
            1e12,
            1e300,
            f64::NAN,
            f64::INFINITY,
        ] {
            assert!(DateInput::from_unix_seconds(bad).is_err(), "{bad}");
        }
    }
}
