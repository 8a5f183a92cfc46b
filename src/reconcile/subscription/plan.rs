//! What to do with the durable consumer, decided from the desired and the actual configuration.
//! Pure: compares only the fields Switchyard manages, after undoing the server's normalising, and
//! knows which changes JetStream refuses on an existing consumer.

use async_nats::jetstream::consumer::Config;

use crate::reconcile::plan::{BrokerConfig, owned_metadata};

impl BrokerConfig for Config {
    fn metadata(&self) -> &std::collections::HashMap<String, String> {
        &self.metadata
    }

    fn refused_change(&self, actual: &Self) -> Option<(&'static str, String)> {
        if self.deliver_policy != actual.deliver_policy {
            return Some((
                "spec.deliverPolicy",
                format!(
                    "the consumer starts at {:?} and JetStream cannot move an existing consumer to {:?}; restore the start position or create a new Subscription",
                    actual.deliver_policy, self.deliver_policy
                ),
            ));
        }
        if self.ack_policy != actual.ack_policy {
            return Some((
                "ackPolicy",
                format!(
                    "the consumer was changed to {:?} acknowledgements, which JetStream cannot undo; delete the consumer so it is recreated (its position is lost)",
                    actual.ack_policy
                ),
            ));
        }
        None
    }

    fn differences(&self, actual: &Self) -> Vec<&'static str> {
        differences(self, actual)
    }
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
            owned_metadata(&desired.metadata) == owned_metadata(&actual.metadata),
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
    use crate::naming::metadata;
    use crate::reconcile::plan::{Plan as ConsumerPlan, PlanInputs, UpdateCause, plan};

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
        assert_eq!(
            plan(&desired(), None, PlanInputs::default()),
            ConsumerPlan::Create
        );
        let synced = PlanInputs {
            synced_before: true,
            ..PlanInputs::default()
        };
        assert_eq!(
            plan(&desired(), None, synced),
            ConsumerPlan::Recreate,
            "missing after it was in sync: deleted by hand"
        );
        assert_eq!(
            plan(
                &desired(),
                Some(&as_stored(&desired())),
                PlanInputs::default()
            ),
            ConsumerPlan::InSync
        );
        let mut single = as_stored(&desired());
        single.filter_subject = single.filter_subjects.remove(0);
        assert_eq!(
            plan(&desired(), Some(&single), PlanInputs::default()),
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
            plan(&desired(), Some(&edited), PlanInputs::default()),
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
            plan(&next, Some(&as_stored(&desired())), PlanInputs::default()),
            ConsumerPlan::Update {
                cause: UpdateCause::SpecChanged,
                changed: vec!["filters", "metadata"],
            }
        );
    }

    #[test]
    fn a_new_schema_version_to_inherit_from_is_a_declared_change_not_drift() {
        let mut before = desired();
        before
            .metadata
            .insert(metadata::SCHEMA.into(), "order.placed v1".into());
        let mut after = before.clone();
        after
            .metadata
            .insert(metadata::SCHEMA.into(), "order.placed v2".into());
        after.ack_wait = Duration::from_secs(90);
        assert_eq!(
            plan(&after, Some(&as_stored(&before)), PlanInputs::default()),
            ConsumerPlan::Update {
                cause: UpdateCause::SpecChanged,
                changed: vec!["ackWait", "metadata"],
            }
        );
    }

    #[test]
    fn foreign_consumers_and_refused_changes_are_not_touched() {
        let mut foreign = as_stored(&desired());
        foreign.metadata.remove(metadata::OWNER);
        assert_eq!(
            plan(&desired(), Some(&foreign), PlanInputs::default()),
            ConsumerPlan::NotOwned { owner: None }
        );
        let mut moved = as_stored(&desired());
        moved.deliver_policy = DeliverPolicy::New;
        assert!(matches!(
            plan(&desired(), Some(&moved), PlanInputs::default()),
            ConsumerPlan::Refused {
                field: "spec.deliverPolicy",
                ..
            }
        ));
    }
}
