//! Pruning: the broker objects Switchyard made for the set's namespaces that the set no longer
//! names, found by the owner their metadata records ([`crate::naming::metadata::OWNER`]), so
//! nothing made by hand (or by another tool) is touched. Streams of Topics and managed
//! dead-letter streams go with their events and consumers; consumers of Subscriptions that are
//! gone (or read another Topic now) go from the streams that stay. Registered schema versions
//! are permanent and never pruned.

use async_nats::jetstream::stream::Info as StreamInfo;

use super::{
    manifests::Manifests,
    plan::{ObjectRef, Step, Target, Work},
};
use crate::{
    broker::{Broker, BrokerError},
    naming::{self, metadata},
};

/// The delete steps for `manifests`' namespaces.
pub async fn steps(broker: &Broker, manifests: &Manifests) -> Result<Vec<Step>, BrokerError> {
    let names = broker.stream_names().await?;
    let mut consumer_steps = Vec::new();
    let mut stream_steps = Vec::new();
    for namespace in manifests.namespaces() {
        let prefix = format!("{namespace}_");
        let mut streams: Vec<&String> = names.iter().filter(|n| n.starts_with(&prefix)).collect();
        streams.sort();
        for stream in streams {
            let Some(info) = broker.stream_info(stream).await? else {
                continue;
            };
            let Some(owner) = owner(&info.config.metadata).filter(|o| o.namespace == namespace)
            else {
                continue;
            };
            if prunes_stream(manifests, &owner) {
                stream_steps.push(delete_stream(owner, &info));
                continue;
            }
            if owner.kind != "Topic" {
                continue;
            }
            let consumer_prefix = format!("sub_{namespace}_");
            let mut consumers: Vec<String> = broker
                .consumer_names(stream)
                .await?
                .into_iter()
                .filter(|n| n.starts_with(&consumer_prefix))
                .collect();
            consumers.sort();
            for consumer in consumers {
                let Some(found) = broker.consumer_info(stream, &consumer).await? else {
                    continue;
                };
                let Some(subscription) =
                    owner_of_kind(&found.config.metadata, "Subscription", &namespace)
                else {
                    continue;
                };
                if let Some(why) = prunes_consumer(manifests, &subscription, &owner.name) {
                    consumer_steps.push(Step::delete(
                        subscription,
                        Target::Consumer {
                            stream: stream.clone(),
                            name: consumer.clone(),
                        },
                        why,
                        Work::DeleteConsumer {
                            stream: stream.clone(),
                            name: consumer,
                        },
                    ));
                }
            }
        }
    }
    // Consumers first: deleting a stream takes its consumers with it.
    consumer_steps.extend(stream_steps);
    Ok(consumer_steps)
}

/// The object a broker object's metadata names as owner.
fn owner(metadata: &std::collections::HashMap<String, String>) -> Option<ObjectRef> {
    let (kind, namespace, name) = naming::owner_of(metadata.get(metadata::OWNER)?)?;
    Some(ObjectRef {
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    })
}

fn owner_of_kind(
    metadata: &std::collections::HashMap<String, String>,
    kind: &str,
    namespace: &str,
) -> Option<ObjectRef> {
    owner(metadata).filter(|o| o.kind == kind && o.namespace == namespace)
}

/// Whether a stream owned by `owner` is no longer asked for. Pure.
pub fn prunes_stream(manifests: &Manifests, owner: &ObjectRef) -> bool {
    match owner.kind.as_str() {
        "Topic" => manifests.topic(&owner.namespace, &owner.name).is_none(),
        // A policy that now targets a Topic has no managed stream any more.
        "DeadLetterPolicy" => manifests
            .policy(&owner.namespace, &owner.name)
            .is_none_or(|p| p.spec.target.topic_ref.is_some()),
        _ => false,
    }
}

/// Why a consumer of `subscription` on the stream of Topic `topic` is no longer asked for, if
/// it is not. Pure.
pub fn prunes_consumer(
    manifests: &Manifests,
    subscription: &ObjectRef,
    topic: &str,
) -> Option<String> {
    match manifests.subscription(&subscription.namespace, &subscription.name) {
        None => Some(format!(
            "Subscription {} is not among the manifests any more",
            subscription.name
        )),
        Some(sub) if sub.spec.topic_ref.name != topic => Some(format!(
            "Subscription {} reads Topic {} now, not {topic}",
            subscription.name, sub.spec.topic_ref.name
        )),
        Some(_) => None,
    }
}

fn delete_stream(owner: ObjectRef, info: &StreamInfo) -> Step {
    let what = if owner.kind == "Topic" {
        "Topic"
    } else {
        "DeadLetterPolicy (with a managed target)"
    };
    let message = format!(
        "{what} {} is not among the manifests any more; its {} messages ({} bytes) and {} consumers go with the stream",
        owner.name, info.state.messages, info.state.bytes, info.state.consumer_count
    );
    let name = info.config.name.clone();
    Step::delete(
        owner,
        Target::Stream { name: name.clone() },
        message,
        Work::DeleteStream { name },
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn manifests() -> Manifests {
        let object = |kind: &str, name: &str, spec: serde_json::Value| {
            (
                kind.to_string(),
                json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": kind,
                       "metadata": {"name": name, "namespace": "shop"}, "spec": spec}),
            )
        };
        Manifests::from_values([
            object("Topic", "orders", json!({})),
            object(
                "Subscription",
                "billing",
                json!({"topicRef": {"name": "orders"}}),
            ),
            object("DeadLetterPolicy", "managed", json!({})),
            object(
                "DeadLetterPolicy",
                "to-topic",
                json!({"target": {"topicRef": {"name": "orders"}}}),
            ),
        ])
        .unwrap()
    }

    fn of(kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind: kind.into(),
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    #[test]
    fn streams_go_when_their_owner_left_the_set() {
        let set = manifests();
        assert!(!prunes_stream(&set, &of("Topic", "orders")));
        assert!(prunes_stream(&set, &of("Topic", "users")));
        assert!(!prunes_stream(&set, &of("DeadLetterPolicy", "managed")));
        assert!(prunes_stream(&set, &of("DeadLetterPolicy", "to-topic")));
        assert!(prunes_stream(&set, &of("DeadLetterPolicy", "gone")));
        assert!(!prunes_stream(&set, &of("Queue", "orders")));
    }

    #[test]
    fn consumers_go_when_their_subscription_left_or_moved() {
        let set = manifests();
        assert_eq!(
            prunes_consumer(&set, &of("Subscription", "billing"), "orders"),
            None
        );
        assert!(
            prunes_consumer(&set, &of("Subscription", "billing"), "users")
                .unwrap()
                .contains("reads Topic orders now")
        );
        assert!(prunes_consumer(&set, &of("Subscription", "mail"), "orders").is_some());
    }

    #[test]
    fn owners_are_read_from_metadata() {
        let metadata = std::collections::HashMap::from([(
            metadata::OWNER.to_string(),
            "Subscription/shop/billing".to_string(),
        )]);
        assert_eq!(
            owner_of_kind(&metadata, "Subscription", "shop"),
            Some(of("Subscription", "billing"))
        );
        assert_eq!(owner_of_kind(&metadata, "Subscription", "other"), None);
        assert_eq!(owner_of_kind(&metadata, "Topic", "shop"), None);
    }
}
