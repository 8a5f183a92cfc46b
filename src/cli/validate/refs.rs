//! References between the objects of the set: each must name an object of the set in the same
//! namespace (or, with `--allow-external-refs`, is assumed to exist in the cluster), and a
//! pinned EventSchema version must exist. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    objects::Object,
    report::{Check, Problem, Severity},
};

/// A field that names another object.
struct Reference {
    from: &'static str,
    /// JSON pointer of the reference object (`{name, version?}`).
    pointer: &'static str,
    /// How the field is written in messages.
    field: &'static str,
    to: &'static str,
}

/// Every reference the kinds make. `schemaRef`s may pin a version.
const REFERENCES: &[Reference] = &[
    Reference {
        from: "Topic",
        pointer: "/spec/schemaRef",
        field: "spec.schemaRef",
        to: "EventSchema",
    },
    Reference {
        from: "Topic",
        pointer: "/spec/deadLetterPolicyRef",
        field: "spec.deadLetterPolicyRef",
        to: "DeadLetterPolicy",
    },
    Reference {
        from: "Subscription",
        pointer: "/spec/topicRef",
        field: "spec.topicRef",
        to: "Topic",
    },
    Reference {
        from: "Subscription",
        pointer: "/spec/schemaRef",
        field: "spec.schemaRef",
        to: "EventSchema",
    },
    Reference {
        from: "Subscription",
        pointer: "/spec/deadLetterPolicyRef",
        field: "spec.deadLetterPolicyRef",
        to: "DeadLetterPolicy",
    },
    Reference {
        from: "DeadLetterPolicy",
        pointer: "/spec/target/topicRef",
        field: "spec.target.topicRef",
        to: "Topic",
    },
];

/// What a reference to an object that is not among the manifests is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outside {
    /// A warning: the object must exist in the cluster (`--allow-external-refs`).
    Allowed,
    /// An error, which `--allow-external-refs` would turn into a warning.
    Flagged,
    /// An error: without a cluster, every object referred to must be among the manifests.
    Refused,
}

/// The problems of every reference in `objects`.
pub fn check(objects: &[Object], outside: Outside) -> Vec<Problem> {
    // What can be referenced: (kind, namespace, name) → the highest spec.version among the
    // objects of that name (EventSchemas; 0 for other kinds).
    let mut targets: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
    for object in objects {
        let version = object
            .value
            .pointer("/spec/version")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let key = (
            object.id.kind.as_str(),
            object.id.namespace.as_str(),
            object.id.name.as_str(),
        );
        let highest = targets.entry(key).or_insert(version);
        *highest = (*highest).max(version);
    }
    let mut problems = Vec::new();
    for object in objects {
        for reference in REFERENCES.iter().filter(|r| r.from == object.id.kind) {
            let Some(target) = object.value.pointer(reference.pointer) else {
                continue;
            };
            // A reference of the wrong shape is the CRD schema check's to report.
            let Some(name) = target.get("name").and_then(Value::as_str) else {
                continue;
            };
            let namespace = &object.id.namespace;
            let problem = |severity, path: &str, message: String| {
                Problem::of(
                    severity,
                    Check::Reference,
                    &object.origin,
                    &object.id,
                    Some(path.to_string()),
                    message,
                )
            };
            let name_path = format!("{}.name", reference.field);
            match targets.get(&(reference.to, namespace.as_str(), name)) {
                None => problems.push(match outside {
                    Outside::Allowed => problem(
                        Severity::Warning,
                        &name_path,
                        format!(
                            "{} {namespace}/{name} is not among the manifests: it must exist in the cluster",
                            reference.to
                        ),
                    ),
                    Outside::Flagged => problem(
                        Severity::Error,
                        &name_path,
                        format!(
                            "{} {namespace}/{name} is not among the manifests (references stay in the object's namespace): fix the name, add the {}, or pass --allow-external-refs if it is applied from elsewhere",
                            reference.to, reference.to
                        ),
                    ),
                    Outside::Refused => problem(
                        Severity::Error,
                        &name_path,
                        format!(
                            "{} {namespace}/{name} is not among the manifests (references stay in the object's namespace): fix the name or add the {}; without Kubernetes, every object referred to must be among them",
                            reference.to, reference.to
                        ),
                    ),
                }),
                Some(&highest) => {
                    if let Some(pinned) = target.get("version").and_then(Value::as_i64)
                        && pinned > highest
                    {
                        problems.push(problem(
                            Severity::Error,
                            &format!("{}.version", reference.field),
                            format!(
                                "pins version {pinned} of EventSchema {namespace}/{name}, whose highest version among the manifests is {highest}: pin a version that is published"
                            ),
                        ));
                    }
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cli::validate::report::{ObjectId, Origin};

    fn object(kind: &str, namespace: &str, name: &str, spec: Value) -> Object {
        Object {
            origin: Origin {
                file: "m.yaml".into(),
                document: 1,
            },
            id: ObjectId {
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
            },
            value: json!({"kind": kind, "metadata": {"name": name, "namespace": namespace}, "spec": spec}),
        }
    }

    fn set() -> Vec<Object> {
        vec![
            object("EventSchema", "shop", "order-placed", json!({"version": 1})),
            object("EventSchema", "shop", "order-placed", json!({"version": 2})),
            object(
                "DeadLetterPolicy",
                "shop",
                "failures",
                json!({"target": {"topicRef": {"name": "dead"}}}),
            ),
            object("Topic", "shop", "dead", json!({})),
            object(
                "Topic",
                "shop",
                "orders",
                json!({"schemaRef": {"name": "order-placed", "version": 2}, "deadLetterPolicyRef": {"name": "failures"}}),
            ),
            object(
                "Subscription",
                "shop",
                "billing",
                json!({"topicRef": {"name": "orders"}, "deadLetterPolicyRef": {"name": "failures"}, "schemaRef": {"name": "order-placed"}}),
            ),
        ]
    }

    fn paths(problems: &[Problem]) -> Vec<(Severity, String, String)> {
        problems
            .iter()
            .map(|p| {
                (
                    p.severity,
                    p.object.as_ref().unwrap().to_string(),
                    p.path.clone().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_complete_set_has_no_problems() {
        assert_eq!(check(&set(), Outside::Flagged), Vec::new());
    }

    #[test]
    fn missing_targets_are_errors_or_with_external_refs_allowed_warnings() {
        let mut objects = set();
        objects.retain(|o| o.id.name != "dead" && o.id.name != "orders");
        objects.push(object(
            "Subscription",
            "other",
            "audit",
            json!({"topicRef": {"name": "orders"}, "schemaRef": {"name": "order-placed"}}),
        ));
        let expected = |severity| {
            vec![
                (
                    severity,
                    "DeadLetterPolicy shop/failures".into(),
                    "spec.target.topicRef.name".into(),
                ),
                (
                    severity,
                    "Subscription shop/billing".into(),
                    "spec.topicRef.name".into(),
                ),
                (
                    severity,
                    "Subscription other/audit".into(),
                    "spec.topicRef.name".into(),
                ),
                (
                    severity,
                    "Subscription other/audit".into(),
                    "spec.schemaRef.name".into(),
                ),
            ]
        };
        let strict = check(&objects, Outside::Flagged);
        assert_eq!(paths(&strict), expected(Severity::Error));
        assert!(
            strict[0].message.contains("--allow-external-refs"),
            "{}",
            strict[0].message
        );
        let offline = check(&objects, Outside::Refused);
        assert_eq!(paths(&offline), expected(Severity::Error));
        assert!(
            !offline[0].message.contains("--allow-external-refs"),
            "{}",
            offline[0].message
        );
        assert_eq!(
            paths(&check(&objects, Outside::Allowed)),
            expected(Severity::Warning)
        );
    }

    #[test]
    fn a_pinned_version_must_not_exceed_the_highest_in_the_set() {
        let mut objects = set();
        objects[4] = object(
            "Topic",
            "shop",
            "orders",
            json!({"schemaRef": {"name": "order-placed", "version": 3}}),
        );
        let problems = check(&objects, Outside::Allowed);
        assert_eq!(
            paths(&problems),
            vec![(
                Severity::Error,
                "Topic shop/orders".into(),
                "spec.schemaRef.version".into()
            )]
        );
        assert!(
            problems[0]
                .message
                .contains("highest version among the manifests is 2")
        );
    }
}
