//! `EventSchema`: one version of the JSON Schema of a CloudEvents type, registered in the
//! Switchyard schema registry.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use super::{
    common::{GoDuration, RetryBackoff},
    subscription::{
        MAX_DELIVERIES_LIMIT, backoff_fits_max_deliveries_rule, backoff_order_rule,
        backoff_shape_rule,
    },
};

/// A CloudEvents type in `domain.entity.action` style: 2 to 8 lowercase dot-separated tokens.
pub const EVENT_TYPE_PATTERN: &str = r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*){1,7}$";

/// An EventSchema registers one version of the JSON Schema (draft-07 unless `$schema` names
/// draft-04, draft-06, 2019-09 or 2020-12) that events of one
/// CloudEvents type must satisfy. Raise `version` to publish a new version: the registry keeps
/// every version, checks each against the earlier ones with the chosen compatibility mode, and
/// never lets the version go down.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "EventSchema",
    namespaced,
    doc = "An EventSchema: a versioned JSON Schema for one CloudEvents type, kept in the Switchyard schema registry.",
    status = "EventSchemaStatus",
    shortname = "evs",
    category = "switchyard",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.eventType"}"#,
    printcolumn = r#"{"name":"Version","type":"integer","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Latest","type":"integer","priority":1,"jsonPath":".status.latestVersion"}"#,
    printcolumn = r#"{"name":"Compatibility","type":"string","priority":1,"jsonPath":".spec.compatibility"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.size() <= 63").message("an EventSchema name must be at most 63 characters so that Topics can reference it").reason(Reason::FieldValueInvalid),
)]
#[x_kube(
    validation = Rule::new("self.version != oldSelf.version || self.schema == oldSelf.schema").message("spec.schema of a registered version cannot change: publish the new schema as a higher spec.version").reason(Reason::FieldValueForbidden).field_path(".schema"),
)]
#[serde(rename_all = "camelCase")]
pub struct EventSchemaSpec {
    /// The CloudEvents `type` this schema describes, in `domain.entity.action` style (e.g.
    /// `order.placed`, `billing.invoice.paid`): 2 to 8 lowercase dot-separated tokens, each
    /// starting with a letter. Events of this type travel on `<namespace>.<topic>.<eventType>`.
    /// Immutable.
    #[schemars(length(min = 3, max = 255), regex(pattern = EVENT_TYPE_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.eventType is immutable: create another EventSchema for another event type").reason(Reason::FieldValueForbidden))]
    pub event_type: String,

    /// Version of this schema, a positive integer. Versions never go down: publish a change as
    /// a higher version, and the registry keeps every earlier one.
    #[schemars(range(min = 1))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("spec.version cannot go down: registered versions are permanent and consumers already use the higher one; publish your change as a version above the current one").reason(Reason::FieldValueForbidden))]
    pub version: i64,

    /// Which earlier versions a new version must stay compatible with, by the rules Confluent
    /// Schema Registry documents for JSON Schema. Backward (default): consumers using the new
    /// version can read events written with the previous one. Forward: consumers using the
    /// previous version can read events written with the new one. Full: both. The Transitive
    /// forms check against every earlier version, not just the previous one. None: no check.
    #[serde(default)]
    pub compatibility: Compatibility,

    /// The JSON Schema document events of this type must satisfy, written as YAML or JSON. Its
    /// `$schema` names its dialect: draft-04, draft-06, draft-07, 2019-09 or 2020-12; a document
    /// without `$schema` is read as draft-07, as Confluent Schema Registry reads it. It may nest
    /// at most 1000 levels.
    #[schemars(schema_with = "json_schema_document")]
    pub schema: serde_json::Value,

    /// Processing defaults the publisher recommends for this event type. Subscriptions inherit
    /// each one they do not set themselves (their DeadLetterPolicy's values come first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<ProcessingDefaults>,
}

/// The OpenAPI schema of `spec.schema`: any JSON object, stored as written.
fn json_schema_document(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Which earlier versions a new version is checked against, and in which direction.
/// Also the `--compatibility` values of `switchyard schema check` (kebab-case there).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
pub enum Compatibility {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

/// Processing defaults for Subscriptions receiving this event type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = backoff_fits_max_deliveries_rule("spec.defaults"))]
#[serde(rename_all = "camelCase")]
pub struct ProcessingDefaults {
    /// How long JetStream waits for an acknowledgement before redelivering (e.g. 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("spec.defaults.ackWait must be longer than 0s").reason(Reason::FieldValueInvalid))]
    pub ack_wait: Option<GoDuration>,

    /// Deliveries of one event, the first included, before it is dead-lettered (1 to 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_DELIVERIES_LIMIT))]
    pub max_deliveries: Option<i32>,

    /// Delays before successive redeliveries: either a list (`delays`) or an exponential rule
    /// (`initial`, `max`, `multiplier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = backoff_shape_rule("spec.defaults.backoff"), validation = backoff_order_rule("spec.defaults.backoff"))]
    pub backoff: Option<RetryBackoff>,
}

/// Observed state of an EventSchema.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {}))]
pub struct EventSchemaStatus {
    /// Ready says whether this version is registered and in force; Compatible whether it passed
    /// the compatibility check (its message lists the breaking changes when not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec these conditions describe; 0 until the operator saw it.
    // Defaulted by the API server, so health checks never take a new object for a reconciled one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 0))]
    pub observed_generation: Option<i64>,
    /// Highest version registered for this event type; Subscriptions validate against it
    /// unless a Topic pins another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<i64>,
    /// Every version registered for this event type, ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registered_versions: Vec<i64>,
    /// Fingerprint (SHA-256 of the canonical form) of the latest registered version's schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::test_support::*;

    const MINIMAL: &str = r#"
apiVersion: switchyard.dev/v1alpha1
kind: EventSchema
metadata: {name: order-placed}
spec:
  eventType: order.placed
  version: 1
  schema:
    $schema: https://json-schema.org/draft/2020-12/schema
    type: object
    required: [orderId]
    properties:
      orderId: {type: string}
"#;

    #[test]
    fn crd_names_and_columns() {
        assert_kind_basics::<EventSchema>(
            "eventschemas",
            "EventSchema",
            "evs",
            &[
                "Ready",
                "Reason",
                "Type",
                "Version",
                "Latest",
                "Compatibility",
                "Age",
            ],
        );
        let columns = printer_columns::<EventSchema>();
        assert!(columns.contains(&("Type".into(), ".spec.eventType".into())));
        assert!(columns.contains(&("Version".into(), ".spec.version".into())));
    }

    #[test]
    fn schema_is_structural_and_documented() {
        assert_eq!(
            schema_problems(&schema_of::<EventSchema>()),
            Vec::<String>::new()
        );
        // The apiserver refuses a root rule whose fieldPath points into metadata.
        assert_eq!(
            root_rules_with_field_path(&schema_of::<EventSchema>()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let evs: EventSchema = serde_yaml::from_str(MINIMAL).unwrap();
        assert_eq!(evs.spec.event_type, "order.placed");
        assert_eq!(evs.spec.version, 1);
        assert_eq!(evs.spec.compatibility, Compatibility::Backward);
        assert_eq!(evs.spec.defaults, None);
        assert_eq!(evs.spec.schema["required"], json!(["orderId"]));
        assert_eq!(
            evs.spec.schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        let schema = schema_of::<EventSchema>();
        assert_eq!(at(&schema, "spec.compatibility")["default"], "Backward");
    }

    #[test]
    fn schema_field_is_a_free_form_object() {
        let schema = schema_of::<EventSchema>();
        let field = at(&schema, "spec.schema");
        assert_eq!(field["type"], "object");
        assert_eq!(field["x-kubernetes-preserve-unknown-fields"], true);
        assert!(field.get("properties").is_none());
    }

    #[test]
    fn event_type_is_patterned_and_bounded() {
        let schema = schema_of::<EventSchema>();
        let field = at(&schema, "spec.eventType");
        assert_eq!(field["pattern"], EVENT_TYPE_PATTERN);
        assert_eq!(field["maxLength"], 255);
    }

    #[test]
    fn cel_rules_are_in_the_schema() {
        let schema = schema_of::<EventSchema>();
        assert!(has_rule(&schema, "self.metadata.name.size() <= 63"));
        let spec = at(&schema, "spec");
        assert!(has_rule(
            spec,
            "self.version != oldSelf.version || self.schema == oldSelf.schema"
        ));
        assert_eq!(rules(at(&schema, "spec.version")), ["self >= oldSelf"]);
        let message = at(&schema, "spec.version")["x-kubernetes-validations"][0]["message"]
            .as_str()
            .unwrap();
        assert!(
            message.contains("cannot go down") && message.contains("higher"),
            "{message}"
        );
        assert_eq!(rules(at(&schema, "spec.eventType")), ["self == oldSelf"]);
        assert!(has_rule(
            at(&schema, "spec.defaults"),
            "self.backoff.delays.size() <= self.maxDeliveries"
        ));
        assert!(has_rule(
            at(&schema, "spec.defaults.backoff"),
            "has(self.delays) ?"
        ));
        assert!(has_rule(
            at(&schema, "spec.defaults.ackWait"),
            "duration(self) > duration('0s')"
        ));
    }

    #[test]
    fn defaults_deserialize() {
        let yaml = format!(
            "{MINIMAL}  compatibility: FullTransitive\n  defaults:\n    ackWait: 1m\n    maxDeliveries: 3\n    backoff: {{initial: 1s, max: 1m, multiplier: \"3\"}}\n"
        );
        let evs: EventSchema = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(evs.spec.compatibility, Compatibility::FullTransitive);
        let defaults = evs.spec.defaults.unwrap();
        assert_eq!(defaults.ack_wait, Some(GoDuration::new("1m")));
        assert_eq!(defaults.max_deliveries, Some(3));
        assert_eq!(defaults.backoff.unwrap().multiplier.as_deref(), Some("3"));
    }
}
