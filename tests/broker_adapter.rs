//! The broker adapter against a real nats-server with JetStream: consumers, key-value buckets,
//! advisories and the connection state. Objects on the shared server (NATS_URL) get names unique
//! to the run and are deleted by guards, also when a test fails; the connection test runs its own
//! server so that it can kill it.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{
    consumer::{AckPolicy, DeliverPolicy, pull},
    kv,
    stream::{Config as StreamConfig, RetentionPolicy},
};
use common::{PrivateNats, connected, nats_url, unique};
use futures::StreamExt;
use switchyard::broker::{
    AdvisoryBody, Broker, BrokerError, BrokerOptions, Bytes, MaxDeliveries, codes,
};
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(30);

/// Deletes its stream when dropped, so that a failing test leaves nothing behind.
/// Tests using it run on the multi-threaded runtime, which lets `Drop` wait for the deletion.
struct StreamGuard {
    broker: Broker,
    name: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let (broker, name) = (self.broker.clone(), self.name.clone());
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async move {
                let _ = broker.delete_stream(&name).await;
            })
        });
    }
}

/// A Limits stream on `<name>.>`, deleted when the guard drops.
async fn stream(broker: &Broker, retention: RetentionPolicy) -> StreamGuard {
    let name = unique("bat");
    broker
        .create_stream(&StreamConfig {
            name: name.clone(),
            subjects: vec![format!("{name}.>")],
            retention,
            ..Default::default()
        })
        .await
        .expect("create stream");
    StreamGuard {
        broker: broker.clone(),
        name,
    }
}

fn durable(name: &str) -> pull::Config {
    pull::Config {
        durable_name: Some(name.into()),
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    }
}

#[track_caller]
fn assert_code<T: std::fmt::Debug>(result: Result<T, BrokerError>, code: u64) {
    match result {
        Err(e) => assert_eq!(e.code(), Some(code), "expected error {code}, got {e}"),
        Ok(v) => panic!("expected error {code}, got {v:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn consumers_are_created_refused_updated_listed_and_deleted() {
    let broker = connected(&nats_url()).await;
    let stream = stream(&broker, RetentionPolicy::Limits).await;
    let s = stream.name.as_str();

    assert!(broker.consumer_info(s, "orders").await.unwrap().is_none());
    let created = broker.create_consumer(s, &durable("orders")).await.unwrap();
    assert_eq!(created.name, "orders");
    // The same configuration again is not a conflict.
    broker.create_consumer(s, &durable("orders")).await.unwrap();

    let other = pull::Config {
        ack_wait: Duration::from_secs(7),
        ..durable("orders")
    };
    assert_code(
        broker.create_consumer(s, &other).await,
        codes::CONSUMER_ALREADY_EXISTS,
    );
    let updated = broker.update_consumer(s, &other).await.unwrap();
    assert_eq!(updated.config.ack_wait, Duration::from_secs(7));
    let info = broker.consumer_info(s, "orders").await.unwrap().unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(7));

    let new_deliver_policy = pull::Config {
        deliver_policy: DeliverPolicy::New,
        ..other.clone()
    };
    assert_code(
        broker.update_consumer(s, &new_deliver_policy).await,
        codes::CONSUMER_CREATE_FAILED,
    );
    assert_code(
        broker.update_consumer(s, &durable("missing")).await,
        codes::CONSUMER_DOES_NOT_EXIST,
    );
    let too_many_backoffs = pull::Config {
        max_deliver: 2,
        backoff: vec![Duration::from_secs(1); 3],
        ..durable("backoff")
    };
    assert_code(
        broker.create_consumer(s, &too_many_backoffs).await,
        codes::CONSUMER_MAX_DELIVER_BACKOFF,
    );
    let both_filters = pull::Config {
        filter_subject: format!("{s}.a"),
        filter_subjects: vec![format!("{s}.b")],
        ..durable("filters")
    };
    assert_code(
        broker.create_consumer(s, &both_filters).await,
        codes::CONSUMER_DUPLICATE_FILTER_SUBJECTS,
    );
    let unnamed = pull::Config::default();
    assert_eq!(
        broker
            .create_consumer(s, &unnamed)
            .await
            .unwrap_err()
            .category(),
        "config"
    );

    broker.create_consumer(s, &durable("audit")).await.unwrap();
    let mut names = broker.consumer_names(s).await.unwrap();
    names.sort();
    assert_eq!(names, ["audit", "orders"]);

    assert!(broker.delete_consumer(s, "orders").await.unwrap());
    assert!(!broker.delete_consumer(s, "orders").await.unwrap());
    assert_eq!(broker.consumer_names(s).await.unwrap(), ["audit"]);
    assert_code(
        broker.consumer_info("bat-no-such-stream", "orders").await,
        codes::STREAM_NOT_FOUND,
    );
    assert!(!broker.delete_stream("bat-no-such-stream").await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn work_queue_consumers_must_not_overlap_and_must_deliver_all() {
    let broker = connected(&nats_url()).await;
    let stream = stream(&broker, RetentionPolicy::WorkQueue).await;
    let s = stream.name.as_str();
    let filtered = |name: &str, filter: String| pull::Config {
        filter_subject: filter,
        ..durable(name)
    };
    broker
        .create_consumer(s, &filtered("all", format!("{s}.>")))
        .await
        .unwrap();
    assert_code(
        broker
            .create_consumer(s, &filtered("orders", format!("{s}.orders")))
            .await,
        codes::CONSUMER_WORK_QUEUE_NOT_UNIQUE,
    );
    let from_now_on = pull::Config {
        deliver_policy: DeliverPolicy::New,
        ..filtered("new", format!("{s}.new"))
    };
    assert_code(
        broker.create_consumer(s, &from_now_on).await,
        codes::CONSUMER_WORK_QUEUE_NOT_DELIVER_ALL,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn key_value_writes_are_compare_and_set() {
    let broker = connected(&nats_url()).await;
    let bucket = unique("bat");
    let config = kv::Config {
        bucket: bucket.clone(),
        history: 3,
        ..Default::default()
    };
    let _guard = StreamGuard {
        broker: broker.clone(),
        name: format!("KV_{bucket}"),
    };
    let kv = broker.kv_bucket(config.clone()).await.unwrap();
    assert_eq!(kv.name(), bucket);
    // Asking again with the same configuration is harmless; another one is refused.
    let kv = broker.kv_bucket(config.clone()).await.unwrap();
    assert_code(
        broker
            .kv_bucket(kv::Config {
                history: 5,
                ..config
            })
            .await,
        codes::STREAM_NAME_EXISTS,
    );

    assert_eq!(kv.get("orders.v1").await.unwrap(), None);
    let first = kv.create("orders.v1", Bytes::from("one")).await.unwrap();
    assert_code(
        kv.create("orders.v1", Bytes::from("again")).await,
        codes::WRONG_LAST_SEQUENCE,
    );
    let second = kv
        .update("orders.v1", Bytes::from("two"), first)
        .await
        .unwrap();
    assert!(second > first);
    assert_code(
        kv.update("orders.v1", Bytes::from("stale"), first).await,
        codes::WRONG_LAST_SEQUENCE,
    );
    let entry = kv.get("orders.v1").await.unwrap().unwrap();
    assert_eq!((entry.value, entry.revision), (Bytes::from("two"), second));

    kv.create("orders.latest", Bytes::from("v1")).await.unwrap();
    let mut keys = kv.keys().await.unwrap();
    keys.sort();
    assert_eq!(keys, ["orders.latest", "orders.v1"]);

    assert_eq!(
        kv.create("bad key", Bytes::new())
            .await
            .unwrap_err()
            .category(),
        "config"
    );
    assert_eq!(
        broker
            .kv_bucket(kv::Config {
                bucket: "no.dots".into(),
                ..Default::default()
            })
            .await
            .err()
            .map(|e| e.category()),
        Some("config")
    );
}

/// Publishes one message and fetches it through the durable `consumer`; returns its reply subject.
async fn deliver_one(broker: &Broker, stream: &str, consumer: &str) -> String {
    let js = broker.jetstream();
    js.publish(format!("{stream}.orders"), "order".into())
        .await
        .unwrap()
        .await
        .unwrap();
    fetch_one(broker, stream, consumer)
        .await
        .expect("a message delivered")
}

async fn fetch_one(broker: &Broker, stream: &str, consumer: &str) -> Option<String> {
    let consumer: async_nats::jetstream::consumer::PullConsumer = broker
        .jetstream()
        .get_stream(stream)
        .await
        .unwrap()
        .get_consumer(consumer)
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let message = batch.next().await?.unwrap();
    Some(message.reply.as_ref().unwrap().to_string())
}

async fn next_advisory(
    advisories: &mut mpsc::Receiver<switchyard::broker::Advisory>,
) -> AdvisoryBody {
    tokio::time::timeout(PATIENCE, advisories.recv())
        .await
        .expect("advisory in time")
        .expect("advisory channel open")
        .body
}

#[tokio::test(flavor = "multi_thread")]
async fn terminated_messages_arrive_as_typed_advisories_with_their_reason() {
    let broker = connected(&nats_url()).await;
    let stream = stream(&broker, RetentionPolicy::Limits).await;
    let s = stream.name.as_str();
    broker
        .create_consumer(s, &durable("handler"))
        .await
        .unwrap();
    let mut advisories = broker
        .advisories(
            &format!("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{s}.>"),
            16,
        )
        .await;

    let reply = deliver_one(&broker, s, "handler").await;
    // The library's AckKind::Term carries no reason; the protocol does.
    let client = async_nats::connect(nats_url()).await.unwrap();
    client
        .publish(reply, "+TERM schema violation".into())
        .await
        .unwrap();
    client.flush().await.unwrap();

    let AdvisoryBody::MsgTerminated(terminated) = next_advisory(&mut advisories).await else {
        panic!("not a terminated advisory");
    };
    assert_eq!(terminated.stream, s);
    assert_eq!(terminated.consumer, "handler");
    assert_eq!((terminated.stream_seq, terminated.consumer_seq), (1, 1));
    assert_eq!(terminated.deliveries, 1);
    assert_eq!(terminated.reason.as_deref(), Some("schema violation"));
}

#[tokio::test(flavor = "multi_thread")]
async fn exhausted_deliveries_arrive_as_typed_advisories() {
    let broker = connected(&nats_url()).await;
    let stream = stream(&broker, RetentionPolicy::Limits).await;
    let s = stream.name.as_str();
    let once = pull::Config {
        max_deliver: 1,
        ack_wait: Duration::from_secs(1),
        ..durable("once")
    };
    broker.create_consumer(s, &once).await.unwrap();
    let mut advisories = broker
        .advisories(
            &format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{s}.>"),
            16,
        )
        .await;

    deliver_one(&broker, s, "once").await;
    // Never acknowledged: after ack_wait the server would redeliver, but max_deliver forbids it.
    // The advisory comes when the server looks for the next message, so keep asking.
    let advisory = tokio::time::timeout(PATIENCE, async {
        loop {
            tokio::select! {
                advisory = advisories.recv() => return advisory.expect("channel open").body,
                redelivered = fetch_one(&broker, s, "once") => {
                    assert_eq!(redelivered, None, "delivered beyond max_deliver");
                }
            }
        }
    })
    .await
    .expect("advisory in time");
    assert_eq!(
        advisory,
        AdvisoryBody::MaxDeliveries(MaxDeliveries {
            stream: s.to_string(),
            consumer: "once".into(),
            stream_seq: 1,
            deliveries: 1,
        })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_advisory_reader_loses_advisories_but_never_blocks() {
    let broker = connected(&nats_url()).await;
    let stream = stream(&broker, RetentionPolicy::Limits).await;
    let s = stream.name.as_str();
    let subject = format!("$JS.EVENT.ADVISORY.TEST.{s}");
    let mut advisories = broker.advisories(&subject, 2).await;
    let client = async_nats::connect(nats_url()).await.unwrap();
    for i in 0..50 {
        client
            .publish(subject.clone(), format!("{{\"n\":{i}}}").into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    // A request through the same client still goes through while the channel is full.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(broker.stream_info(s).await.unwrap().is_some());
    let mut received = 0;
    while let Ok(Some(advisory)) =
        tokio::time::timeout(Duration::from_millis(500), advisories.recv()).await
    {
        assert!(
            matches!(advisory.body, AdvisoryBody::Json(_)),
            "{advisory:?}"
        );
        received += 1;
    }
    assert!(
        (2..50).contains(&received),
        "received {received} advisories"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_state_follows_the_server() {
    let mut nats = PrivateNats::start();
    let broker = connected(&nats.url()).await;
    let mut state = broker.connection_state();
    assert!(*state.borrow_and_update());

    nats.kill();
    tokio::time::timeout(PATIENCE, state.wait_for(|up| !*up))
        .await
        .expect("disconnection noticed")
        .unwrap();
    assert_eq!(
        broker.stream_info("anything").await.unwrap_err().category(),
        "unavailable"
    );

    nats.resume();
    tokio::time::timeout(PATIENCE, state.wait_for(|up| *up))
        .await
        .expect("reconnection noticed")
        .unwrap();
    assert!(broker.stream_info("anything").await.unwrap().is_none());
}

/// Log lines written by the test process, for tests about what the adapter logs.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures every log line of this test binary from now on (connection events are logged
    /// from the client's own task, so a thread-local subscriber would miss them).
    fn capture() -> Self {
        let logs = Self::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_logged_once_without_credentials() {
    let logs = Logs::capture();
    let port = common::free_addr().port();
    let url = format!("nats://operator:hunter2@127.0.0.1:{port}");
    let broker = Broker::connect(&BrokerOptions::new(url))
        .await
        .expect("connect returns while the server is down");
    // Long enough for several reconnect attempts, shorter than the 30 s between reminders.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!*broker.connection_state().borrow());
    assert!(!broker.is_connected());

    let text = logs.text();
    let shown = format!("url=nats://<redacted>@127.0.0.1:{port}");
    let failures = text
        .lines()
        .filter(|l| l.contains("cannot connect to NATS") && l.contains(&shown))
        .count();
    assert_eq!(failures, 1, "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
