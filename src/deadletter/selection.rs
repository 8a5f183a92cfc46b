//! Which dead letters a listing, replay or purge applies to. Pure.

use std::ops::RangeInclusive;

use time::OffsetDateTime;

use super::{DeadLetter, ReasonKind};
use crate::subjects;

/// A choice of dead letters. Every criterion that is set must hold; `Selection::default()`
/// selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Reasons to select; empty selects every reason.
    pub reasons: Vec<ReasonKind>,
    /// A NATS subject filter (`*` one token, `>` the rest) matched against the ORIGINAL subject
    /// of the event, not the dead letter's own subject.
    pub subject: Option<String>,
    /// Dead letters made at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Dead letters made before this time (exclusive, so that consecutive windows never
    /// select a dead letter twice).
    pub until: Option<OffsetDateTime>,
    /// Sequences in the dead-letter stream.
    pub sequences: Option<RangeInclusive<u64>>,
}

/// A selection that can never be applied as meant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("subject filter {filter:?} {problem}")]
    Subject {
        filter: String,
        problem: &'static str,
    },
    #[error("the time range is empty: since {since} is not before until {until}")]
    EmptyTimeRange { since: String, until: String },
    #[error("the sequence range is empty: {start} is above {end}")]
    EmptySequenceRange { start: u64, end: u64 },
}

impl Selection {
    /// Whether `dead_letter`, stored at `sequence` of its dead-letter stream, is selected.
    pub fn matches(&self, dead_letter: &DeadLetter, sequence: u64) -> bool {
        self.admits_sequence(sequence)
            && (self.reasons.is_empty() || self.reasons.contains(&dead_letter.reason.kind()))
            && self
                .subject
                .as_deref()
                .is_none_or(|filter| subjects::subject_contains(filter, &dead_letter.subject))
            && self
                .since
                .is_none_or(|since| dead_letter.dead_lettered_at >= since)
            && self
                .until
                .is_none_or(|until| dead_letter.dead_lettered_at < until)
    }

    /// Whether a message at `sequence` that cannot be read as a dead letter is selected. Only
    /// its sequence can be judged, so only a selection that asks for nothing else takes it:
    /// a replay of everything reports it as a failure, a filtered one passes it by.
    pub fn matches_unreadable(&self, sequence: u64) -> bool {
        self.admits_sequence(sequence) && self.sequences_only()
    }

    /// Whether the selection asks for nothing but (optionally) a sequence range.
    pub fn sequences_only(&self) -> bool {
        self.reasons.is_empty()
            && self.subject.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }

    /// Whether the selection takes every dead letter.
    pub fn is_everything(&self) -> bool {
        self.sequences_only() && self.sequences.is_none()
    }

    /// The sequences worth reading in a stream holding `first..=last`, or `None` when the
    /// selection cannot take any of them.
    pub fn sequences_to_read(&self, first: u64, last: u64) -> Option<RangeInclusive<u64>> {
        let (start, end) = match &self.sequences {
            Some(range) => (first.max(*range.start()), last.min(*range.end())),
            None => (first, last),
        };
        (start <= end && end > 0).then(|| start.max(1)..=end)
    }

    /// Refuses what cannot mean anything: a malformed subject filter, empty ranges.
    pub fn check(&self) -> Result<(), SelectionError> {
        if let Some(filter) = &self.subject {
            subjects::check_subject(filter).map_err(|problem| SelectionError::Subject {
                filter: filter.clone(),
                problem,
            })?;
        }
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since >= until
        {
            return Err(SelectionError::EmptyTimeRange {
                since: since.to_string(),
                until: until.to_string(),
            });
        }
        if let Some(range) = &self.sequences
            && range.start() > range.end()
        {
            return Err(SelectionError::EmptySequenceRange {
                start: *range.start(),
                end: *range.end(),
            });
        }
        Ok(())
    }

    fn admits_sequence(&self, sequence: u64) -> bool {
        self.sequences
            .as_ref()
            .is_none_or(|range| range.contains(&sequence))
    }
}

#[cfg(test)]
mod tests {
    use time::format_description::well_known::Rfc3339;

    use super::*;
    use crate::deadletter::Reason;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    fn letter(reason: Reason, subject: &str, at: OffsetDateTime) -> DeadLetter {
        DeadLetter {
            reason,
            subject: subject.into(),
            stream: "shop_orders".into(),
            sequence: 7,
            consumer: "sub_shop_billing".into(),
            deliveries: 5,
            stored_at: at,
            dead_lettered_at: at,
            msg_id: None,
        }
    }

    fn placed() -> DeadLetter {
        letter(
            Reason::MaxDeliveries,
            "shop.orders.order.placed",
            at("2025-03-01T10:00:00Z"),
        )
    }

    #[test]
    fn the_default_selects_everything() {
        let all = Selection::default();
        assert!(all.is_everything());
        assert!(all.matches(&placed(), 1));
        assert!(all.matches(&placed(), u64::MAX));
        assert!(all.matches_unreadable(3));
        assert_eq!(all.check(), Ok(()));
    }

    #[test]
    fn reasons_select_by_kind() {
        let rejected = letter(
            Reason::HandlerRejected { status: 400 },
            "shop.orders.order.placed",
            at("2025-03-01T10:00:00Z"),
        );
        let selection = Selection {
            reasons: vec![ReasonKind::HandlerRejected, ReasonKind::SchemaViolation],
            ..Selection::default()
        };
        assert!(selection.matches(&rejected, 1));
        assert!(!selection.matches(&placed(), 1));
        assert!(!selection.is_everything());
    }

    #[test]
    fn subject_filters_apply_to_the_original_subject() {
        let select = |filter: &str| Selection {
            subject: Some(filter.into()),
            ..Selection::default()
        };
        for hit in [
            "shop.orders.order.placed",
            "shop.orders.>",
            "shop.*.order.placed",
            "shop.orders.*.*",
            ">",
        ] {
            assert!(select(hit).matches(&placed(), 1), "{hit} should match");
        }
        for miss in [
            "shop.orders",
            "shop.orders.*",
            "shop.orders.order.placed.>",
            "shop.payments.>",
            // The dead letter's own subject is not what is matched.
            "shop.dlq.>",
        ] {
            assert!(
                !select(miss).matches(&placed(), 1),
                "{miss} should not match"
            );
        }
    }

    #[test]
    fn time_ranges_include_since_and_exclude_until() {
        let ten = at("2025-03-01T10:00:00Z");
        let window = |since, until| Selection {
            since,
            until,
            ..Selection::default()
        };
        assert!(window(Some(ten), None).matches(&placed(), 1));
        assert!(!window(None, Some(ten)).matches(&placed(), 1));
        assert!(window(None, Some(at("2025-03-01T10:00:00.001Z"))).matches(&placed(), 1));
        assert!(!window(Some(at("2025-03-01T10:00:00.001Z")), None).matches(&placed(), 1));
        // Offsets are compared as instants.
        assert!(
            window(Some(at("2025-03-01T11:00:00+01:00")), None).matches(&placed(), 1),
            "11:00 at +01:00 is 10:00 UTC"
        );
    }

    #[test]
    fn sequence_ranges_are_inclusive() {
        let selection = Selection {
            sequences: Some(5..=9),
            ..Selection::default()
        };
        assert!(!selection.matches(&placed(), 4));
        assert!(selection.matches(&placed(), 5));
        assert!(selection.matches(&placed(), 9));
        assert!(!selection.matches(&placed(), 10));
        assert!(selection.sequences_only() && !selection.is_everything());
    }

    #[test]
    fn unreadable_messages_are_selected_only_by_sequence() {
        let by_sequence = Selection {
            sequences: Some(5..=9),
            ..Selection::default()
        };
        assert!(by_sequence.matches_unreadable(5));
        assert!(!by_sequence.matches_unreadable(10));
        let by_reason = Selection {
            reasons: vec![ReasonKind::MaxDeliveries],
            ..Selection::default()
        };
        assert!(!by_reason.matches_unreadable(5));
    }

    #[test]
    fn only_the_overlap_with_the_stream_is_read() {
        let all = Selection::default();
        assert_eq!(all.sequences_to_read(1, 100), Some(1..=100));
        assert_eq!(all.sequences_to_read(0, 0), None, "an empty stream");
        assert_eq!(all.sequences_to_read(101, 100), None, "a purged stream");
        let some = |range| Selection {
            sequences: Some(range),
            ..Selection::default()
        };
        assert_eq!(some(50..=500).sequences_to_read(1, 100), Some(50..=100));
        assert_eq!(some(1..=20).sequences_to_read(10, 100), Some(10..=20));
        assert_eq!(some(200..=300).sequences_to_read(1, 100), None);
        assert_eq!(some(1..=5).sequences_to_read(10, 100), None);
    }

    #[test]
    fn meaningless_selections_are_refused() {
        let bad_subject = Selection {
            subject: Some("shop..orders".into()),
            ..Selection::default()
        };
        let error = bad_subject.check().unwrap_err();
        assert!(error.to_string().contains("shop..orders"), "{error}");
        assert!(error.to_string().contains("empty token"), "{error}");
        let wildcard_inside = Selection {
            subject: Some("shop.ord*".into()),
            ..Selection::default()
        };
        assert!(matches!(
            wildcard_inside.check(),
            Err(SelectionError::Subject { .. })
        ));
        let ten = at("2025-03-01T10:00:00Z");
        let backwards = Selection {
            since: Some(ten),
            until: Some(ten),
            ..Selection::default()
        };
        assert!(matches!(
            backwards.check(),
            Err(SelectionError::EmptyTimeRange { .. })
        ));
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = Selection {
            sequences: Some(9..=5),
            ..Selection::default()
        };
        assert_eq!(
            reversed.check(),
            Err(SelectionError::EmptySequenceRange { start: 9, end: 5 })
        );
    }
}
