//! The Switchyard objects of a set of manifests, typed. Pure.

use std::collections::BTreeSet;

use kube::ResourceExt;
use serde_json::Value;

use crate::api::{DeadLetterPolicy, EventSchema, Subscription, Topic};

/// The objects of a set, by kind, in the order they were read.
#[derive(Clone, Debug, Default)]
pub struct Manifests {
    pub topics: Vec<Topic>,
    pub subscriptions: Vec<Subscription>,
    pub policies: Vec<DeadLetterPolicy>,
    /// Several versions of one EventSchema may be in a set: the history of its event type.
    pub schemas: Vec<EventSchema>,
}

impl Manifests {
    /// The set of `(kind, object)` pairs, each object with its `metadata.namespace` filled in.
    /// Objects of other kinds are left out. The error names each object that cannot be read.
    pub fn from_values(objects: impl IntoIterator<Item = (String, Value)>) -> Result<Self, String> {
        let mut manifests = Self::default();
        let mut problems = Vec::new();
        for (kind, value) in objects {
            let name = value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let read = match kind.as_str() {
                "Topic" => serde_json::from_value(value).map(|o| manifests.topics.push(o)),
                "Subscription" => {
                    serde_json::from_value(value).map(|o| manifests.subscriptions.push(o))
                }
                "DeadLetterPolicy" => {
                    serde_json::from_value(value).map(|o| manifests.policies.push(o))
                }
                "EventSchema" => serde_json::from_value(value).map(|o| manifests.schemas.push(o)),
                _ => Ok(()),
            };
            if let Err(e) = read {
                problems.push(format!("{kind} {name} cannot be read: {e}"));
            }
        }
        if problems.is_empty() {
            Ok(manifests)
        } else {
            Err(problems.join("; "))
        }
    }

    pub fn topic(&self, namespace: &str, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|o| is(*o, namespace, name))
    }

    pub fn policy(&self, namespace: &str, name: &str) -> Option<&DeadLetterPolicy> {
        self.policies.iter().find(|o| is(*o, namespace, name))
    }

    /// The EventSchema of that name; of several versions, the highest.
    pub fn schema(&self, namespace: &str, name: &str) -> Option<&EventSchema> {
        self.schemas
            .iter()
            .filter(|o| is(*o, namespace, name))
            .max_by_key(|o| o.spec.version)
    }

    pub fn subscription(&self, namespace: &str, name: &str) -> Option<&Subscription> {
        self.subscriptions.iter().find(|o| is(*o, namespace, name))
    }

    /// The Subscriptions of a namespace.
    pub fn subscriptions_in(&self, namespace: &str) -> Vec<Subscription> {
        self.subscriptions
            .iter()
            .filter(|o| o.namespace().as_deref() == Some(namespace))
            .cloned()
            .collect()
    }

    /// The namespaces the set's objects are in.
    pub fn namespaces(&self) -> BTreeSet<String> {
        let topics = self.topics.iter().map(ResourceExt::namespace);
        let subscriptions = self.subscriptions.iter().map(ResourceExt::namespace);
        let policies = self.policies.iter().map(ResourceExt::namespace);
        let schemas = self.schemas.iter().map(ResourceExt::namespace);
        topics
            .chain(subscriptions)
            .chain(policies)
            .chain(schemas)
            .flatten()
            .collect()
    }
}

fn is<K: ResourceExt>(object: &K, namespace: &str, name: &str) -> bool {
    object.namespace().as_deref() == Some(namespace) && object.name_any() == name
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(kind: &str, namespace: &str, name: &str, spec: Value) -> (String, Value) {
        (
            kind.into(),
            json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": kind,
                   "metadata": {"name": name, "namespace": namespace}, "spec": spec}),
        )
    }

    #[test]
    fn objects_are_found_by_namespace_and_name_and_schemas_by_their_highest_version() {
        let schema = |version| json!({"eventType": "order.placed", "version": version, "schema": {"type": "object"}});
        let manifests = Manifests::from_values([
            object("Topic", "shop", "orders", json!({})),
            object("Topic", "ops", "orders", json!({"maxAge": "1h"})),
            object(
                "Subscription",
                "shop",
                "billing",
                json!({"topicRef": {"name": "orders"}}),
            ),
            object("EventSchema", "shop", "order-placed", schema(1)),
            object("EventSchema", "shop", "order-placed", schema(3)),
            object("DeadLetterPolicy", "shop", "failures", json!({})),
        ])
        .unwrap();
        assert!(
            manifests
                .topic("ops", "orders")
                .unwrap()
                .spec
                .max_age
                .is_some()
        );
        assert!(
            manifests
                .topic("shop", "orders")
                .unwrap()
                .spec
                .max_age
                .is_none()
        );
        assert_eq!(
            manifests
                .schema("shop", "order-placed")
                .unwrap()
                .spec
                .version,
            3
        );
        assert!(manifests.policy("shop", "failures").is_some());
        assert_eq!(manifests.subscriptions_in("shop").len(), 1);
        assert!(manifests.subscriptions_in("ops").is_empty());
        assert_eq!(
            manifests.namespaces().into_iter().collect::<Vec<_>>(),
            ["ops", "shop"]
        );
    }

    #[test]
    fn an_object_that_cannot_be_read_is_named() {
        let error = Manifests::from_values([object(
            "Subscription",
            "shop",
            "billing",
            json!({"topicRef": 7}),
        )])
        .unwrap_err();
        assert!(
            error.starts_with("Subscription billing cannot be read"),
            "{error}"
        );
    }
}
