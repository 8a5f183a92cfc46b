//! How Kubernetes names map onto broker names, chosen so that no two objects can share one.
//!
//! The parts come from Kubernetes: namespaces are DNS labels (lowercase letters, digits, `-`,
//! at most 63), and the kinds that own broker objects (Topic, DeadLetterPolicy, Subscription)
//! have DNS-label names too. None of them contains `_`, `.`, a wildcard, whitespace or an
//! uppercase letter, so:
//! - per-object names join their parts with `_`, and the number of `_`-separated fields plus a
//!   fixed kind marker tell the kinds apart: a Topic stream is `<namespace>_<name>` (two fields),
//!   a dead-letter stream `<namespace>_<name>_dlq` (three);
//! - names of objects that exist once per account are uppercase (`SWITCHYARD_…`), which no
//!   per-object name starts with;
//! - a key-value bucket `B` is stored in the stream `KV_B`, uppercase as well.
//!
//! Consumer names only need to be unique per stream; Subscription consumers still carry a kind
//! marker so that consumers Switchyard adds later cannot take their names.

/// The JetStream stream backing the Topic `namespace/name`.
pub fn stream_name(namespace: &str, name: &str) -> String {
    format!("{namespace}_{name}")
}

/// The dead-letter stream Switchyard creates for the DeadLetterPolicy `namespace/name` when its
/// target is `managed`.
pub fn dead_letter_stream_name(namespace: &str, name: &str) -> String {
    format!("{namespace}_{name}_dlq")
}

/// The subject prefix of the managed dead-letter stream of the DeadLetterPolicy
/// `namespace/name`; dead letters go to `<prefix>.<event type tokens>`. The leading `_` keeps it
/// apart from every Topic's default subjects (`<namespace>.<topic>.>`): no namespace starts so.
pub fn dead_letter_subject_prefix(namespace: &str, name: &str) -> String {
    format!("_dlq.{namespace}.{name}")
}

/// The stream capturing consumer advisories (max deliveries, terminated messages). Its subjects
/// are the account's advisory subjects, which only one stream may hold, so there is one.
pub const ADVISORY_STREAM: &str = "SWITCHYARD_ADVISORIES";

/// The key-value bucket of the schema registry (stored in the stream `KV_SWITCHYARD_SCHEMAS`).
pub const SCHEMA_BUCKET: &str = "SWITCHYARD_SCHEMAS";

/// The durable consumer through which the Subscription `namespace/name` reads its Topic's
/// stream. At most 4 + 63 + 1 + 63 = 131 characters, well within JetStream's 255.
pub fn subscription_consumer_name(namespace: &str, name: &str) -> String {
    format!("sub_{namespace}_{name}")
}

/// The Subscription `(namespace, name)` a consumer belongs to, from its name: the
/// Subscription's own consumer, or one of its per-pod or per-partition consumers
/// (`sub_<namespace>_<name>[_<suffix>]`). Namespaces and names contain no `_`.
pub fn subscription_of_consumer(consumer: &str) -> Option<(&str, &str)> {
    let mut fields = consumer.strip_prefix("sub_")?.split('_');
    let namespace = fields.next().filter(|f| !f.is_empty())?;
    let name = fields.next().filter(|f| !f.is_empty())?;
    Some((namespace, name))
}

/// Broadcast: the consumer of one worker pod of a Subscription whose consumer is
/// `subscription_consumer` (see [`subscription_consumer_name`]). Pod names are DNS subdomains
/// without dots here (`<subscription>-worker-<hash>-<suffix>`, at most 63 + 24 characters), so
/// the name stays valid and within JetStream's 255.
pub fn per_pod_consumer_name(subscription_consumer: &str, pod: &str) -> String {
    format!("{subscription_consumer}_{pod}")
}

/// Broadcast: the prefix shared by every per-pod consumer of a Subscription, and by nothing
/// else (Subscription names contain no `_`).
pub fn per_pod_consumer_prefix(subscription_consumer: &str) -> String {
    format!("{subscription_consumer}_")
}

/// The subject space a Topic owns unless it declares its own subjects.
pub fn default_subject(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}.>")
}

/// The value recorded in a broker object's metadata to name the object that owns it.
pub fn owner_id(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

/// The `(kind, namespace, name)` an [`owner_id`] names; `None` for anything else.
pub fn owner_of(owner_id: &str) -> Option<(&str, &str, &str)> {
    let mut parts = owner_id.splitn(3, '/');
    let kind = parts.next().filter(|p| !p.is_empty())?;
    let namespace = parts.next().filter(|p| !p.is_empty())?;
    let name = parts.next().filter(|p| !p.is_empty() && !p.contains('/'))?;
    Some((kind, namespace, name))
}

/// Keys Switchyard writes into the metadata of the broker objects it owns (streams, consumers).
pub mod metadata {
    /// `<Kind>/<namespace>/<name>` of the object that owns the broker object (see
    /// [`super::owner_id`]).
    pub const OWNER: &str = "switchyard.dev/owner";
    /// The owner's generation the broker object was last written from.
    pub const GENERATION: &str = "switchyard.dev/generation";
    /// Broadcast: the worker pod a per-pod consumer belongs to.
    pub const POD: &str = "switchyard.dev/pod";
    /// Per-key order: the partition a per-partition consumer reads.
    pub const PARTITION: &str = "switchyard.dev/partition";
    /// The registered schema version a consumer's inherited processing defaults came from
    /// (`<eventType> v<version>`), when its Subscription is bound to one.
    pub const SCHEMA: &str = "switchyard.dev/schema";
    /// What a broker object was written from: when one of these differs, the declared state
    /// changed (a spec, or the schema version it inherits from), which is no drift.
    pub const WRITTEN_FROM: [&str; 2] = [GENERATION, SCHEMA];
    /// Prefix of the keys the server adds by itself; they are never compared.
    pub const SERVER_PREFIX: &str = "_nats.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_name_their_subscription() {
        let own = subscription_consumer_name("shop", "billing");
        assert_eq!(subscription_of_consumer(&own), Some(("shop", "billing")));
        let per_pod = per_pod_consumer_name(&own, "billing-worker-5d9c-x7x2p");
        assert_eq!(
            subscription_of_consumer(&per_pod),
            Some(("shop", "billing"))
        );
        assert_eq!(
            subscription_of_consumer("sub_shop_billing_p3"),
            Some(("shop", "billing"))
        );
        assert_eq!(subscription_of_consumer("dead_letter_relay"), None);
        assert_eq!(subscription_of_consumer("sub_shop"), None);
        assert_eq!(subscription_of_consumer("sub__billing"), None);
    }
    use proptest::prelude::*;

    /// The broker objects a stream name can belong to, recovered from the name alone.
    #[derive(Debug, PartialEq)]
    enum StreamOwner {
        Topic(String, String),
        DeadLetters(String, String),
        Advisories,
        Bucket(String),
    }

    fn is_label(part: &str) -> bool {
        !part.is_empty()
            && part.len() <= 63
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    }

    /// Reads a stream name back. That every name Switchyard makes reads back to exactly the
    /// object it was made for proves the names injective, within a kind and across kinds.
    fn owner_of_stream(stream: &str) -> Option<StreamOwner> {
        if stream == ADVISORY_STREAM {
            return Some(StreamOwner::Advisories);
        }
        if let Some(bucket) = stream.strip_prefix("KV_") {
            return Some(StreamOwner::Bucket(bucket.to_string()));
        }
        let fields: Vec<&str> = stream.split('_').collect();
        match fields[..] {
            [ns, name] if is_label(ns) && is_label(name) => {
                Some(StreamOwner::Topic(ns.into(), name.into()))
            }
            [ns, name, "dlq"] if is_label(ns) && is_label(name) => {
                Some(StreamOwner::DeadLetters(ns.into(), name.into()))
            }
            _ => None,
        }
    }

    fn namespace() -> impl Strategy<Value = String> {
        "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
    }

    fn object_name() -> impl Strategy<Value = String> {
        "[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
    }

    fn valid_nats_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 255
            && !name
                .chars()
                .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
    }

    proptest! {
        #[test]
        fn topic_streams_read_back(ns in namespace(), name in object_name()) {
            let stream = stream_name(&ns, &name);
            prop_assert!(valid_nats_name(&stream));
            prop_assert_eq!(owner_of_stream(&stream), Some(StreamOwner::Topic(ns, name)));
        }

        #[test]
        fn dead_letter_streams_read_back(ns in namespace(), name in object_name()) {
            let stream = dead_letter_stream_name(&ns, &name);
            prop_assert!(valid_nats_name(&stream));
            prop_assert_eq!(owner_of_stream(&stream), Some(StreamOwner::DeadLetters(ns, name)));
        }

        #[test]
        fn subscription_consumers_are_valid_and_injective(
            a in (namespace(), object_name()),
            b in (namespace(), object_name()),
        ) {
            let consumer = subscription_consumer_name(&a.0, &a.1);
            prop_assert!(valid_nats_name(&consumer));
            let rest = consumer.strip_prefix("sub_").expect("kind marker");
            prop_assert_eq!(rest.split_once('_'), Some((a.0.as_str(), a.1.as_str())));
            prop_assert_eq!(consumer == subscription_consumer_name(&b.0, &b.1), a == b);
        }
    }

    #[test]
    fn account_wide_objects_read_back() {
        assert_eq!(
            owner_of_stream(ADVISORY_STREAM),
            Some(StreamOwner::Advisories)
        );
        let schema_stream = format!("KV_{SCHEMA_BUCKET}");
        assert_eq!(
            owner_of_stream(&schema_stream),
            Some(StreamOwner::Bucket(SCHEMA_BUCKET.into()))
        );
        assert_ne!(ADVISORY_STREAM, schema_stream);
        for name in [ADVISORY_STREAM, SCHEMA_BUCKET] {
            assert!(valid_nats_name(name));
        }
    }

    #[test]
    fn longest_names_stay_within_limits() {
        let long = "a".repeat(63);
        assert_eq!(subscription_consumer_name(&long, &long).len(), 131);
        assert_eq!(dead_letter_stream_name(&long, &long).len(), 131);
    }

    #[test]
    fn stream_names_are_injective_across_dashes() {
        assert_ne!(stream_name("a-b", "c"), stream_name("a", "b-c"));
        assert_eq!(stream_name("shop", "orders"), "shop_orders");
    }

    #[test]
    fn owner_ids_read_back() {
        let id = owner_id("Topic", "shop", "orders");
        assert_eq!(owner_of(&id), Some(("Topic", "shop", "orders")));
        assert_eq!(owner_of("Topic/shop"), None);
        assert_eq!(owner_of("Topic//orders"), None);
        assert_eq!(owner_of("Topic/shop/orders/extra"), None);
    }

    #[test]
    fn default_subject_is_namespaced() {
        assert_eq!(default_subject("shop", "orders"), "shop.orders.>");
    }
}
