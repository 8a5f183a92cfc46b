//! Dispatchers enforcing the schema their Subscription is bound to, against a real
//! kube-apiserver and real nats-servers: events failing it are dead-lettered as
//! SchemaViolation (operator, dead-letter relay and the dispatcher binary run as the worker
//! Deployment says), a dispatcher following the latest version picks up a new one without a
//! restart while a pinned one does not, nothing is delivered before the schema is read, and a
//! registry that goes away leaves the last version in force.

mod common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{Value, json};
use switchyard::{
    api::{DeadLetterPolicy, EventSchema, Subscription, Topic},
    broker::{Broker, BrokerOptions, Lookup, Read},
    deadletter::{AdvisoryScope, AdvisoryStream, RelayConfig, format::header},
    dispatcher::{self, DispatchConfig, cloudevents::TopicLayout},
    registry::Registry,
};
use tokio::sync::oneshot;

/// An HTTP handler in the test process that records the `ce-id` and body of every call and
/// answers 200.
#[derive(Clone, Default)]
struct Handler {
    calls: Arc<Mutex<Vec<(String, String)>>>,
}

impl Handler {
    async fn start() -> (Self, String) {
        let handler = Self::default();
        let app = Router::new()
            .route("/events", post(receive))
            .with_state(handler.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (handler, format!("http://{addr}/events"))
    }

    fn ids(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    async fn wait_for(&self, id: &str) {
        wait_until(&format!("{id} handled"), || async {
            self.ids().iter().any(|i| i == id).then_some(())
        })
        .await;
    }
}

async fn receive(State(handler): State<Handler>, headers: HeaderMap, body: String) -> &'static str {
    let id = headers
        .get("ce-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    handler.calls.lock().unwrap().push((id, body));
    "ok"
}

/// Publishes one event with `Nats-Msg-Id: id` (the dispatcher makes it the `ce-id`) and, if
/// given, a `Content-Type`.
async fn publish(
    js: &async_nats::jetstream::Context,
    subject: &str,
    id: &str,
    content_type: Option<&str>,
    data: &str,
) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    if let Some(content_type) = content_type {
        headers.insert("Content-Type", content_type);
    }
    js.publish_with_headers(subject.to_string(), headers, data.to_string().into())
        .await
        .expect("publish")
        .await
        .expect("stored");
}

/// `order.placed`, version `version`: v1 wants a whole-number total, v2 accepts fractions.
fn order_schema(version: i64) -> Value {
    let total = if version == 1 { "integer" } else { "number" };
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["orderId", "total"],
        "properties": {"orderId": {"type": "string"}, "total": {"type": total, "minimum": 0}}
    })
}

fn event_schema_yaml(ns: &str, version: i64) -> String {
    let spec = json!({
        "eventType": "order.placed",
        "version": version,
        "compatibility": "None",
        "schema": order_schema(version),
    });
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: EventSchema\nmetadata: {{name: order-placed, namespace: {ns}}}\nspec: {spec}\n"
    )
}

/// `switchyard dispatch` as a process of its own, with the arguments of a worker Deployment's
/// dispatcher container (its endpoint pointed at `endpoint`), killed when dropped.
struct DispatcherProcess {
    child: std::process::Child,
    http: SocketAddr,
}

impl DispatcherProcess {
    fn spawn(args: Vec<String>, endpoint: &str) -> Self {
        let mut args = args;
        let at = args
            .iter()
            .position(|a| a == "--endpoint")
            .expect("the Deployment names the handler's endpoint");
        args[at + 1] = endpoint.to_string();
        let http = free_addr();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(&args)
            .args(["--http-addr", &http.to_string(), "--nats-url", &nats_url()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("switchyard binary");
        Self { child, http }
    }

    async fn metrics(&self) -> String {
        http_get(self.http, "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

impl Drop for DispatcherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The dispatcher container's arguments of a Subscription's worker Deployment.
async fn dispatcher_args(client: &kube::Client, ns: &str, subscription: &str) -> Vec<String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment = deployments
        .get(&format!("{subscription}-worker"))
        .await
        .expect("worker Deployment");
    deployment
        .spec
        .template
        .spec
        .and_then(|pod| pod.containers.into_iter().find(|c| c.name == "dispatcher"))
        .and_then(|c| c.args)
        .expect("dispatcher arguments")
}

async fn wait_until_ready(http: SocketAddr) -> String {
    wait_until("the dispatcher ready", || async {
        match http_get(http, "/readyz").await {
            Some((200, body)) => Some(body),
            _ => None,
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn events_failing_the_bound_schema_are_dead_lettered_as_schema_violations() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "enforce").await;
    let name = ns.name.clone();
    let _operator = Operator::start_with(&client, &name, &nats_url(), |config| {
        config.dead_letter_relay = Some(RelayConfig {
            stream: AdvisoryStream {
                name: format!("{name}_advisories"),
                scope: AdvisoryScope::Streams(vec![
                    format!("{name}_orders"),
                    format!("{name}_jobs"),
                ]),
                ..AdvisoryStream::default()
            },
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(1),
            fetch_wait: Duration::from_millis(500),
            ..RelayConfig::default()
        });
    });
    let topics: Api<Topic> = Api::namespaced(client.clone(), &name);
    let subscriptions: Api<Subscription> = Api::namespaced(client.clone(), &name);
    let policies: Api<DeadLetterPolicy> = Api::namespaced(client.clone(), &name);
    let schemas: Api<EventSchema> = Api::namespaced(client.clone(), &name);
    let broker = broker(&nats_url()).await;

    // Orders keep their events (Limits): a violation is terminated. Jobs do not (WorkQueue):
    // the dispatcher holds it for the relay instead.
    for (topic, retention) in [("orders", "Limits"), ("jobs", "WorkQueue")] {
        apply(
            &topics,
            &topic_yaml(
                &name,
                topic,
                &format!("  retention: {retention}\n  schemaRef: {{name: order-placed}}\n"),
            ),
        )
        .await
        .unwrap();
    }
    apply(
        &policies,
        &manifest(
            "DeadLetterPolicy",
            &name,
            "failures",
            "  alertThreshold: 100\n",
        ),
    )
    .await
    .unwrap();
    apply(&schemas, &event_schema_yaml(&name, 1)).await.unwrap();
    for (subscription, topic) in [("billing", "orders"), ("packing", "jobs")] {
        apply(
            &subscriptions,
            &manifest(
                "Subscription",
                &name,
                subscription,
                &format!(
                    "  topicRef: {{name: {topic}}}\n  deadLetterPolicyRef: {{name: failures}}\n  worker: {{image: acme/{subscription}:1, concurrency: 4}}\n"
                ),
            ),
        )
        .await
        .unwrap();
    }
    for subscription in ["billing", "packing"] {
        wait_for_ready(&subscriptions, subscription, "True", "ConsumerInSync").await;
    }
    wait_for_ready(&policies, "failures", "True", "StreamReady").await;
    wait_until("the advisory stream", || async {
        broker
            .stream_info(&format!("{name}_advisories"))
            .await
            .ok()?
            .map(|_| ())
    })
    .await;

    // The dispatchers, run as the worker Deployments say.
    let (handler, endpoint) = Handler::start().await;
    let billing =
        DispatcherProcess::spawn(dispatcher_args(&client, &name, "billing").await, &endpoint);
    let packing_args = dispatcher_args(&client, &name, "packing").await;
    assert!(
        packing_args.contains(&"--hold-rejections".to_string()),
        "{packing_args:?}"
    );
    let packing = DispatcherProcess::spawn(packing_args, &endpoint);
    for dispatcher in [&billing, &packing] {
        let readiness = wait_until_ready(dispatcher.http).await;
        assert!(
            readiness.contains(&format!(
                "schema {name}.order.placed.latest: order.placed v1 in force"
            )),
            "{readiness}"
        );
    }

    let js = broker.jetstream();
    for topic in ["orders", "jobs"] {
        let subject = format!("{name}.{topic}.order.placed");
        publish(
            js,
            &subject,
            &format!("{topic}-ok"),
            Some("application/json"),
            r#"{"orderId": "o-1", "total": 10}"#,
        )
        .await;
        publish(
            js,
            &subject,
            &format!("{topic}-negative"),
            None,
            r#"{"orderId": "o-2", "total": -5}"#,
        )
        .await;
        publish(
            js,
            &subject,
            &format!("{topic}-text"),
            Some("text/plain"),
            "ten euros",
        )
        .await;
    }
    handler.wait_for("orders-ok").await;
    handler.wait_for("jobs-ok").await;

    let dlq = format!("{name}_failures_dlq");
    let dead = wait_until("four dead letters", || async {
        let info = broker.stream_info(&dlq).await.ok()??;
        (info.state.messages == 4).then_some(info)
    })
    .await;
    let mut letters = Vec::new();
    for sequence in dead.state.first_sequence..=dead.state.last_sequence {
        let Lookup::Found(letter) = broker
            .stream_message(&dlq, sequence, Read::Leader)
            .await
            .unwrap()
        else {
            panic!("dead letter {sequence} missing");
        };
        let get = |h: &str| {
            letter
                .headers
                .get(h)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        letters.push((
            get(header::ORIGINAL_MSG_ID),
            get(header::REASON),
            get(header::DETAIL),
            get(header::ORIGINAL_CONSUMER),
        ));
    }
    letters.sort();
    let ids: Vec<&str> = letters.iter().map(|l| l.0.as_str()).collect();
    assert_eq!(
        ids,
        [
            "jobs-negative",
            "jobs-text",
            "orders-negative",
            "orders-text"
        ]
    );
    for (id, reason, detail, consumer) in &letters {
        assert_eq!(reason, "SchemaViolation", "{id}");
        assert!(detail.ends_with("(order.placed v1)"), "{id}: {detail}");
        let expected = if id.ends_with("negative") {
            "#/total: -5 is less than the minimum of 0"
        } else {
            "data is declared as text/plain, not JSON"
        };
        assert!(detail.starts_with(expected), "{id}: {detail}");
        let subscription = if id.starts_with("orders") {
            "billing"
        } else {
            "packing"
        };
        assert_eq!(consumer, &format!("sub_{name}_{subscription}"));
    }
    let mut handled = handler.ids();
    handled.sort();
    assert_eq!(
        handled,
        ["jobs-ok", "orders-ok"],
        "violations never reach the handler"
    );

    // The work queue keeps nothing once the relay has its copies; the orders stay.
    wait_until("the work queue emptied", || async {
        let info = broker.stream_info(&format!("{name}_jobs")).await.ok()??;
        (info.state.messages == 0).then_some(())
    })
    .await;
    assert_eq!(
        broker
            .stream_info(&format!("{name}_orders"))
            .await
            .unwrap()
            .unwrap()
            .state
            .messages,
        3
    );
    let counted = wait_for(&policies, "failures", "4 schema violations counted", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.captured.as_ref())
            .is_some_and(|c| c.schema_violation == 4)
    })
    .await;
    assert_eq!(counted.status.unwrap().dead_letters, Some(4));

    // Counted by the dispatchers, by what became of each.
    let billing_metrics = billing.metrics().await;
    assert_eq!(
        metric(
            &billing_metrics,
            "switchyard_dispatch_outcomes_total",
            &["outcome=\"terminated\"", "reason=\"schema_violation\""]
        ),
        2.0,
        "{billing_metrics}"
    );
    assert_eq!(
        metric(&billing_metrics, "switchyard_dispatch_schema_version", &[]),
        1.0
    );
    let packing_metrics = packing.metrics().await;
    assert_eq!(
        metric(
            &packing_metrics,
            "switchyard_dispatch_outcomes_total",
            &["outcome=\"held\"", "reason=\"schema_violation\""]
        ),
        2.0,
        "{packing_metrics}"
    );
}

/// `switchyard dispatch` in the test process until dropped.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    http: SocketAddr,
}

impl Running {
    fn start(broker: &str, stream: &str, consumer: &str, schema_key: &str, endpoint: &str) -> Self {
        let http = free_addr();
        let config = DispatchConfig {
            broker: BrokerOptions::new(broker),
            stream: stream.into(),
            consumers: vec![consumer.into()],
            per_key: false,
            endpoint: endpoint.into(),
            concurrency: 4,
            timeout: None,
            layout: TopicLayout {
                subject_prefix: stream.replace('_', "."),
                partition_type_tokens: None,
                source: format!("/streams/{stream}"),
            },
            http_addr: Some(http),
            hold_rejections: false,
            schema_key: Some(schema_key.into()),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(dispatcher::run(config, async {
            let _ = stopped.await;
        }));
        Self {
            stop: Some(stop),
            http,
        }
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = http_get(self.http, "/metrics")
            .await
            .map(|(_, t)| t)
            .unwrap_or_default();
        metric(&text, name, &[])
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A stream `<prefix>_events` with one durable consumer per name, on `js`.
async fn stream_with_consumers(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    consumers: &[&str],
) -> String {
    let stream = format!("{prefix}_events");
    let created = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: stream.clone(),
            subjects: vec![format!("{prefix}.events.>")],
            ..Default::default()
        })
        .await
        .expect("stream");
    for consumer in consumers {
        created
            .create_consumer(async_nats::jetstream::consumer::pull::Config {
                durable_name: Some(consumer.to_string()),
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .expect("consumer");
    }
    stream
}

/// The terminated advisories of a stream's consumers, as they come: (consumer, sequence, reason).
struct Terminations(async_nats::Subscriber);

impl Terminations {
    async fn watch(client: &async_nats::Client, stream: &str) -> Self {
        let subscriber = client
            .subscribe(format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{stream}.*"
            ))
            .await
            .unwrap();
        client.flush().await.unwrap();
        Self(subscriber)
    }

    async fn next(&mut self) -> (String, u64, String) {
        let message = tokio::time::timeout(PATIENCE, futures::StreamExt::next(&mut self.0))
            .await
            .expect("a terminated advisory in time")
            .expect("advisories");
        let advisory: Value = serde_json::from_slice(&message.payload).unwrap();
        (
            advisory["consumer"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            advisory["stream_seq"].as_u64().unwrap_or_default(),
            advisory["reason"].as_str().unwrap_or_default().to_string(),
        )
    }

    /// The next `n` advisories, sorted by consumer.
    async fn next_n(&mut self, n: usize) -> Vec<(String, u64, String)> {
        let mut all = Vec::new();
        for _ in 0..n {
            all.push(self.next().await);
        }
        all.sort();
        all
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dispatcher_following_the_latest_takes_up_a_new_version_without_restart_and_a_pinned_one_does_not()
 {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "enforce-follow").await;
    let name = ns.name.clone();
    let _operator = Operator::start(&client, &name, &nats_url());
    let schemas: Api<EventSchema> = Api::namespaced(client.clone(), &name);
    let broker = broker(&nats_url()).await;
    let js = broker.jetstream();
    let stream = stream_with_consumers(js, &name, &["latest", "pinned"]).await;
    let subject = format!("{name}.events.order.placed");
    let mut terminations = Terminations::watch(&js.client(), &stream).await;

    // Both start before anything is registered: they wait, say why, and deliver nothing.
    let (latest_handler, latest_endpoint) = Handler::start().await;
    let (pinned_handler, pinned_endpoint) = Handler::start().await;
    let url = nats_url();
    let latest = Running::start(
        &url,
        &stream,
        "latest",
        &format!("{name}.order.placed.latest"),
        &latest_endpoint,
    );
    let pinned = Running::start(
        &url,
        &stream,
        "pinned",
        &format!("{name}.order.placed.v1"),
        &pinned_endpoint,
    );
    let waiting = wait_until("the dispatcher to say why it waits", || async {
        match http_get(latest.http, "/readyz").await {
            Some((503, body)) if body.contains("nothing is registered under this key yet") => {
                Some(body)
            }
            _ => None,
        }
    })
    .await;
    assert!(waiting.contains("consumer bound: yes"), "{waiting}");
    publish(
        js,
        &subject,
        "whole",
        None,
        r#"{"orderId": "o-1", "total": 3}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        latest_handler.ids().is_empty() && pinned_handler.ids().is_empty(),
        "delivered before the schema was read"
    );

    // v1 registers: both deliver the waiting event, and refuse a fractional total.
    apply(&schemas, &event_schema_yaml(&name, 1)).await.unwrap();
    latest_handler.wait_for("whole").await;
    pinned_handler.wait_for("whole").await;
    assert!(
        wait_until_ready(latest.http)
            .await
            .contains("order.placed v1 in force")
    );
    publish(
        js,
        &subject,
        "fraction-1",
        None,
        r#"{"orderId": "o-2", "total": 1.5}"#,
    )
    .await;
    for (consumer, _, reason) in terminations.next_n(2).await {
        assert!(
            reason.starts_with("SchemaViolation: #/total: ")
                && reason.ends_with("(order.placed v1)"),
            "{consumer}: {reason}"
        );
    }

    // v2 registers: the dispatcher following the latest takes it up as it runs; the pinned one
    // keeps v1.
    apply(&schemas, &event_schema_yaml(&name, 2)).await.unwrap();
    wait_until("the latest dispatcher on v2", || async {
        (latest.metric("switchyard_dispatch_schema_version").await == 2.0).then_some(())
    })
    .await;
    assert_eq!(
        pinned.metric("switchyard_dispatch_schema_version").await,
        1.0
    );
    publish(
        js,
        &subject,
        "fraction-2",
        None,
        r#"{"orderId": "o-3", "total": 2.5}"#,
    )
    .await;
    latest_handler.wait_for("fraction-2").await;
    let (consumer, _, reason) = terminations.next().await;
    assert_eq!(consumer, "pinned");
    assert!(reason.ends_with("(order.placed v1)"), "{reason}");
    assert!(!pinned_handler.ids().contains(&"fraction-2".to_string()));
    assert!(!latest_handler.ids().contains(&"fraction-1".to_string()));
}

/// Registers `order.placed` at `version` in `namespace` straight into the registry, as the
/// EventSchema reconciler would.
async fn register(broker: &Broker, namespace: &str, version: i64) {
    let evs: EventSchema = serde_yaml::from_str(&event_schema_yaml(namespace, version)).unwrap();
    let candidate =
        switchyard::reconcile::event_schema::candidate(&evs, "2026-12-05T00:00:00Z".into())
            .unwrap();
    let registry = Registry::open(broker).await.expect("registry");
    let holding = registry
        .holding(namespace, "order.placed", false)
        .await
        .expect("holding");
    registry
        .register(&candidate, &holding)
        .await
        .expect("registered");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_version_stays_in_force_while_the_registry_is_gone_and_a_new_one_is_taken_up_when_it_is_back()
 {
    // A server of this test's own: its registry bucket is deleted and NATS restarted.
    let mut nats = PrivateNats::start();
    let broker = connected(&nats.url()).await;
    let js = broker.jetstream();
    let stream = stream_with_consumers(js, "outage", &["group"]).await;
    let subject = "outage.events.order.placed";
    register(&broker, "outage", 1).await;
    let (handler, endpoint) = Handler::start().await;
    let running = Running::start(
        &nats.url(),
        &stream,
        "group",
        "outage.order.placed.latest",
        &endpoint,
    );
    wait_until_ready(running.http).await;
    let mut terminations = Terminations::watch(&js.client(), &stream).await;
    publish(
        js,
        subject,
        "before",
        None,
        r#"{"orderId": "o-1", "total": 1}"#,
    )
    .await;
    handler.wait_for("before").await;

    // The registry goes away: v1 stays in force.
    js.delete_key_value(switchyard::naming::SCHEMA_BUCKET)
        .await
        .expect("bucket deleted");
    publish(
        js,
        subject,
        "fraction-1",
        None,
        r#"{"orderId": "o-2", "total": 1.5}"#,
    )
    .await;
    let (_, _, reason) = terminations.next().await;
    assert!(reason.ends_with("(order.placed v1)"), "{reason}");
    publish(
        js,
        subject,
        "during",
        None,
        r#"{"orderId": "o-3", "total": 2}"#,
    )
    .await;
    handler.wait_for("during").await;
    assert_eq!(
        running.metric("switchyard_dispatch_schema_version").await,
        1.0
    );

    // NATS restarts too; still v1.
    nats.kill();
    nats.resume();
    let broker = connected(&nats.url()).await;
    let js = broker.jetstream();
    let mut terminations = Terminations::watch(&js.client(), &stream).await;
    wait_until_ready(running.http).await;
    publish(
        js,
        subject,
        "fraction-2",
        None,
        r#"{"orderId": "o-4", "total": 2.5}"#,
    )
    .await;
    let (_, _, reason) = terminations.next().await;
    assert!(reason.ends_with("(order.placed v1)"), "{reason}");

    // A registry again, with v2 in it: taken up without a restart (the watch of the old bucket
    // never sees it; the dispatcher's periodic look at the key does).
    register(&broker, "outage", 2).await;
    let patience = switchyard::dispatcher::validation::RECHECK + Duration::from_secs(15);
    wait_until_within(
        "the dispatcher on v2",
        patience,
        Duration::from_millis(200),
        || async {
            (running.metric("switchyard_dispatch_schema_version").await == 2.0).then_some(())
        },
    )
    .await;
    publish(
        js,
        subject,
        "fraction-3",
        None,
        r#"{"orderId": "o-5", "total": 3.5}"#,
    )
    .await;
    handler.wait_for("fraction-3").await;
    let handled = handler.ids();
    assert!(
        !handled.contains(&"fraction-1".to_string())
            && !handled.contains(&"fraction-2".to_string()),
        "{handled:?}"
    );
}
