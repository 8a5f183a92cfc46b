//! Topic → JetStream stream, against a real kube-apiserver and a real nats-server.

mod common;

use std::time::Duration;

use async_nats::jetstream::stream::{
    Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType,
};
use common::*;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use switchyard::{
    api::{Subscription, Topic},
    broker::Broker,
};

struct Setup {
    client: kube::Client,
    ns: TestNamespace,
    topics: Api<Topic>,
    broker: Broker,
    operator: Operator,
}

impl Setup {
    /// Applies a Topic in the test namespace; the API server must accept it.
    async fn apply(&self, name: &str, spec: impl AsRef<str>) {
        apply_topic(
            &self.topics,
            &topic_yaml(&self.ns.name, name, spec.as_ref()),
        )
        .await
        .unwrap_or_else(|e| panic!("applying Topic {name}: {e}"));
    }

    /// Waits until the Topic is Ready for its current generation.
    async fn ready(&self, name: &str) -> Topic {
        wait_for_ready(&self.topics, name, "True", "StreamReady").await
    }

    /// Applies a Subscription on `topic` and waits until its consumer is in sync.
    async fn subscribe(&self, name: &str, topic: &str) {
        let subscriptions: Api<Subscription> = Api::namespaced(self.client.clone(), &self.ns.name);
        let yaml = format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: Subscription\nmetadata:\n  name: {name}\n  namespace: {}\nspec:\n  topicRef: {{name: {topic}}}\n",
            self.ns.name
        );
        apply(&subscriptions, &yaml)
            .await
            .unwrap_or_else(|e| panic!("applying Subscription {name}: {e}"));
        wait_for_ready(&subscriptions, name, "True", "ConsumerInSync").await;
    }

    /// Waits for an Event of `reason` on the object `name`; returns (type, note).
    async fn event(&self, name: &str, reason: &str) -> (String, String) {
        wait_until(&format!("a {reason} Event on {name}"), || async {
            events_for(&self.client, &self.ns.name, name)
                .await
                .into_iter()
                .find(|(_, r, _)| r == reason)
                .map(|(type_, _, note)| (type_, note))
        })
        .await
    }
}

async fn setup(prefix: &str) -> Setup {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let topics = Api::namespaced(client.clone(), &ns.name);
    let broker = broker(&nats_url()).await;
    let operator = Operator::start(&client, &ns.name, &nats_url());
    Setup {
        client,
        ns,
        topics,
        broker,
        operator,
    }
}

async fn stream(broker: &Broker, name: &str) -> Option<async_nats::jetstream::stream::Info> {
    broker.stream_info(name).await.expect("stream info")
}

async fn publish(broker: &Broker, subject: String, count: usize) {
    for i in 0..count {
        broker
            .jetstream()
            .publish(subject.clone(), format!("event {i}").into())
            .await
            .expect("publish")
            .await
            .expect("publish ack");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn applied_topic_becomes_a_stream_with_exactly_the_declared_config() {
    let s = setup("create").await;
    let ns = &s.ns.name;
    let spec = "  description: orders placed by the shop\n  retention: Interest\n  storage: File\n  maxAge: 24h\n  maxBytes: 64Mi\n  maxMessages: 100000\n  maxMessageSize: 1Mi\n  discard: New\n  duplicateWindow: 5m\n  denyDelete: true\n";
    apply_topic(&s.topics, &topic_yaml(ns, "orders", spec))
        .await
        .expect("apply");

    let topic = s.ready("orders").await;
    let status = topic.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, topic.metadata.generation);
    let stream_name = format!("{ns}_orders");
    assert_eq!(status.stream_name.as_deref(), Some(stream_name.as_str()));

    let info = stream(&s.broker, &stream_name)
        .await
        .expect("stream exists");
    let c: &StreamConfig = &info.config;
    assert_eq!(c.subjects, vec![format!("{ns}.orders.>")]);
    assert_eq!(c.description.as_deref(), Some("orders placed by the shop"));
    assert_eq!(c.retention, RetentionPolicy::Interest);
    assert_eq!(c.storage, StorageType::File);
    assert_eq!(c.num_replicas, 1);
    assert_eq!(c.max_age, Duration::from_secs(24 * 3600));
    assert_eq!(c.max_bytes, 64 << 20);
    assert_eq!(c.max_messages, 100_000);
    assert_eq!(c.max_message_size, 1 << 20);
    assert_eq!(c.discard, DiscardPolicy::New);
    assert_eq!(c.duplicate_window, Duration::from_secs(300));
    assert!(c.deny_delete);
    assert!(!c.deny_purge);
    assert_eq!(
        c.metadata["switchyard.dev/owner"],
        format!("Topic/{ns}/orders")
    );

    let events = events_for(&s.client, ns, "orders").await;
    assert!(
        events
            .iter()
            .any(|(_, reason, _)| reason == "StreamCreated"),
        "{events:?}"
    );
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_max_age_updates_the_stream_and_status_follows() {
    let s = setup("update").await;
    let ns = &s.ns.name;
    s.apply("payments", "  maxAge: 1h\n").await;
    let before = s.ready("payments").await;
    let stream_name = format!("{ns}_payments");
    assert_eq!(
        stream(&s.broker, &stream_name)
            .await
            .unwrap()
            .config
            .max_age,
        Duration::from_secs(3600)
    );

    s.apply("payments", "  maxAge: 2h\n").await;
    let after = s.ready("payments").await;
    assert!(after.metadata.generation > before.metadata.generation);
    assert_eq!(
        after.status.unwrap().observed_generation,
        after.metadata.generation
    );
    assert_eq!(
        stream(&s.broker, &stream_name)
            .await
            .unwrap()
            .config
            .max_age,
        Duration::from_secs(7200)
    );
    let events = events_for(&s.client, ns, "payments").await;
    assert!(
        events
            .iter()
            .any(|(_, reason, note)| reason == "StreamUpdated" && note.contains("maxAge")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_storage_is_refused_by_the_api_server_naming_the_field() {
    let s = setup("storage").await;
    let ns = &s.ns.name;
    let file = topic_yaml(ns, "audit", "  storage: File\n");
    let (ok, out) = kubectl(&["apply", "--server-side", "-f", "-"], Some(&file));
    assert!(ok, "{out}");
    s.ready("audit").await;

    let memory = topic_yaml(ns, "audit", "  storage: Memory\n");
    let (ok, out) = kubectl(&["apply", "--server-side", "-f", "-"], Some(&memory));
    assert!(!ok, "apply should be refused: {out}");
    assert!(
        out.contains("spec.storage"),
        "message should name the field: {out}"
    );
    assert!(out.contains("immutable"), "{out}");

    let topic = s.topics.get("audit").await.unwrap();
    assert_eq!(topic.spec.storage, switchyard::api::topic::Storage::File);
    let info = stream(&s.broker, &format!("{ns}_audit")).await.unwrap();
    assert_eq!(info.config.storage, StorageType::File);
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_stream_is_left_untouched_until_adopted() {
    let s = setup("foreign").await;
    let ns = &s.ns.name;
    let stream_name = format!("{ns}_legacy");
    let foreign = StreamConfig {
        name: stream_name.clone(),
        subjects: vec![format!("{ns}.legacy.>")],
        max_age: Duration::from_secs(600),
        ..Default::default()
    };
    s.broker
        .create_stream(&foreign)
        .await
        .expect("create foreign stream");
    publish(&s.broker, format!("{ns}.legacy.order.placed"), 2).await;

    s.apply("legacy", "  maxAge: 1h\n").await;
    let topic = wait_for_ready(&s.topics, "legacy", "False", "StreamNotOwned").await;
    let (_, _, message) = ready_of(&topic).unwrap();
    assert!(
        message.contains(&stream_name) && message.contains("switchyard.dev/adopt"),
        "{message}"
    );

    // Several resyncs later the stream is still exactly as its owner left it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let info = stream(&s.broker, &stream_name).await.unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(600));
    assert!(!info.config.metadata.contains_key("switchyard.dev/owner"));
    assert_eq!(info.state.messages, 2);

    let adopt = serde_json::json!({"metadata": {"annotations": {"switchyard.dev/adopt": "true"}}});
    s.topics
        .patch("legacy", &PatchParams::default(), &Patch::Merge(&adopt))
        .await
        .unwrap();
    s.ready("legacy").await;
    let info = stream(&s.broker, &stream_name).await.unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    assert_eq!(
        info.config.metadata["switchyard.dev/owner"],
        format!("Topic/{ns}/legacy")
    );
    assert_eq!(info.state.messages, 2, "adoption keeps the events");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_with_retain_keeps_the_stream_and_with_delete_removes_it() {
    let s = setup("deletion").await;
    let ns = &s.ns.name;
    s.apply("kept", "  deletionPolicy: Retain\n").await;
    s.apply("dropped", "  deletionPolicy: Delete\n").await;
    s.ready("kept").await;
    let dropped = s.ready("dropped").await;
    wait_until("finalizer on the Delete topic", || async {
        let t = s.topics.get("dropped").await.ok()?;
        t.metadata
            .finalizers
            .as_ref()?
            .iter()
            .any(|f| f == "switchyard.dev/stream-cleanup")
            .then_some(())
    })
    .await;
    assert!(dropped.metadata.generation.is_some());
    publish(&s.broker, format!("{ns}.kept.order.placed"), 3).await;

    for name in ["kept", "dropped"] {
        s.topics
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for name in ["kept", "dropped"] {
        wait_until_deleted(&s.topics, name).await;
    }
    let kept = stream(&s.broker, &format!("{ns}_kept"))
        .await
        .expect("retained stream survives");
    assert_eq!(kept.state.messages, 3);
    assert!(
        stream(&s.broker, &format!("{ns}_dropped")).await.is_none(),
        "Delete policy removes the stream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_retained_topic_warns_naming_the_subscriptions_still_reading_it() {
    let s = setup("del-read").await;
    let ns = &s.ns.name;
    for topic in ["orders", "users", "unread"] {
        s.apply(topic, "  maxAge: 1h\n").await;
        s.ready(topic).await;
    }
    s.subscribe("shipping", "orders").await;
    s.subscribe("billing", "orders").await;
    s.subscribe("welcome-mail", "users").await;

    s.topics
        .delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    let (type_, note) = s.event("orders", "DeletedWhileSubscribed").await;
    assert_eq!(type_, "Warning");
    assert!(
        note.contains("Subscriptions billing, shipping still read it"),
        "{note}"
    );
    assert!(!note.contains("welcome-mail"), "{note}");
    assert!(
        note.contains(&format!("stream {ns}_orders is retained")),
        "{note}"
    );
    // What the note promises: the stream and the consumers stay.
    assert!(stream(&s.broker, &format!("{ns}_orders")).await.is_some());
    let consumer = s
        .broker
        .consumer_info(&format!("{ns}_orders"), &format!("sub_{ns}_billing"))
        .await
        .expect("consumer info");
    assert!(consumer.is_some(), "the consumer keeps its position");

    // A Topic nobody reads goes without a word. Deletions are reported in order, so once the
    // later one is, the earlier one was handled.
    for topic in ["unread", "users"] {
        s.topics
            .delete(topic, &DeleteParams::default())
            .await
            .unwrap();
    }
    let (_, note) = s.event("users", "DeletedWhileSubscribed").await;
    assert!(
        note.contains("Subscription welcome-mail still read it; its stream"),
        "{note}"
    );
    assert!(note.contains("its consumer keeps its position"), "{note}");
    assert!(
        events_for(&s.client, ns, "unread")
            .await
            .iter()
            .all(|(_, r, _)| r != "DeletedWhileSubscribed"),
        "no Subscription read it"
    );
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_delete_policy_topic_names_the_subscriptions_that_lost_their_consumers() {
    let s = setup("del-drop").await;
    let ns = &s.ns.name;
    s.apply("ledger", "  deletionPolicy: Delete\n").await;
    s.ready("ledger").await;
    s.subscribe("audit", "ledger").await;

    s.topics
        .delete("ledger", &DeleteParams::default())
        .await
        .unwrap();
    wait_until_deleted(&s.topics, "ledger").await;
    let (type_, note) = s.event("ledger", "StreamDeletedWhileSubscribed").await;
    assert_eq!(type_, "Warning");
    assert_eq!(
        note,
        format!(
            "deleted stream {ns}_ledger and its events; Subscription audit still referred to it and lost its consumer"
        )
    );
    assert!(stream(&s.broker, &format!("{ns}_ledger")).await.is_none());

    // The finalizer's Event tells the whole story: the deletion is not reported again once the
    // Topic is gone. Deletions are reported in order, so once a later one is, this one was.
    s.apply("marker", "  maxAge: 1h\n").await;
    s.ready("marker").await;
    s.subscribe("marker-reader", "marker").await;
    s.topics
        .delete("marker", &DeleteParams::default())
        .await
        .unwrap();
    s.event("marker", "DeletedWhileSubscribed").await;
    let events = events_for(&s.client, ns, "ledger").await;
    assert!(
        events
            .iter()
            .all(|(_, r, _)| r != "DeletedWhileSubscribed" && r != "StreamDeleted"),
        "{events:?}"
    );
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_outage_reports_unavailable_and_heals_without_restart() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "outage").await;
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    let mut nats = PrivateNats::start();
    let operator = Operator::start(&client, &ns.name, &nats.url());

    apply_topic(&topics, &topic_yaml(&ns.name, "events", "  maxAge: 1h\n"))
        .await
        .unwrap();
    wait_for_ready(&topics, "events", "True", "StreamReady").await;

    nats.kill();
    let down = wait_for_ready(&topics, "events", "False", "BrokerUnavailable").await;
    let (_, _, message) = ready_of(&down).unwrap();
    assert!(message.contains("NATS"), "{message}");

    nats.resume();
    wait_for_ready(&topics, "events", "True", "StreamReady").await;
    operator.assert_alive();
    let broker = broker(&nats.url()).await;
    assert!(
        stream(&broker, &format!("{}_events", ns.name))
            .await
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_edited_stream_is_restored_and_an_event_records_it() {
    let s = setup("drift").await;
    let ns = &s.ns.name;
    s.apply("inventory", "  maxAge: 1h\n  maxMessages: 500\n")
        .await;
    s.ready("inventory").await;
    let stream_name = format!("{ns}_inventory");

    let mut edited = stream(&s.broker, &stream_name).await.unwrap().config;
    edited.max_age = Duration::from_secs(60);
    edited.duplicate_window = Duration::from_secs(30);
    edited.max_messages = 7;
    s.broker.update_stream(&edited).await.expect("hand edit");

    wait_until("stream restored", || async {
        let c = stream(&s.broker, &stream_name).await?.config;
        (c.max_age == Duration::from_secs(3600)
            && c.max_messages == 500
            && c.duplicate_window == Duration::from_secs(120))
        .then_some(())
    })
    .await;
    let events = wait_until("DriftCorrected event", || async {
        let events = events_for(&s.client, ns, "inventory").await;
        events
            .iter()
            .any(|(_, reason, _)| reason == "DriftCorrected")
            .then_some(events)
    })
    .await;
    let (kind, _, note) = events
        .iter()
        .find(|(_, r, _)| r == "DriftCorrected")
        .unwrap();
    assert_eq!(kind, "Warning");
    assert!(
        note.contains("maxAge") && note.contains("maxMessages") && note.contains("duplicateWindow"),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stream_deleted_by_hand_is_recreated_and_reported() {
    let s = setup("recreate").await;
    let ns = &s.ns.name;
    s.apply("ledger", "  maxAge: 1h\n").await;
    s.ready("ledger").await;
    let stream_name = format!("{ns}_ledger");
    s.broker
        .delete_stream(&stream_name)
        .await
        .expect("hand delete");
    wait_until("stream recreated", || async {
        stream(&s.broker, &stream_name).await.map(|_| ())
    })
    .await;
    let events = wait_until("a StreamRecreated Warning", || async {
        let events = events_for(&s.client, ns, "ledger").await;
        events
            .iter()
            .any(|(kind, reason, _)| kind == "Warning" && reason == "StreamRecreated")
            .then_some(events)
    })
    .await;
    assert!(
        events
            .iter()
            .any(|(_, reason, _)| reason == "StreamCreated"),
        "the first creation stays a Normal StreamCreated: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_topic_is_not_rewritten_by_later_resyncs() {
    let s = setup("idle").await;
    s.apply("quiet", "  maxAge: 1h\n").await;
    let ready = s.ready("quiet").await;
    // The resync interval in tests is 2 s: this spans several full reconciles.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let later = s.topics.get("quiet").await.unwrap();
    assert_eq!(
        later.metadata.resource_version,
        ready.metadata.resource_version
    );
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_values_are_rejected_by_the_api_server() {
    let s = setup("schema").await;
    let ns = &s.ns.name;
    let cases = [
        ("bad-age", "  maxAge: ten days\n", "spec.maxAge"),
        ("bad-size", "  maxBytes: 10MB\n", "spec.maxBytes"),
        ("bad-replicas", "  replicas: 9\n", "spec.replicas"),
        ("bad-subject", "  subjects: [\"a b.>\"]\n", "spec.subjects"),
        (
            "bad-window",
            "  maxAge: 1m\n  duplicateWindow: 1h\n",
            "spec.duplicateWindow",
        ),
        ("bad-retention", "  retention: Forever\n", "spec.retention"),
        ("dotted.name", "  maxAge: 1h\n", "metadata.name"),
    ];
    for (name, spec, field) in cases {
        let err = apply_topic(&s.topics, &topic_yaml(ns, name, spec))
            .await
            .expect_err(name);
        let text = err.to_string();
        assert!(
            text.contains(field),
            "{name}: error should name {field}: {text}"
        );
    }
    let long = "x".repeat(64);
    let err = apply_topic(&s.topics, &topic_yaml(ns, &long, "  maxAge: 1h\n"))
        .await
        .expect_err("long name");
    assert!(err.to_string().contains("metadata.name"), "{err}");
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn values_only_the_reconciler_can_judge_get_a_precise_reason() {
    let s = setup("semantic").await;
    let ns = &s.ns.name;
    // Subjects outside the Topic's namespace would let one team read another's events.
    s.apply("outside", "  subjects: [\"elsewhere.orders.>\"]\n")
        .await;
    let topic = wait_for_ready(&s.topics, "outside", "False", "InvalidSpec").await;
    let (_, _, message) = ready_of(&topic).unwrap();
    assert!(
        message.starts_with("spec.subjects[0]") && message.contains(&format!("{ns}.")),
        "{message}"
    );

    // Two Topics claiming the same subjects: the first keeps them, the second says who has them.
    s.apply("first", format!("  subjects: [\"{ns}.shared.>\"]\n"))
        .await;
    s.ready("first").await;
    apply_topic(
        &s.topics,
        &topic_yaml(
            ns,
            "second",
            &format!("  subjects: [\"{ns}.shared.orders\"]\n"),
        ),
    )
    .await
    .unwrap();
    let second = wait_for_ready(&s.topics, "second", "False", "SubjectsOverlap").await;
    let (_, _, message) = ready_of(&second).unwrap();
    assert!(
        message.contains(&format!("{ns}_first")) && message.contains(&format!("Topic/{ns}/first")),
        "{message}"
    );
    assert!(stream(&s.broker, &format!("{ns}_second")).await.is_none());

    // Fixing the spec heals the Topic.
    s.apply("second", format!("  subjects: [\"{ns}.second.>\"]\n"))
        .await;
    s.ready("second").await;
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_topic_is_left_alone_until_resumed() {
    let s = setup("pause").await;
    let ns = &s.ns.name;
    s.apply("held", "  maxAge: 1h\n").await;
    s.ready("held").await;
    let pause = serde_json::json!({"metadata": {"annotations": {"switchyard.dev/paused": "true"}}});
    s.topics
        .patch("held", &PatchParams::default(), &Patch::Merge(&pause))
        .await
        .unwrap();
    wait_until("ReconciliationPaused condition", || async {
        let t = s.topics.get("held").await.ok()?;
        let status = t.status?;
        switchyard::conditions::find(
            &status.conditions,
            switchyard::conditions::ConditionType::ReconciliationPaused,
        )
        .map(|_| ())
    })
    .await;
    s.apply("held", "  maxAge: 3h\n").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stream_name = format!("{ns}_held");
    assert_eq!(
        stream(&s.broker, &stream_name)
            .await
            .unwrap()
            .config
            .max_age,
        Duration::from_secs(3600)
    );

    let resume = serde_json::json!({"metadata": {"annotations": {"switchyard.dev/paused": null}}});
    s.topics
        .patch("held", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .unwrap();
    s.ready("held").await;
    wait_until("stream follows the spec after resume", || async {
        (stream(&s.broker, &stream_name).await?.config.max_age == Duration::from_secs(3 * 3600))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_jetstream_cannot_apply_are_refused_at_apply_time() {
    let s = setup("transitions").await;
    let ns = &s.ns.name;
    let cases = [
        (
            "parts",
            "  partitions: 4\n",
            "  partitions: 2\n",
            "spec.partitions",
        ),
        (
            "queue",
            "  retention: Limits\n",
            "  retention: WorkQueue\n",
            "spec.retention",
        ),
        (
            "locked",
            "  denyDelete: true\n",
            "  denyDelete: false\n",
            "spec.denyDelete",
        ),
        (
            "purge",
            "  denyPurge: true\n",
            "  denyPurge: false\n",
            "spec.denyPurge",
        ),
        (
            "shape",
            "  partitions: 2\n",
            "  partitions: 2\n  partitionTypeTokens: 3\n",
            "spec.partitionTypeTokens",
        ),
    ];
    for (name, before, after, field) in cases {
        apply_topic(&s.topics, &topic_yaml(ns, name, before))
            .await
            .expect(name);
        let err = apply_topic(&s.topics, &topic_yaml(ns, name, after))
            .await
            .expect_err(name);
        let text = err.to_string();
        assert!(
            text.contains(field) && text.contains("cannot"),
            "{name}: {text}"
        );
    }
    // Growing the partition count is allowed.
    s.apply("parts", "  partitions: 8\n").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn partitioned_topic_stores_events_under_their_key_partition() {
    let s = setup("partitions").await;
    let ns = &s.ns.name;
    s.apply("orders", "  partitions: 4\n").await;
    s.ready("orders").await;
    let stream_name = format!("{ns}_orders");
    publish(
        &s.broker,
        format!("{ns}.orders.order.placed.customer-17"),
        1,
    )
    .await;
    let stored = s
        .broker
        .jetstream()
        .get_stream(&stream_name)
        .await
        .unwrap()
        .get_raw_message(1)
        .await
        .expect("first event");
    let tokens: Vec<&str> = stored.subject.split('.').collect();
    assert_eq!(tokens.len(), 6, "{}", stored.subject);
    let partition: u32 = tokens[2].parse().expect("partition token");
    assert!(partition < 4, "{}", stored.subject);
    assert_eq!(&tokens[3..], ["order", "placed", "customer-17"]);
    // The same key always lands in the same partition.
    publish(
        &s.broker,
        format!("{ns}.orders.order.shipped.customer-17"),
        1,
    )
    .await;
    let second = s
        .broker
        .jetstream()
        .get_stream(&stream_name)
        .await
        .unwrap()
        .get_raw_message(2)
        .await
        .unwrap();
    assert_eq!(second.subject.split('.').nth(2), Some(tokens[2]));
    // An event without a key matches no partition and is refused rather than stored apart.
    let unkeyed = s
        .broker
        .jetstream()
        .publish(format!("{ns}.orders.order.placed"), "no key".into())
        .await;
    let refused = match unkeyed {
        Err(_) => true,
        Ok(ack) => ack.await.is_err(),
    };
    assert!(refused, "an event without a key must not be stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_policy_never_wedges_when_nats_is_gone() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "wedge").await;
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    let mut nats = PrivateNats::start();
    let operator = Operator::start_with(&client, &ns.name, &nats.url(), |c| {
        c.finalizer_timeout = Duration::from_secs(4);
    });
    apply_topic(
        &topics,
        &topic_yaml(&ns.name, "doomed", "  deletionPolicy: Delete\n"),
    )
    .await
    .unwrap();
    wait_for_ready(&topics, "doomed", "True", "StreamReady").await;
    wait_until("finalizer", || async {
        let t = topics.get("doomed").await.ok()?;
        t.metadata.finalizers.filter(|f| !f.is_empty()).map(|_| ())
    })
    .await;

    nats.kill();
    topics
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let waiting = wait_for_ready(&topics, "doomed", "False", "Deleting").await;
    let (_, _, message) = ready_of(&waiting).unwrap();
    assert!(message.contains("waiting for NATS"), "{message}");
    // Released after the finalizer timeout.
    wait_until_deleted(&topics, "doomed").await;
    let events = events_for(&client, &ns.name, "doomed").await;
    assert!(
        events
            .iter()
            .any(|(kind, reason, _)| kind == "Warning" && reason == "StreamLeftBehind"),
        "{events:?}"
    );
    operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_serves_metrics_and_health_probes() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "metrics").await;
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    let addr = free_addr();
    let _operator = Operator::start_with(&client, &ns.name, &nats_url(), |c| {
        c.http_addr = Some(addr);
    });
    apply_topic(&topics, &topic_yaml(&ns.name, "counted", "  maxAge: 1h\n"))
        .await
        .unwrap();
    wait_for_ready(&topics, "counted", "True", "StreamReady").await;

    let (code, _) = wait_until("/healthz", || http_get(addr, "/healthz")).await;
    assert_eq!(code, 200);
    // Ready once every kind's watch has listed, which may come after the Topic is Ready.
    let (code, body) = wait_until("/readyz answering 200", || async {
        http_get(addr, "/readyz")
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await;
    assert_eq!(code, 200, "{body}");
    for line in ["leader: yes", "watch Topic: synced", "nats: connected"] {
        assert!(body.contains(line), "{body}");
    }
    let (code, body) = wait_until("/metrics", || http_get(addr, "/metrics")).await;
    assert_eq!(code, 200);
    assert!(
        body.contains(r#"switchyard_reconciles_total{kind="Topic",reason="StreamReady"}"#),
        "{body}"
    );
    assert!(body.contains("switchyard_broker_connected 1"), "{body}");
}
