//! Subscriptions bound to registered schemas (their own schemaRef or their Topic's), against a
//! real kube-apiserver and a real nats-server: the conditions while there is nothing to bind
//! to, the binding in the status and in the dispatchers' arguments, and the processing
//! defaults a schema version hands down to the consumers.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use switchyard::{
    api::{DeadLetterPolicy, EventSchema, Subscription, Topic, subscription::BoundSchema},
    broker::Broker,
    naming::metadata,
};

struct Setup {
    client: kube::Client,
    ns: TestNamespace,
    topics: Api<Topic>,
    subscriptions: Api<Subscription>,
    schemas: Api<EventSchema>,
    policies: Api<DeadLetterPolicy>,
    broker: Broker,
    operator: Operator,
}

async fn setup(prefix: &str) -> Setup {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    Setup {
        topics: Api::namespaced(client.clone(), &ns.name),
        subscriptions: Api::namespaced(client.clone(), &ns.name),
        schemas: Api::namespaced(client.clone(), &ns.name),
        policies: Api::namespaced(client.clone(), &ns.name),
        broker: broker(&nats_url()).await,
        operator: Operator::start(&client, &ns.name, &nats_url()),
        client,
        ns,
    }
}

/// The `order.placed` schema at `version`: each version adds an optional property (mode None:
/// compatibility is not what these tests are about). `defaults` is indented YAML (or empty).
fn order_schema(version: i64, defaults: &str) -> String {
    let extra: String = (2..=version)
        .map(|v| format!("      note{v}: {{type: string}}\n"))
        .collect();
    format!(
        "  eventType: order.placed\n  version: {version}\n  compatibility: None\n  schema:\n    type: object\n    required: [orderId]\n    properties:\n      orderId: {{type: string}}\n{extra}{defaults}"
    )
}

impl Setup {
    async fn apply<K>(&self, api: &Api<K>, kind: &str, name: &str, spec: &str)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        apply(api, &manifest(kind, &self.ns.name, name, spec))
            .await
            .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }

    /// Applies the EventSchema `order-placed` at `version` and waits until the registry holds it.
    async fn register(&self, version: i64, defaults: &str) -> EventSchema {
        self.apply(
            &self.schemas,
            "EventSchema",
            "order-placed",
            &order_schema(version, defaults),
        )
        .await;
        wait_for(
            &self.schemas,
            "order-placed",
            &format!("version {version} registered"),
            |s| {
                s.status
                    .as_ref()
                    .is_some_and(|s| s.latest_version == Some(version))
            },
        )
        .await
    }

    async fn ready(&self, name: &str) -> Subscription {
        wait_for_ready(&self.subscriptions, name, "True", "ConsumerInSync").await
    }

    async fn consumer(&self, topic: &str, name: &str) -> async_nats::jetstream::consumer::Info {
        let ns = &self.ns.name;
        self.broker
            .consumer_info(&format!("{ns}_{topic}"), &format!("sub_{ns}_{name}"))
            .await
            .expect("consumer info")
            .expect("the consumer exists")
    }

    /// The dispatcher's arguments in the worker Deployment of `subscription`.
    async fn dispatcher_args(&self, subscription: &str) -> String {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.ns.name);
        let deployment = deployments
            .get(&format!("{subscription}-worker"))
            .await
            .expect("worker Deployment");
        let pod = deployment.spec.template.spec.unwrap();
        let dispatcher = pod
            .containers
            .into_iter()
            .find(|c| c.name == "dispatcher")
            .expect("dispatcher container");
        dispatcher.args.unwrap_or_default().join(" ")
    }
}

fn bound(sub: &Subscription) -> Option<BoundSchema> {
    sub.status.as_ref().and_then(|s| s.schema.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_waits_for_its_schema_and_then_shows_and_passes_on_the_version_in_force() {
    let s = setup("bind-wait").await;
    let ns = s.ns.name.clone();
    s.apply(&s.topics, "Topic", "orders", "  maxAge: 1h\n")
        .await;
    wait_for_ready(&s.topics, "orders", "True", "StreamReady").await;
    let spec = |pin: &str| {
        format!(
            "  topicRef: {{name: orders}}\n  schemaRef: {{name: order-placed{pin}}}\n  worker: {{image: acme/billing:1}}\n"
        )
    };
    s.apply(&s.subscriptions, "Subscription", "billing", &spec(""))
        .await;

    // No EventSchema of that name: said so, and nothing is bound.
    let missing = wait_for_ready(&s.subscriptions, "billing", "False", "SchemaNotFound").await;
    let (_, _, message) = ready_of(&missing).unwrap();
    assert!(
        message.contains("EventSchema order-placed") && message.contains("spec.schemaRef"),
        "{message}"
    );
    assert_eq!(bound(&missing), None);

    // It appears and registers v1: the watch on EventSchemas wakes the Subscription.
    let registered = s.register(1, "").await;
    let ready = s.ready("billing").await;
    assert_eq!(
        bound(&ready),
        Some(BoundSchema {
            name: "order-placed".into(),
            event_type: "order.placed".into(),
            version: 1,
            pinned: false,
            fingerprint: registered.status.unwrap().fingerprint.unwrap(),
        })
    );
    let args = s.dispatcher_args("billing").await;
    assert!(
        args.contains(&format!("--schema-key {ns}.order.placed.latest")),
        "{args}"
    );
    let consumer = s.consumer("orders", "billing").await;
    assert_eq!(
        consumer
            .config
            .metadata
            .get(metadata::SCHEMA)
            .map(String::as_str),
        Some("order.placed v1")
    );

    // Pinned to a version that is not registered: said so, with what to do.
    s.apply(
        &s.subscriptions,
        "Subscription",
        "billing",
        &spec(", version: 2"),
    )
    .await;
    let unregistered =
        wait_for_ready(&s.subscriptions, "billing", "False", "SchemaNotRegistered").await;
    let (_, _, message) = ready_of(&unregistered).unwrap();
    assert!(
        message.contains("pins version 2")
            && message.contains("registered: 1")
            && message.contains("apply the EventSchema at version 2"),
        "{message}"
    );
    let events = events_for(&s.client, &ns, "billing").await;
    assert!(
        events
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "SchemaNotRegistered"),
        "{events:?}"
    );

    // v2 registers: the pin is honoured, and the dispatchers follow that version's key.
    s.register(2, "").await;
    let pinned = s.ready("billing").await;
    let shown = bound(&pinned).expect("bound");
    assert_eq!((shown.version, shown.pinned), (2, true));
    let args = s.dispatcher_args("billing").await;
    assert!(
        args.contains(&format!("--schema-key {ns}.order.placed.v2")),
        "{args}"
    );

    // Pinned to v1 while v2 is the latest: v1 it is.
    s.apply(
        &s.subscriptions,
        "Subscription",
        "billing",
        &spec(", version: 1"),
    )
    .await;
    // The key changes, so the workers roll out; Ready again once they have.
    let back = wait_for(&s.subscriptions, "billing", "bound to v1, Ready", |sub| {
        bound(sub).is_some_and(|b| b.version == 1 && b.pinned)
            && ready_of(sub).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert_eq!(bound(&back).map(|b| b.version), Some(1));
    let args = s.dispatcher_args("billing").await;
    assert!(
        args.contains(&format!("--schema-key {ns}.order.placed.v1")),
        "{args}"
    );
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_defaults_are_inherited_after_the_policys_and_a_new_version_updates_consumers_in_place()
 {
    let s = setup("bind-defaults").await;
    s.apply(
        &s.topics,
        "Topic",
        "orders",
        "  maxAge: 1h\n  schemaRef: {name: order-placed}\n",
    )
    .await;
    s.apply(
        &s.policies,
        "DeadLetterPolicy",
        "failures",
        "  maxDeliveries: 7\n",
    )
    .await;
    s.register(1, "  defaults: {ackWait: 45s, maxDeliveries: 4}\n")
        .await;
    // Bound through the Topic; the policy's maxDeliveries wins over the schema's.
    s.apply(
        &s.subscriptions,
        "Subscription",
        "billing",
        "  topicRef: {name: orders}\n  deadLetterPolicyRef: {name: failures}\n",
    )
    .await;
    // Its own ackWait wins over the schema's.
    s.apply(
        &s.subscriptions,
        "Subscription",
        "audit",
        "  topicRef: {name: orders}\n  ackWait: 10s\n",
    )
    .await;
    // Pinned to v1: keeps v1's defaults whatever registers later.
    s.apply(
        &s.subscriptions,
        "Subscription",
        "archive",
        "  topicRef: {name: orders}\n  schemaRef: {name: order-placed, version: 1}\n",
    )
    .await;
    for name in ["billing", "audit", "archive"] {
        let ready = s.ready(name).await;
        assert_eq!(bound(&ready).map(|b| b.version), Some(1), "{name}");
    }
    let settings = |info: &async_nats::jetstream::consumer::Info| {
        (info.config.ack_wait, info.config.max_deliver)
    };
    let secs = Duration::from_secs;
    assert_eq!(
        settings(&s.consumer("orders", "billing").await),
        (secs(45), 7)
    );
    assert_eq!(
        settings(&s.consumer("orders", "audit").await),
        (secs(10), 4)
    );
    assert_eq!(
        settings(&s.consumer("orders", "archive").await),
        (secs(45), 4)
    );

    // Three events; billing's worker handles two, so the consumer has a position to keep.
    let ns = s.ns.name.clone();
    let client = async_nats::connect(nats_url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    for i in 0..3 {
        jetstream
            .publish(format!("{ns}.orders.order.placed"), format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let stream = jetstream.get_stream(format!("{ns}_orders")).await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_consumer(&format!("sub_{ns}_billing"))
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(2)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    while let Some(message) = futures::StreamExt::next(&mut batch).await {
        message.unwrap().double_ack().await.unwrap();
    }
    let before = s.consumer("orders", "billing").await;
    assert_eq!(
        (before.ack_floor.stream_sequence, before.num_pending),
        (2, 1)
    );

    // v2 recommends other defaults: the consumers following the latest are updated in place.
    s.register(2, "  defaults: {ackWait: 90s, maxDeliveries: 6}\n")
        .await;
    let after = wait_until("billing's consumer on v2's defaults", || async {
        let info = s.consumer("orders", "billing").await;
        (info.config.ack_wait == secs(90)).then_some(info)
    })
    .await;
    assert_eq!(after.config.max_deliver, 7, "the policy still wins");
    assert_eq!(after.created, before.created, "the same consumer");
    assert_eq!(
        (after.ack_floor.stream_sequence, after.num_pending),
        (2, 1),
        "its position kept"
    );
    assert_eq!(
        after
            .config
            .metadata
            .get(metadata::SCHEMA)
            .map(String::as_str),
        Some("order.placed v2")
    );
    wait_until("audit's consumer on v2's maxDeliveries", || async {
        (settings(&s.consumer("orders", "audit").await) == (secs(10), 6)).then_some(())
    })
    .await;
    wait_for(&s.subscriptions, "billing", "v2 shown", |sub| {
        bound(sub).is_some_and(|b| b.version == 2 && !b.pinned)
    })
    .await;
    assert_eq!(
        settings(&s.consumer("orders", "archive").await),
        (secs(45), 4),
        "pinned to v1"
    );
    let events = events_for(&s.client, &ns, "billing").await;
    assert!(
        events
            .iter()
            .any(|(t, r, n)| t == "Normal" && r == "ConsumerUpdated" && n.contains("ackWait")),
        "{events:?}"
    );
    assert!(
        !events.iter().any(|(_, r, _)| r == "DriftCorrected"),
        "a new schema version is no drift: {events:?}"
    );

    // Unbinding the Topic: the Subscriptions bound through it show no schema any more.
    s.topics
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"schemaRef": null}})),
        )
        .await
        .unwrap();
    wait_for(&s.subscriptions, "billing", "no schema bound", |sub| {
        sub.status.as_ref().is_some_and(|st| st.schema.is_none())
            && ready_of(sub).is_some_and(|r| r.0 == "True")
    })
    .await;
    let unbound = wait_until("billing's consumer on built-in ackWait", || async {
        let info = s.consumer("orders", "billing").await;
        (info.config.ack_wait == secs(30)).then_some(info)
    })
    .await;
    assert!(!unbound.config.metadata.contains_key(metadata::SCHEMA));
    s.operator.assert_alive();
}
