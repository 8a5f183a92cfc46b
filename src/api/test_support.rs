//! Helpers for the CRD tests of every kind.

use kube::CustomResourceExt;
use serde_json::Value;

/// The `openAPIV3Schema` of a kind's CRD, as JSON.
pub fn schema_of<K: CustomResourceExt>() -> Value {
    let crd = serde_json::to_value(K::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The schema at a dotted property path below the root (`spec.retry.backoff`).
pub fn at<'a>(schema: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(schema, |s, name| {
        let next = &s["properties"][name];
        assert!(!next.is_null(), "no property {name:?} on the way to {path}");
        next
    })
}

/// The CEL rules (`x-kubernetes-validations[].rule`) on one schema node.
pub fn rules(node: &Value) -> Vec<&str> {
    node["x-kubernetes-validations"]
        .as_array()
        .map(|rules| rules.iter().filter_map(|r| r["rule"].as_str()).collect())
        .unwrap_or_default()
}

/// Whether the node carries a rule containing `needle`, with a non-empty message.
pub fn has_rule(node: &Value, needle: &str) -> bool {
    node["x-kubernetes-validations"]
        .as_array()
        .is_some_and(|rules| {
            rules.iter().any(|r| {
                r["rule"].as_str().is_some_and(|rule| rule.contains(needle))
                    && r["message"].as_str().is_some_and(|m| !m.is_empty())
            })
        })
}

/// Every property lacking a description, and every construct a structural schema forbids.
pub fn schema_problems(schema: &Value) -> Vec<String> {
    fn walk(node: &Value, path: &str, out: &mut Vec<String>) {
        for key in ["anyOf", "oneOf", "allOf", "not", "$ref"] {
            if node.get(key).is_some() {
                out.push(format!("{path}: has {key}"));
            }
        }
        if let Some(props) = node["properties"].as_object() {
            for (name, prop) in props {
                let child = format!("{path}.{name}");
                if prop["description"].as_str().is_none_or(str::is_empty) {
                    out.push(format!("{child}: no description"));
                }
                walk(prop, &child, out);
            }
        }
        if node["items"].is_object() {
            walk(&node["items"], &format!("{path}[]"), out);
        }
        if node["additionalProperties"].is_object() {
            walk(&node["additionalProperties"], &format!("{path}{{}}"), out);
        }
    }
    let mut out = Vec::new();
    walk(schema, "", &mut out);
    out
}

/// Root-level rules that name a fieldPath: the apiserver only accepts paths to properties
/// of the schema, and `metadata` is not one.
pub fn root_rules_with_field_path(schema: &Value) -> Vec<String> {
    schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r.get("fieldPath").is_some())
        .map(|r| r["rule"].to_string())
        .collect()
}

/// The printer columns of a kind's CRD as (name, jsonPath) pairs.
pub fn printer_columns<K: CustomResourceExt>() -> Vec<(String, String)> {
    K::crd().spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.json_path.clone()))
        .collect()
}

/// Asserts what every Switchyard kind shares: group, version, namespaced scope, the status
/// subresource, the `switchyard` category, its short name, and its printer columns in order.
pub fn assert_kind_basics<K: CustomResourceExt>(
    plural: &str,
    kind: &str,
    short_name: &str,
    columns: &[&str],
) {
    let crd = K::crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some(format!("{plural}.switchyard.dev").as_str())
    );
    assert_eq!(crd.spec.group, "switchyard.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, kind);
    assert_eq!(
        crd.spec.names.short_names,
        Some(vec![short_name.to_string()])
    );
    assert_eq!(
        crd.spec.names.categories,
        Some(vec!["switchyard".to_string()])
    );
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let names: Vec<String> = printer_columns::<K>().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, columns);
}
