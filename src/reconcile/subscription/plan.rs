//! What to do with the durable consumer, decided from the desired and the actual configuration.
//! Pure: compares only the fields Switchyard manages, after undoing the server's normalising, and
//! knows which changes JetStream refuses on an existing consumer.

use std::collections::BTreeMap;

use async_nats::jetstream::consumer::Config;

use super::consumer_config::metadata;

/// Why an existing consumer gets rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateCause {
    /// The Subscription's spec changed since the consumer was last written.
    SpecChanged,
    /// Someone changed the consumer behind Switchyard's back.
    Drift,
}

/// The next step for the consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerPlan {
    Create,
    InSync,
    Update {
        cause: UpdateCause,
        changed: Vec<&'static str>,
    },
    /// A consumer of that name exists and records another owner (or none).
    NotOwned {
        owner: Option<String>,
    },
    /// The consumer differs in a field JetStream cannot change in place.
    Refused {
        field: &'static str,
        message: String,
    },
}

pub fn plan(desired: &Config, actual: Option<&Config>) -> ConsumerPlan {
    let Some(actual) = actual else {
        return ConsumerPlan::Create;
    };
    let owner = actual.metadata.get(metadata::OWNER);
    if owner != desired.metadata.get(metadata::OWNER) {
        return ConsumerPlan::NotOwned {
            owner: owner.cloned(),
        };
    }
    if desired.deliver_policy != actual.deliver_policy {
        return ConsumerPlan::Refused {
            field: "spec.deliverPolicy",
            message: format!(
                "the consumer starts at {:?} and JetStream cannot move an existing consumer to {:?}; restore the start position or create a new Subscription",
                actual.deliver_policy, desired.deliver_policy
            ),
        };
    }
    if desired.ack_policy != actual.ack_policy {
        return ConsumerPlan::Refused {
            field: "ackPolicy",
            message: format!(
                "the consumer was changed to {:?} acknowledgements, which JetStream cannot undo; delete the consumer so it is recreated (its position is lost)",
                actual.ack_policy
            ),
        };
    }
    let changed = differences(desired, actual);
    if changed.is_empty() {
        return ConsumerPlan::InSync;
    }
    let cause = if actual.metadata.get(metadata::GENERATION)
        == desired.metadata.get(metadata::GENERATION)
    {
        UpdateCause::Drift
    } else {
        UpdateCause::SpecChanged
    };
    ConsumerPlan::Update { cause, changed }
}

/// The filters as one sorted list, whichever of the two fields holds them.
fn filters(c: &Config) -> Vec<&str> {
    let mut all: Vec<&str> = c.filter_subjects.iter().map(String::as_str).collect();
    if !c.filter_subject.is_empty() {
        all.push(&c.filter_subject);
    }
    all.sort_unstable();
    all
}

fn owned_metadata(c: &Config) -> BTreeMap<&str, &str> {
    c.metadata
        .iter()
        .filter(|(k, _)| !k.starts_with(metadata::SERVER_PREFIX))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Names of the managed settings that differ (spec field names where there is one).
pub fn differences(desired: &Config, actual: &Config) -> Vec<&'static str> {
    let description = |c: &Config| c.description.clone().filter(|d| !d.is_empty());
    // The server reports "unlimited" as -1 and may fill 0 with its default.
    let limit = |v: i64| if v <= 0 { -1 } else { v };
    let checks = [
        ("filters", filters(desired) == filters(actual)),
        ("ackWait", desired.ack_wait == actual.ack_wait),
        (
            "retry.maxDeliveries",
            limit(desired.max_deliver) == limit(actual.max_deliver),
        ),
        ("retry.backoff", desired.backoff == actual.backoff),
        (
            "maxAckPending",
            limit(desired.max_ack_pending) == limit(actual.max_ack_pending),
        ),
        (
            "inactiveThreshold",
            desired.inactive_threshold == actual.inactive_threshold,
        ),
        ("description", description(desired) == description(actual)),
        (
            "metadata",
            owned_metadata(desired) == owned_metadata(actual),
        ),
    ];
    checks
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(name, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::Duration};

    use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};

    use super::*;

    fn desired() -> Config {
        Config {
            durable_name: Some("sub_shop_billing".into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_ack_pending: 1000,
            filter_subjects: vec!["shop.orders.order.placed".into()],
            metadata: HashMap::from([
                (metadata::OWNER.into(), "Subscription/shop/billing".into()),
                (metadata::GENERATION.into(), "1".into()),
            ]),
            ..Default::default()
        }
    }

    /// What the server reports back for `desired()`: its own metadata keys added.
    fn as_stored(config: &Config) -> Config {
        let mut stored = config.clone();
        stored.metadata.insert("_nats.ver".into(), "2.15.2".into());
        stored
    }

    #[test]
    fn missing_is_created_and_the_servers_additions_are_no_drift() {
        assert_eq!(plan(&desired(), None), ConsumerPlan::Create);
        assert_eq!(
            plan(&desired(), Some(&as_stored(&desired()))),
            ConsumerPlan::InSync
        );
        let mut single = as_stored(&desired());
        single.filter_subject = single.filter_subjects.remove(0);
        assert_eq!(
            plan(&desired(), Some(&single)),
            ConsumerPlan::InSync,
            "same filter, other field"
        );
    }

    #[test]
    fn a_hand_edit_is_drift_and_a_new_generation_a_spec_change() {
        let mut edited = as_stored(&desired());
        edited.max_ack_pending = 1;
        edited.ack_wait = Duration::from_secs(1);
        assert_eq!(
            plan(&desired(), Some(&edited)),
            ConsumerPlan::Update {
                cause: UpdateCause::Drift,
                changed: vec!["ackWait", "maxAckPending"],
            }
        );
        let mut next = desired();
        next.metadata
            .insert(metadata::GENERATION.into(), "2".into());
        next.filter_subjects
            .push("shop.orders.order.shipped".into());
        assert_eq!(
            plan(&next, Some(&as_stored(&desired()))),
            ConsumerPlan::Update {
                cause: UpdateCause::SpecChanged,
                changed: vec!["filters", "metadata"],
            }
        );
    }

    #[test]
    fn foreign_consumers_and_refused_changes_are_not_touched() {
        let mut foreign = as_stored(&desired());
        foreign.metadata.remove(metadata::OWNER);
        assert_eq!(
            plan(&desired(), Some(&foreign)),
            ConsumerPlan::NotOwned { owner: None }
        );
        let mut moved = as_stored(&desired());
        moved.deliver_policy = DeliverPolicy::New;
        assert!(matches!(
            plan(&desired(), Some(&moved)),
            ConsumerPlan::Refused {
                field: "spec.deliverPolicy",
                ..
            }
        ));
    }
}
