//! The dead-letter relay against a real nats-server: advisories captured by their stream, copies
//! with every fact, originals released or reported, waiting routes, interruptions and restarts.
//! Every stream (and with it every consumer) a test creates has a name unique to the test and is
//! deleted by a guard, also when the test fails. Each test has its own advisory stream, scoped to
//! its own original streams, so tests run in parallel on the shared server.

mod common;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{AckPolicy, PullConsumer, pull},
        stream::{Config as StreamConfig, RetentionPolicy},
    },
};
use common::{PrivateNats, StreamGuard, connected, nats_url, unique};
use futures::StreamExt;
use switchyard::{
    api::dead_letter_policy::CaptureReason,
    broker::{Broker, Lookup, Read},
    deadletter::{
        AdvisoryScope, AdvisoryStream, DeadLetter, Outcome, Reason, Rejection, Relay, RelayConfig,
        Report, Route, Routes, SubjectLayout, Target, format::header,
    },
};
use tokio::{sync::mpsc, task::JoinHandle};

const PATIENCE: Duration = Duration::from_secs(45);

/// Routes from a map, changeable while the relay runs: the seam the operator fills later.
#[derive(Default)]
struct MapRoutes(Mutex<HashMap<(String, String), Route>>);

impl MapRoutes {
    fn set(&self, stream: &str, consumer: &str, route: Route) {
        self.0
            .lock()
            .unwrap()
            .insert((stream.into(), consumer.into()), route);
    }
}

impl Routes for MapRoutes {
    async fn route(&self, stream: &str, consumer: &str) -> Route {
        self.0
            .lock()
            .unwrap()
            .get(&(stream.to_string(), consumer.to_string()))
            .cloned()
            .unwrap_or(Route::NotManaged)
    }
}

/// One test's streams: originals, a dead-letter stream, an advisory stream; and the relay.
struct Fixture {
    url: String,
    broker: Broker,
    js: jetstream::Context,
    routes: Arc<MapRoutes>,
    advisories: AdvisoryStream,
    /// The dead-letter stream, taking `<dlq>.>`.
    dlq: String,
    _guards: Vec<StreamGuard>,
}

impl Fixture {
    /// A stream per prefix in `originals`, each on `<name>.>`, with `retention`.
    async fn new(url: &str, originals: &[&str], retention: RetentionPolicy) -> (Self, Vec<String>) {
        Self::with(url, originals, |_, name| StreamConfig {
            name: name.to_string(),
            subjects: vec![format!("{name}.>")],
            retention,
            ..Default::default()
        })
        .await
    }

    async fn with(
        url: &str,
        originals: &[&str],
        config: impl Fn(usize, &str) -> StreamConfig,
    ) -> (Self, Vec<String>) {
        let broker = connected(url).await;
        let js = broker.jetstream().clone();
        let mut guards = Vec::new();
        let mut names = Vec::new();
        for (index, prefix) in originals.iter().enumerate() {
            let name = unique(prefix);
            guards.push(StreamGuard(name.clone()));
            js.create_stream(config(index, &name))
                .await
                .expect("original stream");
            names.push(name);
        }
        let dlq = unique("dlq");
        guards.push(StreamGuard(dlq.clone()));
        js.create_stream(StreamConfig {
            name: dlq.clone(),
            subjects: vec![format!("{dlq}.>")],
            ..Default::default()
        })
        .await
        .expect("dead-letter stream");
        let advisories = AdvisoryStream {
            name: unique("adv"),
            scope: AdvisoryScope::Streams(names.clone()),
            max_age: Duration::from_secs(600),
            replicas: 1,
        };
        guards.push(StreamGuard(advisories.name.clone()));
        // Captured from the start, whether or not a relay runs yet.
        advisories
            .ensure(&broker, "relay", Duration::from_secs(2))
            .await
            .expect("advisory stream");
        (
            Self {
                url: url.to_string(),
                broker,
                js,
                routes: Arc::default(),
                advisories,
                dlq,
                _guards: guards,
            },
            names,
        )
    }

    /// A target for the dead letters of `original`'s consumers.
    fn target(&self, original: &str, release_original: bool) -> Arc<Target> {
        Arc::new(Target {
            policy: "shop/dead-letters".into(),
            stream: self.dlq.clone(),
            subject_prefix: self.dlq.clone(),
            layout: SubjectLayout {
                topic_prefix: original.to_string(),
                partitioned: false,
            },
            capture: vec![
                CaptureReason::MaxDeliveries,
                CaptureReason::Terminated,
                CaptureReason::SchemaViolation,
            ],
            release_original,
        })
    }

    fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            stream: self.advisories.clone(),
            consumer: "relay".into(),
            max_in_flight: 64,
            ack_wait: Duration::from_secs(2),
            fetch_wait: Duration::from_millis(500),
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(2),
        }
    }

    /// Starts a relay with its own connection; its reports go to a channel of `capacity`.
    async fn relay(&self, capacity: usize) -> (RunningRelay, mpsc::Receiver<Report>) {
        let broker = connected(&self.url).await;
        let (tx, rx) = mpsc::channel(capacity);
        let relay = Relay::new(broker, self.routes.clone(), tx, self.relay_config());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(relay.run(async move {
            let _ = stopped.await;
        }));
        (
            RunningRelay {
                task,
                stop: Some(stop),
            },
            rx,
        )
    }

    async fn consumer(&self, stream: &str, name: &str, max_deliver: i64) -> PullConsumer {
        let stream = self.js.get_stream(stream).await.unwrap();
        stream
            .create_consumer(pull::Config {
                durable_name: Some(name.into()),
                ack_policy: AckPolicy::Explicit,
                max_deliver,
                ack_wait: Duration::from_secs(1),
                ..Default::default()
            })
            .await
            .unwrap();
        stream.get_consumer(name).await.unwrap()
    }

    async fn publish(&self, subject: String, headers: HeaderMap, payload: &'static str) -> u64 {
        self.js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .unwrap()
            .await
            .unwrap()
            .sequence
    }

    /// The dead letters stored so far, by sequence.
    async fn dead_letters(&self) -> Vec<(u64, String, HeaderMap, String)> {
        let info = self.broker.stream_info(&self.dlq).await.unwrap().unwrap();
        let mut letters = Vec::new();
        for seq in info.state.first_sequence..=info.state.last_sequence {
            if let Lookup::Found(m) = self
                .broker
                .stream_message(&self.dlq, seq, Read::Leader)
                .await
                .unwrap()
            {
                let payload = String::from_utf8_lossy(&m.payload).into_owned();
                letters.push((seq, m.subject, m.headers, payload));
            }
        }
        letters
    }

    async fn dead_letter_count(&self) -> u64 {
        let info = self.broker.stream_info(&self.dlq).await.unwrap().unwrap();
        info.state.messages
    }

    async fn original(&self, stream: &str, seq: u64) -> Lookup {
        self.broker
            .stream_message(stream, seq, Read::Leader)
            .await
            .unwrap()
    }
}

/// A relay task, stopped when dropped.
struct RunningRelay {
    task: JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl RunningRelay {
    /// Kills the relay wherever it is, as a crash would.
    async fn kill(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("relay stops in time")
            .expect("relay did not panic");
    }
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a test handler fails the events it gets.
#[derive(Clone)]
enum Fail {
    /// Redeliver at once, until deliveries run out.
    Nak,
    /// `+TERM <reason>`.
    Term(&'static str),
    /// What the dispatcher should do where terminating removes the event: hold it back and
    /// publish a rejection.
    Reject(&'static str),
}

/// A handler failing every event of a consumer until dropped.
struct FailingHandler(JoinHandle<()>);

impl FailingHandler {
    fn start(js: &jetstream::Context, consumer: PullConsumer, fail: Fail) -> Self {
        let js = js.clone();
        Self(tokio::spawn(async move {
            loop {
                let Ok(mut batch) = consumer
                    .fetch()
                    .max_messages(100)
                    .expires(Duration::from_millis(300))
                    .messages()
                    .await
                else {
                    continue;
                };
                while let Some(Ok(m)) = batch.next().await {
                    match &fail {
                        Fail::Nak => {
                            let _ = m.ack_with(AckKind::Nak(None)).await;
                        }
                        Fail::Term(reason) => {
                            let reply = m.reply.clone().unwrap();
                            let _ = js
                                .client()
                                .publish(reply, format!("+TERM {reason}").into())
                                .await;
                        }
                        Fail::Reject(reason) => {
                            let info = m.info().unwrap();
                            let rejection = Rejection {
                                stream: info.stream.to_string(),
                                consumer: info.consumer.to_string(),
                                stream_seq: info.stream_sequence,
                                deliveries: info.delivered as u64,
                                reason: reason.to_string(),
                            };
                            let _ = m
                                .ack_with(AckKind::Nak(Some(Duration::from_secs(3600))))
                                .await;
                            js.publish(rejection.subject(), rejection.payload())
                                .await
                                .unwrap()
                                .await
                                .unwrap();
                        }
                    }
                }
            }
        }))
    }
}

impl Drop for FailingHandler {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The next report `accept` takes; the others are skipped.
async fn report_where(
    reports: &mut mpsc::Receiver<Report>,
    what: &str,
    accept: impl Fn(&Report) -> bool,
) -> Report {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, reports.recv()).await {
            Ok(Some(report)) if accept(&report) => return report,
            Ok(Some(report)) => seen.push(report.outcome.label()),
            Ok(None) => panic!("relay stopped while waiting for {what}"),
            Err(_) => panic!("no report of {what} after {PATIENCE:?}; saw {seen:?}"),
        }
    }
}

fn value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).map(|v| v.as_str())
}

async fn wait_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn single_messages_are_read_directly_where_allowed_stored_once_and_deleted() {
    let (f, names) = Fixture::with(&nats_url(), &["dlr", "dlr"], |index, name| StreamConfig {
        name: name.to_string(),
        subjects: vec![format!("{name}.>")],
        allow_direct: index == 0,
        ..Default::default()
    })
    .await;
    let direct = f.broker.stream_info(&names[0]).await.unwrap().unwrap();
    assert!(
        direct.config.allow_direct,
        "the first stream allows direct gets"
    );
    let leader_only = &names[1];
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", "once");
    headers.insert("ce-type", "x");
    let first = f
        .broker
        .store(format!("{}.a", names[0]), headers.clone(), "one".into())
        .await
        .unwrap();
    assert_eq!(
        (first.stream.as_str(), first.sequence, first.duplicate),
        (names[0].as_str(), 1, false)
    );
    let again = f
        .broker
        .store(format!("{}.a", names[0]), headers, "one".into())
        .await
        .unwrap();
    assert_eq!((again.sequence, again.duplicate), (1, true));
    let refused = f
        .broker
        .store("nobody.takes.this".into(), HeaderMap::new(), "x".into())
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(switchyard::broker::codes::STREAM_NOT_FOUND)
    );

    for read in [Read::Direct, Read::Leader] {
        let Lookup::Found(m) = f.broker.stream_message(&names[0], 1, read).await.unwrap() else {
            panic!("{read:?} found nothing");
        };
        assert_eq!(m.subject, format!("{}.a", names[0]));
        assert_eq!(m.payload, "one");
        assert_eq!(value(&m.headers, "ce-type"), Some("x"));
        assert_eq!(
            f.broker.stream_message(&names[0], 9, read).await.unwrap(),
            Lookup::Gone
        );
    }
    f.publish(format!("{leader_only}.a"), HeaderMap::new(), "two")
        .await;
    assert_eq!(
        f.broker
            .stream_message(leader_only, 1, Read::Direct)
            .await
            .unwrap(),
        Lookup::NotServed
    );
    assert!(matches!(
        f.broker
            .stream_message(leader_only, 1, Read::Leader)
            .await
            .unwrap(),
        Lookup::Found(_)
    ));
    assert_eq!(
        f.broker
            .stream_message("dlr-no-such-stream", 1, Read::Leader)
            .await
            .unwrap(),
        Lookup::Gone
    );

    assert!(f.broker.delete_message(leader_only, 1).await.unwrap());
    assert!(!f.broker.delete_message(leader_only, 1).await.unwrap());
    assert!(
        !f.broker
            .delete_message("dlr-no-such-stream", 1)
            .await
            .unwrap()
    );
    assert!(
        !f.broker.release(leader_only, "nobody", 1, 1).await.unwrap(),
        "no consumer, nothing held"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_delivered_event_is_copied_with_its_payload_headers_and_every_fact() {
    let (f, names) = Fixture::with(&nats_url(), &["dlr"], |_, name| StreamConfig {
        name: name.to_string(),
        subjects: vec![format!("{name}.>")],
        // Direct gets, which the relay prefers where the stream allows them.
        allow_direct: true,
        ..Default::default()
    })
    .await;
    let orders = &names[0];
    f.routes.set(
        orders,
        "sub_shop_billing",
        Route::Deliver(f.target(orders, false)),
    );
    let consumer = f.consumer(orders, "sub_shop_billing", 2).await;
    let mut headers = HeaderMap::new();
    headers.insert("ce-type", "order.placed");
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    );
    headers.insert("Nats-Msg-Id", "order-7");
    headers.append("X-Tags", "a");
    headers.append("X-Tags", "b");
    let seq = f
        .publish(format!("{orders}.order.placed"), headers, r#"{"id":7}"#)
        .await;
    let stored = f.original(orders, seq).await;
    let Lookup::Found(stored) = stored else {
        panic!("original not stored");
    };
    let (_relay, mut reports) = f.relay(100).await;
    let _handler = FailingHandler::start(&f.js, consumer, Fail::Nak);

    let report = report_where(&mut reports, "a copy", |r| {
        matches!(r.outcome, Outcome::Copied { .. })
    })
    .await;
    assert_eq!(report.policy.as_deref(), Some("shop/dead-letters"));
    let failure = report.failure.unwrap();
    assert_eq!(failure.reason, Reason::MaxDeliveries);
    assert_eq!((failure.sequence, failure.deliveries), (seq, 2));
    let Outcome::Copied {
        stream,
        sequence,
        subject,
        duplicate,
        released,
        ..
    } = report.outcome
    else {
        unreachable!()
    };
    assert_eq!(stream, f.dlq);
    assert_eq!(subject, format!("{}.order.placed", f.dlq));
    assert!(!duplicate && !released);

    let letters = f.dead_letters().await;
    assert_eq!(letters.len(), 1);
    let (at, subject, copy, payload) = &letters[0];
    assert_eq!(*at, sequence);
    assert_eq!(subject, &format!("{}.order.placed", f.dlq));
    assert_eq!(payload, r#"{"id":7}"#);
    assert_eq!(value(copy, "ce-type"), Some("order.placed"));
    assert!(value(copy, "traceparent").is_some());
    let tags: Vec<&str> = copy.get_all("X-Tags").map(|v| v.as_str()).collect();
    assert_eq!(
        tags,
        ["a", "b"],
        "every value of a repeated header is copied"
    );
    assert_eq!(value(copy, header::REASON), Some("MaxDeliveries"));
    assert_eq!(value(copy, header::DETAIL), None);
    assert_eq!(
        value(copy, header::ORIGINAL_SUBJECT),
        Some(format!("{orders}.order.placed").as_str())
    );
    assert_eq!(value(copy, header::ORIGINAL_STREAM), Some(orders.as_str()));
    assert_eq!(
        value(copy, header::ORIGINAL_SEQUENCE),
        Some(seq.to_string().as_str())
    );
    assert_eq!(
        value(copy, header::ORIGINAL_CONSUMER),
        Some("sub_shop_billing")
    );
    assert_eq!(value(copy, header::DELIVERY_COUNT), Some("2"));
    assert_eq!(value(copy, header::ORIGINAL_MSG_ID), Some("order-7"));
    assert_eq!(
        value(copy, "Nats-Msg-Id"),
        Some(format!("{orders}:sub_shop_billing:{seq}").as_str())
    );
    let letter = DeadLetter::from_headers(copy).expect("readable dead letter");
    assert_eq!(letter.stored_at, stored.time);
    assert!(letter.dead_lettered_at >= letter.stored_at);
    // Limits retention: the original stays where it was.
    assert!(matches!(f.original(orders, seq).await, Lookup::Found(_)));
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_event_is_copied_with_its_reason_and_status() {
    let (f, names) = Fixture::new(&nats_url(), &["dlr"], RetentionPolicy::Limits).await;
    let orders = &names[0];
    f.routes.set(
        orders,
        "sub_shop_audit",
        Route::Deliver(f.target(orders, false)),
    );
    let consumer = f.consumer(orders, "sub_shop_audit", 5).await;
    let seq = f
        .publish(format!("{orders}.order.placed"), HeaderMap::new(), "{}")
        .await;
    let (_relay, mut reports) = f.relay(100).await;
    let _handler = FailingHandler::start(&f.js, consumer, Fail::Term("HandlerRejected: HTTP 400"));

    let report = report_where(&mut reports, "a copy", |r| {
        matches!(r.outcome, Outcome::Copied { .. })
    })
    .await;
    assert_eq!(
        report.failure.unwrap().reason,
        Reason::HandlerRejected { status: 400 }
    );
    let letters = f.dead_letters().await;
    let (_, _, copy, _) = &letters[0];
    assert_eq!(value(copy, header::REASON), Some("HandlerRejected"));
    assert_eq!(value(copy, header::DETAIL), Some("HTTP 400"));
    assert_eq!(value(copy, header::DELIVERY_COUNT), Some("1"));
    assert_eq!(
        value(copy, header::ORIGINAL_SEQUENCE),
        Some(seq.to_string().as_str())
    );
    assert_eq!(value(copy, header::ORIGINAL_MSG_ID), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn work_queue_original_is_removed_once_its_copy_is_stored() {
    let (f, names) = Fixture::new(&nats_url(), &["dlr"], RetentionPolicy::WorkQueue).await;
    let jobs = &names[0];
    f.routes.set(
        jobs,
        "sub_shop_worker",
        Route::Deliver(f.target(jobs, true)),
    );
    let consumer = f.consumer(jobs, "sub_shop_worker", 2).await;
    let seq = f
        .publish(format!("{jobs}.job.created"), HeaderMap::new(), "job")
        .await;
    let (_relay, mut reports) = f.relay(100).await;
    let _handler = FailingHandler::start(&f.js, consumer, Fail::Nak);

    let report = report_where(&mut reports, "a copy", |r| {
        matches!(r.outcome, Outcome::Copied { .. })
    })
    .await;
    assert!(matches!(
        report.outcome,
        Outcome::Copied { released: true, .. }
    ));
    assert_eq!(f.dead_letter_count().await, 1);
    // A max-delivered message stays in a WorkQueue stream forever unless acknowledged.
    assert_eq!(f.original(jobs, seq).await, Lookup::Gone);
    let info = f.broker.stream_info(jobs).await.unwrap().unwrap();
    assert_eq!(info.state.messages, 0);
}

/// Pins the server behaviour that makes `+TERM` unusable for dead letters where retention is
/// by acknowledgement: the termination acknowledges, and the original is removed before the
/// advisory comes.
#[tokio::test(flavor = "multi_thread")]
async fn terminated_work_queue_originals_are_gone_and_only_reported() {
    let (f, names) = Fixture::new(&nats_url(), &["dlr"], RetentionPolicy::WorkQueue).await;
    let jobs = &names[0];
    f.routes.set(
        jobs,
        "sub_shop_worker",
        Route::Deliver(f.target(jobs, true)),
    );
    let consumer = f.consumer(jobs, "sub_shop_worker", 5).await;
    f.publish(format!("{jobs}.job.created"), HeaderMap::new(), "job")
        .await;
    let (_relay, mut reports) = f.relay(100).await;
    let _handler = FailingHandler::start(&f.js, consumer, Fail::Term("HandlerRejected: HTTP 422"));

    let report = report_where(&mut reports, "a report", |_| true).await;
    assert_eq!(report.outcome, Outcome::OriginalGone);
    assert_eq!(
        report.failure.unwrap().reason,
        Reason::HandlerRejected { status: 422 }
    );
    assert_eq!(f.dead_letter_count().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_work_queue_event_is_held_copied_and_then_removed() {
    let (f, names) = Fixture::new(&nats_url(), &["dlr"], RetentionPolicy::WorkQueue).await;
    let jobs = &names[0];
    f.routes.set(
        jobs,
        "sub_shop_worker",
        Route::Deliver(f.target(jobs, true)),
    );
    let consumer = f.consumer(jobs, "sub_shop_worker", 5).await;
    let seq = f
        .publish(format!("{jobs}.job.created"), HeaderMap::new(), "job")
        .await;
    let (_relay, mut reports) = f.relay(100).await;
    let _handler = FailingHandler::start(
        &f.js,
        consumer.clone(),
        Fail::Reject("SchemaViolation: /id: required"),
    );

    let report = report_where(&mut reports, "a copy", |r| {
        matches!(r.outcome, Outcome::Copied { .. })
    })
    .await;
    assert!(matches!(
        report.outcome,
        Outcome::Copied { released: true, .. }
    ));
    let letters = f.dead_letters().await;
    let (_, _, copy, payload) = &letters[0];
    assert_eq!(payload, "job");
    assert_eq!(value(copy, header::REASON), Some("SchemaViolation"));
    assert_eq!(value(copy, header::DETAIL), Some("/id: required"));
    assert_eq!(f.original(jobs, seq).await, Lookup::Gone);
    let mut consumer = consumer;
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 0, "the held event was settled");
}

/// Releasing is not deleting: in an Interest stream another Subscription still gets the event,
/// and the server removes it once that one is done too.
#[tokio::test(flavor = "multi_thread")]
async fn interest_original_stays_until_the_other_subscriptions_are_done() {
    let (f, names) = Fixture::new(&nats_url(), &["dlr"], RetentionPolicy::Interest).await;
    let events = &names[0];
    f.routes.set(
        events,
        "sub_shop_failing",
        Route::Deliver(f.target(events, true)),
    );
    let failing = f.consumer(events, "sub_shop_failing", 1).await;
    let healthy = f.consumer(events, "sub_shop_healthy", 5).await;
    let seq = f
        .publish(format!("{events}.user.created"), HeaderMap::new(), "u")
        .await;
    let (_relay, mut reports) = f.relay(100).await;
    let handler = FailingHandler::start(&f.js, failing, Fail::Nak);

    let report = report_where(&mut reports, "a copy", |r| {
        matches!(r.outcome, Outcome::Copied { .. })
    })
    .await;
    assert!(matches!(
        report.outcome,
        Outcome::Copied { released: true, .. }
    ));
    drop(handler);
    assert!(matches!(f.original(events, seq).await, Lookup::Found(_)));
    let mut batch = healthy.fetch().max_messages(1).messages().await.unwrap();
    let event = batch.next().await.unwrap().unwrap();
    assert_eq!(event.info().unwrap().stream_sequence, seq);
    event.double_ack().await.unwrap();
    wait_until("the original removed", || async {
        (f.original(events, seq).await == Lookup::Gone).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn advisory_waits_while_its_policy_is_unusable_and_is_copied_once_it_is() {
    let (f, names) = Fixture::new(&nats_url(), &["dlr"], RetentionPolicy::Limits).await;
    let orders = &names[0];
    f.routes.set(
        orders,
        "sub_shop_billing",
        Route::Wait {
            why: "DeadLetterPolicy shop/dead-letters is not Ready".into(),
        },
    );
    let consumer = f.consumer(orders, "sub_shop_billing", 5).await;
    f.publish(format!("{orders}.order.placed"), HeaderMap::new(), "{}")
        .await;
    let (_relay, mut reports) = f.relay(100).await;
    let _handler = FailingHandler::start(&f.js, consumer, Fail::Term("HandlerRejected: HTTP 409"));

    for attempt in 1..=2 {
        let report = report_where(&mut reports, "waiting", |_| true).await;
        assert_eq!(report.attempt, attempt);
        assert!(
            matches!(&report.outcome, Outcome::Waiting { why, .. } if why.contains("not Ready")),
            "{report:?}"
        );
    }
    assert_eq!(f.dead_letter_count().await, 0);

    f.routes.set(
        orders,
        "sub_shop_billing",
        Route::Deliver(f.target(orders, false)),
    );
    let report = report_where(&mut reports, "a copy", |r| {
        matches!(r.outcome, Outcome::Copied { .. })
    })
    .await;
    assert!(report.attempt >= 3);
    assert_eq!(f.dead_letter_count().await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_relay_still_copies_each_original_exactly_once() {
    const EVENTS: u64 = 200;
    let (f, names) = Fixture::new(&nats_url(), &["dlr"], RetentionPolicy::Limits).await;
    let orders = &names[0];
    f.routes.set(
        orders,
        "sub_shop_billing",
        Route::Deliver(f.target(orders, false)),
    );
    let consumer = f.consumer(orders, "sub_shop_billing", 5).await;
    for _ in 0..EVENTS {
        f.js.publish(format!("{orders}.order.placed"), "{}".into())
            .await
            .unwrap();
    }
    let _handler = FailingHandler::start(&f.js, consumer, Fail::Term("HandlerRejected: HTTP 400"));

    // Nobody reads this relay's reports: once the channel is full, each advisory in flight
    // stops after its copy is stored and before the advisory is acknowledged.
    let (relay, mut unread) = f.relay(20).await;
    wait_until("copies stored by the first relay", || async {
        (f.dead_letter_count().await >= 60).then_some(())
    })
    .await;
    relay.kill().await;
    let stored_before = f.dead_letter_count().await;
    assert!(
        stored_before < EVENTS,
        "the first relay was not interrupted"
    );
    // What the first relay reported was acknowledged, and does not come again.
    let mut copied = BTreeSet::new();
    while let Ok(report) = unread.try_recv() {
        copied.insert(report.failure.unwrap().sequence);
    }
    assert!(
        (copied.len() as u64) < stored_before,
        "no copy was left unacknowledged"
    );

    let (relay, mut reports) = f.relay(1000).await;
    let mut duplicates = 0;
    while copied.len() < EVENTS as usize {
        let report = report_where(&mut reports, "copies", |r| {
            matches!(r.outcome, Outcome::Copied { .. })
        })
        .await;
        if let Outcome::Copied {
            duplicate: true, ..
        } = report.outcome
        {
            duplicates += 1;
        }
        copied.insert(report.failure.unwrap().sequence);
    }
    assert!(duplicates > 0, "no advisory was handled twice");
    // Anything still to come would be a second copy.
    tokio::time::sleep(Duration::from_secs(3)).await;
    relay.stop().await;

    let letters = f.dead_letters().await;
    let sequences: Vec<u64> = letters
        .iter()
        .map(|(_, _, h, _)| {
            value(h, header::ORIGINAL_SEQUENCE)
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let distinct: BTreeSet<u64> = sequences.iter().copied().collect();
    assert_eq!(sequences.len(), EVENTS as usize, "one copy per original");
    assert_eq!(distinct, (1..=EVENTS).collect());
}

#[tokio::test(flavor = "multi_thread")]
async fn originals_the_server_removed_are_reported_not_copied() {
    let (f, names) = Fixture::new(&nats_url(), &["dlr"], RetentionPolicy::Limits).await;
    let orders = &names[0];
    f.routes.set(
        orders,
        "sub_shop_billing",
        Route::Deliver(f.target(orders, false)),
    );
    let consumer = f.consumer(orders, "sub_shop_billing", 5).await;
    let seq = f
        .publish(format!("{orders}.order.placed"), HeaderMap::new(), "{}")
        .await;
    // Delivered and pending when it is deleted: the server terminates it itself.
    let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    let _pending = batch.next().await.unwrap().unwrap();
    assert!(f.broker.delete_message(orders, seq).await.unwrap());
    assert!(!f.broker.delete_message(orders, seq).await.unwrap());
    let (_relay, mut reports) = f.relay(100).await;

    let report = report_where(&mut reports, "a report", |_| true).await;
    assert_eq!(report.outcome, Outcome::OriginalGone);
    assert!(
        matches!(&report.failure.as_ref().unwrap().reason, Reason::Terminated { reason: Some(r) } if r.contains("deleted")),
        "{report:?}"
    );
    assert_eq!(f.dead_letter_count().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_the_advisory_subjects_is_dropped_and_the_relay_goes_on() {
    let (f, names) = Fixture::new(&nats_url(), &["dlr"], RetentionPolicy::Limits).await;
    let orders = &names[0];
    f.routes.set(
        orders,
        "sub_shop_billing",
        Route::Deliver(f.target(orders, false)),
    );
    let client = f.js.client();
    let max = format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{orders}.sub_shop_billing");
    let term = format!("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{orders}.x");
    let rejected = format!("$SWITCHYARD.REJECTED.{orders}.x");
    let garbage: Vec<(String, Vec<u8>)> = vec![
        (max.clone(), b"{not json".to_vec()),
        (max.clone(), vec![0xff, 0x00, 0xfe]),
        (max.clone(), Vec::new()),
        (
            max.clone(),
            br#"{"stream":"a.b","consumer":"c","stream_seq":1,"deliveries":1}"#.to_vec(),
        ),
        (term.clone(), br#"{"stream":42}"#.to_vec()),
        (term.clone(), vec![b'['; 200_000]),
        (rejected.clone(), br#"{"stream":"s"}"#.to_vec()),
    ];
    for (subject, payload) in &garbage {
        client
            .publish(subject.clone(), payload.clone().into())
            .await
            .unwrap();
    }
    // Well-formed, but for a consumer nobody routes, and for an event that does not exist.
    let unknown =
        format!(r#"{{"stream":"{orders}","consumer":"nobody","stream_seq":1,"deliveries":5}}"#);
    client
        .publish(
            format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{orders}.nobody"),
            unknown.into(),
        )
        .await
        .unwrap();
    let missing = format!(
        r#"{{"stream":"{orders}","consumer":"sub_shop_billing","stream_seq":999,"deliveries":5}}"#
    );
    client.publish(max.clone(), missing.into()).await.unwrap();
    client.flush().await.unwrap();

    let (relay, mut reports) = f.relay(100).await;
    let mut labels = Vec::new();
    for _ in 0..garbage.len() + 2 {
        labels.push(
            report_where(&mut reports, "a report", |_| true)
                .await
                .outcome
                .label(),
        );
    }
    labels.sort();
    let mut expected = vec!["malformed"; garbage.len()];
    expected.extend(["not_managed", "original_gone"]);
    expected.sort();
    assert_eq!(labels, expected);

    // Still working.
    let consumer = f.consumer(orders, "sub_shop_billing", 5).await;
    f.publish(format!("{orders}.order.placed"), HeaderMap::new(), "{}")
        .await;
    let _handler = FailingHandler::start(&f.js, consumer, Fail::Term("HandlerRejected: HTTP 400"));
    report_where(&mut reports, "a copy", |r| {
        matches!(r.outcome, Outcome::Copied { .. })
    })
    .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relay_carries_on_after_a_server_restart() {
    let mut nats = PrivateNats::start();
    let (f, names) = Fixture::new(&nats.url(), &["dlr"], RetentionPolicy::Limits).await;
    let orders = &names[0];
    f.routes.set(
        orders,
        "sub_shop_billing",
        Route::Deliver(f.target(orders, false)),
    );
    let consumer = f.consumer(orders, "sub_shop_billing", 5).await;
    let (_relay, mut reports) = f.relay(100).await;
    let handler = FailingHandler::start(&f.js, consumer, Fail::Term("HandlerRejected: HTTP 400"));
    f.publish(format!("{orders}.order.placed"), HeaderMap::new(), "one")
        .await;
    report_where(&mut reports, "the first copy", |r| {
        matches!(r.outcome, Outcome::Copied { .. })
    })
    .await;
    drop(handler);

    nats.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.resume();
    let mut state = f.broker.connection_state();
    tokio::time::timeout(PATIENCE, state.wait_for(|up| *up))
        .await
        .expect("reconnected")
        .unwrap();

    let stream = f.js.get_stream(orders).await.unwrap();
    let consumer: PullConsumer = stream.get_consumer("sub_shop_billing").await.unwrap();
    let _handler = FailingHandler::start(&f.js, consumer, Fail::Term("HandlerRejected: HTTP 400"));
    f.publish(format!("{orders}.order.placed"), HeaderMap::new(), "two")
        .await;
    report_where(&mut reports, "a copy after the restart", |r| {
        matches!(
            &r.outcome,
            Outcome::Copied {
                duplicate: false,
                ..
            }
        ) && r.failure.as_ref().is_some_and(|f| f.sequence == 2)
    })
    .await;
    assert_eq!(f.dead_letter_count().await, 2);
}
