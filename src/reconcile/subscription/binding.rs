//! Which registered schema a Subscription's events are validated against, and what it brings
//! along. Pure: the Subscription, its Topic and what the registry holds in; the binding (or why
//! there is none) out.
//!
//! A Subscription's schemaRef wins over its Topic's. The EventSchema it names (same namespace)
//! gives the event type; the registry gives the version: the pinned one, or the latest. The
//! dispatchers follow the registry key itself ([`crate::registry::keys::bound_key`]), so a
//! binding to the latest picks up each new version without touching the worker Deployment.

use crate::{
    api::{
        DeadLetterPolicySpec, ObjectRefWithVersion, TopicSpec,
        event_schema::ProcessingDefaults,
        subscription::{BoundSchema, SubscriptionSpec},
    },
    registry::{SchemaRecord, keys::bound_key},
};

use super::consumer_config::RetryDefaults;

/// Where the schemaRef in force is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Subscription,
    Topic,
}

impl Origin {
    /// The field to change, for messages.
    pub fn field(self) -> &'static str {
        match self {
            Self::Subscription => "spec.schemaRef",
            Self::Topic => "the Topic's spec.schemaRef",
        }
    }
}

/// The schemaRef that applies: the Subscription's own, else its Topic's.
pub fn schema_ref<'a>(
    sub: &'a SubscriptionSpec,
    topic: &'a TopicSpec,
) -> Option<(&'a ObjectRefWithVersion, Origin)> {
    match (&sub.schema_ref, &topic.schema_ref) {
        (Some(own), _) => Some((own, Origin::Subscription)),
        (None, Some(topics)) => Some((topics, Origin::Topic)),
        (None, None) => None,
    }
}

/// A Subscription bound to a registered schema version.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// What the status shows.
    pub shown: BoundSchema,
    /// The registry key the dispatchers follow: the pinned version's, or the latest pointer.
    pub key: String,
    /// The processing defaults of the version bound now.
    pub defaults: Option<ProcessingDefaults>,
}

impl Binding {
    /// The binding of `reference` in `namespace` to `record`, the version the registry holds for
    /// it (the pinned one, or the latest).
    pub fn new(namespace: &str, reference: &ObjectRefWithVersion, record: SchemaRecord) -> Self {
        Self {
            key: bound_key(namespace, &record.event_type, reference.version),
            shown: BoundSchema {
                name: reference.name.clone(),
                event_type: record.event_type,
                version: record.version,
                pinned: reference.version.is_some(),
                fingerprint: record.fingerprint,
            },
            defaults: record.defaults,
        }
    }

    /// What the consumer's metadata records of the version its defaults came from.
    pub fn metadata_value(&self) -> String {
        format!("{} v{}", self.shown.event_type, self.shown.version)
    }
}

/// The retry settings a Subscription inherits where it sets none, first to last: its
/// DeadLetterPolicy's, then its bound schema's (whatever neither sets is built in).
pub fn inherited<'a>(
    policy: Option<&'a DeadLetterPolicySpec>,
    schema: Option<&'a Binding>,
) -> Vec<RetryDefaults<'a>> {
    let policy = policy.map(|policy| RetryDefaults {
        max_deliveries: policy.max_deliveries,
        backoff: policy.backoff.as_ref(),
        ack_wait: None,
    });
    let schema = schema
        .and_then(|b| b.defaults.as_ref())
        .map(|defaults| RetryDefaults {
            max_deliveries: defaults.max_deliveries,
            backoff: defaults.backoff.as_ref(),
            ack_wait: defaults.ack_wait.as_ref(),
        });
    policy.into_iter().chain(schema).collect()
}

/// Why a Subscription has no EventSchema to bind to.
pub fn not_found(name: &str, namespace: &str, origin: Origin) -> String {
    format!(
        "EventSchema {name} (named by {}) does not exist in namespace {namespace}; the Subscription becomes Ready by itself once it does",
        origin.field()
    )
}

/// Why the EventSchema named has no registered version to bind to: `pinned` is the version
/// asked for (`None`: the latest), `registered` the versions the registry holds.
pub fn not_registered(
    name: &str,
    event_type: &str,
    origin: Origin,
    pinned: Option<i64>,
    registered: &[i64],
) -> String {
    match pinned {
        None => format!(
            "EventSchema {name} ({event_type}) has no version in the schema registry yet; its status says why (kubectl describe eventschema {name}); the Subscription becomes Ready by itself once a version registers"
        ),
        Some(version) if registered.is_empty() => format!(
            "{} pins version {version} of EventSchema {name} ({event_type}), and no version of it is registered yet; its status says why (kubectl describe eventschema {name})",
            origin.field()
        ),
        Some(version) => format!(
            "{} pins version {version} of EventSchema {name} ({event_type}), which is not registered (registered: {}); apply the EventSchema at version {version}, or pin a registered version",
            origin.field(),
            registered
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::{GoDuration, RetryBackoff, event_schema::Compatibility};

    fn sub(yaml: &str) -> SubscriptionSpec {
        serde_yaml::from_str(&format!("topicRef: {{name: orders}}\n{yaml}")).unwrap()
    }

    fn topic(yaml: &str) -> TopicSpec {
        serde_yaml::from_str(if yaml.is_empty() { "{}" } else { yaml }).unwrap()
    }

    fn record(version: i64, defaults: Option<ProcessingDefaults>) -> SchemaRecord {
        SchemaRecord {
            event_type: "order.placed".into(),
            version,
            compatibility: Compatibility::Backward,
            fingerprint: format!("sha256:{version:064}"),
            schema: json!({"type": "object"}),
            defaults,
            registered_at: "2026-12-05T00:00:00Z".into(),
            registered_by: "shop/order-placed".into(),
        }
    }

    #[test]
    fn the_subscriptions_own_schema_ref_wins_over_the_topics() {
        let own = sub("schemaRef: {name: mine, version: 2}");
        let plain = sub("");
        let with_schema = topic("schemaRef: {name: topics}");
        let (reference, origin) = schema_ref(&own, &with_schema).unwrap();
        assert_eq!(
            (reference.name.as_str(), reference.version, origin),
            ("mine", Some(2), Origin::Subscription)
        );
        let (reference, origin) = schema_ref(&plain, &with_schema).unwrap();
        assert_eq!(
            (reference.name.as_str(), reference.version, origin),
            ("topics", None, Origin::Topic)
        );
        assert!(schema_ref(&plain, &topic("")).is_none());
    }

    #[test]
    fn a_binding_follows_the_latest_key_unless_pinned() {
        let latest = ObjectRefWithVersion {
            name: "order-placed".into(),
            version: None,
        };
        let binding = Binding::new("shop", &latest, record(3, None));
        assert_eq!(binding.key, "shop.order.placed.latest");
        assert_eq!(
            binding.shown,
            BoundSchema {
                name: "order-placed".into(),
                event_type: "order.placed".into(),
                version: 3,
                pinned: false,
                fingerprint: format!("sha256:{:064}", 3),
            }
        );
        assert_eq!(binding.metadata_value(), "order.placed v3");
        let pinned = ObjectRefWithVersion {
            version: Some(2),
            ..latest
        };
        let binding = Binding::new("shop", &pinned, record(2, None));
        assert_eq!(binding.key, "shop.order.placed.v2");
        assert!(binding.shown.pinned);
    }

    #[test]
    fn defaults_come_from_the_policy_first_then_the_schema() {
        let policy: DeadLetterPolicySpec = serde_yaml::from_str("maxDeliveries: 7").unwrap();
        let schema_defaults = ProcessingDefaults {
            ack_wait: Some(GoDuration::new("45s")),
            max_deliveries: Some(9),
            backoff: Some(RetryBackoff {
                delays: Some(vec![GoDuration::new("2s")]),
                initial: None,
                max: None,
                multiplier: None,
            }),
        };
        let reference = ObjectRefWithVersion {
            name: "order-placed".into(),
            version: None,
        };
        let binding = Binding::new("shop", &reference, record(1, Some(schema_defaults)));
        let list = inherited(Some(&policy), Some(&binding));
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].max_deliveries, Some(7));
        assert_eq!(list[0].ack_wait, None, "a policy sets no ackWait");
        assert_eq!(list[1].max_deliveries, Some(9));
        assert_eq!(list[1].ack_wait, Some(&GoDuration::new("45s")));
        assert!(list[1].backoff.is_some());
        assert_eq!(inherited(None, Some(&binding)).len(), 1);
        let bare = Binding::new("shop", &reference, record(1, None));
        assert!(inherited(None, Some(&bare)).is_empty());
        assert!(inherited(None, None).is_empty());
    }

    #[test]
    fn messages_say_what_is_missing_and_what_to_do() {
        let missing = not_found("order-placed", "shop", Origin::Topic);
        assert!(missing.contains("the Topic's spec.schemaRef"), "{missing}");
        assert!(missing.contains("namespace shop"), "{missing}");
        let nothing = not_registered(
            "order-placed",
            "order.placed",
            Origin::Subscription,
            None,
            &[],
        );
        assert!(
            nothing.contains("kubectl describe eventschema order-placed"),
            "{nothing}"
        );
        let unpinnable = not_registered(
            "order-placed",
            "order.placed",
            Origin::Subscription,
            Some(3),
            &[1, 2],
        );
        assert!(
            unpinnable.contains("spec.schemaRef pins version 3")
                && unpinnable.contains("registered: 1, 2")
                && unpinnable.contains("apply the EventSchema at version 3"),
            "{unpinnable}"
        );
    }
}
