//! DeadLetterPolicy → dead-letter target, against a real kube-apiserver and a real nats-server.

mod common;

use std::time::Duration;

use async_nats::jetstream::{self, stream::RetentionPolicy};
use common::*;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use switchyard::{
    api::{DeadLetterPolicy, Subscription, Topic},
    broker::Broker,
};

struct Setup {
    client: kube::Client,
    ns: TestNamespace,
    topics: Api<Topic>,
    subscriptions: Api<Subscription>,
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
        policies: Api::namespaced(client.clone(), &ns.name),
        broker: broker(&nats_url()).await,
        operator: Operator::start(&client, &ns.name, &nats_url()),
        client,
        ns,
    }
}

impl Setup {
    async fn policy(&self, name: &str, spec: &str) {
        apply(
            &self.policies,
            &manifest("DeadLetterPolicy", &self.ns.name, name, spec),
        )
        .await
        .expect("apply DeadLetterPolicy");
    }

    async fn subscription(&self, name: &str, spec: &str) {
        apply(
            &self.subscriptions,
            &manifest("Subscription", &self.ns.name, name, spec),
        )
        .await
        .expect("apply Subscription");
    }

    fn dlq_stream(&self, policy: &str) -> String {
        format!("{}_{policy}_dlq", self.ns.name)
    }

    async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(async_nats::connect(nats_url()).await.expect("connect"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_managed_stream_is_created_as_declared_and_counts_its_dead_letters() {
    let s = setup("dlp-managed").await;
    s.policy(
        "payments",
        "  alertThreshold: 2\n  target: {managed: {maxAge: 48h}}\n",
    )
    .await;
    let ready = wait_for_ready(&s.policies, "payments", "True", "StreamReady").await;
    let status = ready.status.as_ref().unwrap();
    assert_eq!(
        status.stream_name.as_deref(),
        Some(s.dlq_stream("payments").as_str())
    );
    assert_eq!(status.dead_letters, Some(0));
    assert_eq!(
        condition_of(&ready, "DeadLettersAccumulating").map(|c| (c.0, c.1)),
        Some(("False".into(), "BelowThreshold".into()))
    );
    let info = s
        .broker
        .stream_info(&s.dlq_stream("payments"))
        .await
        .unwrap()
        .expect("dead-letter stream");
    let prefix = format!("_dlq.{}.payments", s.ns.name);
    assert_eq!(info.config.subjects, [format!("{prefix}.>")]);
    assert_eq!(info.config.retention, RetentionPolicy::Limits);
    assert_eq!(info.config.max_age, Duration::from_secs(48 * 3600));
    assert!(info.config.allow_direct);

    // Dead letters arrive (as the relay publishes them); the next resync counts them and the
    // threshold turns the condition, with a Warning.
    let js = s.jetstream().await;
    for _ in 0..3 {
        js.publish(format!("{prefix}.order.placed"), "{}".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let accumulating = wait_for(
        &s.policies,
        "payments",
        "3 dead letters, accumulating",
        |p| {
            p.status.as_ref().and_then(|s| s.dead_letters) == Some(3)
                && condition_of(p, "DeadLettersAccumulating").is_some_and(|c| c.0 == "True")
        },
    )
    .await;
    let (_, reason, message) = condition_of(&accumulating, "DeadLettersAccumulating").unwrap();
    assert_eq!(reason, "AboveThreshold");
    assert!(message.contains("3 dead letters"), "{message}");
    assert!(
        accumulating
            .status
            .as_ref()
            .unwrap()
            .last_dead_letter_time
            .is_some()
    );
    assert_eq!(
        ready_of(&accumulating).map(|r| r.0).as_deref(),
        Some("True")
    );
    let events = events_for(&s.client, &s.ns.name, "payments").await;
    assert!(
        events
            .iter()
            .any(|(t, r, _)| t == "Warning" && r == "DeadLettersAccumulating"),
        "{events:?}"
    );

    // Purged: the condition clears.
    js.get_stream(s.dlq_stream("payments"))
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
    wait_for(
        &s.policies,
        "payments",
        "purged, no longer accumulating",
        |p| {
            p.status.as_ref().and_then(|s| s.dead_letters) == Some(0)
                && condition_of(p, "DeadLettersAccumulating").is_some_and(|c| c.0 == "False")
        },
    )
    .await;
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn deletion_policy_decides_whether_the_managed_stream_goes_with_the_policy() {
    let s = setup("dlp-delete").await;
    s.policy("keep", "  target: {managed: {}}\n").await;
    s.policy("drop", "  target: {managed: {deletionPolicy: Delete}}\n")
        .await;
    for name in ["keep", "drop"] {
        wait_for_ready(&s.policies, name, "True", "StreamReady").await;
    }
    for name in ["keep", "drop"] {
        s.policies
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
        wait_until_deleted(&s.policies, name).await;
    }
    assert!(
        s.broker
            .stream_info(&s.dlq_stream("keep"))
            .await
            .unwrap()
            .is_some(),
        "Retain keeps the dead letters"
    );
    assert!(
        s.broker
            .stream_info(&s.dlq_stream("drop"))
            .await
            .unwrap()
            .is_none(),
        "Delete removes them"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_target_is_waited_for_and_a_target_that_would_loop_is_refused() {
    let s = setup("dlp-topic").await;
    s.policy("failures", "  target: {topicRef: {name: dead}}\n")
        .await;
    let waiting = wait_for_ready(&s.policies, "failures", "False", "TargetNotFound").await;
    assert!(ready_of(&waiting).unwrap().2.contains("dead"));

    // The Topic watch wakes the policy once the Topic is Ready.
    apply(
        &s.topics,
        &topic_yaml(&s.ns.name, "dead", "  retention: Limits\n"),
    )
    .await
    .unwrap();
    let ready = wait_for_ready(&s.policies, "failures", "True", "TargetReady").await;
    let status = ready.status.as_ref().unwrap();
    assert_eq!(
        status.stream_name.as_deref(),
        Some(format!("{}_dead", s.ns.name).as_str())
    );
    assert!(
        ready_of(&ready)
            .unwrap()
            .2
            .contains(&format!("{}.dead", s.ns.name)),
        "{:?}",
        ready_of(&ready)
    );

    // A Subscription reading the target Topic through this very policy would dead-letter its
    // failures into the Topic it reads.
    s.subscription(
        "auditor",
        "  topicRef: {name: dead}\n  deadLetterPolicyRef: {name: failures}\n",
    )
    .await;
    s.policies
        .patch(
            "failures",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"alertThreshold": 5}})),
        )
        .await
        .unwrap();
    let looping = wait_for_ready(&s.policies, "failures", "False", "TargetCapturedByPolicy").await;
    assert!(
        ready_of(&looping)
            .unwrap()
            .2
            .contains("Subscription auditor"),
        "{:?}",
        ready_of(&looping)
    );
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_topic_without_a_wildcard_subject_space_cannot_hold_dead_letters() {
    let s = setup("dlp-bad").await;
    let ns = s.ns.name.clone();
    apply(
        &s.topics,
        &topic_yaml(
            &ns,
            "exact",
            &format!("  subjects: [\"{ns}.exact.only\"]\n"),
        ),
    )
    .await
    .unwrap();
    s.policy("odd", "  target: {topicRef: {name: exact}}\n")
        .await;
    let invalid = wait_for_ready(&s.policies, "odd", "False", "InvalidSpec").await;
    let message = ready_of(&invalid).unwrap().2;
    assert!(message.contains("spec.target.topicRef"), "{message}");
    assert!(message.contains(".>"), "{message}");

    // Refused at apply time: both targets, or none of them.
    let (refused, output) = kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: DeadLetterPolicy\nmetadata: {{name: both, namespace: {ns}}}\nspec:\n  target: {{topicRef: {{name: exact}}, managed: {{}}}}\n"
        )),
    );
    assert!(!refused, "{output}");
    assert!(output.contains("exactly one of topicRef"), "{output}");
    s.operator.assert_alive();
}
