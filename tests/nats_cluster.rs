//! Topics on a 3-node JetStream cluster (one the test owns, so it can kill nodes), against a
//! real kube-apiserver: an R3 Topic shows where its replicas are and whether they keep up; a
//! node lost and back is reported and healed; the stream leader's node lost makes the operator
//! neither see drift nor write the stream.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{nats_cluster::NatsCluster, *};
use kube::{Api, api::DeleteParams};
use switchyard::api::{Topic, TopicReplication};

/// The Replicated condition as (status, reason, message).
fn replicated(topic: &Topic) -> Option<(String, String, String)> {
    condition_of(topic, "Replicated")
}

/// Where the Topic's status says its replicas are.
fn replication(topic: &Topic) -> TopicReplication {
    let status = topic.status.as_ref().expect("a status");
    status.replication.clone().expect("status.replication")
}

/// The stream's leader, as the cluster reports it now.
async fn stream_leader(js: &async_nats::jetstream::Context, stream: &str) -> String {
    wait_until(&format!("a leader for stream {stream}"), || async {
        let mut stream = js.get_stream(stream).await.ok()?;
        let info = stream.info().await.ok()?;
        info.cluster.as_ref()?.leader.clone()
    })
    .await
}

/// Records every Ready the Topic shows other than True, from when it is called until dropped.
struct ReadyWatch {
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadyWatch {
    fn start(topics: Api<Topic>, name: &str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (record, name) = (seen.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                if let Ok(topic) = topics.get(&name).await
                    && let Some(ready) = ready_of(&topic)
                    && ready.0 != "True"
                {
                    record.lock().unwrap().push(ready);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { seen, task }
    }

    fn not_ready(&self) -> Vec<(String, String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ReadyWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_r3_topic_reports_its_replicas_through_node_losses_and_is_never_rewritten() {
    let mut cluster = NatsCluster::start(3).await;
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "cluster").await;
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    let operator = Operator::start(&client, &ns.name, &cluster.url());
    let stream = switchyard::naming::stream_name(&ns.name, "orders");
    let urls = cluster.url();
    let urls: Vec<&str> = urls.split(',').collect();
    let js = async_nats::jetstream::new(
        async_nats::connect(urls.as_slice())
            .await
            .expect("a client of the cluster"),
    );

    apply_topic(
        &topics,
        &topic_yaml(
            &ns.name,
            "orders",
            "  replicas: 3\n  deletionPolicy: Delete\n",
        ),
    )
    .await
    .expect("an R3 Topic");
    let topic = wait_for(&topics, "orders", "Ready and Replicated", |t| {
        ready_of(t).is_some_and(|r| r.0 == "True") && replicated(t).is_some_and(|r| r.0 == "True")
    })
    .await;
    let (_, reason, message) = replicated(&topic).unwrap();
    assert_eq!(reason, "ReplicasCurrent");
    assert_eq!(
        message,
        format!("3 of 3 replicas current in cluster {}", cluster.name())
    );
    let placement = replication(&topic);
    assert_eq!(placement.cluster, cluster.name());
    let mut nodes = cluster.node_names();
    nodes.sort();
    assert_eq!(placement.peers, nodes);
    assert_eq!(placement.current_replicas, 3);

    // A follower's node dies: Ready stays, Replicated names it, and heals when it is back.
    let watch = ReadyWatch::start(topics.clone(), "orders");
    let leader = stream_leader(&js, &stream).await;
    let follower = (0..3).find(|&i| cluster.node_names()[i] != leader).unwrap();
    let follower_name = cluster.node_names()[follower].clone();
    cluster.kill(follower);
    let degraded = wait_for(
        &topics,
        "orders",
        "Replicated=False naming the lost node",
        |t| replicated(t).is_some_and(|r| r.0 == "False" && r.2.contains(&follower_name)),
    )
    .await;
    let (_, reason, message) = replicated(&degraded).unwrap();
    assert_eq!(reason, "ReplicasBehind", "{message}");
    assert!(message.starts_with("2 of 3 replicas current"), "{message}");
    assert_eq!(replication(&degraded).current_replicas, 2);
    cluster.restart(follower).await;
    wait_for(&topics, "orders", "Replicated again", |t| {
        replicated(t).is_some_and(|r| r.0 == "True")
    })
    .await;
    assert_eq!(
        watch.not_ready(),
        Vec::new(),
        "Ready while a follower was lost"
    );

    // The leader's node dies: a new leader takes over; nothing looks drifted, nothing is written.
    let leader = stream_leader(&js, &stream).await;
    let leader_node = cluster.index_of(&leader);
    cluster.kill(leader_node);
    wait_until("a new stream leader", || async {
        let now = stream_leader(&js, &stream).await;
        (now != leader).then_some(now)
    })
    .await;
    wait_for(
        &topics,
        "orders",
        "Replicated=False naming the old leader",
        |t| replicated(t).is_some_and(|r| r.0 == "False" && r.2.contains(&leader)),
    )
    .await;
    cluster.restart(leader_node).await;
    wait_for(
        &topics,
        "orders",
        "Replicated after the old leader's return",
        |t| replicated(t).is_some_and(|r| r.0 == "True"),
    )
    .await;
    let topic = wait_for_ready(&topics, "orders", "True", "StreamReady").await;
    operator.assert_alive();
    let not_ready = watch.not_ready();
    eprintln!(
        "Ready other than True in {} samples (every 100 ms) through both losses: {:?}",
        not_ready.len(),
        not_ready.first()
    );
    assert!(
        not_ready
            .iter()
            .all(|(_, reason, _)| reason == "BrokerUnavailable"),
        "Ready turned False for another reason than the election: {not_ready:?}"
    );
    let writes: Vec<_> = events_for(&client, &ns.name, "orders")
        .await
        .into_iter()
        .filter(|(_, reason, _)| reason != "StreamCreated")
        .filter(|(_, reason, _)| reason.starts_with("Stream") || reason == "DriftCorrected")
        .collect();
    assert_eq!(
        writes,
        Vec::new(),
        "the stream was written after its creation"
    );
    let info = js
        .get_stream(&stream)
        .await
        .expect("the stream")
        .info()
        .await
        .expect("its info")
        .clone();
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(replication(&topic).peers, nodes);

    topics
        .delete("orders", &DeleteParams::default())
        .await
        .expect("delete the Topic");
    wait_until_deleted(&topics, "orders").await;
    assert!(
        js.get_stream(&stream).await.is_err(),
        "the stream outlived its Topic"
    );
    operator.stop().await;
}
