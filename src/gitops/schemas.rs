//! The schema registry as a plan sees it: the EventSchemas of a set grouped into the version
//! history of each event type, and the registry as it will be once the versions the plan
//! registers are. Pure.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::{
    api::EventSchema,
    registry::{Candidate, Holding, Latest, SchemaRecord, decide::versions_after},
};

/// The EventSchemas of each `(namespace, event type)`, lowest version first. The same version
/// twice (validate reports it) is kept once, the first read.
pub fn histories(schemas: &[EventSchema]) -> BTreeMap<(String, String), Vec<&EventSchema>> {
    let mut histories: BTreeMap<(String, String), Vec<&EventSchema>> = BTreeMap::new();
    for schema in schemas {
        let key = (
            schema.namespace().unwrap_or_default(),
            schema.spec.event_type.clone(),
        );
        let versions = histories.entry(key).or_default();
        if !versions
            .iter()
            .any(|s| s.spec.version == schema.spec.version)
        {
            versions.push(schema);
        }
    }
    for versions in histories.values_mut() {
        versions.sort_by_key(|s| s.spec.version);
    }
    histories
}

/// What the registry holds once `candidate` is registered over `holding`: it is the latest,
/// and the latest before it joins the earlier versions.
pub fn after_registering(holding: &Holding, candidate: &Candidate) -> Holding {
    let mut earlier = holding.earlier.clone();
    if let Some((latest, _)) = &holding.latest {
        earlier.push(latest.record.clone());
    }
    Holding {
        latest: Some((
            Latest {
                record: candidate.record.clone(),
                versions: versions_after(holding, candidate),
            },
            // Not a revision the registry knows: registering re-reads the real one.
            0,
        )),
        earlier,
    }
}

/// The versions a plan registers, per `(namespace, event type)`, ascending: what Subscriptions
/// bind to once the plan is applied, before the registry holds them.
#[derive(Clone, Debug, Default)]
pub struct Pending {
    records: BTreeMap<(String, String), Vec<SchemaRecord>>,
}

impl Pending {
    pub fn add(&mut self, namespace: &str, record: SchemaRecord) {
        self.records
            .entry((namespace.to_string(), record.event_type.clone()))
            .or_default()
            .push(record);
    }

    /// The highest version registered by the plan.
    pub fn latest(&self, namespace: &str, event_type: &str) -> Option<&SchemaRecord> {
        self.of(namespace, event_type).last()
    }

    /// Version `version`, if the plan registers it.
    pub fn version(
        &self,
        namespace: &str,
        event_type: &str,
        version: i64,
    ) -> Option<&SchemaRecord> {
        self.of(namespace, event_type)
            .iter()
            .find(|r| r.version == version)
    }

    fn of(&self, namespace: &str, event_type: &str) -> &[SchemaRecord] {
        self.records
            .get(&(namespace.to_string(), event_type.to_string()))
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        reconcile::event_schema::candidate,
        registry::{Decision, decide},
    };

    fn schema(name: &str, event_type: &str, version: i64, properties: &[&str]) -> EventSchema {
        let properties: serde_json::Map<String, serde_json::Value> = properties
            .iter()
            .map(|p| (p.to_string(), json!({"type": "string"})))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "EventSchema",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"eventType": event_type, "version": version, "compatibility": "Backward",
                     "schema": {"type": "object", "properties": properties, "additionalProperties": false}},
        }))
        .unwrap()
    }

    #[test]
    fn each_event_types_versions_are_ordered_lowest_first() {
        let schemas = [
            schema("order-placed", "order.placed", 2, &["id"]),
            schema("user-created", "user.created", 1, &[]),
            schema("order-placed", "order.placed", 1, &[]),
            schema("order-placed", "order.placed", 2, &["id"]),
        ];
        let histories = histories(&schemas);
        let versions: Vec<(String, Vec<i64>)> = histories
            .iter()
            .map(|((_, t), v)| (t.clone(), v.iter().map(|s| s.spec.version).collect()))
            .collect();
        assert_eq!(
            versions,
            [
                ("order.placed".to_string(), vec![1, 2]),
                ("user.created".to_string(), vec![1])
            ]
        );
    }

    #[test]
    fn later_versions_of_a_set_are_judged_against_the_earlier_ones_it_registers() {
        let v1 = candidate(&schema("s", "order.placed", 1, &[]), String::new()).unwrap();
        let v2 = candidate(&schema("s", "order.placed", 2, &["id"]), String::new()).unwrap();
        let empty = Holding::default();
        assert!(matches!(decide(&v1, &empty), Decision::Register { .. }));
        let after_v1 = after_registering(&empty, &v1);
        assert_eq!(after_v1.latest_version(), Some(1));
        assert!(matches!(decide(&v1, &after_v1), Decision::Registered));
        assert!(matches!(decide(&v2, &after_v1), Decision::Register { .. }));
        let after_v2 = after_registering(&after_v1, &v2);
        assert_eq!(after_v2.latest.as_ref().unwrap().0.versions, vec![1, 2]);
        assert_eq!(after_v2.earlier.len(), 1);
        assert!(matches!(
            decide(&v1, &after_v2),
            Decision::Downgrade { latest: 2 }
        ));

        let mut pending = Pending::default();
        pending.add("shop", v1.record.clone());
        pending.add("shop", v2.record.clone());
        assert_eq!(pending.latest("shop", "order.placed").unwrap().version, 2);
        assert!(pending.version("shop", "order.placed", 1).is_some());
        assert!(pending.version("shop", "order.placed", 3).is_none());
        assert!(pending.latest("other", "order.placed").is_none());
    }
}
