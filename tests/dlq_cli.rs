//! `switchyard dlq list|show|replay|purge` and the replay core against a real nats-server (and,
//! for `--policy`, a real kube-apiserver). Dead letters are stored as the relay stores them,
//! through the format module, into streams whose names are unique to the test and which a guard
//! deletes, also when the test fails.

mod common;

use std::{
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::{
    HeaderMap,
    jetstream::{
        AckKind,
        consumer::{AckPolicy, PullConsumer, pull},
        stream::{Config as StreamConfig, SubjectTransform},
    },
};
use common::{
    PrivateNats, StreamGuard, TestNamespace, connected, install_crds, kube_client, nats_url, unique,
};
use futures::StreamExt;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::Value;
use switchyard::{
    api::{DeadLetterPolicy, dead_letter_policy::CaptureReason},
    broker::{Broker, Bytes, StoredMessage, codes},
    deadletter::{
        AdvisoryScope, AdvisoryStream, DeadLetter, Progress, Reason, ReasonKind, Relay,
        RelayConfig, ReplayOptions, Route, Routes, Selection, SubjectLayout, Target,
        format::{self, header},
        inspect, replay,
    },
};
use time::OffsetDateTime;

/// An original stream (`<orig>.>`) and a dead-letter stream (`<dlq>.>`) of one test.
struct Streams {
    url: String,
    broker: Broker,
    orig: String,
    dlq: String,
    /// The next original sequence: each dead letter is of another event, so that the
    /// dead-letter stream's duplicate window does not fold them into one.
    next_original: AtomicU64,
    _guards: [StreamGuard; 2],
}

impl Streams {
    async fn new() -> Self {
        Self::on(&nats_url(), plain).await
    }

    async fn with_original(original: impl Fn(&str) -> StreamConfig) -> Self {
        Self::on(&nats_url(), original).await
    }

    /// A test's streams on the server at `url`, the original one configured by `original`
    /// (given its name).
    async fn on(url: &str, original: impl Fn(&str) -> StreamConfig) -> Self {
        let broker = connected(url).await;
        let (orig, dlq) = (unique("dlqorig"), unique("dlqdl"));
        let guards = [StreamGuard(orig.clone()), StreamGuard(dlq.clone())];
        let configs = [
            original(&orig),
            StreamConfig {
                name: dlq.clone(),
                subjects: vec![format!("{dlq}.>")],
                ..Default::default()
            },
        ];
        for config in configs {
            broker
                .jetstream()
                .create_stream(config)
                .await
                .expect("create stream");
        }
        Self {
            url: url.to_string(),
            broker,
            orig,
            dlq,
            next_original: AtomicU64::new(1),
            _guards: guards,
        }
    }

    /// Stores a dead letter of an event of type `event_type` in the original stream, as the
    /// relay would; returns its sequence in the dead-letter stream.
    async fn dead_letter(
        &self,
        reason: Reason,
        event_type: &str,
        dead_lettered_at: OffsetDateTime,
        payload: &'static str,
    ) -> u64 {
        let letter = DeadLetter {
            reason,
            subject: format!("{}.{event_type}", self.orig),
            stream: self.orig.clone(),
            sequence: self.next_original.fetch_add(1, Ordering::SeqCst),
            consumer: "billing".into(),
            deliveries: 3,
            stored_at: dead_lettered_at - time::Duration::seconds(5),
            dead_lettered_at,
            msg_id: Some(format!("order-{payload}")),
        };
        let mut original = HeaderMap::new();
        original.insert("ce-type", event_type);
        original.append("X-Tag", "a");
        original.append("X-Tag", "b");
        original.insert("Nats-Msg-Id", format!("order-{payload}").as_str());
        self.store_raw(
            format!("{}.{event_type}", self.dlq),
            letter.headers(Some(&original)),
            payload,
        )
        .await
    }

    /// Stores any message in the dead-letter stream; returns its sequence.
    async fn store_raw(&self, subject: String, headers: HeaderMap, payload: &'static str) -> u64 {
        self.broker
            .store(subject, headers, Bytes::from_static(payload.as_bytes()))
            .await
            .expect("store")
            .sequence
    }

    async fn count(&self, stream: &str) -> u64 {
        self.broker
            .stream_bounds(stream)
            .await
            .expect("stream bounds")
            .messages
    }

    /// The message `sequence` of `stream`, read as a consumer gets it (a get by sequence keeps
    /// only the last value of a repeated header).
    async fn message(&self, stream: &str, sequence: u64) -> StoredMessage {
        let mut reader = self
            .broker
            .read_stream(stream, sequence..=sequence, false)
            .await
            .expect("reader");
        let batch = reader.next_batch(1).await.expect("read");
        reader.close().await.expect("reader closes");
        batch
            .into_iter()
            .find(|m| m.sequence == sequence)
            .unwrap_or_else(|| panic!("{stream} has no message {sequence}"))
    }

    /// No reader left a consumer behind.
    async fn assert_no_consumers(&self) {
        let left = self
            .broker
            .consumer_names(&self.dlq)
            .await
            .expect("consumer names");
        assert_eq!(left, Vec::<String>::new(), "consumers left on {}", self.dlq);
    }

    /// Runs `switchyard dlq <args>` against the test's NATS with stdin closed.
    async fn cli(&self, args: &[&str]) -> Run {
        dlq_run(&self.url, args).await
    }
}

/// What a CLI run did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

async fn dlq_run(url: &str, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("dlq")
        .args(args)
        .args(["--nats-url", url])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run switchyard");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// An original stream taking `<name>.>`.
fn plain(name: &str) -> StreamConfig {
    StreamConfig {
        name: name.to_string(),
        subjects: vec![format!("{name}.>")],
        ..Default::default()
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Three dead letters: MaxDeliveries two hours ago, HandlerRejected and SchemaViolation now.
async fn three(s: &Streams) {
    let two_hours_ago = now() - time::Duration::hours(2);
    s.dead_letter(Reason::MaxDeliveries, "order.placed", two_hours_ago, "1")
        .await;
    s.dead_letter(
        Reason::HandlerRejected { status: 400 },
        "order.cancelled",
        now(),
        "2",
    )
    .await;
    s.dead_letter(
        Reason::SchemaViolation {
            error: "/amount: -1 is less than 0".into(),
        },
        "payment.received",
        now(),
        "3",
    )
    .await;
}

fn sequences(listing: &Value) -> Vec<u64> {
    listing["deadLetters"]
        .as_array()
        .expect("deadLetters")
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_dead_letters_as_a_table_and_as_json() {
    let s = Streams::new().await;
    three(&s).await;

    let text = s.cli(&["list", "--stream", &s.dlq]).await;
    text.assert_code(0);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", text.stdout);
    for column in ["SEQ", "AGE", "REASON", "DELIVERIES", "SUBJECT", "DETAIL"] {
        assert!(lines[0].contains(column), "{}", lines[0]);
    }
    assert!(lines[1].starts_with('1'), "{}", lines[1]);
    assert!(lines[1].contains("MaxDeliveries"), "{}", lines[1]);
    assert!(lines[1].contains(" 2h "), "{}", lines[1]);
    assert!(lines[1].contains(&format!("{}.order.placed", s.orig)));
    assert!(lines[2].contains("HandlerRejected") && lines[2].ends_with("HTTP 400"));
    assert!(
        lines[3].ends_with("/amount: -1 is less than 0"),
        "{}",
        lines[3]
    );

    let json = s
        .cli(&["list", "--stream", &s.dlq, "--output", "json"])
        .await;
    let listing = json.assert_code(0).json();
    assert_eq!(listing["stream"], s.dlq.as_str());
    assert_eq!(listing["more"], false);
    assert_eq!(sequences(&listing), [1, 2, 3]);
    let first = &listing["deadLetters"][0];
    assert_eq!(first["subject"], format!("{}.order.placed", s.dlq));
    let facts = &first["deadLetter"];
    assert_eq!(facts["reason"], "MaxDeliveries");
    assert_eq!(facts["originalSubject"], format!("{}.order.placed", s.orig));
    assert_eq!(facts["originalStream"], s.orig.as_str());
    assert_eq!(facts["originalSequence"], 1);
    assert_eq!(facts["consumer"], "billing");
    assert_eq!(facts["deliveries"], 3);
    assert_eq!(facts["originalMsgId"], "order-1");

    let limited = s
        .cli(&[
            "list", "--stream", &s.dlq, "--output", "json", "--limit", "2",
        ])
        .await;
    let limited = limited.assert_code(0).json();
    assert_eq!(sequences(&limited), [1, 2]);
    assert_eq!(limited["more"], true);
    s.assert_no_consumers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_by_reason_subject_time_and_sequence() {
    let s = Streams::new().await;
    three(&s).await;
    let listed = |extra: Vec<String>| {
        let s = &s;
        async move {
            let mut args = vec!["list", "--stream", &s.dlq, "--output", "json"];
            args.extend(extra.iter().map(String::as_str));
            sequences(&s.cli(&args).await.assert_code(0).json())
        }
    };
    let args = |list: &[&str]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();

    assert_eq!(listed(args(&["--reason", "HandlerRejected"])).await, [2]);
    assert_eq!(
        listed(args(&["--reason", "MaxDeliveries,SchemaViolation"])).await,
        [1, 3]
    );
    let orders = format!("{}.order.*", s.orig);
    assert_eq!(listed(args(&["--subject", &orders])).await, [1, 2]);
    // The filter is on the original subject, not the dead letter's own.
    let own = format!("{}.>", s.dlq);
    assert_eq!(listed(args(&["--subject", &own])).await, Vec::<u64>::new());
    assert_eq!(listed(args(&["--since", "1h"])).await, [2, 3]);
    assert_eq!(listed(args(&["--until", "1h"])).await, [1]);
    let soon = rfc3339(now() + time::Duration::hours(1));
    assert_eq!(listed(args(&["--since", &soon])).await, Vec::<u64>::new());
    assert_eq!(
        listed(args(&["--from-seq", "2", "--to-seq", "3"])).await,
        [2, 3]
    );
    assert_eq!(
        listed(args(&["--from-seq", "2", "--reason", "MaxDeliveries"])).await,
        Vec::<u64>::new()
    );
    let nothing = s
        .cli(&["list", "--stream", &s.dlq, "--reason", "Terminated"])
        .await;
    assert_eq!(
        nothing.assert_code(0).stdout,
        format!("No dead letters in stream {} match.\n", s.dlq)
    );
    s.assert_no_consumers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn show_prints_every_header_and_the_payload() {
    let s = Streams::new().await;
    three(&s).await;

    let text = s.cli(&["show", "--stream", &s.dlq, "2"]).await;
    let out = &text.assert_code(0).stdout;
    assert!(
        out.contains("Reason:           HandlerRejected (HTTP 400)"),
        "{out}"
    );
    assert!(
        out.contains(&format!("Original subject: {}.order.cancelled", s.orig)),
        "{out}"
    );
    assert!(out.contains("  X-Tag: a\n  X-Tag: b\n"), "{out}");
    assert!(
        out.contains(&format!("  {}: HTTP 400", header::DETAIL)),
        "{out}"
    );
    assert!(out.ends_with("Payload (1 bytes):\n2\n"), "{out}");

    let json = s
        .cli(&["show", "--stream", &s.dlq, "2", "--output", "json"])
        .await;
    let shown = json.assert_code(0).json();
    assert_eq!(shown["sequence"], 2);
    assert_eq!(shown["deadLetter"]["reason"], "HandlerRejected");
    assert_eq!(
        shown["headers"]["ce-type"],
        serde_json::json!(["order.cancelled"])
    );
    assert_eq!(
        shown["headers"][header::REASON],
        serde_json::json!(["HandlerRejected"])
    );
    assert_eq!(shown["payload"], "2");

    let missing = s.cli(&["show", "--stream", &s.dlq, "99"]).await;
    missing.assert_code(2);
    assert!(
        missing.stderr.contains("holds no message at sequence 99"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_republishes_to_the_original_subject_once_per_replay_id() {
    let s = Streams::new().await;
    three(&s).await;

    let first = s
        .cli(&[
            "replay",
            "--stream",
            &s.dlq,
            "--replay-id",
            "fix-1",
            "--output",
            "json",
        ])
        .await;
    let report = first.assert_code(0).json();
    assert_eq!(
        (
            &report["matched"],
            &report["replayed"],
            &report["duplicates"],
            &report["failed"]
        ),
        (&3.into(), &3.into(), &0.into(), &0.into())
    );
    assert_eq!(s.count(&s.orig).await, 3);
    assert_eq!(s.count(&s.dlq).await, 3, "replayed dead letters stay");

    let replayed = s.message(&s.orig, 2).await;
    assert_eq!(replayed.subject, format!("{}.order.cancelled", s.orig));
    assert_eq!(&replayed.payload[..], b"2");
    let value = |name: &str| replayed.headers.get(name).map(|v| v.as_str().to_string());
    assert_eq!(value("ce-type").as_deref(), Some("order.cancelled"));
    let tags: Vec<&str> = replayed
        .headers
        .get_all("X-Tag")
        .map(|v| v.as_str())
        .collect();
    assert_eq!(tags, ["a", "b"]);
    assert_eq!(value(header::REPLAYED_FROM), Some(format!("{}:2", s.dlq)));
    assert_eq!(
        value("Nats-Msg-Id"),
        Some(format::replay_message_id(&s.dlq, 2, "fix-1"))
    );
    assert_eq!(value(header::ORIGINAL_MSG_ID).as_deref(), Some("order-2"));
    for fact in [
        header::REASON,
        header::DETAIL,
        header::ORIGINAL_SUBJECT,
        header::DELIVERY_COUNT,
    ] {
        assert_eq!(value(fact), None, "{fact} was replayed");
    }

    // The same replay id again: the original stream keeps the first copies.
    let again = s
        .cli(&[
            "replay",
            "--stream",
            &s.dlq,
            "--replay-id",
            "fix-1",
            "--output",
            "json",
        ])
        .await;
    let report = again.assert_code(0).json();
    assert_eq!(report["replayed"], 0);
    assert_eq!(report["duplicates"], 3);
    assert_eq!(s.count(&s.orig).await, 3);

    // A new replay id is a new request.
    let text = s
        .cli(&["replay", "--stream", &s.dlq, "--reason", "MaxDeliveries"])
        .await;
    let out = &text.assert_code(0).stdout;
    assert!(
        out.starts_with(&format!(
            "Replayed 1 of 1 selected dead letters from stream {} (replay id cli-",
            s.dlq
        )),
        "{out}"
    );
    assert_eq!(s.count(&s.orig).await, 4);
    s.assert_no_consumers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_replay_core_reports_progress_and_replays_only_the_selection() {
    let s = Streams::new().await;
    three(&s).await;
    let mut seen = Vec::new();
    let options = ReplayOptions {
        rate: None,
        trigger: "annotation-2025-03-01T12:00:00Z".into(),
    };
    let selection = Selection {
        reasons: vec![ReasonKind::HandlerRejected, ReasonKind::SchemaViolation],
        sequences: Some(3..=u64::MAX),
        ..Selection::default()
    };
    let report = replay(&s.broker, &s.dlq, &selection, &options, |p| seen.push(p))
        .await
        .expect("replay");
    assert_eq!((report.matched, report.replayed, report.failed), (1, 1, 0));
    assert_eq!(
        seen.last(),
        Some(&Progress {
            read: 1,
            to_read: 1,
            matched: 1,
            done: 1,
            failed: 0
        })
    );
    let replayed = s.message(&s.orig, 1).await;
    assert_eq!(replayed.subject, format!("{}.payment.received", s.orig));

    // Nothing selected: nothing read, nothing published.
    let mut calls = 0;
    let none = Selection {
        sequences: Some(100..=200),
        ..Selection::default()
    };
    let report = replay(&s.broker, &s.dlq, &none, &options, |_| calls += 1)
        .await
        .expect("replay");
    assert_eq!(report, Default::default());
    assert_eq!(calls, 0);
    assert_eq!(s.count(&s.orig).await, 1);
    s.assert_no_consumers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_or_unplaceable_dead_letters_fail_clearly_and_nothing_is_lost() {
    let s = Streams::new().await;
    let good = s
        .dead_letter(Reason::MaxDeliveries, "order.placed", now(), "1")
        .await;
    let mut junk_headers = HeaderMap::new();
    junk_headers.insert("ce-type", "not.a.dead.letter");
    let junk = s
        .store_raw(format!("{}.junk", s.dlq), junk_headers, "junk")
        .await;
    // A dead letter whose original stream is not the one that takes its subject: replaying it
    // must not land in another stream.
    let misplaced = DeadLetter {
        reason: Reason::MaxDeliveries,
        subject: format!("{}.order.placed", s.orig),
        stream: "some_other_stream".into(),
        sequence: 9,
        consumer: "billing".into(),
        deliveries: 5,
        stored_at: now(),
        dead_lettered_at: now(),
        msg_id: None,
    };
    let misplaced_seq = s
        .store_raw(
            format!("{}.order.placed", s.dlq),
            misplaced.headers(None),
            "3",
        )
        .await;
    let last = s
        .dead_letter(Reason::MaxDeliveries, "order.placed", now(), "4")
        .await;

    let run = s
        .cli(&["replay", "--stream", &s.dlq, "--output", "json"])
        .await;
    let report = run.assert_code(1).json();
    assert_eq!(report["matched"], 4);
    assert_eq!(report["replayed"], 2);
    assert_eq!(report["failed"], 2);
    let failures: Vec<&str> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        failures[0].starts_with(&format!(
            "sequence {junk}: cannot replay, not a dead letter"
        )) && failures[0].contains(header::REASON)
            && failures[0].ends_with("left in the stream"),
        "{failures:?}"
    );
    assert!(
        failures[1].starts_with(&format!("sequence {misplaced_seq}: cannot republish")),
        "{failures:?}"
    );
    // Nothing lost: every dead letter is still there, and only the good ones were replayed.
    assert_eq!(s.count(&s.dlq).await, 4);
    assert_eq!(s.count(&s.orig).await, 2);
    let mut replayed_from = Vec::new();
    for sequence in [1, 2] {
        let message = s.message(&s.orig, sequence).await;
        replayed_from.push(
            message
                .headers
                .get(header::REPLAYED_FROM)
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        replayed_from,
        [format!("{}:{good}", s.dlq), format!("{}:{last}", s.dlq)]
    );

    // A filtered replay cannot judge the unreadable one and passes it by.
    let filtered = s
        .cli(&[
            "replay",
            "--stream",
            &s.dlq,
            "--reason",
            "MaxDeliveries",
            "--output",
            "json",
        ])
        .await;
    let report = filtered.assert_code(1).json();
    assert_eq!(report["matched"], 3, "the misplaced one still fails");
    // Listing names the unreadable one.
    let listing = s.cli(&["list", "--stream", &s.dlq]).await;
    let line = listing
        .assert_code(0)
        .stdout
        .lines()
        .find(|l| l.starts_with(&junk.to_string()))
        .map(str::to_string)
        .expect("the unreadable message is listed");
    assert!(line.contains("(unreadable)"), "{line}");
    s.assert_no_consumers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_of_100_replays_1000_dead_letters_in_no_less_than_nine_seconds() {
    let s = Streams::new().await;
    let at = now();
    for _ in 0..1000 {
        s.dead_letter(Reason::MaxDeliveries, "order.placed", at, "x")
            .await;
    }
    let started = Instant::now();
    let run = s
        .cli(&[
            "replay", "--stream", &s.dlq, "--rate", "100", "--output", "json",
        ])
        .await;
    let elapsed = started.elapsed();
    let report = run.assert_code(0).json();
    assert_eq!(report["replayed"], 1000);
    assert_eq!(s.count(&s.orig).await, 1000);
    assert!(
        elapsed >= Duration::from_secs(9),
        "1,000 dead letters at 100/s took only {elapsed:?}"
    );
    s.assert_no_consumers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_needs_yes_without_a_terminal_and_purges_selections() {
    let s = Streams::new().await;
    three(&s).await;
    s.dead_letter(Reason::MaxDeliveries, "order.placed", now(), "4")
        .await;

    let refused = s.cli(&["purge", "--stream", &s.dlq]).await;
    refused.assert_code(2);
    assert!(refused.stderr.contains("--yes"), "{}", refused.stderr);
    assert_eq!(s.count(&s.dlq).await, 4, "nothing purged");

    // A selection that is not a sequence prefix: read and deleted one by one.
    let by_reason = s
        .cli(&[
            "purge",
            "--stream",
            &s.dlq,
            "--reason",
            "MaxDeliveries",
            "--yes",
            "--output",
            "json",
        ])
        .await;
    assert_eq!(by_reason.assert_code(0).json()["purged"], 2);
    let left = inspect::list(&s.broker, &s.dlq, &Selection::default(), 10)
        .await
        .unwrap();
    let left: Vec<u64> = left.iter().map(|l| l.sequence).collect();
    assert_eq!(left, [2, 3]);

    // A sequence prefix: one purge request.
    let prefix = s
        .cli(&["purge", "--stream", &s.dlq, "--to-seq", "2", "--yes"])
        .await;
    assert_eq!(
        prefix.assert_code(0).stdout,
        format!("Purged 1 dead letters from stream {}\n", s.dlq)
    );
    assert_eq!(s.count(&s.dlq).await, 1);

    let all = s.cli(&["purge", "--stream", &s.dlq, "--yes"]).await;
    all.assert_code(0);
    assert_eq!(s.count(&s.dlq).await, 0);
    s.assert_no_consumers().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_and_exit_code_2() {
    let s = Streams::new().await;
    three(&s).await;
    let missing = unique("nosuchdlq");
    for args in [
        vec!["list", "--stream", missing.as_str()],
        vec!["show", "--stream", missing.as_str(), "1"],
        vec!["replay", "--stream", missing.as_str()],
        vec!["purge", "--stream", missing.as_str(), "--yes"],
    ] {
        let run = s.cli(&args).await;
        run.assert_code(2);
        assert!(
            run.stderr
                .contains(&format!("stream {missing} does not exist")),
            "{args:?}: {}",
            run.stderr
        );
    }
    let cases: [(&[&str], &str); 7] = [
        (&["list", "--subject", "a..b"], "empty token"),
        (&["list", "--since", "last tuesday"], "RFC 3339"),
        (
            &["replay", "--from-seq", "3", "--to-seq", "1"],
            "--from-seq must not be above --to-seq",
        ),
        (&["replay", "--rate", "0"], "--rate"),
        (&["list", "--limit", "0"], "--limit"),
        (
            &["list", "--reason", "Exploded"],
            "MaxDeliveries, HandlerRejected",
        ),
        (
            &["list", "--since", "1h", "--until", "2h"],
            "--since must be earlier than --until",
        ),
    ];
    for (args, expected) in cases {
        let mut args = args.to_vec();
        args.extend(["--stream", s.dlq.as_str()]);
        let run = s.cli(&args).await;
        run.assert_code(2);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }
    let dotted = s.cli(&["list", "--stream", "a.b"]).await;
    dotted.assert_code(2);
    assert!(
        dotted.stderr.contains("cannot be a stream name"),
        "{}",
        dotted.stderr
    );
    let neither = s.cli(&["list"]).await;
    neither.assert_code(2);
    assert_eq!(s.count(&s.dlq).await, 3, "nothing lost");
    assert_eq!(s.count(&s.orig).await, 0, "nothing replayed");

    // The core says the same to its other callers.
    let error = replay(
        &s.broker,
        &missing,
        &Selection::default(),
        &ReplayOptions {
            rate: None,
            trigger: "t".into(),
        },
        |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), Some(codes::STREAM_NOT_FOUND));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_names_its_stream_through_its_status() {
    let s = Streams::new().await;
    three(&s).await;
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "dlq-cli").await;
    let policies: Api<DeadLetterPolicy> = Api::namespaced(client.clone(), &ns.name);
    common::apply(
        &policies,
        &common::manifest(
            "DeadLetterPolicy",
            &ns.name,
            "payments",
            "  alertThreshold: 5\n",
        ),
    )
    .await
    .expect("apply DeadLetterPolicy");

    let unknown = s.cli(&["list", "--policy", "nope", "-n", &ns.name]).await;
    unknown.assert_code(2);
    assert!(
        unknown
            .stderr
            .contains(&format!("DeadLetterPolicy {}/nope not found", ns.name)),
        "{}",
        unknown.stderr
    );
    let pending = s
        .cli(&["list", "--policy", "payments", "-n", &ns.name])
        .await;
    pending.assert_code(2);
    assert!(
        pending.stderr.contains("has no dead-letter stream yet"),
        "{}",
        pending.stderr
    );

    // What the operator writes once the stream exists.
    policies
        .patch_status(
            "payments",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"streamName": s.dlq}})),
        )
        .await
        .expect("status patch");
    let listed = s
        .cli(&[
            "list", "--policy", "payments", "-n", &ns.name, "--output", "json",
        ])
        .await;
    let listing = listed.assert_code(0).json();
    assert_eq!(listing["stream"], s.dlq.as_str());
    assert_eq!(sequences(&listing), [1, 2, 3]);
}

/// Sends the dead letters of one consumer to one target, and nobody else's anywhere.
struct OneConsumer {
    stream: String,
    consumer: String,
    target: Arc<Target>,
}

impl Routes for OneConsumer {
    async fn route(&self, stream: &str, consumer: &str) -> Route {
        if stream == self.stream && consumer == self.consumer {
            Route::Deliver(self.target.clone())
        } else {
            Route::NotManaged
        }
    }
}

/// A relay task, aborted when dropped (also when the test fails): one still running after its
/// advisory stream's guard would create the stream again.
struct RelayTask(tokio::task::JoinHandle<()>);

impl Drop for RelayTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The next event `consumer` hands out, within the patience of the tests.
async fn next_event(consumer: &PullConsumer) -> async_nats::jetstream::Message {
    common::wait_until("an event for the consumer", || async {
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .ok()?;
        batch.next().await?.ok()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_the_relay_dead_lettered_goes_back_to_its_consumer() {
    let s = Streams::new().await;
    let advisories = AdvisoryStream {
        name: unique("dlqadv"),
        scope: AdvisoryScope::Streams(vec![s.orig.clone()]),
        max_age: Duration::from_secs(600),
        replicas: 1,
    };
    let _advisory_guard = StreamGuard(advisories.name.clone());
    advisories
        .ensure(&s.broker, "relay", Duration::from_secs(2))
        .await
        .expect("advisory stream");
    let routes = Arc::new(OneConsumer {
        stream: s.orig.clone(),
        consumer: "billing".into(),
        target: Arc::new(Target {
            policy: "shop/failures".into(),
            stream: s.dlq.clone(),
            subject_prefix: s.dlq.clone(),
            layout: SubjectLayout {
                topic_prefix: s.orig.clone(),
                partitioned: false,
            },
            capture: vec![CaptureReason::MaxDeliveries],
            release_original: false,
        }),
    });
    let (reports, _unread_reports) = tokio::sync::mpsc::channel(16);
    let relay = Relay::new(
        connected(&nats_url()).await,
        routes,
        reports,
        RelayConfig {
            stream: advisories.clone(),
            consumer: "relay".into(),
            max_in_flight: 8,
            ack_wait: Duration::from_secs(2),
            fetch_wait: Duration::from_millis(500),
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(2),
        },
    );
    let _relay = RelayTask(tokio::spawn(relay.run(std::future::pending())));

    let stream = s.broker.jetstream().get_stream(&s.orig).await.unwrap();
    stream
        .create_consumer(pull::Config {
            durable_name: Some("billing".into()),
            ack_policy: AckPolicy::Explicit,
            max_deliver: 2,
            ack_wait: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .expect("consumer");
    let consumer: PullConsumer = stream.get_consumer("billing").await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("ce-type", "order.placed");
    s.broker
        .store(
            format!("{}.order.placed", s.orig),
            headers,
            Bytes::from_static(b"{\"order\":7}"),
        )
        .await
        .expect("publish");

    // The handler is broken: both deliveries fail, and the relay keeps the event.
    for _ in 0..2 {
        next_event(&consumer)
            .await
            .ack_with(AckKind::Nak(None))
            .await
            .expect("nak");
    }
    // The server gives up on the event when it would deliver it a third time, which takes a
    // pull request.
    common::wait_until("the dead letter", || async {
        if let Ok(mut batch) = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_millis(200))
            .messages()
            .await
        {
            while batch.next().await.is_some() {}
        }
        (s.count(&s.dlq).await == 1).then_some(())
    })
    .await;

    // Fixed: the replayed event reaches the consumer once more, marked as a replay.
    let run = s
        .cli(&["replay", "--stream", &s.dlq, "--output", "json"])
        .await;
    assert_eq!(run.assert_code(0).json()["replayed"], 1);
    let event = next_event(&consumer).await;
    assert_eq!(&event.payload[..], b"{\"order\":7}");
    let headers = event.headers.clone().unwrap_or_default();
    assert_eq!(
        headers.get(header::REPLAYED_FROM).map(|v| v.as_str()),
        Some(format!("{}:1", s.dlq).as_str())
    );
    assert_eq!(
        headers.get("ce-type").map(|v| v.as_str()),
        Some("order.placed")
    );
    assert_eq!(
        event.info().unwrap().delivered,
        1,
        "a new event, first delivery"
    );
    event.ack().await.expect("ack");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_topics_dead_letter_goes_back_to_the_same_partition() {
    // A partitioned Topic's stream, as the Topic reconciler declares it: `<base>.<type>.<type>
    // .<key>` is stored as `<base>.<partition>.<type>.<type>.<key>`.
    let s = Streams::with_original(|name| StreamConfig {
        name: name.to_string(),
        subjects: vec![format!("{name}.*.*.*")],
        subject_transform: Some(SubjectTransform {
            source: format!("{name}.*.*.*"),
            destination: format!(
                "{name}.{{{{partition(4,3)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}"
            ),
        }),
        ..Default::default()
    })
    .await;
    let published = format!("{}.order.placed.key-7", s.orig);
    s.broker
        .store(
            published.clone(),
            HeaderMap::new(),
            Bytes::from_static(b"7"),
        )
        .await
        .expect("publish");
    let original = s.message(&s.orig, 1).await;
    assert_ne!(original.subject, published, "the stream adds the partition");
    let letter = DeadLetter {
        reason: Reason::MaxDeliveries,
        subject: original.subject.clone(),
        stream: s.orig.clone(),
        sequence: 1,
        consumer: "billing".into(),
        deliveries: 5,
        stored_at: original.time,
        dead_lettered_at: now(),
        msg_id: None,
    };
    s.store_raw(
        format!("{}.order.placed.key-7", s.dlq),
        letter.headers(None),
        "7",
    )
    .await;

    let report = replay(
        &s.broker,
        &s.dlq,
        &Selection::default(),
        &ReplayOptions {
            rate: None,
            trigger: "t".into(),
        },
        |_| {},
    )
    .await
    .expect("replay");
    assert_eq!((report.replayed, report.failed), (1, 0), "{report:?}");
    let replayed = s.message(&s.orig, 2).await;
    assert_eq!(
        replayed.subject, original.subject,
        "same partition, same subject"
    );
    assert_eq!(&replayed.payload[..], b"7");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_cut_short_by_an_outage_is_finished_by_a_rerun_with_its_id() {
    let mut nats = PrivateNats::start();
    let s = Streams::on(&nats.url(), plain).await;
    let at = now();
    for _ in 0..60 {
        s.dead_letter(Reason::MaxDeliveries, "order.placed", at, "x")
            .await;
    }
    let replay = {
        let url = nats.url();
        let dlq = s.dlq.clone();
        tokio::spawn(async move {
            dlq_run(
                &url,
                &[
                    "replay",
                    "--stream",
                    &dlq,
                    "--rate",
                    "20",
                    "--replay-id",
                    "night",
                ],
            )
            .await
        })
    };
    common::wait_until("part of the replay", || async {
        (s.broker.stream_bounds(&s.orig).await.ok()?.messages >= 10).then_some(())
    })
    .await;
    nats.kill();
    let cut = replay.await.expect("replay task");
    cut.assert_code(1);
    assert!(
        cut.stderr.contains("rerun with --replay-id night"),
        "{}",
        cut.stderr
    );

    nats.resume();
    let rerun = s
        .cli(&[
            "replay",
            "--stream",
            &s.dlq,
            "--replay-id",
            "night",
            "--output",
            "json",
        ])
        .await;
    let report = rerun.assert_code(0).json();
    let (replayed, duplicates) = (
        report["replayed"].as_u64().unwrap(),
        report["duplicates"].as_u64().unwrap(),
    );
    assert!(duplicates >= 10, "{report}");
    assert_eq!(replayed + duplicates, 60, "{report}");
    // The test's own client reconnects to the restarted server in its own time.
    let stored = common::wait_until("the test's client back on NATS", || async {
        s.broker.stream_bounds(&s.orig).await.ok()
    })
    .await;
    assert_eq!(stored.messages, 60, "every dead letter replayed once");
}
