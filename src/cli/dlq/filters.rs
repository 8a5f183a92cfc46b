//! The selection flags shared by `dlq list`, `replay` and `purge`, and their parsing. Pure.

use clap::Args;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    deadletter::{ReasonKind, Selection},
    subjects,
};

/// Which dead letters a command applies to; every flag given must hold.
#[derive(Debug, Default, Args)]
pub struct Filters {
    /// Only dead letters with this reason: MaxDeliveries, HandlerRejected, Terminated or
    /// SchemaViolation. Repeat the flag or separate with commas for several.
    #[arg(long = "reason", value_delimiter = ',', value_name = "REASON")]
    pub reasons: Vec<ReasonKind>,
    /// Only dead letters whose ORIGINAL subject matches this NATS subject filter (`*` matches
    /// one token, `>` the rest), e.g. `shop.orders.order.*`.
    #[arg(long, value_parser = parse_subject_filter)]
    pub subject: Option<String>,
    /// Only dead letters made at or after this time: an RFC 3339 time
    /// (2025-03-01T10:00:00Z) or a duration meaning that long ago (90s, 15m, 2h, 3d).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub since: Option<OffsetDateTime>,
    /// Only dead letters made before this time (same forms as --since).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub until: Option<OffsetDateTime>,
    /// Only dead letters at this sequence of the dead-letter stream or later.
    #[arg(long, value_name = "SEQ")]
    pub from_seq: Option<u64>,
    /// Only dead letters at this sequence of the dead-letter stream or earlier.
    #[arg(long, value_name = "SEQ")]
    pub to_seq: Option<u64>,
}

impl Filters {
    /// The selection the flags describe; refuses one that can select nothing by construction.
    pub fn selection(&self) -> Result<Selection, String> {
        let sequences = match (self.from_seq, self.to_seq) {
            (None, None) => None,
            (from, to) => Some(from.unwrap_or(1)..=to.unwrap_or(u64::MAX)),
        };
        let selection = Selection {
            reasons: self.reasons.clone(),
            subject: self.subject.clone(),
            since: self.since,
            until: self.until,
            sequences,
        };
        selection.check().map_err(|e| match e {
            crate::deadletter::SelectionError::EmptyTimeRange { .. } => {
                format!("{e}: --since must be earlier than --until")
            }
            crate::deadletter::SelectionError::EmptySequenceRange { .. } => {
                format!("{e}: --from-seq must not be above --to-seq")
            }
            other => other.to_string(),
        })?;
        Ok(selection)
    }
}

/// `--subject`: a well-formed NATS subject filter.
fn parse_subject_filter(text: &str) -> Result<String, String> {
    subjects::check_subject(text)
        .map(|()| text.to_string())
        .map_err(|problem| format!("the subject filter {problem}"))
}

/// `--since`/`--until`, relative to the present moment.
fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    parse_time_at(text, OffsetDateTime::now_utc())
}

/// An RFC 3339 time, or a duration meaning that long before `now`.
pub fn parse_time_at(text: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let text = text.trim();
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(time);
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!(
            "{text:?} is neither an RFC 3339 time (2025-03-01T10:00:00Z) nor a duration \
             meaning that long ago (90s, 15m, 2h, 3d)"
        )
    })?;
    let ago = time::Duration::try_from(ago).map_err(|_| format!("{text:?} is too long ago"))?;
    now.checked_sub(ago)
        .ok_or_else(|| format!("{text:?} is too long ago"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        filters: Filters,
    }

    fn parse(args: &[&str]) -> Result<Filters, String> {
        Cli::try_parse_from(std::iter::once("dlq").chain(args.iter().copied()))
            .map(|cli| cli.filters)
            .map_err(|e| e.to_string())
    }

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        let now = at("2025-03-01T12:00:00Z");
        assert_eq!(
            parse_time_at("2025-03-01T10:00:00Z", now),
            Ok(at("2025-03-01T10:00:00Z"))
        );
        assert_eq!(
            parse_time_at("2025-03-01T11:00:00+01:00", now),
            Ok(at("2025-03-01T10:00:00Z"))
        );
        assert_eq!(parse_time_at("2h", now), Ok(at("2025-03-01T10:00:00Z")));
        assert_eq!(parse_time_at("90s", now), Ok(at("2025-03-01T11:58:30Z")));
        assert_eq!(parse_time_at("1d", now), Ok(at("2025-02-28T12:00:00Z")));
        for bad in ["yesterday", "2025-03-01", "10:00", "-2h", ""] {
            let error = parse_time_at(bad, now).unwrap_err();
            assert!(error.contains("RFC 3339"), "{bad}: {error}");
        }
        assert!(parse_time_at("100000000y", now).is_err());
    }

    #[test]
    fn no_flags_select_everything() {
        let selection = parse(&[]).unwrap().selection().unwrap();
        assert!(selection.is_everything());
    }

    #[test]
    fn flags_build_the_selection() {
        let filters = parse(&[
            "--reason",
            "MaxDeliveries,HandlerRejected",
            "--reason",
            "SchemaViolation",
            "--subject",
            "shop.orders.>",
            "--since",
            "2025-03-01T10:00:00Z",
            "--until",
            "2025-03-01T11:00:00Z",
            "--from-seq",
            "5",
        ])
        .unwrap();
        let selection = filters.selection().unwrap();
        assert_eq!(
            selection.reasons,
            [
                ReasonKind::MaxDeliveries,
                ReasonKind::HandlerRejected,
                ReasonKind::SchemaViolation
            ]
        );
        assert_eq!(selection.subject.as_deref(), Some("shop.orders.>"));
        assert_eq!(selection.since, Some(at("2025-03-01T10:00:00Z")));
        assert_eq!(selection.until, Some(at("2025-03-01T11:00:00Z")));
        assert_eq!(selection.sequences, Some(5..=u64::MAX));
        let upper = parse(&["--to-seq", "9"]).unwrap().selection().unwrap();
        assert_eq!(upper.sequences, Some(1..=9));
    }

    #[test]
    fn bad_flags_are_refused_with_the_reason() {
        let reason = parse(&["--reason", "Exploded"]).unwrap_err();
        assert!(
            reason.contains("MaxDeliveries, HandlerRejected"),
            "{reason}"
        );
        let subject = parse(&["--subject", "shop..orders"]).unwrap_err();
        assert!(subject.contains("empty token"), "{subject}");
        let since = parse(&["--since", "last tuesday"]).unwrap_err();
        assert!(since.contains("RFC 3339"), "{since}");
        let sequence = parse(&["--from-seq", "three"]).unwrap_err();
        assert!(sequence.contains("--from-seq"), "{sequence}");

        let reversed = parse(&["--from-seq", "9", "--to-seq", "5"]).unwrap();
        let error = reversed.selection().unwrap_err();
        assert!(
            error.contains("--from-seq must not be above --to-seq"),
            "{error}"
        );
        let backwards = parse(&["--since", "1h", "--until", "2h"]).unwrap();
        let error = backwards.selection().unwrap_err();
        assert!(
            error.contains("--since must be earlier than --until"),
            "{error}"
        );
    }
}
