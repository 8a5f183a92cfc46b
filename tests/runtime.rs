//! The shared controller runtime against a real kube-apiserver and nats-server: quiet status
//! under traffic, retries when the API server goes away.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use switchyard::api::Topic;

#[tokio::test(flavor = "multi_thread")]
async fn busy_topic_writes_its_status_at_most_once_per_resync() {
    const RESYNC: Duration = Duration::from_secs(5);
    const TRAFFIC: Duration = Duration::from_secs(15);
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "busy").await;
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    let _operator = Operator::start_with(&client, &ns.name, &nats_url(), |c| {
        c.resync_interval = RESYNC;
    });
    apply_topic(&topics, &topic_yaml(&ns.name, "clicks", "  maxAge: 1h\n"))
        .await
        .unwrap();
    wait_for_ready(&topics, "clicks", "True", "StreamReady").await;

    // Every status write is a new resourceVersion; count them while events flow.
    let versions = {
        let stream = watcher(
            topics.clone(),
            watcher::Config::default().fields("metadata.name=clicks"),
        )
        .applied_objects();
        tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            let deadline = tokio::time::sleep(TRAFFIC);
            tokio::pin!(deadline, stream);
            loop {
                tokio::select! {
                    () = &mut deadline => return seen,
                    next = stream.next() => match next {
                        Some(Ok(topic)) => { seen.insert(topic.metadata.resource_version.unwrap()); }
                        Some(Err(_)) => {}
                        None => return seen,
                    },
                }
            }
        })
    };
    let broker = broker(&nats_url()).await;
    let subject = format!("{}.clicks.page.viewed", ns.name);
    let started = Instant::now();
    let mut published = 0u64;
    while started.elapsed() < TRAFFIC {
        let acks: Vec<_> = futures::future::join_all((0..50).map(|i| {
            broker
                .jetstream()
                .publish(subject.clone(), format!("click {i}").into())
        }))
        .await;
        for ack in acks {
            ack.expect("publish").await.expect("publish ack");
            published += 1;
        }
    }
    let versions = versions.await.unwrap();
    // The first version seen is the one the watch started from.
    let writes = versions.len().saturating_sub(1);
    let allowed = (TRAFFIC.as_secs() / RESYNC.as_secs()) as usize + 1;
    assert!(
        published > 1000,
        "traffic too thin to mean anything: {published}"
    );
    assert!(
        writes <= allowed,
        "{writes} status writes in {TRAFFIC:?} with a {RESYNC:?} resync (at most {allowed} allowed)"
    );
    // Figures still refresh: within one more resync the status shows every event.
    wait_for(&topics, "clicks", "status.messages to catch up", |t| {
        t.status.as_ref().and_then(|s| s.messages) == Some(published as i64)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_api_server_is_retried_with_growing_jittered_delays() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "apidown").await;
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    let proxy = ApiProxy::start(ApiProxy::api_server_addr().await).await;
    let addr = free_addr();
    let _operator = Operator::start_with(&proxy.client().await, &ns.name, &nats_url(), |c| {
        c.resync_interval = Duration::from_secs(1);
        c.retry_initial_delay = Duration::from_millis(400);
        c.retry_max_delay = Duration::from_secs(30);
        c.http_addr = Some(addr);
    });
    apply_topic(&topics, &topic_yaml(&ns.name, "ledger", "  maxAge: 1h\n"))
        .await
        .unwrap();
    wait_for_ready(&topics, "ledger", "True", "StreamReady").await;

    // With the API server gone, new figures make every resync try (and fail) a status write.
    proxy.set_up(false);
    let broker = broker(&nats_url()).await;
    for i in 0..5 {
        broker
            .jetstream()
            .publish(
                format!("{}.ledger.entry.booked", ns.name),
                format!("{i}").into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (_, text) = wait_until("/metrics", || http_get(addr, "/metrics")).await;
    let errors = metric(
        &text,
        "switchyard_reconcile_errors_total",
        &[r#"kind="Topic""#, r#"category="kube""#],
    );
    let retries = metric(
        &text,
        "switchyard_retry_delay_seconds_count",
        &[r#"kind="Topic""#],
    );
    let short = metric(
        &text,
        "switchyard_retry_delay_seconds_bucket",
        &[r#"kind="Topic""#, r#"le="1.0""#],
    );
    let longest_sum = metric(
        &text,
        "switchyard_retry_delay_seconds_sum",
        &[r#"kind="Topic""#],
    );
    assert!(errors >= 3.0, "failed reconciles counted: {errors}\n{text}");
    assert!(
        retries >= errors,
        "every failure earned a delay: {retries} < {errors}"
    );
    // 0.4 s doubling: the first delays fit under 1 s, later ones do not.
    assert!(
        short >= 1.0 && short < retries,
        "delays did not grow: {short} of {retries} ≤ 1 s\n{text}"
    );
    // A fixed 0.4 s delay would sum to 0.4 per retry; growth makes the average larger.
    assert!(
        longest_sum / retries > 0.5,
        "average delay {}",
        longest_sum / retries
    );

    proxy.set_up(true);
    wait_for(
        &topics,
        "ledger",
        "status.messages after the API server is back",
        |t| t.status.as_ref().and_then(|s| s.messages) == Some(5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_stops_promptly_whenever_it_is_asked_to() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "stop").await;
    // Right after the start (watches still listing), and once settled with objects to watch.
    for settle in [0, 50, 200, 1_000, 3_000] {
        if settle == 1_000 {
            let topics: kube::Api<switchyard::api::Topic> =
                kube::Api::namespaced(client.clone(), &ns.name);
            apply_topic(&topics, &topic_yaml(&ns.name, "orders", "  maxAge: 1h\n"))
                .await
                .expect("apply Topic");
        }
        let operator = Operator::start(&client, &ns.name, &nats_url());
        tokio::time::sleep(Duration::from_millis(settle)).await;
        let stopped = tokio::time::timeout(Duration::from_secs(10), operator.stop()).await;
        assert!(
            stopped.is_ok(),
            "the operator did not stop within 10 s when asked {settle} ms after its start"
        );
    }
}
