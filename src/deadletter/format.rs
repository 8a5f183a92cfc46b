//! The dead-letter contract: what a dead letter looks like once stored, shared by the relay that
//! writes dead letters and by the tools that list and replay them. Pure.
//!
//! A dead letter is a copy of the original event (payload and the user's headers) published to
//! `<target subject prefix>.<the original's event-type tokens>`, with headers naming the facts
//! in [`header`], and the message id [`dead_letter_id`] so that the same failure is stored once
//! however often the relay retries.

use std::{fmt, str::FromStr};

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::api::dead_letter_policy::CaptureReason;

/// Names of the headers a dead letter carries.
pub mod header {
    /// Why the event was given up on: `MaxDeliveries`, `HandlerRejected`, `Terminated` or
    /// `SchemaViolation` (see [`super::ReasonKind`]).
    pub const REASON: &str = "Switchyard-Dead-Letter-Reason";
    /// What exactly went wrong, when known: `HTTP 400`, the validation error, the reason a
    /// consumer terminated the event with.
    pub const DETAIL: &str = "Switchyard-Dead-Letter-Detail";
    pub const ORIGINAL_SUBJECT: &str = "Switchyard-Original-Subject";
    pub const ORIGINAL_STREAM: &str = "Switchyard-Original-Stream";
    pub const ORIGINAL_SEQUENCE: &str = "Switchyard-Original-Sequence";
    pub const ORIGINAL_CONSUMER: &str = "Switchyard-Original-Consumer";
    /// The original's `Nats-Msg-Id`: the copy carries its own id, and the original's would make
    /// a replay look like a duplicate of the original.
    pub const ORIGINAL_MSG_ID: &str = "Switchyard-Original-Msg-Id";
    /// Deliveries of the original to its consumer, the last failed one included.
    pub const DELIVERY_COUNT: &str = "Switchyard-Delivery-Count";
    /// When the original was stored in its stream (RFC 3339).
    pub const ORIGINAL_TIME: &str = "Switchyard-Original-Time";
    /// When the copy was made (RFC 3339).
    pub const DEAD_LETTER_TIME: &str = "Switchyard-Dead-Letter-Time";
    /// On a replayed event: `<dead-letter stream>:<sequence>` of the dead letter it came from.
    pub const REPLAYED_FROM: &str = "Switchyard-Replayed-From";

    /// The headers describing a dead letter, which a replay takes off again.
    pub(super) const FACTS: [&str; 9] = [
        REASON,
        DETAIL,
        ORIGINAL_SUBJECT,
        ORIGINAL_STREAM,
        ORIGINAL_SEQUENCE,
        ORIGINAL_CONSUMER,
        DELIVERY_COUNT,
        ORIGINAL_TIME,
        DEAD_LETTER_TIME,
    ];
}

/// What a consumer says on `+TERM` when its handler refused an event: `HandlerRejected: HTTP 400`.
pub const HANDLER_REJECTED_PREFIX: &str = "HandlerRejected: ";
/// What a consumer says on `+TERM` when an event failed its schema: `SchemaViolation: <error>`.
pub const SCHEMA_VIOLATION_PREFIX: &str = "SchemaViolation: ";

/// Headers that are instructions to the server or facts about a read, not the user's data: they
/// are never copied. `Nats-Expected-*`, `Nats-Rollup`, `Nats-TTL`, `Nats-Schedule*` and
/// `Nats-Batch-*` would make the copy's publish fail or do something else than store it; a direct
/// get adds `Nats-Stream`, `Nats-Sequence`, `Nats-Subject` and `Nats-Time-Stamp`, which the
/// `Switchyard-Original-*` headers state explicitly. `Nats-Msg-Id` moves to
/// [`header::ORIGINAL_MSG_ID`].
const SERVER_HEADER_PREFIX: &str = "nats-";

/// Longest detail kept: a reason is free text from a consumer, and the copy must stay within
/// the server's message size.
const MAX_DETAIL_CHARS: usize = 1024;

/// The kinds of failure, as the reason header names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReasonKind {
    MaxDeliveries,
    HandlerRejected,
    Terminated,
    SchemaViolation,
}

impl ReasonKind {
    pub const ALL: [ReasonKind; 4] = [
        Self::MaxDeliveries,
        Self::HandlerRejected,
        Self::Terminated,
        Self::SchemaViolation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxDeliveries => "MaxDeliveries",
            Self::HandlerRejected => "HandlerRejected",
            Self::Terminated => "Terminated",
            Self::SchemaViolation => "SchemaViolation",
        }
    }

    /// The DeadLetterPolicy capture setting that covers this kind: a handler's refusal is a
    /// termination.
    pub fn captured_by(self) -> CaptureReason {
        match self {
            Self::MaxDeliveries => CaptureReason::MaxDeliveries,
            Self::HandlerRejected | Self::Terminated => CaptureReason::Terminated,
            Self::SchemaViolation => CaptureReason::SchemaViolation,
        }
    }
}

impl fmt::Display for ReasonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReasonKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                "expected one of MaxDeliveries, HandlerRejected, Terminated, SchemaViolation"
                    .to_string()
            })
    }
}

/// Why an event became a dead letter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// It reached its consumer's maximum number of deliveries.
    MaxDeliveries,
    /// Its handler answered with a status that will not change on retry.
    HandlerRejected { status: u16 },
    /// Its payload failed the Topic's schema.
    SchemaViolation { error: String },
    /// It was terminated for another reason, or by the server (which says why only since 2.11).
    Terminated { reason: Option<String> },
}

impl Reason {
    /// The reason of a terminated advisory, as the consumer that said `+TERM <reason>` (or the
    /// server) gave it.
    pub fn from_term(reason: Option<&str>) -> Self {
        let Some(reason) = reason.map(str::trim).filter(|r| !r.is_empty()) else {
            return Self::Terminated { reason: None };
        };
        if let Some(status) = reason
            .strip_prefix(HANDLER_REJECTED_PREFIX)
            .and_then(parse_http_status)
        {
            return Self::HandlerRejected { status };
        }
        // A dispatcher that retries in place (per-key order) gives up itself and says so.
        if reason == "MaxDeliveries" || reason.starts_with("MaxDeliveries:") {
            return Self::MaxDeliveries;
        }
        if let Some(error) = reason.strip_prefix(SCHEMA_VIOLATION_PREFIX) {
            return Self::SchemaViolation {
                error: error.trim().to_string(),
            };
        }
        Self::Terminated {
            reason: Some(reason.to_string()),
        }
    }

    /// What a consumer says after `+TERM ` so that [`Reason::from_term`] reads this reason back.
    pub fn term_reason(&self) -> String {
        match self {
            Self::MaxDeliveries => Self::MaxDeliveries.kind().as_str().to_string(),
            Self::HandlerRejected { status } => format!("{HANDLER_REJECTED_PREFIX}HTTP {status}"),
            Self::SchemaViolation { error } => format!("{SCHEMA_VIOLATION_PREFIX}{error}"),
            Self::Terminated { reason } => reason.clone().unwrap_or_default(),
        }
    }

    pub fn kind(&self) -> ReasonKind {
        match self {
            Self::MaxDeliveries => ReasonKind::MaxDeliveries,
            Self::HandlerRejected { .. } => ReasonKind::HandlerRejected,
            Self::SchemaViolation { .. } => ReasonKind::SchemaViolation,
            Self::Terminated { .. } => ReasonKind::Terminated,
        }
    }

    /// The detail header's value, if the reason has one.
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::MaxDeliveries | Self::Terminated { reason: None } => None,
            Self::HandlerRejected { status } => Some(format!("HTTP {status}")),
            Self::SchemaViolation { error } => Some(error.clone()),
            Self::Terminated {
                reason: Some(reason),
            } => Some(reason.clone()),
        }
    }

    /// The reason a stored dead letter names in its reason and detail headers.
    pub fn from_headers(kind: ReasonKind, detail: Option<&str>) -> Result<Self, String> {
        Ok(match kind {
            ReasonKind::MaxDeliveries => Self::MaxDeliveries,
            ReasonKind::HandlerRejected => {
                let detail = detail.ok_or("HandlerRejected needs the status in the detail")?;
                Self::HandlerRejected {
                    status: parse_http_status(detail)
                        .ok_or_else(|| format!("{detail:?} is not `HTTP <status>`"))?,
                }
            }
            ReasonKind::SchemaViolation => Self::SchemaViolation {
                error: detail.unwrap_or_default().to_string(),
            },
            ReasonKind::Terminated => Self::Terminated {
                reason: detail.map(str::to_string),
            },
        })
    }
}

/// `HTTP 400` → 400.
fn parse_http_status(text: &str) -> Option<u16> {
    let digits = text.trim().strip_prefix("HTTP ")?;
    (digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The message id of the copy of the event `sequence` of `stream` that `consumer` gave up on.
/// Each failure of an event is stored once within the target's duplicate window, however often
/// the relay retries; another consumer giving up on the same event is another dead letter.
pub fn dead_letter_id(stream: &str, consumer: &str, sequence: u64) -> String {
    format!("{stream}:{consumer}:{sequence}")
}

/// Where a Topic's events live, for turning a subject back into an event type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectLayout {
    /// The subject prefix every event of the Topic has, `<namespace>.<topic>` by default (with
    /// or without the trailing `.`).
    pub topic_prefix: String,
    /// Whether the stream inserts the partition number as the first token after the prefix.
    pub partitioned: bool,
}

impl SubjectLayout {
    /// The tokens naming the event type (and key, if any) of a subject of the Topic: the subject
    /// minus the Topic's prefix (and partition), or the whole subject when it lies outside.
    pub fn event_tokens<'s>(&self, subject: &'s str) -> &'s str {
        let prefix = self.topic_prefix.trim_end_matches('.');
        let Some(rest) = subject
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('.'))
            .filter(|rest| !rest.is_empty() && !prefix.is_empty())
        else {
            return subject;
        };
        if !self.partitioned {
            return rest;
        }
        match rest.split_once('.') {
            Some((partition, tokens)) if partition.bytes().all(|b| b.is_ascii_digit()) => tokens,
            _ => rest,
        }
    }

    /// The subject of the dead letter of an event published on `subject`.
    pub fn copy_subject(&self, target_prefix: &str, subject: &str) -> String {
        format!(
            "{}.{}",
            target_prefix.trim_end_matches('.'),
            self.event_tokens(subject)
        )
    }
}

/// The facts a dead letter records about its original.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub reason: Reason,
    /// The original's subject as stored.
    pub subject: String,
    pub stream: String,
    pub sequence: u64,
    pub consumer: String,
    /// Deliveries to the consumer, the failed one included.
    pub deliveries: u64,
    /// When the original was stored.
    pub stored_at: OffsetDateTime,
    /// When the dead letter was made.
    pub dead_lettered_at: OffsetDateTime,
    /// The original's `Nats-Msg-Id`, if it had one.
    pub msg_id: Option<String>,
}

/// A stored message that cannot be read as a dead letter.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a dead letter: header {0} is missing")]
    Missing(&'static str),
    #[error("header {name} has the invalid value {value:?}: {problem}")]
    Invalid {
        name: &'static str,
        value: String,
        problem: String,
    },
}

impl DeadLetter {
    /// The copy's message id (see [`dead_letter_id`]).
    pub fn message_id(&self) -> String {
        dead_letter_id(&self.stream, &self.consumer, self.sequence)
    }

    /// The copy's headers: the original's own (`original`), without the server's, plus the
    /// facts of this dead letter and its message id.
    pub fn headers(&self, original: Option<&HeaderMap>) -> HeaderMap {
        // Facts an earlier dead letter or replay left on the original are restated, not kept.
        let mut headers = user_headers(original, |name| {
            !header::FACTS
                .iter()
                .chain([&header::ORIGINAL_MSG_ID])
                .any(|fact| fact.eq_ignore_ascii_case(name))
        });
        let mut set = |name: &str, value: &str| set_header(&mut headers, name, value);
        set(header::REASON, self.reason.kind().as_str());
        if let Some(detail) = self.reason.detail() {
            set(header::DETAIL, &truncate(&detail, MAX_DETAIL_CHARS));
        }
        set(header::ORIGINAL_SUBJECT, &self.subject);
        set(header::ORIGINAL_STREAM, &self.stream);
        set(header::ORIGINAL_SEQUENCE, &self.sequence.to_string());
        set(header::ORIGINAL_CONSUMER, &self.consumer);
        set(header::DELIVERY_COUNT, &self.deliveries.to_string());
        set(header::ORIGINAL_TIME, &rfc3339(self.stored_at));
        set(header::DEAD_LETTER_TIME, &rfc3339(self.dead_lettered_at));
        if let Some(id) = &self.msg_id {
            set(header::ORIGINAL_MSG_ID, id);
        }
        set_header(
            &mut headers,
            async_nats::header::NATS_MESSAGE_ID.as_ref(),
            &self.message_id(),
        );
        headers
    }

    /// Reads a stored dead letter's headers back.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, FormatError> {
        let text = |name: &'static str| headers.get(name).map(HeaderValue::as_str);
        let required = |name: &'static str| text(name).ok_or(FormatError::Missing(name));
        let invalid = |name: &'static str, value: &str, problem: String| FormatError::Invalid {
            name,
            value: value.to_string(),
            problem,
        };
        let number = |name: &'static str| {
            let value = required(name)?;
            value
                .parse::<u64>()
                .map_err(|e| invalid(name, value, e.to_string()))
        };
        let time = |name: &'static str| {
            let value = required(name)?;
            OffsetDateTime::parse(value, &Rfc3339)
                .map_err(|e| invalid(name, value, format!("not an RFC 3339 time: {e}")))
        };
        let kind_text = required(header::REASON)?;
        let kind = kind_text
            .parse()
            .map_err(|e| invalid(header::REASON, kind_text, e))?;
        let detail = text(header::DETAIL);
        let reason = Reason::from_headers(kind, detail)
            .map_err(|e| invalid(header::DETAIL, detail.unwrap_or_default(), e))?;
        Ok(Self {
            reason,
            subject: required(header::ORIGINAL_SUBJECT)?.to_string(),
            stream: required(header::ORIGINAL_STREAM)?.to_string(),
            sequence: number(header::ORIGINAL_SEQUENCE)?,
            consumer: required(header::ORIGINAL_CONSUMER)?.to_string(),
            deliveries: number(header::DELIVERY_COUNT)?,
            stored_at: time(header::ORIGINAL_TIME)?,
            dead_lettered_at: time(header::DEAD_LETTER_TIME)?,
            msg_id: text(header::ORIGINAL_MSG_ID).map(str::to_string),
        })
    }
}

/// The original's `Nats-Msg-Id`, if it has one.
pub fn original_msg_id(headers: Option<&HeaderMap>) -> Option<String> {
    headers?
        .get(async_nats::header::NATS_MESSAGE_ID)
        .map(|v| v.as_str().to_string())
        .filter(|id| !id.is_empty())
}

/// `<dead-letter stream>:<sequence>`, the value of [`header::REPLAYED_FROM`].
pub fn replayed_from(dead_letter_stream: &str, sequence: u64) -> String {
    format!("{dead_letter_stream}:{sequence}")
}

/// The message id of a replay of the dead letter `sequence` of `dead_letter_stream`, answering
/// `trigger` (the replay annotation's value, or an id the CLI makes per run): replaying the same
/// request twice within the Topic's duplicate window stores the event once.
pub fn replay_message_id(dead_letter_stream: &str, sequence: u64, trigger: &str) -> String {
    format!("{dead_letter_stream}:{sequence}:{trigger}")
}

/// The headers of a replay of a stored dead letter: the user's headers as they were, the
/// original's message id kept in [`header::ORIGINAL_MSG_ID`], where the replay came from, and the
/// replay's own message id.
pub fn replay_headers(
    dead_letter: &HeaderMap,
    dead_letter_stream: &str,
    sequence: u64,
    trigger: &str,
) -> HeaderMap {
    let mut headers = user_headers(Some(dead_letter), |name| {
        !header::FACTS
            .iter()
            .any(|fact| fact.eq_ignore_ascii_case(name))
    });
    set_header(
        &mut headers,
        header::REPLAYED_FROM,
        &replayed_from(dead_letter_stream, sequence),
    );
    set_header(
        &mut headers,
        async_nats::header::NATS_MESSAGE_ID.as_ref(),
        &replay_message_id(dead_letter_stream, sequence, trigger),
    );
    headers
}

/// The headers of `original` a copy keeps: none of the server's, and only those `keep` accepts.
fn user_headers(original: Option<&HeaderMap>, keep: impl Fn(&str) -> bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in original.into_iter().flat_map(HeaderMap::iter) {
        let text: &str = name.as_ref();
        let server = text
            .get(..SERVER_HEADER_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(SERVER_HEADER_PREFIX));
        if server || !keep(text) {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

/// Replaces a header. Values come from advisories and consumers: characters a header cannot
/// hold become spaces rather than a panic or a refused publish.
fn set_header(headers: &mut HeaderMap, name: &str, value: &str) {
    let Ok(name) = name.parse::<HeaderName>() else {
        return;
    };
    let clean: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if let Ok(value) = clean.parse::<HeaderValue>() {
        headers.insert(name, value);
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// RFC 3339 in UTC. A time the format cannot express (beyond year 9999) becomes the epoch
/// rather than a missing header.
fn rfc3339(time: OffsetDateTime) -> String {
    time.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, *value);
        }
        map
    }

    fn value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
        headers.get(name).map(HeaderValue::as_str)
    }

    fn sample() -> DeadLetter {
        DeadLetter {
            reason: Reason::HandlerRejected { status: 400 },
            subject: "shop.orders.order.placed".into(),
            stream: "shop_orders".into(),
            sequence: 42,
            consumer: "sub_shop_billing".into(),
            deliveries: 3,
            stored_at: OffsetDateTime::parse("2025-03-01T10:00:00.123456789Z", &Rfc3339).unwrap(),
            dead_lettered_at: OffsetDateTime::parse("2025-03-01T10:00:05Z", &Rfc3339).unwrap(),
            msg_id: Some("order-7".into()),
        }
    }

    #[test]
    fn term_reasons_are_classified() {
        assert_eq!(
            Reason::from_term(Some("HandlerRejected: HTTP 400")),
            Reason::HandlerRejected { status: 400 }
        );
        assert_eq!(
            Reason::from_term(Some("SchemaViolation: /amount: -1 is less than 0")),
            Reason::SchemaViolation {
                error: "/amount: -1 is less than 0".into()
            }
        );
        assert_eq!(
            Reason::from_term(Some("InvalidEvent: no type")),
            Reason::Terminated {
                reason: Some("InvalidEvent: no type".into())
            }
        );
        // The dispatcher's own give-up (per-key order retries in place).
        assert_eq!(
            Reason::from_term(Some("MaxDeliveries: 5 deliveries, the last: HTTP 503")),
            Reason::MaxDeliveries
        );
        // A refusal without a well-formed status is still kept, word for word.
        assert_eq!(
            Reason::from_term(Some("HandlerRejected: teapot")),
            Reason::Terminated {
                reason: Some("HandlerRejected: teapot".into())
            }
        );
        for none in [None, Some(""), Some("  ")] {
            assert_eq!(Reason::from_term(none), Reason::Terminated { reason: None });
        }
    }

    #[test]
    fn term_reasons_read_back() {
        for reason in [
            Reason::HandlerRejected { status: 422 },
            Reason::SchemaViolation {
                error: "missing id".into(),
            },
            Reason::Terminated {
                reason: Some("bad".into()),
            },
            Reason::Terminated { reason: None },
        ] {
            assert_eq!(Reason::from_term(Some(&reason.term_reason())), reason);
        }
    }

    #[test]
    fn kinds_are_captured_by_their_policy_setting() {
        use CaptureReason as C;
        let expected = [
            (ReasonKind::MaxDeliveries, C::MaxDeliveries),
            (ReasonKind::HandlerRejected, C::Terminated),
            (ReasonKind::Terminated, C::Terminated),
            (ReasonKind::SchemaViolation, C::SchemaViolation),
        ];
        for (kind, capture) in expected {
            assert_eq!(kind.captured_by(), capture);
            assert_eq!(kind.as_str().parse::<ReasonKind>(), Ok(kind));
        }
        assert!("maxdeliveries".parse::<ReasonKind>().is_err());
    }

    #[test]
    fn copies_keep_user_headers_and_state_every_fact() {
        let original = headers(&[
            ("ce-type", "order.placed"),
            ("traceparent", "00-abc-def-01"),
            ("X-Tags", "a"),
            ("X-Tags", "b"),
            ("Nats-Msg-Id", "order-7"),
            ("Nats-Expected-Stream", "shop_orders"),
            ("Nats-Expected-Last-Sequence", "41"),
            ("Nats-Rollup", "sub"),
            ("Nats-TTL", "5s"),
            ("nats-schedule", "@every 1s"),
            ("Nats-Stream", "shop_orders"),
            ("Nats-Sequence", "42"),
            ("Switchyard-Dead-Letter-Reason", "Terminated"),
        ]);
        let copy = sample().headers(Some(&original));

        assert_eq!(value(&copy, "ce-type"), Some("order.placed"));
        assert_eq!(value(&copy, "traceparent"), Some("00-abc-def-01"));
        let tags: Vec<&str> = copy.get_all("X-Tags").map(HeaderValue::as_str).collect();
        assert_eq!(tags, ["a", "b"]);
        for dropped in [
            "Nats-Expected-Stream",
            "Nats-Expected-Last-Sequence",
            "Nats-Rollup",
            "Nats-TTL",
            "nats-schedule",
            "Nats-Stream",
            "Nats-Sequence",
        ] {
            assert_eq!(value(&copy, dropped), None, "{dropped} was copied");
        }
        assert_eq!(
            value(&copy, "Nats-Msg-Id"),
            Some("shop_orders:sub_shop_billing:42")
        );
        assert_eq!(value(&copy, header::ORIGINAL_MSG_ID), Some("order-7"));
        assert_eq!(value(&copy, header::REASON), Some("HandlerRejected"));
        assert_eq!(value(&copy, header::DETAIL), Some("HTTP 400"));
        assert_eq!(
            value(&copy, header::ORIGINAL_SUBJECT),
            Some("shop.orders.order.placed")
        );
        assert_eq!(value(&copy, header::ORIGINAL_STREAM), Some("shop_orders"));
        assert_eq!(value(&copy, header::ORIGINAL_SEQUENCE), Some("42"));
        assert_eq!(
            value(&copy, header::ORIGINAL_CONSUMER),
            Some("sub_shop_billing")
        );
        assert_eq!(value(&copy, header::DELIVERY_COUNT), Some("3"));
        assert_eq!(
            value(&copy, header::ORIGINAL_TIME),
            Some("2025-03-01T10:00:00.123456789Z")
        );
        assert_eq!(
            value(&copy, header::DEAD_LETTER_TIME),
            Some("2025-03-01T10:00:05Z")
        );
    }

    #[test]
    fn dead_letters_read_back() {
        for reason in [
            Reason::MaxDeliveries,
            Reason::HandlerRejected { status: 404 },
            Reason::SchemaViolation {
                error: "/id: required".into(),
            },
            Reason::Terminated {
                reason: Some("stop".into()),
            },
            Reason::Terminated { reason: None },
        ] {
            let letter = DeadLetter { reason, ..sample() };
            assert_eq!(DeadLetter::from_headers(&letter.headers(None)), Ok(letter));
        }
        let without_id = DeadLetter {
            msg_id: None,
            ..sample()
        };
        let stale = headers(&[(header::ORIGINAL_MSG_ID, "from an earlier dead letter")]);
        assert_eq!(
            DeadLetter::from_headers(&without_id.headers(Some(&stale))),
            Ok(without_id)
        );
    }

    #[test]
    fn unreadable_dead_letters_say_which_header_is_wrong() {
        assert_eq!(
            DeadLetter::from_headers(&headers(&[("ce-type", "x")])),
            Err(FormatError::Missing(header::REASON))
        );
        let good = sample().headers(None);
        let with = |name: &str, value: &str| {
            let mut h = good.clone();
            h.insert(name, value);
            DeadLetter::from_headers(&h).unwrap_err()
        };
        let without = |name: &str| {
            let h: HeaderMap = good
                .iter()
                .filter(|(n, _)| AsRef::<str>::as_ref(*n) != name)
                .flat_map(|(n, values)| values.iter().map(|v| (n.clone(), v.clone())))
                .collect();
            DeadLetter::from_headers(&h).unwrap_err()
        };
        assert_eq!(
            without(header::ORIGINAL_STREAM),
            FormatError::Missing(header::ORIGINAL_STREAM)
        );
        let problems = [
            with(header::REASON, "Exploded"),
            with(header::ORIGINAL_SEQUENCE, "forty-two"),
            with(header::DELIVERY_COUNT, "-1"),
            with(header::ORIGINAL_TIME, "yesterday"),
            with(header::DETAIL, "HTTP four hundred"),
        ];
        let names: Vec<&str> = problems
            .iter()
            .map(|p| match p {
                FormatError::Invalid { name, .. } => *name,
                other => panic!("expected an invalid value, got {other}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                header::REASON,
                header::ORIGINAL_SEQUENCE,
                header::DELIVERY_COUNT,
                header::ORIGINAL_TIME,
                header::DETAIL
            ]
        );
        assert!(
            problems[3].to_string().contains("RFC 3339"),
            "{}",
            problems[3]
        );
    }

    #[test]
    fn free_text_cannot_break_the_headers() {
        let letter = DeadLetter {
            reason: Reason::Terminated {
                reason: Some(format!("line one\r\nline two {}", "x".repeat(5000))),
            },
            consumer: "weird\nconsumer".into(),
            ..sample()
        };
        let copy = letter.headers(None);
        let detail = value(&copy, header::DETAIL).unwrap();
        assert!(detail.starts_with("line one  line two x"));
        assert!(detail.chars().count() <= MAX_DETAIL_CHARS + 1);
        assert_eq!(
            value(&copy, header::ORIGINAL_CONSUMER),
            Some("weird consumer")
        );
    }

    #[test]
    fn copy_subjects_keep_the_event_type() {
        let plain = SubjectLayout {
            topic_prefix: "shop.orders".into(),
            partitioned: false,
        };
        assert_eq!(
            plain.copy_subject("shop.dlq", "shop.orders.order.placed"),
            "shop.dlq.order.placed"
        );
        assert_eq!(
            SubjectLayout {
                topic_prefix: "shop.orders.".into(),
                ..plain.clone()
            }
            .copy_subject("shop.dlq.", "shop.orders.order.placed"),
            "shop.dlq.order.placed"
        );
        // Outside the Topic's prefix (declared subjects), or the prefix alone: the whole subject.
        assert_eq!(
            plain.copy_subject("shop.dlq", "shop.payments.received"),
            "shop.dlq.shop.payments.received"
        );
        assert_eq!(
            plain.copy_subject("shop.dlq", "shop.orders"),
            "shop.dlq.shop.orders"
        );
        assert_eq!(
            plain.copy_subject("shop.dlq", "shop.ordersx.a"),
            "shop.dlq.shop.ordersx.a"
        );
        let partitioned = SubjectLayout {
            partitioned: true,
            ..plain
        };
        assert_eq!(
            partitioned.copy_subject("shop.dlq", "shop.orders.3.order.placed.k1"),
            "shop.dlq.order.placed.k1"
        );
    }

    #[test]
    fn replays_restore_the_user_headers_and_name_their_source() {
        let original = headers(&[("ce-type", "order.placed"), ("Nats-Msg-Id", "order-7")]);
        let stored = sample().headers(Some(&original));
        let replay = replay_headers(&stored, "shop_dlq_dlq", 9, "2025-03-01T12:00:00Z");
        assert_eq!(value(&replay, "ce-type"), Some("order.placed"));
        assert_eq!(value(&replay, header::ORIGINAL_MSG_ID), Some("order-7"));
        assert_eq!(
            value(&replay, header::REPLAYED_FROM),
            Some("shop_dlq_dlq:9")
        );
        assert_eq!(
            value(&replay, "Nats-Msg-Id"),
            Some("shop_dlq_dlq:9:2025-03-01T12:00:00Z")
        );
        for fact in header::FACTS {
            assert_eq!(value(&replay, fact), None, "{fact} was replayed");
        }
    }

    #[test]
    fn message_ids() {
        assert_eq!(dead_letter_id("s", "c", 7), "s:c:7");
        assert_eq!(replay_message_id("d", 7, "t"), "d:7:t");
        assert_eq!(
            original_msg_id(Some(&headers(&[("Nats-Msg-Id", "x")]))),
            Some("x".into())
        );
        assert_eq!(
            original_msg_id(Some(&headers(&[("Nats-Msg-Id", "")]))),
            None
        );
        assert_eq!(original_msg_id(None), None);
    }
}
