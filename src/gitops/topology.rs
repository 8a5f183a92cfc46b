//! The live topology, from NATS alone: the streams Switchyard made for Topics and
//! DeadLetterPolicies, the consumers it made for Subscriptions, and the registered schema
//! versions. Each broker object is attributed to its object by the owner its metadata records;
//! the figures are projected by the same pure functions that fill the objects' status in
//! Kubernetes, so `switchyard status` shows what `kubectl get switchyard` would.

use std::collections::BTreeMap;

use async_nats::jetstream::{consumer::Info as ConsumerInfo, stream::Info as StreamInfo};
use serde::Serialize;

use crate::{
    api::{DeadLetterPolicyStatus, SubscriptionStatus, TopicStatus},
    broker::{Broker, BrokerError},
    naming::{self, metadata},
    reconcile::{
        dead_letter_policy, subscription::status::ConsumerLayout, topic,
        topic::stream_config::partitions_of,
    },
    registry::{Latest, Registry},
};

/// What runs on the broker.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    pub topics: Vec<TopicFigures>,
    pub subscriptions: Vec<SubscriptionFigures>,
    pub dead_letters: Vec<DeadLetterFigures>,
    pub schemas: Vec<SchemaFigures>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicFigures {
    pub namespace: String,
    pub name: String,
    pub stream: String,
    pub subjects: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    pub messages: i64,
    pub bytes: i64,
    pub consumers: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionFigures {
    pub namespace: String,
    pub name: String,
    /// The Topic whose stream the consumers read.
    pub topic: String,
    pub stream: String,
    pub consumers: Vec<String>,
    /// As the Subscription's status counts them: per-partition consumers add up, per-pod
    /// ones show the one furthest behind. Lag is pending plus unacknowledged.
    pub pending: i64,
    pub ack_pending: i64,
    pub redelivered: i64,
    pub lag: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterFigures {
    pub namespace: String,
    /// The DeadLetterPolicy whose managed stream this is.
    pub policy: String,
    pub stream: String,
    pub dead_letters: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_dead_letter_time: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaFigures {
    pub namespace: String,
    pub event_type: String,
    pub latest_version: i64,
    pub versions: Vec<i64>,
    pub fingerprint: String,
    pub registered_by: String,
}

/// Reads the topology of `namespace` (every namespace when `None`). Writes nothing.
pub async fn topology(broker: &Broker, namespace: Option<&str>) -> Result<Topology, BrokerError> {
    let prefix = namespace.map(|ns| format!("{ns}_"));
    let mut names = broker.stream_names().await?;
    names.retain(|n| prefix.as_ref().is_none_or(|p| n.starts_with(p)));
    names.sort();
    let mut streams = Vec::new();
    let mut consumers = Vec::new();
    for name in names {
        let Some(info) = broker.stream_info(&name).await? else {
            continue;
        };
        let Some((kind, owner_namespace, _)) = owner(&info) else {
            continue;
        };
        if namespace.is_some_and(|ns| ns != owner_namespace) {
            continue;
        }
        if kind == "Topic" {
            let consumer_prefix = format!("sub_{owner_namespace}_");
            let mut found: Vec<String> = broker
                .consumer_names(&name)
                .await?
                .into_iter()
                .filter(|c| c.starts_with(&consumer_prefix))
                .collect();
            found.sort();
            for consumer in found {
                if let Some(info) = broker.consumer_info(&name, &consumer).await? {
                    consumers.push(info);
                }
            }
        }
        streams.push(info);
    }
    let schemas = match Registry::open_existing(broker).await? {
        Some(registry) => schemas(&registry, namespace).await?,
        None => Vec::new(),
    };
    Ok(assemble(&streams, &consumers, schemas))
}

/// The latest pointer of every event type (of `namespace`) in the registry.
async fn schemas(
    registry: &Registry,
    namespace: Option<&str>,
) -> Result<Vec<(String, Latest)>, BrokerError> {
    let mut keys = registry.kv().keys().await?;
    keys.sort();
    let mut latest = Vec::new();
    for key in keys {
        let Some((key_namespace, event_type)) = key
            .strip_suffix(".latest")
            .and_then(|rest| rest.split_once('.'))
        else {
            continue;
        };
        if namespace.is_some_and(|ns| ns != key_namespace) {
            continue;
        }
        if let Some((pointer, _)) = registry
            .holding(key_namespace, event_type, false)
            .await?
            .latest
        {
            latest.push((key_namespace.to_string(), pointer));
        }
    }
    Ok(latest)
}

fn owner(info: &StreamInfo) -> Option<(&str, &str, &str)> {
    naming::owner_of(info.config.metadata.get(metadata::OWNER)?)
}

/// The topology from what the broker reported: streams attributed to their Topic or
/// DeadLetterPolicy, consumers grouped by Subscription, figures as the status shows them. Pure.
pub fn assemble(
    streams: &[StreamInfo],
    consumers: &[ConsumerInfo],
    schemas: Vec<(String, Latest)>,
) -> Topology {
    let mut topology = Topology::default();
    let mut topic_of_stream = BTreeMap::new();
    for info in streams {
        let Some((kind, namespace, name)) = owner(info) else {
            continue;
        };
        let stream = &info.config.name;
        match kind {
            "Topic" => {
                let mut status = TopicStatus::default();
                topic::status::project(&mut status, stream, Some(info));
                topic_of_stream.insert(stream.clone(), name.to_string());
                topology.topics.push(TopicFigures {
                    namespace: namespace.into(),
                    name: name.into(),
                    stream: stream.clone(),
                    subjects: info.config.subjects.clone(),
                    partitions: partitions_of(info.config.subject_transform.as_ref()),
                    messages: status.messages.unwrap_or_default(),
                    bytes: status.bytes.unwrap_or_default(),
                    consumers: status.consumer_count.unwrap_or_default(),
                });
            }
            "DeadLetterPolicy" => {
                let mut status = DeadLetterPolicyStatus::default();
                dead_letter_policy::status::project(&mut status, stream, Some(info));
                topology.dead_letters.push(DeadLetterFigures {
                    namespace: namespace.into(),
                    policy: name.into(),
                    stream: stream.clone(),
                    dead_letters: status.dead_letters.unwrap_or_default(),
                    last_dead_letter_time: status.last_dead_letter_time.map(|t| t.0.to_string()),
                });
            }
            _ => {}
        }
    }
    // (namespace, Subscription) → its consumers, in name order.
    let mut by_subscription: BTreeMap<(String, String), Vec<&ConsumerInfo>> = BTreeMap::new();
    for info in consumers {
        let Some(("Subscription", namespace, name)) = info
            .config
            .metadata
            .get(metadata::OWNER)
            .and_then(|o| naming::owner_of(o))
        else {
            continue;
        };
        by_subscription
            .entry((namespace.to_string(), name.to_string()))
            .or_default()
            .push(info);
    }
    for ((namespace, name), infos) in by_subscription {
        let stream = infos[0].stream_name.clone();
        let base = naming::subscription_consumer_name(&namespace, &name);
        let prefix = naming::per_pod_consumer_prefix(&base);
        let has = |key: &str| infos.iter().any(|i| i.config.metadata.contains_key(key));
        let layout = if has(metadata::PARTITION) {
            ConsumerLayout::PerPartition { prefix: &prefix }
        } else if has(metadata::POD) {
            ConsumerLayout::PerPod { prefix: &prefix }
        } else {
            ConsumerLayout::Shared(&base)
        };
        let owned: Vec<ConsumerInfo> = infos.iter().map(|i| (*i).clone()).collect();
        let mut status = SubscriptionStatus::default();
        crate::reconcile::subscription::status::project(&mut status, layout, Some(&owned));
        topology.subscriptions.push(SubscriptionFigures {
            topic: topic_of_stream.get(&stream).cloned().unwrap_or_default(),
            namespace,
            name,
            stream,
            consumers: infos.iter().map(|i| i.name.clone()).collect(),
            pending: status.pending.unwrap_or_default(),
            ack_pending: status.ack_pending.unwrap_or_default(),
            redelivered: status.redelivered.unwrap_or_default(),
            lag: status.lag.unwrap_or_default(),
        });
    }
    for (namespace, latest) in schemas {
        topology.schemas.push(SchemaFigures {
            namespace,
            event_type: latest.record.event_type.clone(),
            latest_version: latest.record.version,
            versions: latest.versions.clone(),
            fingerprint: latest.record.fingerprint.clone(),
            registered_by: latest.record.registered_by.clone(),
        });
    }
    topology
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stream(name: &str, owner: &str, messages: u64) -> StreamInfo {
        let config = async_nats::jetstream::stream::Config {
            name: name.into(),
            subjects: vec![format!("{name}.>")],
            metadata: [
                (metadata::OWNER.to_string(), owner.to_string()),
                ("_nats.ver".to_string(), "2.15.2".to_string()),
            ]
            .into(),
            ..Default::default()
        };
        serde_json::from_value(json!({
            "config": config,
            "created": "2026-11-24T00:00:00Z",
            "state": {"messages": messages, "bytes": 100 * messages, "first_seq": 1,
                      "last_seq": messages, "first_ts": "2026-11-24T00:00:00Z",
                      "last_ts": "2026-11-24T00:00:00Z", "consumer_count": 1}
        }))
        .unwrap()
    }

    fn consumer(
        stream: &str,
        name: &str,
        owner: &str,
        extra: (&str, &str),
        pending: u64,
    ) -> ConsumerInfo {
        serde_json::from_value(json!({
            "type": "io.nats.jetstream.api.v1.consumer_info_response",
            "stream_name": stream, "name": name, "created": "2026-11-24T00:00:00Z",
            "config": {"durable_name": name, "ack_policy": "explicit", "deliver_policy": "all",
                       "replay_policy": "instant",
                       "metadata": {"switchyard.dev/owner": owner, extra.0: extra.1}},
            "delivered": {"consumer_seq": 0, "stream_seq": 0},
            "ack_floor": {"consumer_seq": 0, "stream_seq": 0},
            "num_ack_pending": 1, "num_redelivered": 0, "num_waiting": 0, "num_pending": pending,
            "cluster": null, "push_bound": false
        }))
        .unwrap()
    }

    #[test]
    fn broker_objects_are_attributed_to_their_owners_and_figured_as_the_status_does() {
        let streams = [
            stream("shop_orders", "Topic/shop/orders", 3),
            stream("shop_failures_dlq", "DeadLetterPolicy/shop/failures", 2),
            stream("by_hand", "someone", 9),
        ];
        let consumers = [
            consumer(
                "shop_orders",
                "sub_shop_billing",
                "Subscription/shop/billing",
                ("x", "y"),
                3,
            ),
            consumer(
                "shop_orders",
                "sub_shop_audit_p0",
                "Subscription/shop/audit",
                (metadata::PARTITION, "0"),
                2,
            ),
            consumer(
                "shop_orders",
                "sub_shop_audit_p1",
                "Subscription/shop/audit",
                (metadata::PARTITION, "1"),
                4,
            ),
            consumer("shop_orders", "sub_shop_x", "nobody", ("x", "y"), 1),
        ];
        let topology = assemble(&streams, &consumers, Vec::new());
        assert_eq!(topology.topics.len(), 1);
        let orders = &topology.topics[0];
        assert_eq!(
            (orders.name.as_str(), orders.messages, orders.bytes),
            ("orders", 3, 300)
        );
        assert_eq!(topology.dead_letters.len(), 1);
        assert_eq!(topology.dead_letters[0].dead_letters, 2);
        assert_eq!(topology.dead_letters[0].policy, "failures");
        let subs: Vec<(&str, &str, i64, i64)> = topology
            .subscriptions
            .iter()
            .map(|s| (s.name.as_str(), s.topic.as_str(), s.pending, s.lag))
            .collect();
        assert_eq!(
            subs,
            [("audit", "orders", 6, 8), ("billing", "orders", 3, 4)]
        );
        assert_eq!(
            topology.subscriptions[0].consumers,
            ["sub_shop_audit_p0", "sub_shop_audit_p1"]
        );
    }
}
