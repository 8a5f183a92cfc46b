//! Each object against the CRD of its kind, as the binary generates it (`switchyard crd`): the
//! OpenAPI schema first, as the API server applies it with strict field validation, then the
//! CEL rules that apply on creation.
//!
//! The OpenAPI schema becomes a JSON Schema (draft 4, the dialect OpenAPI 3.0 extends):
//! `nullable` admits null, `x-kubernetes-int-or-string` admits an integer or a string, an object
//! with declared properties refuses others unless `x-kubernetes-preserve-unknown-fields` says
//! otherwise, and `x-kubernetes-list-type: set` wants distinct items.
//!
//! CEL rules are evaluated with kube's client-side evaluator (the `cel` feature of kube, backed
//! by kube-cel). Transition rules (those reading `oldSelf`) need the object as it is in the
//! cluster, so they are left to the API server.

use std::collections::BTreeMap;

use jsonschema::error::ValidationErrorKind;
use kube::core::cel::{CompiledSchema, ErrorKind, RootContext, Validator, compile_schema};
use serde_json::{Map, Value, json};

use super::{
    objects::Object,
    report::{Check, Problem, Severity},
};
use crate::{
    api::{GROUP, VERSION},
    crdgen,
};

/// Said once in every report.
pub const TRANSITION_RULES_NOTE: &str = "CEL rules were evaluated offline; transition rules (those comparing with oldSelf, e.g. immutable fields) need the object in the cluster and are checked by the API server";

/// The compiled schemas of every kind.
pub struct CrdSchemas {
    kinds: BTreeMap<String, KindSchema>,
    cel: Validator,
}

struct KindSchema {
    openapi: jsonschema::Validator,
    cel: CompiledSchema,
}

impl CrdSchemas {
    /// The schemas of the CRDs embedded in this binary.
    pub fn embedded() -> Result<Self, String> {
        let mut kinds = BTreeMap::new();
        for crd in crdgen::all() {
            let kind = crd.spec.names.kind.clone();
            let schema = crd
                .spec
                .versions
                .iter()
                .find(|v| v.name == VERSION)
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .ok_or_else(|| format!("the {kind} CRD has no {VERSION} schema"))?;
            let openapi = serde_json::to_value(schema).map_err(|e| e.to_string())?;
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .should_validate_formats(true)
                .build(&to_json_schema(&with_object_fields(&openapi)))
                .map_err(|e| format!("the {kind} CRD's schema does not compile: {e}"))?;
            kinds.insert(
                kind,
                KindSchema {
                    openapi: validator,
                    cel: compile_schema(&openapi),
                },
            );
        }
        Ok(Self {
            kinds,
            cel: Validator::new(),
        })
    }

    /// The problems of one object. CEL rules are evaluated only on an object whose fields have
    /// the right types: on others they would misfire.
    pub fn check(&self, object: &Object) -> Vec<Problem> {
        let Some(schema) = self.kinds.get(&object.id.kind) else {
            return Vec::new();
        };
        let problem = |severity, check, path: String, message: String| {
            Problem::of(
                severity,
                check,
                &object.origin,
                &object.id,
                Some(path).filter(|p| !p.is_empty()),
                message,
            )
        };
        let mut problems = Vec::new();
        for error in schema.openapi.iter_errors(&object.value) {
            let at = field_path(&object.value, error.instance_path().as_str());
            match error.kind() {
                ValidationErrorKind::Required { property } => problems.push(problem(
                    Severity::Error,
                    Check::CrdSchema,
                    join(&at, property.as_str().unwrap_or_default()),
                    "required field is missing".into(),
                )),
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for name in unexpected {
                        problems.push(problem(
                            Severity::Error,
                            Check::CrdSchema,
                            join(&at, name),
                            format!(
                                "unknown field {name:?}: the {} CRD does not declare it (check the spelling; kubectl apply refuses it)",
                                object.id.kind
                            ),
                        ));
                    }
                }
                _ => problems.push(problem(
                    Severity::Error,
                    Check::CrdSchema,
                    at,
                    error.to_string(),
                )),
            }
        }
        if !problems.is_empty() {
            return problems;
        }
        let root = RootContext {
            api_version: format!("{GROUP}/{VERSION}"),
            api_group: GROUP.into(),
            kind: object.id.kind.clone(),
        };
        let Err(errors) =
            self.cel
                .validate_compiled_with_context(&schema.cel, &object.value, None, Some(&root))
        else {
            return problems;
        };
        for error in errors {
            let (severity, message) = match error.kind {
                ErrorKind::ValidationFailure | ErrorKind::InvalidResult => {
                    (Severity::Error, error.message.clone())
                }
                _ => (
                    Severity::Warning,
                    format!(
                        "CEL rule {:?} could not be evaluated offline ({}); the API server checks it",
                        error.rule, error.message
                    ),
                ),
            };
            problems.push(problem(severity, Check::Cel, error.field_path, message));
        }
        problems
    }
}

/// A CRD's root schema with the fields every object has, which the API server knows without the
/// CRD saying so: `apiVersion`, `kind`, and `metadata` (open, but with names and labels typed).
fn with_object_fields(root: &Value) -> Value {
    let mut root = root.clone();
    let string = json!({"type": "string"});
    let strings = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let implied = [
        ("apiVersion", string.clone()),
        ("kind", string.clone()),
        (
            "metadata",
            json!({
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": true,
                "properties": {
                    "name": string,
                    "namespace": string,
                    "labels": strings,
                    "annotations": strings,
                },
            }),
        ),
    ];
    if let Some(Value::Object(properties)) = root.get_mut("properties") {
        for (name, schema) in implied {
            properties.entry(name).or_insert(schema);
        }
    }
    root
}

/// A CRD's OpenAPI v3 schema as a draft-4 JSON Schema with the meaning of Kubernetes'
/// extensions. Pure.
pub fn to_json_schema(openapi: &Value) -> Value {
    let Value::Object(node) = openapi else {
        return openapi.clone();
    };
    let mut out = Map::new();
    for (key, value) in node {
        let converted = match (key.as_str(), value) {
            ("properties" | "patternProperties", Value::Object(children)) => Value::Object(
                children
                    .iter()
                    .map(|(name, child)| (name.clone(), to_json_schema(child)))
                    .collect(),
            ),
            ("allOf" | "anyOf" | "oneOf", Value::Array(children)) => {
                Value::Array(children.iter().map(to_json_schema).collect())
            }
            ("items" | "additionalProperties" | "not", child) => to_json_schema(child),
            (_, other) => other.clone(),
        };
        out.insert(key.clone(), converted);
    }
    let flag = |name: &str| node.get(name).and_then(Value::as_bool).unwrap_or(false);
    if flag("x-kubernetes-int-or-string") {
        out.insert("type".into(), json!(["integer", "string"]));
    }
    if node.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
        out.insert("uniqueItems".into(), Value::Bool(true));
    }
    if node.contains_key("properties")
        && !node.contains_key("additionalProperties")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    if flag("nullable") {
        match out.get_mut("type") {
            Some(Value::String(single)) => {
                let single = single.clone();
                out.insert("type".into(), json!([single, "null"]));
            }
            Some(Value::Array(types)) => types.push("null".into()),
            _ => {}
        }
        if let Some(Value::Array(options)) = out.get_mut("enum") {
            options.push(Value::Null);
        }
    }
    Value::Object(out)
}

/// A JSON pointer into `instance` as a Kubernetes field path: `spec.subjects[0]`, with keys that
/// are no plain names quoted (`podLabels["app.kubernetes.io/name"]`). Pure.
pub fn field_path(instance: &Value, pointer: &str) -> String {
    let mut path = String::new();
    let mut at = Some(instance);
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        match at {
            Some(Value::Array(items)) => {
                path.push_str(&format!("[{token}]"));
                at = token.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            _ => {
                path = join(&path, &token);
                at = at.and_then(|v| v.get(&token));
            }
        }
    }
    path
}

/// `parent.key`, or `parent["key"]` for a key that is no plain name.
fn join(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'));
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::validate::{
        load,
        report::{ObjectId, Origin},
    };

    fn object(kind: &str, value: Value) -> Object {
        Object {
            origin: Origin {
                file: "m.yaml".into(),
                document: 1,
            },
            id: ObjectId {
                kind: kind.into(),
                namespace: "shop".into(),
                name: "x".into(),
            },
            value,
        }
    }

    fn found(problems: &[Problem]) -> Vec<(Check, String)> {
        problems
            .iter()
            .map(|p| (p.check, p.path.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn kubernetes_extensions_become_json_schema() {
        let converted = to_json_schema(&json!({
            "type": "object",
            "properties": {
                "size": {"x-kubernetes-int-or-string": true, "pattern": "^[0-9]+Mi$"},
                "note": {"type": "string", "nullable": true},
                "mode": {"type": "string", "enum": ["A", "B"], "nullable": true},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "string"}}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }));
        assert_eq!(converted["additionalProperties"], false);
        let props = &converted["properties"];
        assert_eq!(props["size"]["type"], json!(["integer", "string"]));
        assert_eq!(props["note"]["type"], json!(["string", "null"]));
        assert_eq!(props["mode"]["enum"], json!(["A", "B", null]));
        assert!(props["free"].get("additionalProperties").is_none());
        assert_eq!(props["tags"]["uniqueItems"], true);
        assert_eq!(
            props["labels"]["additionalProperties"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn field_paths_read_like_kubectl() {
        let instance = json!({"spec": {"subjects": ["a", "b"], "worker": {"podLabels": {"app.kubernetes.io/name": 1}}}});
        assert_eq!(
            field_path(&instance, "/spec/subjects/1"),
            "spec.subjects[1]"
        );
        assert_eq!(
            field_path(&instance, "/spec/worker/podLabels/app.kubernetes.io~1name"),
            "spec.worker.podLabels[\"app.kubernetes.io/name\"]"
        );
        assert_eq!(field_path(&instance, ""), "");
    }

    #[test]
    fn wrong_types_unknown_and_missing_fields_are_found_with_their_paths() {
        let schemas = CrdSchemas::embedded().unwrap();
        let problems = schemas.check(&object(
            "Subscription",
            json!({
                "apiVersion": "switchyard.dev/v1alpha1", "kind": "Subscription",
                "metadata": {"name": "billing", "namespace": "shop"},
                "spec": {"maxAckPending": "many", "topicRefs": {"name": "orders"}, "eventTypes": ["order.placed", "Order!"]},
            }),
        ));
        let mut paths = found(&problems);
        paths.sort();
        assert_eq!(
            paths,
            vec![
                (Check::CrdSchema, "spec.eventTypes[1]".into()),
                (Check::CrdSchema, "spec.maxAckPending".into()),
                (Check::CrdSchema, "spec.topicRef".into()),
                (Check::CrdSchema, "spec.topicRefs".into()),
            ],
            "{problems:#?}"
        );
        let unknown = problems
            .iter()
            .find(|p| p.path.as_deref() == Some("spec.topicRefs"))
            .unwrap();
        assert!(unknown.message.contains("unknown field"), "{unknown:?}");
    }

    #[test]
    fn cel_rules_run_on_well_typed_objects() {
        let schemas = CrdSchemas::embedded().unwrap();
        let problems = schemas.check(&object(
            "Topic",
            json!({
                "apiVersion": "switchyard.dev/v1alpha1", "kind": "Topic",
                "metadata": {"name": "Orders", "namespace": "shop"},
                "spec": {"maxAge": "1m", "duplicateWindow": "10m"},
            }),
        ));
        assert_eq!(
            found(&problems),
            vec![
                // A rule on the root names no field; its message does.
                (Check::Cel, String::new()),
                (Check::Cel, "spec.duplicateWindow".into()),
            ],
            "{problems:#?}"
        );
        assert!(problems.iter().all(|p| p.severity == Severity::Error));
        assert!(problems[0].message.contains("DNS label"), "{problems:#?}");
    }

    #[test]
    fn the_samples_pass() {
        let schemas = CrdSchemas::embedded().unwrap();
        let root = env!("CARGO_MANIFEST_DIR");
        for file in [
            "topics.yaml",
            "subscriptions.yaml",
            "dead-letters.yaml",
            "schemas/order-placed-v2.yaml",
        ] {
            let text = std::fs::read_to_string(format!("{root}/config/samples/{file}")).unwrap();
            for document in load::parse(file, &text, false) {
                let value = document.value.unwrap();
                let kind = value["kind"].as_str().unwrap().to_string();
                let problems = schemas.check(&object(&kind, value));
                assert!(problems.is_empty(), "{file}: {problems:#?}");
            }
        }
    }
}
