//! Which documents are Switchyard objects: `switchyard.dev` ones are kept (each named by kind,
//! namespace and name), other groups are counted and left alone, anything else is a problem.
//! Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    load::Document,
    report::{Check, ObjectId, Origin, Problem, Severity},
};
use crate::api::{GROUP, VERSION};

/// The kinds of `switchyard.dev`.
pub const KINDS: [&str; 4] = ["Topic", "Subscription", "DeadLetterPolicy", "EventSchema"];

/// A `switchyard.dev` object of the set.
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub origin: Origin,
    pub id: ObjectId,
    /// As written, except that `metadata.namespace` is filled in where it was missing.
    pub value: Value,
}

/// The documents sorted out.
#[derive(Debug, Default)]
pub struct Sorted {
    pub objects: Vec<Object>,
    /// Objects of other API groups.
    pub ignored: usize,
    pub problems: Vec<Problem>,
}

/// Sorts `documents` out; objects without a namespace get `namespace`. The items of a `List`
/// are sorted out one by one.
pub fn sort(documents: Vec<Document>, namespace: &str) -> Sorted {
    let mut sorted = Sorted::default();
    for document in documents {
        match document.value {
            Ok(value) => sort_value(&document.origin, value, namespace, &mut sorted),
            Err(message) => sorted
                .problems
                .push(manifest_problem(&document.origin, message)),
        }
    }
    sorted
}

fn sort_value(origin: &Origin, mut value: Value, namespace: &str, sorted: &mut Sorted) {
    if !value.is_object() {
        sorted.problems.push(manifest_problem(
            origin,
            "not a Kubernetes object: a manifest is a mapping with apiVersion, kind and metadata",
        ));
        return;
    }
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let (Some(api_version), Some(kind)) = (text("apiVersion"), text("kind")) else {
        sorted.problems.push(manifest_problem(
            origin,
            "not a Kubernetes object: apiVersion and kind are required",
        ));
        return;
    };
    if api_version == "v1"
        && kind.ends_with("List")
        && let Some(Value::Array(items)) = value.get_mut("items").map(Value::take)
    {
        for item in items {
            sort_value(origin, item, namespace, sorted);
        }
        return;
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    if group != GROUP {
        sorted.ignored += 1;
        return;
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let given_namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let id = ObjectId {
        kind: kind.clone(),
        namespace: given_namespace
            .clone()
            .unwrap_or_else(|| namespace.to_string()),
        name: name.clone().unwrap_or_default(),
    };
    let problem = |path: Option<&str>, message: String| {
        Problem::of(
            Severity::Error,
            Check::Manifest,
            origin,
            &id,
            path.map(str::to_owned),
            message,
        )
    };
    if version != VERSION {
        sorted.problems.push(problem(
            Some("apiVersion"),
            format!(
                "{api_version} is not served: the only version of {GROUP} is {GROUP}/{VERSION}"
            ),
        ));
        return;
    }
    if !KINDS.contains(&kind.as_str()) {
        sorted.problems.push(problem(
            Some("kind"),
            format!(
                "{GROUP} has no kind {kind:?}; its kinds are {}",
                KINDS.join(", ")
            ),
        ));
        return;
    }
    if name.as_deref().is_none_or(str::is_empty) {
        sorted.problems.push(problem(
            Some("metadata.name"),
            "metadata.name is required".into(),
        ));
        return;
    }
    if given_namespace.is_none()
        && let Some(Value::Object(metadata)) = value.get_mut("metadata")
    {
        metadata.insert("namespace".into(), Value::String(id.namespace.clone()));
    }
    sorted.objects.push(Object {
        origin: origin.clone(),
        id,
        value,
    });
}

fn manifest_problem(origin: &Origin, message: impl Into<String>) -> Problem {
    Problem {
        severity: Severity::Error,
        check: Check::Manifest,
        file: origin.file.clone(),
        document: Some(origin.document),
        object: None,
        path: None,
        message: message.into(),
    }
}

/// Objects defined more than once: applying the set would keep only the last. EventSchemas are
/// left to the version check, where several versions of one schema are expected.
pub fn duplicates(objects: &[Object]) -> Vec<Problem> {
    let mut first: BTreeMap<&ObjectId, &Origin> = BTreeMap::new();
    let mut problems = Vec::new();
    for object in objects.iter().filter(|o| o.id.kind != "EventSchema") {
        match first.get(&object.id) {
            Some(earlier) => problems.push(Problem::of(
                Severity::Error,
                Check::Manifest,
                &object.origin,
                &object.id,
                Some("metadata.name".into()),
                format!(
                    "{} is defined twice, here and in {earlier}: applying both keeps only one of them",
                    object.id
                ),
            )),
            None => {
                first.insert(&object.id, &object.origin);
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn document(index: usize, value: Value) -> Document {
        Document {
            origin: Origin {
                file: "m.yaml".into(),
                document: index,
            },
            value: Ok(value),
        }
    }

    #[test]
    fn switchyard_objects_are_kept_other_groups_counted_and_the_rest_reported() {
        let sorted = sort(
            vec![
                document(
                    1,
                    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "orders"}}),
                ),
                document(
                    2,
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
                ),
                document(
                    3,
                    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "Queue", "metadata": {"name": "q"}}),
                ),
                document(
                    4,
                    json!({"apiVersion": "switchyard.dev/v2", "kind": "Topic", "metadata": {"name": "t"}}),
                ),
                document(5, json!({"kind": "Topic"})),
                document(6, json!(["a list"])),
                document(
                    7,
                    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "Topic", "metadata": {}}),
                ),
            ],
            "shop",
        );
        assert_eq!(sorted.ignored, 1);
        assert_eq!(sorted.objects.len(), 1);
        let topic = &sorted.objects[0];
        assert_eq!(topic.id.to_string(), "Topic shop/orders");
        assert_eq!(topic.value["metadata"]["namespace"], "shop");
        let found: Vec<(Option<usize>, Option<String>)> = sorted
            .problems
            .iter()
            .map(|p| (p.document, p.path.clone()))
            .collect();
        assert_eq!(
            found,
            vec![
                (Some(3), Some("kind".into())),
                (Some(4), Some("apiVersion".into())),
                (Some(5), None),
                (Some(6), None),
                (Some(7), Some("metadata.name".into())),
            ]
        );
        assert!(sorted.problems[0].message.contains("EventSchema"));
    }

    #[test]
    fn list_items_are_objects_of_their_own() {
        let sorted = sort(
            vec![document(
                1,
                json!({"apiVersion": "v1", "kind": "List", "items": [
                    {"apiVersion": "switchyard.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "a", "namespace": "ops"}},
                    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "b"}},
                ]}),
            )],
            "default",
        );
        assert_eq!(sorted.objects[0].id.to_string(), "Topic ops/a");
        assert_eq!(sorted.ignored, 1);
    }

    #[test]
    fn an_object_defined_twice_is_reported_once_but_event_schema_versions_are_not() {
        let sorted = sort(
            vec![
                document(
                    1,
                    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "a"}}),
                ),
                document(
                    2,
                    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "a", "namespace": "default"}}),
                ),
                document(
                    3,
                    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "a", "namespace": "other"}}),
                ),
                document(
                    4,
                    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "EventSchema", "metadata": {"name": "s"}}),
                ),
                document(
                    5,
                    json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "EventSchema", "metadata": {"name": "s"}}),
                ),
            ],
            "default",
        );
        let problems = duplicates(&sorted.objects);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].document, Some(2));
        assert!(
            problems[0].message.contains("m.yaml (document 1)"),
            "{}",
            problems[0].message
        );
    }
}
