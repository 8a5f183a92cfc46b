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
    api::{
        DeadLetterPolicy, Subscription, Topic,
        dead_letter_policy::{CapturedCounts, SubscriptionDeadLetters},
    },
    broker::Broker,
    deadletter::{AdvisoryScope, AdvisoryStream, DeadLetter, Reason, RelayConfig, format::header},
    runtime::OperatorConfig,
};

struct Setup {
    // First, so it is the first to go: a relay still running while the namespace's streams are
    // deleted would recreate its advisory stream.
    operator: Operator,
    client: kube::Client,
    ns: TestNamespace,
    topics: Api<Topic>,
    subscriptions: Api<Subscription>,
    policies: Api<DeadLetterPolicy>,
    broker: Broker,
}

async fn setup(prefix: &str) -> Setup {
    setup_with(prefix, |_, _| {}).await
}

/// `tweak` gets the test namespace's name along with the operator's configuration.
async fn setup_with(prefix: &str, tweak: impl FnOnce(&str, &mut OperatorConfig)) -> Setup {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    Setup {
        topics: Api::namespaced(client.clone(), &ns.name),
        subscriptions: Api::namespaced(client.clone(), &ns.name),
        policies: Api::namespaced(client.clone(), &ns.name),
        broker: broker(&nats_url()).await,
        operator: Operator::start_with(&client, &ns.name, &nats_url(), |config| {
            tweak(&ns.name, config);
        }),
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
    // An unknown kind of failure to capture, naming the field and what is accepted.
    let (refused, output) = kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: DeadLetterPolicy\nmetadata: {{name: odd-capture, namespace: {ns}}}\nspec:\n  capture: [MaxDeliveries, Exploded]\n"
        )),
    );
    assert!(!refused, "{output}");
    for expected in ["spec.capture[1]", "Exploded", "SchemaViolation"] {
        assert!(
            output.contains(expected),
            "{expected} missing from: {output}"
        );
    }
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_relays_failed_events_into_the_policys_stream() {
    // The relay reads an advisory stream of this test's own, scoped to its Topic's stream.
    let s = setup_with("dlp-relay", |ns, config| {
        config.dead_letter_relay = Some(RelayConfig {
            stream: AdvisoryStream {
                name: format!("{ns}_advisories"),
                scope: AdvisoryScope::Streams(vec![format!("{ns}_orders")]),
                ..AdvisoryStream::default()
            },
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_secs(1),
            fetch_wait: Duration::from_millis(500),
            ..RelayConfig::default()
        });
    })
    .await;
    let ns = s.ns.name.clone();
    apply(&s.topics, &topic_yaml(&ns, "orders", "  maxAge: 1h\n"))
        .await
        .unwrap();
    s.policy("failures", "  alertThreshold: 2\n").await;
    s.subscription(
        "billing",
        "  topicRef: {name: orders}\n  deadLetterPolicyRef: {name: failures}\n  ackWait: 1s\n  retry: {maxDeliveries: 2}\n",
    )
    .await;
    wait_for_ready(&s.policies, "failures", "True", "StreamReady").await;
    wait_for_ready(&s.subscriptions, "billing", "True", "ConsumerInSync").await;
    // Advisories are sent only to whoever listens: fail events once the relay's stream does.
    wait_until("the advisory stream", || async {
        s.broker
            .stream_info(&format!("{ns}_advisories"))
            .await
            .ok()?
            .map(|_| ())
    })
    .await;

    let js = s.jetstream().await;
    let client = async_nats::connect(nats_url()).await.unwrap();
    for (id, subject) in [("e1", "order.placed"), ("e2", "order.cancelled")] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("ce-id", id);
        headers.insert("Nats-Msg-Id", id);
        js.publish_with_headers(
            format!("{ns}.orders.{subject}"),
            headers,
            format!("{{\"id\":\"{id}\"}}").into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    // A handler failing e1 twice (its maxDeliveries) and rejecting e2 outright.
    let consumer: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream(format!("sub_{ns}_billing"), format!("{ns}_orders"))
        .await
        .unwrap();
    let mut e1_deliveries = 0;
    let mut e2_settled = false;
    while e1_deliveries < 2 || !e2_settled {
        let mut batch = consumer
            .fetch()
            .max_messages(2)
            .expires(Duration::from_secs(3))
            .messages()
            .await
            .unwrap();
        while let Some(message) = futures::StreamExt::next(&mut batch).await {
            let message = message.unwrap();
            let reply = message.reply.clone().unwrap();
            if message.subject.ends_with("order.placed") {
                e1_deliveries += 1;
                client.publish(reply, "-NAK".into()).await.unwrap();
            } else {
                e2_settled = true;
                client
                    .publish(reply, "+TERM HandlerRejected: HTTP 400".into())
                    .await
                    .unwrap();
            }
        }
    }
    client.flush().await.unwrap();
    // The server gives up on e1 when it would deliver it a third time, which a pull request
    // (as a dispatcher always has one open) makes it consider.
    let mut rest = consumer
        .fetch()
        .max_messages(1)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    assert!(
        futures::StreamExt::next(&mut rest).await.is_none(),
        "nothing is delivered after maxDeliveries"
    );

    let dead = wait_until("both dead letters stored", || async {
        let info = s
            .broker
            .stream_info(&s.dlq_stream("failures"))
            .await
            .ok()??;
        (info.state.messages == 2).then_some(info)
    })
    .await;
    let stream = js.get_stream(s.dlq_stream("failures")).await.unwrap();
    let mut reasons = Vec::new();
    for sequence in dead.state.first_sequence..=dead.state.last_sequence {
        let copy = stream.get_raw_message(sequence).await.unwrap();
        let headers = copy.headers;
        let get = |name: &str| {
            headers
                .get(name)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        let original = get(header::ORIGINAL_SUBJECT);
        assert_eq!(get(header::ORIGINAL_STREAM), format!("{ns}_orders"));
        assert_eq!(get(header::ORIGINAL_CONSUMER), format!("sub_{ns}_billing"));
        assert!(!get(header::ORIGINAL_SEQUENCE).is_empty());
        assert!(!get(header::DEAD_LETTER_TIME).is_empty());
        let event = original.rsplit('.').take(2).collect::<Vec<_>>();
        assert_eq!(
            copy.subject.as_str(),
            format!("_dlq.{ns}.failures.order.{}", event[0]),
            "the copy keeps the event type"
        );
        let id = get("ce-id");
        assert_eq!(
            copy.payload.as_ref(),
            format!("{{\"id\":\"{id}\"}}").as_bytes()
        );
        assert_eq!(get(header::ORIGINAL_MSG_ID), id);
        reasons.push((
            id,
            get(header::REASON),
            get(header::DETAIL),
            get(header::DELIVERY_COUNT),
        ));
    }
    reasons.sort();
    assert_eq!(
        reasons,
        [
            (
                "e1".to_string(),
                "MaxDeliveries".to_string(),
                String::new(),
                "2".to_string()
            ),
            (
                "e2".to_string(),
                "HandlerRejected".to_string(),
                "HTTP 400".to_string(),
                "1".to_string()
            ),
        ]
    );
    let counted = wait_for(&s.policies, "failures", "2 dead letters counted", |p| {
        p.status.as_ref().and_then(|s| s.dead_letters) == Some(2)
            && p.status.as_ref().and_then(|s| s.counted_through_sequence) == Some(2)
            && condition_of(p, "DeadLettersAccumulating").is_some_and(|c| c.0 == "True")
    })
    .await;
    let expected_counts = CapturedCounts {
        max_deliveries: 1,
        handler_rejected: 1,
        ..CapturedCounts::default()
    };
    let expected_subscriptions = vec![SubscriptionDeadLetters {
        name: "billing".into(),
        dead_letters: 2,
    }];
    let status = counted.status.unwrap();
    assert_eq!(status.captured.as_ref(), Some(&expected_counts));
    assert_eq!(status.subscriptions, expected_subscriptions);
    wait_for(
        &s.subscriptions,
        "billing",
        "its dead letters shown",
        |sub| sub.status.as_ref().and_then(|s| s.dead_lettered) == Some(2),
    )
    .await;
    // Later resyncs read nothing twice.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = s.policies.get("failures").await.unwrap().status.unwrap();
    assert_eq!(later.captured, Some(expected_counts));
    assert_eq!(later.subscriptions, expected_subscriptions);
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_replay_annotation_replays_once_per_value() {
    let s = setup("dlp-replay").await;
    let ns = s.ns.name.clone();
    apply(&s.topics, &topic_yaml(&ns, "orders", "  maxAge: 1h\n"))
        .await
        .unwrap();
    s.policy("failures", "  alertThreshold: 100\n").await;
    wait_for_ready(&s.topics, "orders", "True", "StreamReady").await;
    wait_for_ready(&s.policies, "failures", "True", "StreamReady").await;

    // Three dead letters, as the relay stores them.
    let now = time::OffsetDateTime::now_utc();
    for (sequence, id) in [(7u64, "o7"), (8, "o8"), (9, "o9")] {
        let letter = DeadLetter {
            reason: Reason::MaxDeliveries,
            subject: format!("{ns}.orders.order.placed"),
            stream: format!("{ns}_orders"),
            sequence,
            consumer: format!("sub_{ns}_billing"),
            deliveries: 5,
            stored_at: now,
            dead_lettered_at: now,
            msg_id: Some(id.into()),
        };
        let mut original = async_nats::HeaderMap::new();
        original.insert("ce-id", id);
        s.broker
            .store(
                format!("_dlq.{ns}.failures.order.placed"),
                letter.headers(Some(&original)),
                format!("{{\"id\":\"{id}\"}}").into(),
            )
            .await
            .unwrap();
    }
    let replayed_events = || async {
        s.broker
            .stream_info(&format!("{ns}_orders"))
            .await
            .unwrap()
            .map_or(0, |i| i.state.messages)
    };
    assert_eq!(replayed_events().await, 0);

    let annotate = |value: &'static str| {
        let policies = s.policies.clone();
        async move {
            policies
                .patch(
                    "failures",
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({
                        "metadata": {"annotations": {"switchyard.dev/replay": value}}
                    })),
                )
                .await
                .unwrap();
        }
    };
    let replayed_by = |trigger: &'static str| {
        move |p: &DeadLetterPolicy| {
            p.status
                .as_ref()
                .and_then(|s| s.last_replay.as_ref())
                .is_some_and(|r| r.trigger.as_deref() == Some(trigger))
        }
    };
    annotate("2026-12-04T10:00:00Z").await;
    let done = wait_for(
        &s.policies,
        "failures",
        "the first replay",
        replayed_by("2026-12-04T10:00:00Z"),
    )
    .await;
    let first = done.status.unwrap().last_replay.unwrap();
    assert_eq!((first.count, first.failed), (3, 0), "{first:?}");
    assert_eq!(replayed_events().await, 3);
    let js = s.jetstream().await;
    let orders = js.get_stream(format!("{ns}_orders")).await.unwrap();
    let mut ids = Vec::new();
    for sequence in 1..=3 {
        let event = orders.get_raw_message(sequence).await.unwrap();
        assert_eq!(event.subject.as_str(), format!("{ns}.orders.order.placed"));
        let header = |name: &str| event.headers.get(name).map(|v| v.as_str().to_string());
        assert!(
            header(header::REPLAYED_FROM)
                .is_some_and(|from| from.starts_with(&s.dlq_stream("failures"))),
            "{:?}",
            event.headers
        );
        assert_eq!(
            header(header::REASON),
            None,
            "dead-letter facts are not replayed"
        );
        ids.push(header("ce-id").unwrap());
    }
    assert_eq!(ids, ["o7", "o8", "o9"]);
    let events = events_for(&s.client, &ns, "failures").await;
    assert!(
        events
            .iter()
            .any(|(t, r, n)| t == "Normal" && r == "Replayed" && n.contains("replayed 3")),
        "{events:?}"
    );

    // Resyncs (every 2 s here) see the value answered: nothing more is replayed.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(replayed_events().await, 3);
    let unchanged = s.policies.get("failures").await.unwrap();
    assert_eq!(unchanged.status.unwrap().last_replay, Some(first));

    // A new value replays again.
    annotate("2026-12-04T11:00:00Z").await;
    wait_for(
        &s.policies,
        "failures",
        "the second replay",
        replayed_by("2026-12-04T11:00:00Z"),
    )
    .await;
    assert_eq!(replayed_events().await, 6);
    s.operator.assert_alive();
}
