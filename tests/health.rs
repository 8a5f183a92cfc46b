//! Health as Flux and `kubectl wait` (kstatus, through `kstatus-check`) and Argo CD (the chart's
//! Lua health checks) read it, judged on objects the operator wrote into a real cluster: every
//! kind driven into each state (Ready, on its way, failed, paused, paused and edited, edited or
//! created while no operator ran, broker gone, being deleted), captured from the API server as
//! JSON and given to both readers. `SWITCHYARD_REFRESH_HEALTH_FIXTURES=1` also writes the captured
//! objects to `tests/fixtures/health/`, which `tests/health_fixtures.rs` checks without a cluster.

mod common;
mod health_support;

use std::time::Duration;

use common::*;
use health_support::{BROKER_DOWN, Case, REFRESH_ENV, WITH_OPERATOR, as_fixture, judge};
use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use switchyard::api::{DeadLetterPolicy, EventSchema, Subscription, Topic};

/// The objects of one test namespace, of any of the four kinds.
struct Objects {
    client: Client,
    ns: String,
}

impl Objects {
    fn typed<K>(&self) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Server-side applies an object of `kind` with `spec` (YAML), as GitOps tools do.
    async fn apply(&self, kind: &str, name: &str, spec: &str) {
        let yaml = manifest(kind, &self.ns, name, spec);
        let result = match kind {
            "Topic" => apply(&self.typed::<Topic>(), &yaml).await.map(drop),
            "Subscription" => apply(&self.typed::<Subscription>(), &yaml).await.map(drop),
            "DeadLetterPolicy" => apply(&self.typed::<DeadLetterPolicy>(), &yaml)
                .await
                .map(drop),
            "EventSchema" => apply(&self.typed::<EventSchema>(), &yaml).await.map(drop),
            other => panic!("unknown kind {other}"),
        };
        result.unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
    }

    fn dynamic(&self, kind: &str) -> Api<DynamicObject> {
        let resource = match kind {
            "Topic" => ApiResource::erase::<Topic>(&()),
            "Subscription" => ApiResource::erase::<Subscription>(&()),
            "DeadLetterPolicy" => ApiResource::erase::<DeadLetterPolicy>(&()),
            "EventSchema" => ApiResource::erase::<EventSchema>(&()),
            other => panic!("unknown kind {other}"),
        };
        Api::namespaced_with(self.client.clone(), &self.ns, &resource)
    }

    async fn pause(&self, kind: &str, name: &str) {
        let pause = json!({"metadata": {"annotations": {"switchyard.dev/paused": "true"}}});
        self.dynamic(kind)
            .patch(name, &PatchParams::default(), &Patch::Merge(&pause))
            .await
            .unwrap_or_else(|e| panic!("pausing {kind} {name}: {e}"));
    }

    /// The object as the API server returns it, every field included.
    async fn capture(&self, kind: &str, name: &str) -> Value {
        let object = self
            .dynamic(kind)
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("reading {kind} {name}: {e}"));
        serde_json::to_value(object).expect("JSON")
    }

    /// Captures the object of every case; with [`REFRESH_ENV`] set, also as fixtures.
    async fn capture_all(&self, cases: &[Case]) -> Vec<Value> {
        let mut objects = Vec::new();
        for case in cases {
            let object = self.capture(case.kind, case.name).await;
            if std::env::var_os(REFRESH_ENV).is_some() {
                health_support::write_fixture(case, &as_fixture(&object, &self.ns));
            }
            objects.push(object);
        }
        objects
    }
}

/// Waits until the object's condition `type_` is True (for paused objects: the operator saw the
/// annotation).
async fn wait_condition<K>(api: &Api<K>, name: &str, type_: &str) -> K
where
    K: kube::Resource + Serialize + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    wait_for(api, name, &format!("{name} {type_}=True"), |obj| {
        condition_of(obj, type_).is_some_and(|(status, _, _)| status == "True")
    })
    .await
}

fn assert_judged(cases: &[Case], objects: &[Value]) {
    let cases: Vec<&Case> = cases.iter().collect();
    let wrong = judge(&cases, objects);
    assert!(
        wrong.is_empty(),
        "{} of {} objects read wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

fn topic_spec(max_age: &str) -> String {
    format!("  maxAge: {max_age}\n")
}

fn subscription_spec(ack_wait: &str) -> String {
    format!("  topicRef: {{name: ready}}\n  ackWait: {ack_wait}\n")
}

fn policy_spec(max_deliveries: u32) -> String {
    format!("  maxDeliveries: {max_deliveries}\n")
}

/// Version 1 is an open object; version 2 adds an optional property.
fn schema_spec(name: &str, version: u32) -> String {
    let schema = match version {
        1 => json!({"type": "object"}),
        _ => json!({"type": "object", "properties": {"note": {"type": "string"}}}),
    };
    format!(
        "  eventType: health.{name}.created\n  version: {version}\n  compatibility: Backward\n  schema: {schema}\n"
    )
}

/// The spec of the "normal" object of each kind, and the edited one.
fn spec(kind: &str, name: &str, edited: bool) -> String {
    match (kind, edited) {
        ("Topic", false) => topic_spec("1h"),
        ("Topic", true) => topic_spec("2h"),
        ("Subscription", false) => subscription_spec("30s"),
        ("Subscription", true) => subscription_spec("45s"),
        ("DeadLetterPolicy", false) => policy_spec(5),
        ("DeadLetterPolicy", true) => policy_spec(6),
        ("EventSchema", false) => schema_spec(name, 1),
        ("EventSchema", true) => schema_spec(name, 2),
        (other, _) => panic!("unknown kind {other}"),
    }
}

const KINDS: [&str; 4] = health_support::KINDS;

#[tokio::test(flavor = "multi_thread")]
async fn every_state_of_every_kind_reads_the_same_to_kstatus_and_argo_cd() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "health").await;
    let n = &ns.name;
    let objects = Objects {
        client: client.clone(),
        ns: n.clone(),
    };
    let operator = Operator::start(&client, n, &nats_url());
    let (topics, subscriptions) = (objects.typed::<Topic>(), objects.typed::<Subscription>());
    let (policies, schemas) = (
        objects.typed::<DeadLetterPolicy>(),
        objects.typed::<EventSchema>(),
    );

    // Ready, then paused, paused and edited, and edited once the operator is gone.
    for kind in KINDS {
        for name in ["ready", "paused", "paused-edited", "edited"] {
            objects.apply(kind, name, &spec(kind, name, false)).await;
        }
    }
    // On its way by itself: a missing Topic or target, a rollout that cannot finish.
    objects
        .apply("Subscription", "orphan", "  topicRef: {name: missing}\n")
        .await;
    let nowhere = "nodeSelector: {switchyard.dev/health-test: nowhere}";
    objects
        .apply(
            "Subscription",
            "rolling",
            &format!("  topicRef: {{name: ready}}\n  worker: {{image: acme/handler:1, replicas: 1, {nowhere}}}\n"),
        )
        .await;
    objects
        .apply(
            "DeadLetterPolicy",
            "awaiting",
            "  target: {topicRef: {name: missing}}\n",
        )
        .await;
    // Failed until someone acts: subjects another Topic holds (once it holds them), a filter
    // outside the Topic, a target Topic without a subject space for dead letters, a schema that
    // is no JSON Schema.
    wait_for_ready(&topics, "ready", "True", "StreamReady").await;
    objects
        .apply(
            "Topic",
            "clash",
            &format!("  subjects: [\"{n}.ready.>\"]\n"),
        )
        .await;
    objects
        .apply(
            "Subscription",
            "stray",
            &format!("  topicRef: {{name: ready}}\n  filterSubjects: [\"{n}.elsewhere.x\"]\n"),
        )
        .await;
    objects
        .apply("Topic", "flat", &format!("  subjects: [\"{n}.flat\"]\n"))
        .await;
    objects
        .apply(
            "DeadLetterPolicy",
            "flat",
            "  target: {topicRef: {name: flat}}\n",
        )
        .await;
    objects
        .apply(
            "EventSchema",
            "broken",
            "  eventType: health.broken.created\n  version: 1\n  schema: {type: object, properties: {id: {type: 12}}}\n",
        )
        .await;

    for name in ["ready", "paused", "paused-edited", "edited", "flat"] {
        wait_for_ready(&topics, name, "True", "StreamReady").await;
    }
    for name in ["ready", "paused", "paused-edited", "edited"] {
        wait_for_ready(&subscriptions, name, "True", "ConsumerInSync").await;
        wait_for_ready(&policies, name, "True", "StreamReady").await;
        wait_for_ready(&schemas, name, "True", "Registered").await;
    }
    wait_for_ready(&topics, "clash", "False", "SubjectsOverlap").await;
    wait_for_ready(&subscriptions, "orphan", "False", "TopicNotFound").await;
    wait_for_ready(&subscriptions, "rolling", "False", "WorkersProgressing").await;
    wait_for_ready(&subscriptions, "stray", "False", "InvalidSpec").await;
    wait_for_ready(&policies, "awaiting", "False", "TargetNotFound").await;
    wait_for_ready(&policies, "flat", "False", "InvalidSpec").await;
    wait_for_ready(&schemas, "broken", "False", "InvalidSpec").await;

    for kind in KINDS {
        for name in ["paused", "paused-edited"] {
            objects.pause(kind, name).await;
        }
    }
    for name in ["paused", "paused-edited"] {
        wait_condition(&topics, name, "ReconciliationPaused").await;
        wait_condition(&subscriptions, name, "ReconciliationPaused").await;
        wait_condition(&policies, name, "ReconciliationPaused").await;
        wait_condition(&schemas, name, "ReconciliationPaused").await;
    }
    for kind in KINDS {
        objects
            .apply(kind, "paused-edited", &spec(kind, "paused-edited", true))
            .await;
    }
    // Time for the operator to see the edits (and, rightly, write nothing).
    tokio::time::sleep(Duration::from_secs(3)).await;

    // `kubectl wait` reads the Ready condition as it is.
    let (ok, out) = kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            "-n",
            n,
            "--timeout=20s",
            "topic/ready",
            "subscription/ready",
            "deadletterpolicy/ready",
            "eventschema/ready",
        ],
        None,
    );
    assert!(ok, "kubectl wait on Ready objects: {out}");
    let (ok, out) = kubectl(
        &[
            "wait",
            "--for=condition=Ready",
            "-n",
            n,
            "--timeout=2s",
            "topic/clash",
        ],
        None,
    );
    assert!(!ok, "kubectl wait on a failed Topic must time out: {out}");
    let (ok, out) = kubectl(
        &[
            "wait",
            "--for=condition=Stalled",
            "-n",
            n,
            "--timeout=20s",
            "topic/clash",
            "subscription/stray",
        ],
        None,
    );
    assert!(ok, "kubectl wait for Stalled on failed objects: {out}");

    operator.assert_alive();
    operator.stop().await;
    for kind in KINDS {
        objects
            .apply(kind, "edited", &spec(kind, "edited", true))
            .await;
        objects
            .apply(kind, "late", &spec(kind, "late", false))
            .await;
    }

    let captured = objects.capture_all(WITH_OPERATOR).await;
    assert_judged(WITH_OPERATOR, &captured);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_outage_and_a_deletion_waiting_for_it_read_as_progress() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "health-down").await;
    let n = &ns.name;
    let objects = Objects {
        client: client.clone(),
        ns: n.clone(),
    };
    let mut nats = PrivateNats::start();
    let operator = Operator::start(&client, n, &nats.url());
    let (topics, subscriptions) = (objects.typed::<Topic>(), objects.typed::<Subscription>());
    let (policies, schemas) = (
        objects.typed::<DeadLetterPolicy>(),
        objects.typed::<EventSchema>(),
    );

    objects.apply("Topic", "ready", &topic_spec("1h")).await;
    objects
        .apply("Topic", "doomed", "  deletionPolicy: Delete\n")
        .await;
    wait_for_ready(&topics, "ready", "True", "StreamReady").await;
    wait_for_ready(&topics, "doomed", "True", "StreamReady").await;

    nats.kill();
    for kind in KINDS {
        objects
            .apply(kind, "unreachable", &spec(kind, "unreachable", false))
            .await;
    }
    wait_for_ready(&topics, "unreachable", "False", "BrokerUnavailable").await;
    wait_for_ready(&subscriptions, "unreachable", "False", "BrokerUnavailable").await;
    wait_for_ready(&policies, "unreachable", "False", "BrokerUnavailable").await;
    wait_for_ready(&schemas, "unreachable", "False", "BrokerUnavailable").await;
    topics
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete Topic");
    wait_for(
        &topics,
        "doomed",
        "Deleting, waiting for NATS",
        |t: &Topic| ready_of(t).is_some_and(|(_, reason, _)| reason == "Deleting"),
    )
    .await;

    let captured = objects.capture_all(BROKER_DOWN).await;
    operator.assert_alive();
    operator.stop().await;
    assert_judged(BROKER_DOWN, &captured);
}
