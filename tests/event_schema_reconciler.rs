//! EventSchema → the schema registry, against a real kube-apiserver and a real nats-server:
//! versions registered by compare-and-set, never going down, immutable once registered, and
//! checked for compatibility against the registered history.

mod common;

use std::{collections::BTreeSet, sync::Arc};

use common::*;
use futures::future::join_all;
use kube::{Api, ResourceExt, api::DeleteParams};
use serde_json::json;
use switchyard::{
    api::{EventSchema, Subscription, Topic},
    dispatcher::validation::CompiledSchema,
    reconcile::event_schema::candidate,
    registry::{Decision, Registration, Registry, SchemaRecord, decide, keys},
};

struct Setup {
    client: kube::Client,
    ns: TestNamespace,
    schemas: Api<EventSchema>,
    registry: Registry,
    operator: Operator,
}

async fn setup(prefix: &str) -> Setup {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let schemas = Api::namespaced(client.clone(), &ns.name);
    let registry = Registry::open(&broker(&nats_url()).await)
        .await
        .expect("open the registry");
    let operator = Operator::start(&client, &ns.name, &nats_url());
    Setup {
        client,
        ns,
        schemas,
        registry,
        operator,
    }
}

/// An order.placed schema: a closed object with `id`, and `extra` properties (all optional
/// unless listed in `required`).
fn order_schema(extra: &[&str], required: &[&str]) -> serde_json::Value {
    let mut properties = serde_json::Map::new();
    properties.insert("id".into(), json!({"type": "string"}));
    for name in extra {
        properties.insert((*name).into(), json!({"type": "number"}));
    }
    let mut required_all = vec!["id"];
    required_all.extend_from_slice(required);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required_all,
        "additionalProperties": false,
    })
}

fn schema_yaml(
    ns: &str,
    name: &str,
    event_type: &str,
    version: i64,
    schema: &serde_json::Value,
) -> String {
    manifest(
        "EventSchema",
        ns,
        name,
        &format!(
            "  eventType: {event_type}\n  version: {version}\n  compatibility: Backward\n  schema: {schema}\n  defaults:\n    maxDeliveries: 7\n"
        ),
    )
}

impl Setup {
    async fn apply(
        &self,
        name: &str,
        event_type: &str,
        version: i64,
        schema: &serde_json::Value,
    ) -> Result<EventSchema, kube::Error> {
        apply(
            &self.schemas,
            &schema_yaml(&self.ns.name, name, event_type, version, schema),
        )
        .await
    }

    /// Waits until the EventSchema's Ready condition has `status` and `reason` for its current
    /// generation.
    async fn ready(&self, name: &str, status: &str, reason: &str) -> EventSchema {
        wait_for_ready(&self.schemas, name, status, reason).await
    }

    async fn latest(&self, event_type: &str) -> (SchemaRecord, Vec<i64>) {
        let holding = self
            .registry
            .holding(&self.ns.name, event_type, false)
            .await
            .expect("read the registry");
        let (latest, _) = holding.latest.expect("something is registered");
        (latest.record, latest.versions)
    }
}

#[tokio::test]
async fn versions_register_in_order_and_the_status_lists_them() {
    let s = setup("evs-register").await;
    let v1 = order_schema(&[], &[]);
    s.apply("orders", "order.placed", 1, &v1)
        .await
        .expect("apply v1");
    let status = s
        .ready("orders", "True", "Registered")
        .await
        .status
        .unwrap();
    assert_eq!(status.latest_version, Some(1));
    assert_eq!(status.registered_versions, vec![1]);

    // v2 adds an optional property to a closed object: compatible under Backward.
    let v2 = order_schema(&["total"], &[]);
    s.apply("orders", "order.placed", 2, &v2)
        .await
        .expect("apply v2");
    let schema = wait_for(&s.schemas, "orders", "v2 registered", |o: &EventSchema| {
        o.status.as_ref().and_then(|st| st.latest_version) == Some(2)
            && ready_of(o).is_some_and(|(st, _, _)| st == "True")
    })
    .await;
    let status = schema.status.unwrap();
    assert_eq!(status.registered_versions, vec![1, 2]);
    let compatible = condition_of(&schema_with_status(&s, "orders").await, "Compatible")
        .expect("a Compatible condition");
    assert_eq!(compatible.0, "True", "{compatible:?}");

    let (latest, versions) = s.latest("order.placed").await;
    assert_eq!((latest.version, versions), (2, vec![1, 2]));
    assert_eq!(Some(latest.fingerprint.clone()), status.fingerprint);
    assert_eq!(latest.registered_by, format!("{}/orders", s.ns.name));
    assert_eq!(latest.defaults.and_then(|d| d.max_deliveries), Some(7));
    let first = s
        .registry
        .version(&s.ns.name, "order.placed", 1)
        .await
        .unwrap()
        .expect("v1 keeps its own key");
    assert_eq!(first.fingerprint, switchyard::registry::fingerprint(&v1).1);

    // Re-applying the same version and content is a no-op: no status write across resyncs.
    let before = s.schemas.get("orders").await.unwrap().resource_version();
    s.apply("orders", "order.placed", 2, &v2)
        .await
        .expect("re-apply v2");
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let after = s.schemas.get("orders").await.unwrap().resource_version();
    assert_eq!(
        before, after,
        "re-applying v2 (and two resyncs) wrote the status"
    );
    let (_, versions) = s.latest("order.placed").await;
    assert_eq!(versions, vec![1, 2]);
    s.operator.assert_alive();
}

async fn schema_with_status(s: &Setup, name: &str) -> EventSchema {
    s.schemas.get(name).await.expect("get EventSchema")
}

#[tokio::test]
async fn the_api_server_refuses_a_lower_version_over_a_higher_one() {
    let s = setup("evs-apiserver").await;
    s.apply("orders", "order.placed", 2, &order_schema(&[], &[]))
        .await
        .expect("apply v2");
    let yaml = schema_yaml(
        &s.ns.name,
        "orders",
        "order.placed",
        1,
        &order_schema(&[], &[]),
    );
    let (ok, output) = kubectl(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&yaml),
    );
    assert!(!ok, "kubectl apply of v1 over v2 succeeded: {output}");
    assert!(output.contains("spec.version cannot go down"), "{output}");
    // So is a changed schema at the same version.
    let changed = schema_yaml(
        &s.ns.name,
        "orders",
        "order.placed",
        2,
        &order_schema(&["total"], &[]),
    );
    let (ok, output) = kubectl(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&changed),
    );
    assert!(!ok, "changing v2's schema in place succeeded: {output}");
    assert!(output.contains("cannot change"), "{output}");
}

#[tokio::test]
async fn a_recreated_lower_version_is_a_downgrade_and_the_registry_keeps_the_higher_one() {
    let s = setup("evs-downgrade").await;
    let v1 = order_schema(&[], &[]);
    s.apply("orders", "order.placed", 1, &v1).await.unwrap();
    s.ready("orders", "True", "Registered").await;
    s.apply("orders", "order.placed", 2, &order_schema(&["total"], &[]))
        .await
        .unwrap();
    wait_for(&s.schemas, "orders", "v2 registered", |o: &EventSchema| {
        o.status.as_ref().and_then(|st| st.latest_version) == Some(2)
    })
    .await;
    // A Subscription bound to the schema's latest version.
    let topics: Api<Topic> = Api::namespaced(s.client.clone(), &s.ns.name);
    let subscriptions: Api<Subscription> = Api::namespaced(s.client.clone(), &s.ns.name);
    apply(
        &topics,
        &manifest("Topic", &s.ns.name, "orders", "  maxAge: 1h\n"),
    )
    .await
    .expect("apply the Topic");
    let subscription_spec = "  topicRef: {name: orders}\n  schemaRef: {name: orders}\n";
    apply(
        &subscriptions,
        &manifest("Subscription", &s.ns.name, "billing", subscription_spec),
    )
    .await
    .expect("apply the Subscription");
    let bound_version = |sub: &Subscription| {
        sub.status
            .as_ref()
            .and_then(|st| st.schema.as_ref())
            .map(|b| (b.version, b.fingerprint.clone()))
    };
    let v2_fingerprint = s.latest("order.placed").await.0.fingerprint;
    let bound = wait_for(&subscriptions, "billing", "bound to v2", |sub| {
        bound_version(sub).is_some_and(|(v, _)| v == 2)
    })
    .await;
    assert_eq!(bound_version(&bound), Some((2, v2_fingerprint.clone())));

    s.schemas
        .delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    wait_until_deleted(&s.schemas, "orders").await;
    s.apply("orders", "order.placed", 1, &v1)
        .await
        .expect("re-create at v1");
    let schema = s.ready("orders", "False", "VersionDowngrade").await;
    let (_, _, message) = ready_of(&schema).unwrap();
    assert!(message.contains("below v2"), "{message}");
    let status = schema.status.unwrap();
    assert_eq!(
        status.latest_version,
        Some(2),
        "status shows the registry's latest"
    );
    let (latest, versions) = s.latest("order.placed").await;
    assert_eq!((latest.version, versions), (2, vec![1, 2]));
    let (type_, _) = wait_until("a VersionDowngrade Event", || async {
        events_for(&s.client, &s.ns.name, "orders")
            .await
            .into_iter()
            .find(|(_, reason, _)| reason == "VersionDowngrade")
            .map(|(t, _, n)| (t, n))
    })
    .await;
    assert_eq!(type_, "Warning");

    // The Subscription, woken by the EventSchema's return, is still bound to v2, and its
    // dispatchers' key still holds v2: an event only v2 admits (v1 is closed to `total`) passes.
    let rebound = wait_for_ready(&subscriptions, "billing", "True", "ConsumerInSync").await;
    assert_eq!(bound_version(&rebound), Some((2, v2_fingerprint.clone())));
    let entry = s
        .registry
        .kv()
        .get(&keys::bound_key(&s.ns.name, "order.placed", None))
        .await
        .expect("read the bound key")
        .expect("the bound key holds a record");
    let in_force = CompiledSchema::compile(&serde_json::from_slice(&entry.value).unwrap()).unwrap();
    assert_eq!(in_force.version, 2);
    assert!(in_force.check(None, br#"{"id": "a", "total": 5}"#).is_ok());
    let v1_record = s
        .registry
        .version(&s.ns.name, "order.placed", 1)
        .await
        .unwrap()
        .unwrap();
    assert!(
        CompiledSchema::compile(&v1_record)
            .unwrap()
            .check(None, br#"{"id": "a", "total": 5}"#)
            .is_err(),
        "v1 would have refused the event"
    );

    // Re-created at v2 with other content: the registered v2 does not change.
    s.schemas
        .delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    wait_until_deleted(&s.schemas, "orders").await;
    s.apply("orders", "order.placed", 2, &order_schema(&["other"], &[]))
        .await
        .unwrap();
    let schema = s.ready("orders", "False", "VersionContentChanged").await;
    assert!(ready_of(&schema).unwrap().2.contains(&latest.fingerprint));
    assert_eq!(
        s.latest("order.placed").await.0.fingerprint,
        latest.fingerprint
    );
}

#[tokio::test]
async fn a_new_required_property_is_refused_under_backward_and_an_optional_one_accepted() {
    let s = setup("evs-compat").await;
    s.apply("orders", "order.placed", 1, &order_schema(&[], &[]))
        .await
        .unwrap();
    s.ready("orders", "True", "Registered").await;
    s.apply(
        "orders",
        "order.placed",
        2,
        &order_schema(&["total"], &["total"]),
    )
    .await
    .unwrap();
    let schema = s.ready("orders", "False", "IncompatibleChange").await;
    let (status, reason, message) =
        condition_of(&schema, "Compatible").expect("Compatible condition");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "BreakingChanges")
    );
    assert!(
        message.contains("total"),
        "the message names the property: {message}"
    );
    assert!(message.contains("against v1"), "{message}");
    let (type_, note) = wait_until("an IncompatibleChange Event", || async {
        events_for(&s.client, &s.ns.name, "orders")
            .await
            .into_iter()
            .find(|(_, reason, _)| reason == "IncompatibleChange")
            .map(|(t, _, n)| (t, n))
    })
    .await;
    assert_eq!(type_, "Warning");
    assert!(note.contains("total"), "{note}");
    assert_eq!(
        s.latest("order.placed").await.1,
        vec![1],
        "nothing was registered"
    );

    // The same property, optional, as v3 (v2 was never registered, so any higher number works).
    s.apply("orders", "order.placed", 3, &order_schema(&["total"], &[]))
        .await
        .unwrap();
    let schema = wait_for(&s.schemas, "orders", "v3 registered", |o: &EventSchema| {
        o.status.as_ref().and_then(|st| st.latest_version) == Some(3)
    })
    .await;
    assert_eq!(condition_of(&schema, "Compatible").unwrap().0, "True");
    assert_eq!(s.latest("order.placed").await.1, vec![1, 3]);
}

#[tokio::test]
async fn an_invalid_json_schema_is_refused_with_its_location() {
    let s = setup("evs-invalid").await;
    s.apply(
        "broken",
        "order.placed",
        1,
        &json!({"type": "object", "properties": {"id": {"type": 12}}}),
    )
    .await
    .expect("the API server takes any object as a schema");
    let schema = s.ready("broken", "False", "InvalidSpec").await;
    let (_, _, message) = ready_of(&schema).unwrap();
    assert!(message.contains("spec.schema"), "{message}");
    assert!(message.contains("/properties/id"), "{message}");
    let holding = s
        .registry
        .holding(&s.ns.name, "order.placed", false)
        .await
        .unwrap();
    assert!(
        holding.latest.is_none(),
        "an invalid schema registered something"
    );
}

/// Two operators (no election) reconcile the same EventSchemas while versions step up: every
/// version that turned Ready is registered exactly once, with the content it was applied with.
#[tokio::test]
async fn two_operators_racing_lose_and_duplicate_no_version() {
    let s = setup("evs-race").await;
    let second = Operator::start_with(&s.client, &s.ns.name, &nats_url(), |config| {
        config.instance = format!("test-{}-second", s.ns.name);
    });
    let types: Vec<String> = (0..4).map(|i| format!("race.type{i}")).collect();
    let steps = 5;
    let runs = types.iter().enumerate().map(|(i, event_type)| {
        let s = &s;
        async move {
            let name = format!("race-{i}");
            for version in 1..=steps {
                let extra: Vec<String> = (1..version).map(|k| format!("f{k}")).collect();
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                s.apply(&name, event_type, version, &order_schema(&extra, &[]))
                    .await
                    .unwrap();
                wait_for(
                    &s.schemas,
                    &name,
                    "the version registered",
                    |o: &EventSchema| {
                        o.status.as_ref().and_then(|st| st.latest_version) >= Some(version)
                            && ready_of(o).is_some_and(|(st, _, _)| st == "True")
                    },
                )
                .await;
            }
        }
    });
    join_all(runs).await;
    for event_type in &types {
        let (latest, versions) = s.latest(event_type).await;
        assert_eq!(versions, (1..=steps).collect::<Vec<_>>(), "{event_type}");
        assert_eq!(latest.version, steps);
        for version in 1..=steps {
            let record = s
                .registry
                .version(&s.ns.name, event_type, version)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{event_type} v{version} has no key"));
            let extra: Vec<String> = (1..version).map(|k| format!("f{k}")).collect();
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            assert_eq!(
                record.fingerprint,
                switchyard::registry::fingerprint(&order_schema(&extra, &[])).1
            );
            // Version keys are written once: one revision each.
            let key = keys::version_key(&s.ns.name, event_type, version);
            let history = s.registry.kv().history_len(&key).await.unwrap();
            assert_eq!(history, 1, "{key} was written {history} times");
        }
    }
    second.stop().await;
    s.operator.assert_alive();
}

/// Registrars racing straight at the registry for one version with different content: exactly
/// one content wins, everyone else learns it was taken.
#[tokio::test]
async fn registrars_racing_for_one_version_leave_exactly_one_content() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "evs-cas").await;
    let registry = Arc::new(Registry::open(&broker(&nats_url()).await).await.unwrap());
    let contestants = 12;
    let results = join_all((0..contestants).map(|i| {
        let registry = registry.clone();
        let ns = ns.name.clone();
        async move {
            let mut schema = EventSchema::new(
                "racer",
                serde_yaml::from_str(&format!(
                    "eventType: cas.race\nversion: 1\nschema: {}",
                    order_schema(&[&format!("p{i}")], &[])
                ))
                .unwrap(),
            );
            schema.metadata.namespace = Some(ns.clone());
            let candidate = candidate(&schema, format!("t{i}")).unwrap();
            loop {
                let holding = registry.holding(&ns, "cas.race", false).await.unwrap();
                match decide(&candidate, &holding) {
                    Decision::Register { .. } => {
                        match registry.register(&candidate, &holding).await.unwrap() {
                            Registration::Committed(..) => {
                                return (i, true, candidate.fingerprint.clone());
                            }
                            Registration::Raced => continue,
                        }
                    }
                    Decision::ContentChanged { .. } => {
                        return (i, false, candidate.fingerprint.clone());
                    }
                    other => panic!("contestant {i}: unexpected {other:?}"),
                }
            }
        }
    }))
    .await;
    let winners: Vec<_> = results.iter().filter(|(_, won, _)| *won).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let (latest_record, versions) = {
        let holding = registry.holding(&ns.name, "cas.race", false).await.unwrap();
        let (latest, _) = holding.latest.unwrap();
        (latest.record, latest.versions)
    };
    assert_eq!(versions, vec![1]);
    assert_eq!(latest_record.fingerprint, winners[0].2);
    let stored = registry
        .version(&ns.name, "cas.race", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.fingerprint, winners[0].2);
    let distinct: BTreeSet<_> = results.iter().map(|(_, _, f)| f.clone()).collect();
    assert_eq!(
        distinct.len(),
        contestants,
        "every contestant had its own content"
    );
}
