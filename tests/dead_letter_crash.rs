//! Exactly-once dead letters across crashes: the operator runs as its own process and is killed
//! with SIGKILL again and again while 1,000 events fail; started once more, it has stored every
//! failed event in the dead-letter stream once, none twice, none missing. Against a real
//! kube-apiserver and a real nats-server.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, consumer::PullConsumer};
use common::*;
use futures::StreamExt;
use kube::Api;
use switchyard::{
    api::{DeadLetterPolicy, Subscription, Topic},
    broker::{Broker, Lookup, Read},
    deadletter::format::header,
    naming,
};

const EVENTS: usize = 1000;
const KILLS: usize = 4;
const TOPIC: &str = "orders";
const SUBSCRIPTION: &str = "billing";
const POLICY: &str = "failures";
/// How long the relay may take to settle everything after the last start. Advisories handed to
/// a killed relay come back only after its ack wait (30 s), and each crash counts as an attempt,
/// so an advisory a restart cannot route yet waits a backoff that has grown meanwhile.
const SETTLE: Duration = Duration::from_secs(240);

/// `switchyard run` as a process of its own, scoped to one namespace, its relay reading an
/// advisory stream of the test's own (the account's is one for everybody). Killed when
/// dropped, also when the test fails; its log is kept then.
struct OperatorProcess {
    namespace: String,
    /// When the running process was started.
    started: Instant,
    log: PathBuf,
    child: Option<Child>,
}

impl OperatorProcess {
    fn start(namespace: &str) -> Self {
        let mut operator = Self {
            namespace: namespace.to_string(),
            started: Instant::now(),
            log: std::env::temp_dir().join(format!("switchyard-operator-{namespace}.log")),
            child: None,
        };
        operator.restart();
        operator
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "the operator is running");
        let ns = &self.namespace;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("operator log file");
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["--log-format", "json", "run", "--namespace", ns])
            .args(["--nats-url", &nats_url()])
            .args(["--leader-election", "off", "--http-addr", "off"])
            .args(["--advisory-stream", &advisory_stream(ns)])
            .args(["--advisory-scope", &naming::stream_name(ns, TOPIC)])
            .args(["--resync-interval", "2s", "--retry-initial-delay", "500ms"])
            .args([
                "--retry-max-delay",
                "2s",
                "--instance",
                &format!("test-{ns}"),
            ])
            // Every copy the relay stores is logged, saying whether the target found it a
            // duplicate.
            .env(
                "RUST_LOG",
                "info,kube=warn,async_nats=warn,switchyard::deadletter::relay=debug",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("operator log file"))
            .stderr(log)
            .spawn()
            .expect("start the switchyard binary");
        self.child = Some(child);
        self.started = Instant::now();
    }

    /// SIGKILL: no shutdown, no drain, nothing acknowledged that was not yet.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn assert_alive(&mut self) {
        let child = self.child.as_mut().expect("the operator was started");
        let exited = child.try_wait().expect("operator status");
        assert!(
            exited.is_none(),
            "the operator exited on its own ({exited:?}); see {}",
            self.log.display()
        );
    }

    /// Copies the relays logged as stored over every run: (new, recognised as duplicates).
    fn copies_logged(&self) -> (usize, usize) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let stored: Vec<serde_json::Value> = log
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["message"] == "dead letter stored")
            .collect();
        let duplicates = stored.iter().filter(|l| l["duplicate"] == true).count();
        (stored.len() - duplicates, duplicates)
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("operator log: {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Named after the namespace, so the namespace's cleanup deletes it, and the relay's consumer
/// with it.
fn advisory_stream(namespace: &str) -> String {
    format!("{namespace}_advisories")
}

/// The durable consumer a namespace-scoped operator's relay reads with.
fn relay_consumer(namespace: &str) -> String {
    format!("dead_letter_relay_{namespace}")
}

async fn stored(broker: &Broker, stream: &str) -> usize {
    broker
        .stream_info(stream)
        .await
        .ok()
        .flatten()
        .map_or(0, |info| usize::try_from(info.state.messages).unwrap())
}

/// Advisories handed to a relay and not acknowledged yet.
async fn unacknowledged(broker: &Broker, stream: &str, consumer: &str) -> usize {
    broker
        .consumer_info(stream, consumer)
        .await
        .ok()
        .flatten()
        .map_or(0, |info| info.num_ack_pending)
}

/// A handler that rejects every event with HTTP 400, as the dispatcher reports it, at about
/// 250 events/s so that the failures go on while the operator is killed. Returns the stream
/// sequences it failed.
async fn reject_all(consumer: PullConsumer, client: async_nats::Client) -> BTreeSet<u64> {
    let mut failed = BTreeSet::new();
    while failed.len() < EVENTS {
        let mut batch = consumer
            .fetch()
            .max_messages(25)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .expect("fetch events to fail");
        while let Some(message) = batch.next().await {
            let message = message.expect("an event");
            let sequence = message.info().expect("delivery info").stream_sequence;
            let reply = message.reply.clone().expect("a reply subject");
            client
                .publish(reply, "+TERM HandlerRejected: HTTP 400".into())
                .await
                .expect("terminate");
            failed.insert(sequence);
        }
        client.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    failed
}

#[tokio::test(flavor = "multi_thread")]
async fn every_failed_event_is_dead_lettered_exactly_once_across_kill_9s() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "dlq-crash").await;
    let name = ns.name.clone();
    let (advisories, relay) = (advisory_stream(&name), relay_consumer(&name));
    let (topic_stream, dlq) = (
        naming::stream_name(&name, TOPIC),
        naming::dead_letter_stream_name(&name, POLICY),
    );
    // Declared after the namespace, so it is killed before the namespace and its streams go:
    // a relay still running would create its advisory stream again.
    let mut operator = OperatorProcess::start(&name);

    let topics: Api<Topic> = Api::namespaced(client.clone(), &name);
    let policies: Api<DeadLetterPolicy> = Api::namespaced(client.clone(), &name);
    let subscriptions: Api<Subscription> = Api::namespaced(client.clone(), &name);
    apply(&topics, &topic_yaml(&name, TOPIC, "  maxAge: 1h\n"))
        .await
        .expect("apply Topic");
    apply(
        &policies,
        &manifest(
            "DeadLetterPolicy",
            &name,
            POLICY,
            "  alertThreshold: 5000\n",
        ),
    )
    .await
    .expect("apply DeadLetterPolicy");
    apply(
        &subscriptions,
        &manifest(
            "Subscription",
            &name,
            SUBSCRIPTION,
            &format!("  topicRef: {{name: {TOPIC}}}\n  deadLetterPolicyRef: {{name: {POLICY}}}\n"),
        ),
    )
    .await
    .expect("apply Subscription");
    wait_for_ready(&policies, POLICY, "True", "StreamReady").await;
    wait_for_ready(&subscriptions, SUBSCRIPTION, "True", "ConsumerInSync").await;
    let broker = connected(&nats_url()).await;
    // Advisories are captured only once the relay's stream exists.
    wait_until("the relay's consumer on the advisory stream", || async {
        broker
            .consumer_info(&advisories, &relay)
            .await
            .ok()?
            .map(|_| ())
    })
    .await;

    let nats = async_nats::connect(nats_url()).await.expect("connect");
    let js = jetstream::new(nats.clone());
    let mut acks = Vec::with_capacity(EVENTS);
    for n in 0..EVENTS {
        let ack = js
            .publish(
                format!("{name}.{TOPIC}.order.placed"),
                format!("{{\"order\":{n}}}").into(),
            )
            .await
            .expect("publish");
        acks.push(ack);
    }
    for ack in acks {
        ack.await.expect("event stored");
    }
    let consumer: PullConsumer = js
        .get_consumer_from_stream(
            naming::subscription_consumer_name(&name, SUBSCRIPTION),
            &topic_stream,
        )
        .await
        .expect("the Subscription's consumer");
    let failing = tokio::spawn(reject_all(consumer, nats.clone()));

    // Each kill lands on a relay at work: after a random lifetime, as soon as it stored copies
    // within the last poll and holds advisories of its own not yet acknowledged (beyond those a
    // killed relay left, which wait out their ack wait); once every event has failed, at a
    // random moment.
    let mut kills = Vec::new();
    let last_seen = std::cell::Cell::new(stored(&broker, &dlq).await);
    let mut orphaned = 0;
    for kill in 1..=KILLS {
        let lifetime = Duration::from_millis(rand::random_range(300..1500));
        tokio::time::sleep(lifetime.saturating_sub(operator.started.elapsed())).await;
        let (at_kill, in_flight) = wait_until_within(
            "the restarted relay to store copies",
            SETTLE,
            Duration::from_millis(10),
            || async {
                let at = stored(&broker, &dlq).await;
                let in_flight = unacknowledged(&broker, &advisories, &relay).await;
                let busy = at > last_seen.replace(at) && in_flight > orphaned;
                if !busy && failing.is_finished() {
                    tokio::time::sleep(Duration::from_millis(rand::random_range(0..500))).await;
                }
                (busy || failing.is_finished()).then_some((at, in_flight))
            },
        )
        .await;
        operator.kill();
        println!(
            "kill -9 #{kill} {} ms after its start: {at_kill} of {EVENTS} dead letters stored, \
             {in_flight} advisories unacknowledged ({orphaned} of them left by the last kill)",
            operator.started.elapsed().as_millis()
        );
        kills.push(at_kill);
        // Failures go on while no operator runs; their advisories wait in the stream. Copies
        // the killed relay had sent are stored by now: what the next one stores is its own.
        tokio::time::sleep(Duration::from_millis(rand::random_range(100..500))).await;
        last_seen.set(stored(&broker, &dlq).await);
        orphaned = unacknowledged(&broker, &advisories, &relay).await;
        operator.restart();
    }
    assert!(
        kills.iter().any(|&at| 0 < at && at < EVENTS),
        "no kill fell while events were being dead-lettered: {kills:?}"
    );

    let failed = failing.await.expect("the failing handler");
    assert_eq!(failed.len(), EVENTS);
    // Settled: every advisory captured (one per failure) and acknowledged by the relay, so no
    // copy is still on its way.
    let (captured, handed_out) = wait_until_within(
        "the relay to settle every advisory",
        SETTLE,
        Duration::from_millis(250),
        || async {
            let captured = broker.stream_info(&advisories).await.ok()??.state.messages;
            let info = broker.consumer_info(&advisories, &relay).await.ok()??;
            (captured >= EVENTS as u64 && info.num_pending == 0 && info.num_ack_pending == 0)
                .then_some((captured, info.delivered.consumer_sequence))
        },
    )
    .await;
    operator.assert_alive();

    let info = broker
        .stream_info(&dlq)
        .await
        .expect("dead-letter stream info")
        .expect("the dead-letter stream");
    let mut copied = Vec::new();
    for sequence in info.state.first_sequence..=info.state.last_sequence {
        let Lookup::Found(letter) = broker
            .stream_message(&dlq, sequence, Read::Leader)
            .await
            .expect("read a dead letter")
        else {
            panic!("dead letter {sequence} is missing from {dlq}");
        };
        let get = |name: &str| {
            letter
                .headers
                .get(name)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        assert_eq!(get(header::ORIGINAL_STREAM), topic_stream);
        assert_eq!(get(header::REASON), "HandlerRejected");
        copied.push(
            get(header::ORIGINAL_SEQUENCE)
                .parse::<u64>()
                .expect("an original sequence"),
        );
    }
    let mut copies_of = BTreeMap::<u64, usize>::new();
    for sequence in &copied {
        *copies_of.entry(*sequence).or_default() += 1;
    }
    let twice: Vec<(u64, usize)> = copies_of
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, n)| (*s, *n))
        .collect();
    assert!(
        twice.is_empty(),
        "dead-lettered more than once (sequence, copies): {twice:?}"
    );
    let unique: BTreeSet<u64> = copies_of.into_keys().collect();
    let missing: Vec<u64> = failed.difference(&unique).copied().collect();
    let extra: Vec<u64> = unique.difference(&failed).copied().collect();
    assert!(missing.is_empty(), "never dead-lettered: {missing:?}");
    assert!(
        extra.is_empty(),
        "dead-lettered but never failed: {extra:?}"
    );
    assert_eq!(copied.len(), EVENTS);
    let (new, duplicates) = operator.copies_logged();
    println!(
        "{EVENTS} failed events, {} dead letters; {captured} advisories handed to the relays \
         {handed_out} times; copies logged as stored: {new} new, {duplicates} found duplicates \
         by the target",
        copied.len()
    );
}
