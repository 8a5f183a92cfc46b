//! What `switchyard dlq` prints: tables and summaries for people, JSON for scripts. Pure.

use std::fmt::Write as _;

use async_nats::HeaderMap;
use base64::Engine as _;
use serde::Serialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::deadletter::{DeadLetter, Listed, ReplayReport, Shown, format::FormatError};

/// Longest detail shown in a table cell.
const DETAIL_CHARS: usize = 80;

/// A listing as a table, oldest first; `more` says the limit cut it short.
pub fn list_text(stream: &str, entries: &[Listed], more: bool, now: OffsetDateTime) -> String {
    if entries.is_empty() {
        return format!("No dead letters in stream {stream} match.\n");
    }
    let mut rows = vec![[
        "SEQ".to_string(),
        "AGE".into(),
        "REASON".into(),
        "DELIVERIES".into(),
        "SUBJECT".into(),
        "DETAIL".into(),
    ]];
    for entry in entries {
        rows.push(match &entry.dead_letter {
            Ok(letter) => [
                entry.sequence.to_string(),
                age(now - letter.dead_lettered_at),
                letter.reason.kind().to_string(),
                letter.deliveries.to_string(),
                letter.subject.clone(),
                shorten(&letter.reason.detail().unwrap_or_default(), DETAIL_CHARS),
            ],
            Err(problem) => [
                entry.sequence.to_string(),
                age(now - entry.stored_at),
                "(unreadable)".into(),
                "-".into(),
                entry.subject.clone(),
                shorten(&problem.to_string(), DETAIL_CHARS),
            ],
        });
    }
    let mut out = table(&rows);
    if more {
        let next = entries.last().map_or(1, |e| e.sequence + 1);
        let _ = writeln!(
            out,
            "(more match: raise --limit, or continue with --from-seq {next})"
        );
    }
    out
}

/// A listing as JSON: `{"stream", "deadLetters": [...], "more"}`.
pub fn list_json(stream: &str, entries: &[Listed], more: bool) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Listing<'a> {
        stream: &'a str,
        dead_letters: Vec<Entry>,
        more: bool,
    }
    let listing = Listing {
        stream,
        dead_letters: entries
            .iter()
            .map(|e| Entry::new(e.sequence, &e.subject, e.stored_at, &e.dead_letter))
            .collect(),
        more,
    };
    json(&listing)
}

/// One dead letter in full, for people.
pub fn show_text(stream: &str, shown: &Shown, now: OffsetDateTime) -> String {
    let message = &shown.message;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Dead letter {} of stream {stream} (subject {}, stored {})",
        message.sequence,
        message.subject,
        rfc3339(message.time)
    );
    match &shown.dead_letter {
        Ok(letter) => {
            let reason = match letter.reason.detail() {
                Some(detail) => format!("{} ({detail})", letter.reason.kind()),
                None => letter.reason.kind().to_string(),
            };
            let fields = [
                ("Reason", reason),
                ("Original subject", letter.subject.clone()),
                (
                    "Original",
                    format!("stream {}, sequence {}", letter.stream, letter.sequence),
                ),
                ("Consumer", letter.consumer.clone()),
                ("Deliveries", letter.deliveries.to_string()),
                ("Published", rfc3339(letter.stored_at)),
                (
                    "Dead-lettered",
                    format!(
                        "{} ({} ago)",
                        rfc3339(letter.dead_lettered_at),
                        age(now - letter.dead_lettered_at)
                    ),
                ),
            ];
            for (name, value) in fields {
                let _ = writeln!(out, "{:<17} {value}", format!("{name}:"));
            }
            if let Some(id) = &letter.msg_id {
                let _ = writeln!(out, "{:<17} {id}", "Original msg id:");
            }
        }
        Err(problem) => {
            let _ = writeln!(out, "Not a readable dead letter: {problem}");
        }
    }
    let _ = writeln!(out, "Headers:");
    for (name, value) in header_pairs(&message.headers) {
        let _ = writeln!(out, "  {name}: {value}");
    }
    match std::str::from_utf8(&message.payload) {
        Ok(text) => {
            let _ = writeln!(out, "Payload ({} bytes):", message.payload.len());
            out.push_str(text);
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
        Err(_) => {
            let _ = writeln!(
                out,
                "Payload ({} bytes, binary, base64):\n{}",
                message.payload.len(),
                base64::engine::general_purpose::STANDARD.encode(&message.payload)
            );
        }
    }
    out
}

/// One dead letter in full as JSON: the listing's fields plus `headers` (name → values) and
/// `payload` (text) or `payloadBase64` (binary).
pub fn show_json(stream: &str, shown: &Shown) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Full<'a> {
        stream: &'a str,
        #[serde(flatten)]
        entry: Entry,
        headers: serde_json::Map<String, serde_json::Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        payload: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        payload_base64: Option<String>,
    }
    let message = &shown.message;
    let mut headers = serde_json::Map::new();
    for (name, value) in header_pairs(&message.headers) {
        let values = headers
            .entry(name)
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(values) = values {
            values.push(value.into());
        }
    }
    let text = std::str::from_utf8(&message.payload).ok();
    json(&Full {
        stream,
        entry: Entry::new(
            message.sequence,
            &message.subject,
            message.time,
            &shown.dead_letter,
        ),
        headers,
        payload: text,
        payload_base64: text
            .is_none()
            .then(|| base64::engine::general_purpose::STANDARD.encode(&message.payload)),
    })
}

/// What a replay did, for people.
pub fn replay_text(stream: &str, trigger: &str, report: &ReplayReport) -> String {
    let mut out = format!(
        "Replayed {} of {} selected dead letters from stream {stream} (replay id {trigger})",
        report.replayed, report.matched
    );
    if report.duplicates > 0 {
        let _ = write!(
            out,
            "; {} had already been replayed with this id",
            report.duplicates
        );
    }
    if report.failed > 0 {
        let _ = write!(out, "; {} failed:", report.failed);
    }
    out.push('\n');
    for failure in &report.failures {
        let _ = writeln!(out, "  {failure}");
    }
    let undescribed = report.failed.saturating_sub(report.failures.len() as u64);
    if undescribed > 0 {
        let _ = writeln!(out, "  … and {undescribed} more");
    }
    out
}

/// What a replay did, as JSON.
pub fn replay_json(stream: &str, trigger: &str, report: &ReplayReport) -> String {
    #[derive(Serialize)]
    struct Replayed<'a> {
        stream: &'a str,
        trigger: &'a str,
        matched: u64,
        replayed: u64,
        duplicates: u64,
        failed: u64,
        failures: &'a [String],
    }
    json(&Replayed {
        stream,
        trigger,
        matched: report.matched,
        replayed: report.replayed,
        duplicates: report.duplicates,
        failed: report.failed,
        failures: &report.failures,
    })
}

/// What a purge did, for people.
pub fn purge_text(stream: &str, purged: u64) -> String {
    format!("Purged {purged} dead letters from stream {stream}\n")
}

/// What a purge did, as JSON.
pub fn purge_json(stream: &str, purged: u64) -> String {
    json(&serde_json::json!({ "stream": stream, "purged": purged }))
}

/// A dead letter as JSON sees it: the stored message's place, and either the facts it records
/// or why it cannot be read.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    sequence: u64,
    subject: String,
    stored_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_letter: Option<Facts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Facts {
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    original_subject: String,
    original_stream: String,
    original_sequence: u64,
    consumer: String,
    deliveries: u64,
    published_at: String,
    dead_lettered_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_msg_id: Option<String>,
}

impl Entry {
    fn new(
        sequence: u64,
        subject: &str,
        stored_at: OffsetDateTime,
        dead_letter: &Result<DeadLetter, FormatError>,
    ) -> Self {
        let (dead_letter, problem) = match dead_letter {
            Ok(letter) => (
                Some(Facts {
                    reason: letter.reason.kind().to_string(),
                    detail: letter.reason.detail(),
                    original_subject: letter.subject.clone(),
                    original_stream: letter.stream.clone(),
                    original_sequence: letter.sequence,
                    consumer: letter.consumer.clone(),
                    deliveries: letter.deliveries,
                    published_at: rfc3339(letter.stored_at),
                    dead_lettered_at: rfc3339(letter.dead_lettered_at),
                    original_msg_id: letter.msg_id.clone(),
                }),
                None,
            ),
            Err(problem) => (None, Some(problem.to_string())),
        };
        Self {
            sequence,
            subject: subject.to_string(),
            stored_at: rfc3339(stored_at),
            dead_letter,
            problem,
        }
    }
}

fn json<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("plain data serializes");
    text.push('\n');
    text
}

/// Headers in a stable order (by name, values as stored).
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = headers
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| (name.to_string(), value.as_str().to_string()))
        })
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A duration as people read an age: the largest whole unit (`45s`, `12m`, `3h`, `5d`).
fn age(elapsed: time::Duration) -> String {
    let seconds = elapsed.whole_seconds().max(0);
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn shorten(text: &str, max_chars: usize) -> String {
    let single_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match single_line.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &single_line[..end]),
        None => single_line,
    }
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| time.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        broker::{Bytes, StoredMessage},
        deadletter::Reason,
    };

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    fn letter() -> DeadLetter {
        DeadLetter {
            reason: Reason::HandlerRejected { status: 400 },
            subject: "shop.orders.order.placed".into(),
            stream: "shop_orders".into(),
            sequence: 42,
            consumer: "sub_shop_billing".into(),
            deliveries: 1,
            stored_at: at("2025-03-01T09:59:00Z"),
            dead_lettered_at: at("2025-03-01T10:00:00Z"),
            msg_id: Some("order-7".into()),
        }
    }

    fn entries() -> Vec<Listed> {
        vec![
            Listed {
                sequence: 3,
                subject: "shop.dlq.order.placed".into(),
                stored_at: at("2025-03-01T10:00:01Z"),
                dead_letter: Ok(letter()),
            },
            Listed {
                sequence: 4,
                subject: "shop.dlq.junk".into(),
                stored_at: at("2025-03-01T11:00:00Z"),
                dead_letter: Err(FormatError::Missing("Switchyard-Dead-Letter-Reason")),
            },
        ]
    }

    #[test]
    fn listings_are_aligned_tables() {
        let text = list_text("shop_dlq", &entries(), true, at("2025-03-01T12:00:00Z"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("SEQ  AGE  REASON"), "{text}");
        assert!(
            lines[1].starts_with("3    2h   HandlerRejected  1  "),
            "{text}"
        );
        assert!(lines[1].contains("shop.orders.order.placed"), "{text}");
        assert!(lines[1].ends_with("HTTP 400"), "{text}");
        let subject_column = lines[0].find("SUBJECT").unwrap();
        assert_eq!(lines[1].find("shop.orders"), Some(subject_column));
        assert!(lines[2].contains("(unreadable)"), "{text}");
        assert!(lines[2].contains("header Switchyard-Dead-Letter-Reason is missing"));
        assert_eq!(
            lines[3],
            "(more match: raise --limit, or continue with --from-seq 5)"
        );
        assert_eq!(
            list_text("shop_dlq", &[], false, at("2025-03-01T12:00:00Z")),
            "No dead letters in stream shop_dlq match.\n"
        );
    }

    #[test]
    fn listings_in_json_name_every_fact() {
        let value: serde_json::Value =
            serde_json::from_str(&list_json("shop_dlq", &entries(), false)).unwrap();
        assert_eq!(value["stream"], "shop_dlq");
        assert_eq!(value["more"], false);
        let first = &value["deadLetters"][0];
        assert_eq!(first["sequence"], 3);
        assert_eq!(first["subject"], "shop.dlq.order.placed");
        let facts = &first["deadLetter"];
        assert_eq!(facts["reason"], "HandlerRejected");
        assert_eq!(facts["detail"], "HTTP 400");
        assert_eq!(facts["originalSubject"], "shop.orders.order.placed");
        assert_eq!(facts["originalStream"], "shop_orders");
        assert_eq!(facts["originalSequence"], 42);
        assert_eq!(facts["consumer"], "sub_shop_billing");
        assert_eq!(facts["deliveries"], 1);
        assert_eq!(facts["deadLetteredAt"], "2025-03-01T10:00:00Z");
        assert_eq!(facts["originalMsgId"], "order-7");
        let second = &value["deadLetters"][1];
        assert!(second.get("deadLetter").is_none());
        assert_eq!(
            second["problem"],
            "not a dead letter: header Switchyard-Dead-Letter-Reason is missing"
        );
    }

    #[test]
    fn shown_dead_letters_have_headers_and_payload() {
        let mut headers = HeaderMap::new();
        headers.insert("ce-type", "order.placed");
        headers.append("X-Tag", "a");
        headers.append("X-Tag", "b");
        let shown = |payload: &'static [u8]| Shown {
            message: StoredMessage {
                subject: "shop.dlq.order.placed".into(),
                sequence: 3,
                headers: headers.clone(),
                payload: Bytes::from_static(payload),
                time: at("2025-03-01T10:00:01Z"),
            },
            dead_letter: Ok(letter()),
        };
        let text = show_text(
            "shop_dlq",
            &shown(b"{\"id\":7}"),
            at("2025-03-01T10:05:00Z"),
        );
        assert!(
            text.contains("Reason:           HandlerRejected (HTTP 400)"),
            "{text}"
        );
        assert!(
            text.contains("Dead-lettered:    2025-03-01T10:00:00Z (5m ago)"),
            "{text}"
        );
        assert!(text.contains("  X-Tag: a\n  X-Tag: b\n"), "{text}");
        assert!(text.ends_with("Payload (8 bytes):\n{\"id\":7}\n"), "{text}");

        let binary = show_text(
            "shop_dlq",
            &shown(&[0xff, 0x00]),
            at("2025-03-01T10:05:00Z"),
        );
        assert!(binary.ends_with("binary, base64):\n/wA=\n"), "{binary}");

        let value: serde_json::Value =
            serde_json::from_str(&show_json("shop_dlq", &shown(b"{\"id\":7}"))).unwrap();
        assert_eq!(value["stream"], "shop_dlq");
        assert_eq!(value["sequence"], 3);
        assert_eq!(value["deadLetter"]["reason"], "HandlerRejected");
        assert_eq!(value["headers"]["X-Tag"], serde_json::json!(["a", "b"]));
        assert_eq!(value["payload"], "{\"id\":7}");
        let value: serde_json::Value =
            serde_json::from_str(&show_json("shop_dlq", &shown(&[0xff]))).unwrap();
        assert!(value.get("payload").is_none());
        assert_eq!(value["payloadBase64"], "/w==");
    }

    #[test]
    fn replay_summaries_count_and_name_failures() {
        let report = ReplayReport {
            matched: 14,
            replayed: 10,
            duplicates: 1,
            failed: 3,
            failures: vec!["sequence 5: refused".into(), "sequence 9: refused".into()],
        };
        let text = replay_text("shop_dlq", "run-1", &report);
        assert_eq!(
            text,
            "Replayed 10 of 14 selected dead letters from stream shop_dlq (replay id run-1); \
             1 had already been replayed with this id; 3 failed:\n  sequence 5: refused\n  \
             sequence 9: refused\n  … and 1 more\n"
        );
        let value: serde_json::Value =
            serde_json::from_str(&replay_json("shop_dlq", "run-1", &report)).unwrap();
        assert_eq!(value["replayed"], 10);
        assert_eq!(value["failures"][1], "sequence 9: refused");
        let value: serde_json::Value = serde_json::from_str(&purge_json("shop_dlq", 4)).unwrap();
        assert_eq!(value["purged"], 4);
        assert_eq!(
            purge_text("shop_dlq", 4),
            "Purged 4 dead letters from stream shop_dlq\n"
        );
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let s = time::Duration::seconds;
        assert_eq!(age(s(-5)), "0s");
        assert_eq!(age(s(59)), "59s");
        assert_eq!(age(s(60)), "1m");
        assert_eq!(age(s(3599)), "59m");
        assert_eq!(age(s(7200)), "2h");
        assert_eq!(age(s(86_400 * 3 + 5)), "3d");
        assert_eq!(shorten("a\nb", 10), "a b");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }
}
