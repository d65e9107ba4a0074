//! What coercion did to a client's input so it could be stored (CONTRACT.md
//! section 8): reported with every write, so that no change is silent.

/// One kind of change coercion made to an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adjustment {
    /// Surrounding whitespace was removed (numbers, booleans, dates and
    /// choices are trimmed before they are read; text is not).
    Trimmed,
    /// An option was matched in another spelling and stored as declared.
    CaseNormalized,
    /// Text longer than max_length was cut (truncate is on).
    Truncated {
        /// The input's length in Unicode characters before the cut.
        original_length: usize,
    },
    /// Elements that match no option were dropped (multi_choice), as given
    /// after trimming.
    OptionsDropped {
        /// The dropped elements.
        dropped: Vec<String>,
    },
    /// Elements equal (caselessly) to an earlier one were dropped.
    DuplicatesDropped {
        /// The dropped elements, as given after trimming.
        dropped: Vec<String>,
    },
    /// The input was of another kind than what is stored: a number or bool
    /// stored as text, a string read as a number, a bool or a date, a
    /// date-time converted to UTC (or cut to its date), Unix seconds stored
    /// as a date.
    Converted,
}

impl Adjustment {
    /// The order adjustments are reported in.
    fn rank(&self) -> u8 {
        match self {
            Adjustment::Trimmed => 0,
            Adjustment::CaseNormalized => 1,
            Adjustment::Truncated { .. } => 2,
            Adjustment::OptionsDropped { .. } => 3,
            Adjustment::DuplicatesDropped { .. } => 4,
            Adjustment::Converted => 5,
        }
    }
}

/// The adjustments of one coercion, each kind at most once (dropped
/// elements gathered in one list), in a fixed order.
#[derive(Debug, Default)]
pub(crate) struct Notes(Vec<Adjustment>);

impl Notes {
    /// Notes `adjustment`, merging it with one of its kind.
    pub(crate) fn add(&mut self, adjustment: Adjustment) {
        let same = self.0.iter_mut().find(|a| a.rank() == adjustment.rank());
        match (same, adjustment) {
            (None, new) => self.0.push(new),
            (
                Some(Adjustment::OptionsDropped { dropped }),
                Adjustment::OptionsDropped { dropped: more },
            )
            | (
                Some(Adjustment::DuplicatesDropped { dropped }),
                Adjustment::DuplicatesDropped { dropped: more },
            ) => dropped.extend(more),
            (Some(_), _) => {}
        }
    }

    /// The adjustments, in report order.
    pub(crate) fn into_vec(mut self) -> Vec<Adjustment> {
        self.0.sort_by_key(Adjustment::rank);
        self.0
    }
}
