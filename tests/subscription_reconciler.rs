//! Subscription → durable consumer, against a real kube-apiserver and a real nats-server.

mod common;

use std::time::Duration;

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
    subscriptions: Api<Subscription>,
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
        broker: broker(&nats_url()).await,
        operator: Operator::start(&client, &ns.name, &nats_url()),
        client,
        ns,
    }
}

impl Setup {
    async fn topic(&self, name: &str, spec: &str) {
        apply(&self.topics, &topic_yaml(&self.ns.name, name, spec))
            .await
            .expect("apply Topic");
    }

    async fn subscription(&self, name: &str, spec: &str) {
        apply(
            &self.subscriptions,
            &manifest("Subscription", &self.ns.name, name, spec),
        )
        .await
        .expect("apply Subscription");
    }

    async fn ready(&self, name: &str) -> Subscription {
        wait_for_ready(&self.subscriptions, name, "True", "ConsumerInSync").await
    }

    fn stream(&self, topic: &str) -> String {
        format!("{}_{topic}", self.ns.name)
    }

    fn consumer(&self, name: &str) -> String {
        format!("sub_{}_{name}", self.ns.name)
    }

    async fn consumer_info(
        &self,
        topic: &str,
        name: &str,
    ) -> Option<async_nats::jetstream::consumer::Info> {
        self.broker
            .consumer_info(&self.stream(topic), &self.consumer(name))
            .await
            .expect("consumer info")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn subscription_becomes_a_consumer_with_exactly_the_declared_config_and_stays_quiet() {
    let s = setup("sub-create").await;
    s.topic("orders", "  maxAge: 1h\n").await;
    s.subscription(
        "billing",
        "  topicRef: {name: orders}\n  eventTypes: [order.placed, order.cancelled]\n  ackWait: 45s\n  maxAckPending: 50\n  retry: {maxDeliveries: 4}\n",
    )
    .await;
    let ready = s.ready("billing").await;
    let status = ready.status.as_ref().unwrap();
    assert_eq!(
        status.consumer_name.as_deref(),
        Some(s.consumer("billing").as_str())
    );
    assert_eq!(status.lag, Some(0));
    assert_eq!(
        condition_of(&ready, "ConsumerReady")
            .map(|c| c.0)
            .as_deref(),
        Some("True")
    );

    let info = s
        .consumer_info("orders", "billing")
        .await
        .expect("consumer");
    let c = &info.config;
    let ns = &s.ns.name;
    assert_eq!(
        c.filter_subjects,
        [
            format!("{ns}.orders.order.placed"),
            format!("{ns}.orders.order.cancelled")
        ]
    );
    assert_eq!(c.ack_wait, Duration::from_secs(45));
    assert_eq!(c.max_ack_pending, 50);
    assert_eq!(c.max_deliver, 4);
    assert_eq!(c.inactive_threshold, Duration::ZERO);
    assert_eq!(
        c.ack_policy,
        async_nats::jetstream::consumer::AckPolicy::Explicit
    );

    // Several resyncs (2 s in tests) later nothing was written.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = s.subscriptions.get("billing").await.unwrap();
    assert_eq!(
        later.metadata.resource_version,
        ready.metadata.resource_version
    );
    let events = events_for(&s.client, ns, "billing").await;
    assert!(
        events.iter().any(|(_, r, _)| r == "ConsumerCreated"),
        "{events:?}"
    );
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn subscription_waits_for_its_topic_and_becomes_ready_when_it_appears() {
    let s = setup("sub-wait").await;
    s.subscription("audit", "  topicRef: {name: payments}\n")
        .await;
    let waiting = wait_for_ready(&s.subscriptions, "audit", "False", "TopicNotFound").await;
    let (_, _, message) = ready_of(&waiting).unwrap();
    assert!(message.contains("payments"), "{message}");

    // Only the Topic is created; the Subscription is woken by the Topic watch.
    s.topic("payments", "  maxAge: 1h\n").await;
    let ready = s.ready("audit").await;
    assert_eq!(ready.metadata.generation, waiting.metadata.generation);
    assert!(s.consumer_info("payments", "audit").await.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_applied_with_their_topics_wait_quietly_and_write_their_status_once() {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let Setup {
        client,
        ns,
        topics,
        subscriptions,
        broker,
        operator,
    } = setup("sub-with-topic").await;
    // The operator starts once every object exists, so Subscriptions and the Topics they read
    // are reconciled at the same time, as after a restart or a big `kubectl apply`.
    operator.stop().await;
    // Every state of every Subscription in the namespace, from before the first is created.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Subscription>::new()));
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn({
        let (api, seen) = (subscriptions.clone(), seen.clone());
        async move {
            let mut listed_tx = Some(listed_tx);
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        listed_tx.take().map(|tx| tx.send(()));
                    }
                    Ok(watcher::Event::Apply(sub)) => seen.lock().unwrap().push(sub),
                    _ => {}
                }
            }
        }
    });
    listed.await.expect("watch listed");

    let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for name in names {
        apply(&topics, &topic_yaml(&ns.name, name, "  maxAge: 1h\n"))
            .await
            .expect("apply Topic");
        let spec = format!("  topicRef: {{name: {name}}}\n");
        apply(
            &subscriptions,
            &manifest("Subscription", &ns.name, name, &spec),
        )
        .await
        .expect("apply Subscription");
    }
    let s = Setup {
        operator: Operator::start(&client, &ns.name, &nats_url()),
        client,
        ns,
        topics,
        subscriptions,
        broker,
    };
    for name in names {
        s.ready(name).await;
    }
    watch.abort();

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    for name in names {
        let states: Vec<&Subscription> = seen
            .iter()
            .filter(|sub| sub.metadata.name.as_deref() == Some(name))
            .collect();
        let reasons: Vec<String> = states
            .iter()
            .filter_map(|sub| ready_of(*sub).map(|(_, reason, _)| reason))
            .collect();
        assert!(
            !reasons.iter().any(|r| r == "TopicNotReady"),
            "{name} reported its Topic as not ready while it was being set up: {reasons:?}"
        );
        let status_writes = states
            .windows(2)
            .filter(|pair| pair[0].status != pair[1].status)
            .count()
            // A new object's status is what the CRD defaults it to (observedGeneration 0, no
            // conditions); only conditions there would be a write of ours.
            + usize::from(states.first().is_some_and(|first| {
                first
                    .status
                    .as_ref()
                    .is_some_and(|status| !status.conditions.is_empty())
            }));
        assert_eq!(
            status_writes, 1,
            "{name}: one status write until Ready; saw the reasons {reasons:?}"
        );
    }
    for name in names {
        let events = events_for(&s.client, &s.ns.name, name).await;
        assert!(
            events.iter().all(|(type_, _, _)| type_ == "Normal"),
            "{name}: {events:?}"
        );
    }
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn consumers_deleted_or_edited_by_hand_are_restored_and_reported() {
    let s = setup("sub-drift").await;
    s.topic("orders", "  maxAge: 1h\n").await;
    s.subscription(
        "shipping",
        "  topicRef: {name: orders}\n  maxAckPending: 20\n",
    )
    .await;
    s.ready("shipping").await;
    let stream = s.stream("orders");
    let consumer = s.consumer("shipping");

    let mut edited = s.consumer_info("orders", "shipping").await.unwrap().config;
    edited.max_ack_pending = 3;
    s.broker
        .update_consumer(&stream, &edited)
        .await
        .expect("hand edit");
    wait_until("consumer restored", || async {
        let info = s.consumer_info("orders", "shipping").await?;
        (info.config.max_ack_pending == 20).then_some(())
    })
    .await;

    s.broker
        .delete_consumer(&stream, &consumer)
        .await
        .expect("hand delete");
    wait_until("consumer recreated", || async {
        s.consumer_info("orders", "shipping").await.map(|_| ())
    })
    .await;
    wait_until("a Warning Event for each hand change", || async {
        let events = events_for(&s.client, &s.ns.name, "shipping").await;
        let warned = |reason: &str, word: &str| {
            events
                .iter()
                .any(|(kind, r, note)| kind == "Warning" && r == reason && note.contains(word))
        };
        (warned("DriftCorrected", "maxAckPending") && warned("ConsumerRecreated", "deleted"))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_filter_grows_into_several_without_losing_the_position() {
    let s = setup("sub-filters").await;
    s.topic("orders", "  maxAge: 1h\n").await;
    s.subscription(
        "billing",
        "  topicRef: {name: orders}\n  eventTypes: [order.placed]\n",
    )
    .await;
    s.ready("billing").await;
    let ns = &s.ns.name;
    for subject in ["order.placed", "order.placed", "order.shipped"] {
        s.broker
            .jetstream()
            .publish(format!("{ns}.orders.{subject}"), "e".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let before = s.consumer_info("orders", "billing").await.unwrap();
    assert_eq!(before.num_pending, 2);

    s.subscription(
        "billing",
        "  topicRef: {name: orders}\n  eventTypes: [order.placed, order.shipped]\n  filterSubjects: [\"*.orders.audit.>\"]\n",
    )
    .await;
    let refused = wait_for_ready(&s.subscriptions, "billing", "False", "InvalidSpec").await;
    let (_, _, message) = ready_of(&refused).unwrap();
    assert!(message.starts_with("spec.filterSubjects[0]"), "{message}");

    s.subscription(
        "billing",
        "  topicRef: {name: orders}\n  eventTypes: [order.placed, order.shipped]\n",
    )
    .await;
    s.ready("billing").await;
    let after = s.consumer_info("orders", "billing").await.unwrap();
    assert_eq!(after.config.filter_subjects.len(), 2);
    assert_eq!(after.created, before.created, "the same consumer");
    assert_eq!(
        after.num_pending, 3,
        "its position kept; the new filter adds one event"
    );

    // Immutable fields are refused at apply time, naming the field.
    let yaml = format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: Subscription\nmetadata:\n  name: billing\n  namespace: {ns}\nspec:\n  topicRef: {{name: orders}}\n  deliverPolicy: New\n"
    );
    let (ok, out) = kubectl(&["apply", "--server-side", "-f", "-"], Some(&yaml));
    assert!(!ok && out.contains("spec.deliverPolicy"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_subscription_deletes_its_consumer() {
    let s = setup("sub-delete").await;
    s.topic("orders", "  maxAge: 1h\n").await;
    s.subscription("temp", "  topicRef: {name: orders}\n").await;
    s.ready("temp").await;
    assert!(s.consumer_info("orders", "temp").await.is_some());
    s.subscriptions
        .delete("temp", &DeleteParams::default())
        .await
        .unwrap();
    wait_until_deleted(&s.subscriptions, "temp").await;
    assert!(s.consumer_info("orders", "temp").await.is_none());
    let events = events_for(&s.client, &s.ns.name, "temp").await;
    assert!(
        events.iter().any(|(_, r, _)| r == "ConsumerDeleted"),
        "{events:?}"
    );
    // The Topic and its stream are untouched.
    let _ = s
        .topics
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({})),
        )
        .await;
    assert!(
        s.broker
            .stream_info(&s.stream("orders"))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn worker_deployment_is_created_owned_updated_and_removed_with_the_subscription() {
    use k8s_openapi::api::apps::v1::Deployment;
    let s = setup("sub-workers").await;
    let deployments: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns.name);
    s.topic("orders", "  maxAge: 1h\n").await;
    let worker = |image: &str| {
        format!(
            "  topicRef: {{name: orders}}\n  worker: {{image: \"{image}\", replicas: 2, concurrency: 4}}\n"
        )
    };
    s.subscription("fulfil", &worker("acme/handler:1.0")).await;
    let ready = s.ready("fulfil").await;
    let status = ready.status.as_ref().unwrap();
    assert_eq!(
        (status.desired_workers, status.available_workers),
        (Some(2), Some(2))
    );
    assert_eq!(
        condition_of(&ready, "WorkersAvailable").map(|c| (c.0, c.1)),
        Some(("True".into(), "WorkersAvailable".into()))
    );

    let deployment = deployments
        .get("fulfil-worker")
        .await
        .expect("worker Deployment");
    let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Subscription", "fulfil")
    );
    assert_eq!(owner.uid, ready.metadata.uid.clone().unwrap());
    let images = |d: &Deployment| -> Vec<String> {
        d.spec
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .map(|c| c.image.clone().unwrap())
            .collect()
    };
    assert_eq!(images(&deployment)[0], "acme/handler:1.0");
    assert!(
        images(&deployment)[1].starts_with("switchyard:"),
        "the dispatcher sidecar"
    );

    // A new image rolls the Deployment; the Subscription is Ready again once it is available.
    s.subscription("fulfil", &worker("acme/handler:1.1")).await;
    s.ready("fulfil").await;
    let rolled = deployments.get("fulfil-worker").await.unwrap();
    assert_eq!(images(&rolled)[0], "acme/handler:1.1");

    // Deleting the Subscription removes the consumer, and the Deployment with its owner.
    s.subscriptions
        .delete("fulfil", &DeleteParams::default())
        .await
        .unwrap();
    wait_until_deleted(&s.subscriptions, "fulfil").await;
    wait_until_deleted(&deployments, "fulfil-worker").await;
    assert!(s.consumer_info("orders", "fulfil").await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_precise_reason_or_is_refused_at_apply_time() {
    let s = setup("sub-bad").await;
    s.topic("orders", "  maxAge: 1h\n").await;
    // Broadcast needs overlapping consumers, which a WorkQueue stream refuses: our message,
    // not the server's code, and no consumer.
    s.topic("jobs", "  retention: WorkQueue\n").await;
    s.subscription(
        "fanout",
        "  topicRef: {name: jobs}\n  mode: Broadcast\n  worker: {image: a/b, replicas: 1}\n",
    )
    .await;
    let refused = wait_for_ready(&s.subscriptions, "fanout", "False", "InvalidSpec").await;
    let message = ready_of(&refused).unwrap().2;
    assert!(message.starts_with("spec.mode"), "{message}");
    assert!(message.contains("WorkQueue"), "{message}");
    let names = s.broker.consumer_names(&s.stream("jobs")).await.unwrap();
    assert!(names.is_empty(), "{names:?}");

    let ns = &s.ns.name;
    let cases = [
        (
            "  topicRef: {name: orders}\n  retry: {maxDeliveries: 2, backoff: {delays: [1s, 2s, 3s]}}\n",
            "spec.retry.backoff.delays",
        ),
        (
            "  topicRef: {name: orders}\n  ackWait: -5s\n",
            "spec.ackWait",
        ),
        (
            "  topicRef: {name: orders}\n  worker: {replicas: 1}\n",
            "spec.worker.image",
        ),
        (
            "  topicRef: {name: orders}\n  worker: {image: a/b, autoscaling: {minReplicas: 3, maxReplicas: 2}}\n",
            "minReplicas",
        ),
        (
            "  topicRef: {name: orders}\n  worker: {image: a/b, autoscaling: {maxReplicas: 2, stabilizationWindow: 2h}}\n",
            "stabilizationWindow",
        ),
        (
            "  topicRef: {name: orders}\n  worker: {image: a/b, autoscaling: {maxReplicas: 2, lagPerReplica: 0}}\n",
            "lagPerReplica",
        ),
        (
            "  topicRef: {name: orders}\n  mode: Broadcast\n",
            "spec.worker",
        ),
        (
            "  topicRef: {name: orders}\n  mode: Broadcast\n  worker: {image: a/b, autoscaling: {maxReplicas: 2}}\n",
            "spec.worker.autoscaling",
        ),
    ];
    for (i, (spec, field)) in cases.into_iter().enumerate() {
        let yaml = format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: Subscription\nmetadata:\n  name: bad{i}\n  namespace: {ns}\nspec:\n{spec}"
        );
        let err = apply(&s.subscriptions, &yaml).await.expect_err(spec);
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    s.operator.assert_alive();
}

/// Names of the worker pods of a Subscription, sorted.
async fn worker_pods(s: &Setup, subscription: &str) -> Vec<String> {
    use k8s_openapi::api::core::v1::Pod;
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns.name);
    let selector = format!("switchyard.dev/subscription={subscription}");
    let mut names: Vec<String> = pods
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names
}

/// Consumer names on a stream starting with `prefix`, sorted.
async fn consumers_with_prefix(s: &Setup, topic: &str, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = s
        .broker
        .consumer_names(&s.stream(topic))
        .await
        .expect("consumer names")
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Publishes events of the given types to a plain Topic of the test namespace.
async fn publish(s: &Setup, topic: &str, types: &[&str]) {
    let client = async_nats::connect(nats_url()).await.expect("connect");
    let jetstream = async_nats::jetstream::new(client);
    for (i, event_type) in types.iter().enumerate() {
        jetstream
            .publish(
                format!("{}.{topic}.{event_type}", s.ns.name),
                format!("event {i}").into(),
            )
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
}

/// Reads and acknowledges up to `max` events from a durable consumer, as a worker would;
/// returns their subjects.
async fn read_as_worker(s: &Setup, topic: &str, consumer: &str, max: usize) -> Vec<String> {
    use async_nats::jetstream::consumer::PullConsumer;
    let client = async_nats::connect(nats_url()).await.expect("connect");
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream.get_stream(s.stream(topic)).await.expect("stream");
    let consumer: PullConsumer = stream.get_consumer(consumer).await.expect("consumer");
    let mut messages = consumer
        .fetch()
        .max_messages(max)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .expect("fetch");
    let mut subjects = Vec::new();
    while let Some(message) = futures::StreamExt::next(&mut messages).await {
        let message = message.expect("message");
        subjects.push(message.subject.to_string());
        message.double_ack().await.expect("ack");
    }
    subjects
}

#[tokio::test(flavor = "multi_thread")]
async fn broadcast_gives_every_worker_pod_its_own_consumer_for_as_long_as_the_pod_lives() {
    let s = setup("sub-broadcast").await;
    s.topic("prices", "  maxAge: 1h\n").await;
    let spec = |replicas: i32| {
        format!(
            "  topicRef: {{name: prices}}\n  mode: Broadcast\n  eventTypes: [price.changed]\n  worker: {{image: acme/cache:1, replicas: {replicas}}}\n"
        )
    };
    s.subscription("cache", &spec(2)).await;
    let prefix = format!("{}_", s.consumer("cache"));
    let sub = wait_until("a consumer for each of the two worker pods", || async {
        let sub = s.subscriptions.get("cache").await.ok()?;
        let status = sub.status.as_ref()?;
        (status.consumers == Some(2) && ready_of(&sub)?.0 == "True").then_some(sub)
    })
    .await;
    let status = sub.status.as_ref().unwrap();
    assert_eq!(
        status.consumer_name.as_deref(),
        Some(format!("{prefix}<pod>").as_str())
    );
    let pods = worker_pods(&s, "cache").await;
    assert_eq!(pods.len(), 2, "{pods:?}");
    let expected: Vec<String> = pods.iter().map(|p| format!("{prefix}{p}")).collect();
    assert_eq!(consumers_with_prefix(&s, "prices", &prefix).await, expected);
    assert!(
        s.consumer_info("prices", "cache").await.is_none(),
        "no shared consumer in Broadcast mode"
    );
    for name in &expected {
        let info = s
            .broker
            .consumer_info(&s.stream("prices"), name)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            info.config.filter_subjects,
            [format!("{}.prices.price.changed", s.ns.name)]
        );
        assert_eq!(info.config.inactive_threshold, Duration::ZERO);
    }

    // Every pod's consumer receives every matching event.
    publish(
        &s,
        "prices",
        &["price.changed", "stock.changed", "price.changed"],
    )
    .await;
    for name in &expected {
        let subjects = read_as_worker(&s, "prices", name, 10).await;
        assert_eq!(
            subjects,
            [
                format!("{}.prices.price.changed", s.ns.name),
                format!("{}.prices.price.changed", s.ns.name)
            ],
            "{name}"
        );
    }

    // A pod that goes away takes its consumer with it.
    s.subscription("cache", &spec(1)).await;
    let (remaining, left) = wait_until("one pod and one consumer left", || async {
        let pods = worker_pods(&s, "cache").await;
        let left = consumers_with_prefix(&s, "prices", &prefix).await;
        (pods.len() == 1 && left.len() == 1).then_some((pods, left))
    })
    .await;
    assert_eq!(left, [format!("{prefix}{}", remaining[0])]);
    let events = events_for(&s.client, &s.ns.name, "cache").await;
    assert!(
        events
            .iter()
            .any(|(_, _, note)| note.contains("its worker pod is gone")),
        "{events:?}"
    );

    // Deleting the Subscription leaves no consumer behind.
    s.subscriptions
        .delete("cache", &DeleteParams::default())
        .await
        .unwrap();
    wait_until_deleted(&s.subscriptions, "cache").await;
    assert_eq!(
        consumers_with_prefix(&s, "prices", &s.consumer("cache")).await,
        Vec::<String>::new()
    );
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn autoscaling_follows_the_backlog_and_scales_back_after_the_window_without_flapping() {
    use k8s_openapi::api::apps::v1::Deployment;
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "sub-autoscale").await;
    let addr = free_addr();
    let s = Setup {
        topics: Api::namespaced(client.clone(), &ns.name),
        subscriptions: Api::namespaced(client.clone(), &ns.name),
        broker: broker(&nats_url()).await,
        operator: Operator::start_with(&client, &ns.name, &nats_url(), |c| {
            c.autoscale_interval = Duration::from_millis(500);
            c.http_addr = Some(addr);
        }),
        client,
        ns,
    };
    let deployments: Api<Deployment> = Api::namespaced(s.client.clone(), &s.ns.name);
    let replicas = || async {
        deployments
            .get_opt("resize-worker")
            .await
            .ok()
            .flatten()
            .and_then(|d| d.spec.replicas)
    };
    s.topic("orders", "  maxAge: 1h\n").await;
    s.subscription(
        "resize",
        "  topicRef: {name: orders}\n  worker:\n    image: acme/handler:1\n    autoscaling: {minReplicas: 0, maxReplicas: 3, lagPerReplica: 10, stabilizationWindow: 8s}\n",
    )
    .await;
    let idle = s.ready("resize").await;
    assert_eq!(idle.status.as_ref().unwrap().desired_workers, Some(0));
    assert_eq!(replicas().await, Some(0), "no lag, no pods");

    // A backlog of 25 events wants ceil(25 / 10) = 3 pods, from zero.
    let types = ["order.placed"; 25];
    publish(&s, "orders", &types).await;
    wait_until("three worker pods wanted", || async {
        (replicas().await == Some(3)).then_some(())
    })
    .await;
    let scaled = wait_until("the status to explain the count", || async {
        let sub = s.subscriptions.get("resize").await.ok()?;
        let status = sub.status.clone()?;
        (status.desired_workers == Some(3)).then_some(status)
    })
    .await;
    // The lag loop may read the backlog while it is still being published (21 to 25 events
    // already want 3 pods; fewer, 2 on the way).
    let reason = scaled.scaling.clone().unwrap_or_default();
    assert!(
        reason.starts_with("lag 2") && reason.ends_with(" needs 3 pods at lagPerReplica 10"),
        "{reason}"
    );
    assert!(scaled.last_scale_time.is_some());
    // Kubernetes folds repeated Events of one reason into a series keeping the first note.
    let events = events_for(&s.client, &s.ns.name, "resize").await;
    assert!(
        events
            .iter()
            .any(|(_, reason, note)| reason == "WorkersScaled"
                && note.starts_with("scaled Deployment resize-worker from 0 to ")),
        "{events:?}"
    );

    // Drained by a plain client: the count holds through the stabilization window, then
    // drops straight to minReplicas, with nothing in between.
    let drained = read_as_worker(&s, "orders", &s.consumer("resize"), 100).await;
    assert_eq!(drained.len(), 25);
    let drained_at = std::time::Instant::now();
    let mut seen = vec![3];
    let dropped_after = loop {
        let now = replicas().await.expect("the Deployment stays");
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        if now == 0 {
            break drained_at.elapsed();
        }
        assert!(
            drained_at.elapsed() < Duration::from_secs(60),
            "still {now} pods a minute after draining"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(seen, [3, 0], "one step down, no flapping");
    // The window (8 s) counts from the last reading that still saw the backlog, which is at
    // most one reading interval (0.5 s) before the drain finished.
    assert!(
        dropped_after >= Duration::from_millis(7_500),
        "scaled down {dropped_after:?} after draining, inside the 8 s window"
    );
    let settled = wait_until("the status to follow", || async {
        let sub = s.subscriptions.get("resize").await.ok()?;
        let status = sub.status.clone()?;
        (status.desired_workers == Some(0) && status.available_workers == Some(0)).then_some(status)
    })
    .await;
    assert_eq!(
        settled.scaling.as_deref(),
        Some("lag 0 needs 0 pods at lagPerReplica 10")
    );

    // Idle again: resyncs (every 2 s here) write nothing, the Deployment included.
    let writes = || async {
        let (_, body) = http_get(addr, "/metrics").await.expect("metrics");
        metric(
            &body,
            "switchyard_kube_writes_total",
            &[r#"kind="Subscription""#],
        )
    };
    s.ready("resize").await;
    let before = writes().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (_, body) = http_get(addr, "/metrics").await.expect("metrics");
    assert_eq!(
        writes().await,
        before,
        "no writes while nothing changes: {}",
        body.lines()
            .filter(|l| l.starts_with("switchyard_kube_writes_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    s.operator.assert_alive();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_topic_is_reported_on_its_subscriptions() {
    let s = setup("sub-topic-gone").await;
    s.topic("orders", "  maxAge: 1h\n").await;
    s.subscription("billing", "  topicRef: {name: orders}\n")
        .await;
    s.ready("billing").await;
    s.topics
        .delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    let gone = wait_for_ready(&s.subscriptions, "billing", "False", "TopicNotFound").await;
    let message = ready_of(&gone).unwrap().2;
    assert!(
        message.contains("was deleted while this Subscription read it"),
        "{message}"
    );
    let events = events_for(&s.client, &s.ns.name, "billing").await;
    assert!(
        events
            .iter()
            .any(|(kind, reason, _)| kind == "Warning" && reason == "TopicDeleted"),
        "{events:?}"
    );
    // The Topic returns (its stream was retained): Ready again by itself.
    s.topic("orders", "  maxAge: 1h\n").await;
    s.ready("billing").await;
}
