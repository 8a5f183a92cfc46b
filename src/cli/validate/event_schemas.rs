//! EventSchemas of the set: each document must be a JSON Schema the operator accepts (the same
//! engine, [`Schema::parse`]), and of several versions of one event type in a namespace only the
//! highest is the one to publish. Pure.

use std::collections::BTreeMap;

use super::{
    objects::Object,
    report::{Check, Problem, Severity},
};
use crate::{
    api::EventSchema,
    reconcile::event_schema::candidate,
    registry::Candidate,
    schema::{Schema, SchemaError},
};

/// An EventSchema whose document is a usable schema, with the candidate it would register.
#[derive(Clone, Debug)]
pub struct Published<'a> {
    pub object: &'a Object,
    pub candidate: Candidate,
}

/// The EventSchemas of `objects` that can be judged, and the problems of those that cannot.
/// Objects `has_errors` says are broken already are skipped without a word: their problems are
/// reported.
pub fn parse<'a>(
    objects: &'a [Object],
    has_errors: impl Fn(&Object) -> bool,
) -> (Vec<Published<'a>>, Vec<Problem>) {
    let mut published = Vec::new();
    let mut problems = Vec::new();
    for object in objects.iter().filter(|o| o.id.kind == "EventSchema") {
        if has_errors(object) {
            continue;
        }
        let problem = |check, path: String, message: String| {
            Problem::of(
                Severity::Error,
                check,
                &object.origin,
                &object.id,
                Some(path),
                message,
            )
        };
        let schema: EventSchema = match serde_json::from_value(object.value.clone()) {
            Ok(schema) => schema,
            Err(e) => {
                problems.push(problem(
                    Check::Manifest,
                    "spec".into(),
                    format!("cannot be read as an EventSchema: {e}"),
                ));
                continue;
            }
        };
        if let Err(error) = Schema::parse(schema.spec.schema.clone()) {
            problems.push(problem(
                Check::JsonSchema,
                schema_path(&error),
                error.to_string(),
            ));
            continue;
        }
        match candidate(&schema, String::new()) {
            Ok(candidate) => published.push(Published { object, candidate }),
            Err(message) => {
                problems.push(problem(Check::JsonSchema, "spec.schema".into(), message))
            }
        }
    }
    (published, problems)
}

/// `spec.schema`, followed by the JSON pointer of the place the error names.
fn schema_path(error: &SchemaError) -> String {
    let location = match error {
        SchemaError::Invalid { location, .. }
        | SchemaError::UnresolvableRef { location, .. }
        | SchemaError::RefCycle { location } => location.as_str(),
        _ => "",
    };
    match location {
        "" | "#" => "spec.schema".into(),
        pointer => format!("spec.schema{pointer}"),
    }
}

/// The versions of each event type: the index (into `published`) of the highest version of
/// each, and the problems of the others. A lower version is a warning (the highest is the one
/// that counts); the same version with other content is an error.
pub fn versions(published: &[Published<'_>]) -> (Vec<usize>, Vec<Problem>) {
    let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (index, p) in published.iter().enumerate() {
        groups
            .entry((&p.candidate.namespace, &p.candidate.event_type))
            .or_default()
            .push(index);
    }
    let mut heads = Vec::new();
    let mut problems = Vec::new();
    for mut members in groups.into_values() {
        // Highest version first; of equal ones, the first in file order.
        members.sort_by(|&a, &b| {
            let (a, b) = (&published[a], &published[b]);
            b.candidate
                .version
                .cmp(&a.candidate.version)
                .then_with(|| a.object.origin.cmp(&b.object.origin))
        });
        let head = &published[members[0]];
        heads.push(members[0]);
        for &other in &members[1..] {
            let other = &published[other];
            let (event_type, version) = (&other.candidate.event_type, other.candidate.version);
            let (severity, path, message) = if version < head.candidate.version {
                (
                    Severity::Warning,
                    "spec.version",
                    format!(
                        "{event_type} v{version} is superseded by v{} in {}: only the highest version is checked against the registry",
                        head.candidate.version, head.object.origin
                    ),
                )
            } else if other.candidate.fingerprint == head.candidate.fingerprint {
                (
                    Severity::Warning,
                    "spec.version",
                    format!(
                        "{event_type} v{version} is also in {}, with the same content",
                        head.object.origin
                    ),
                )
            } else {
                (
                    Severity::Error,
                    "spec.schema",
                    format!(
                        "{event_type} v{version} is also in {} with other content: a version's content never changes once published; publish one of them as v{}",
                        head.object.origin,
                        version + 1
                    ),
                )
            };
            problems.push(Problem::of(
                severity,
                Check::Version,
                &other.object.origin,
                &other.object.id,
                Some(path.into()),
                message,
            ));
        }
    }
    heads.sort_unstable();
    (heads, problems)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::cli::validate::report::{ObjectId, Origin};

    fn object(document: usize, version: i64, schema: Value) -> Object {
        Object {
            origin: Origin {
                file: "schemas.yaml".into(),
                document,
            },
            id: ObjectId {
                kind: "EventSchema".into(),
                namespace: "shop".into(),
                name: "order-placed".into(),
            },
            value: json!({
                "apiVersion": "switchyard.dev/v1alpha1", "kind": "EventSchema",
                "metadata": {"name": "order-placed", "namespace": "shop"},
                "spec": {"eventType": "order.placed", "version": version, "schema": schema},
            }),
        }
    }

    fn object_schema() -> Value {
        json!({"type": "object", "properties": {"id": {"type": "string"}}})
    }

    #[test]
    fn an_invalid_document_is_reported_where_the_engine_points() {
        let objects = [
            object(
                1,
                1,
                json!({"type": "object", "properties": {"id": {"type": "text"}}}),
            ),
            object(2, 1, json!({"$ref": "#/$defs/missing"})),
            object(3, 1, object_schema()),
        ];
        let (published, problems) = parse(&objects, |_| false);
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].candidate.version, 1);
        let paths: Vec<&str> = problems
            .iter()
            .map(|p| p.path.as_deref().unwrap())
            .collect();
        assert_eq!(paths[0], "spec.schema#/properties/id/type", "{problems:#?}");
        assert!(paths[1].starts_with("spec.schema"), "{problems:#?}");
        assert!(problems.iter().all(|p| p.check == Check::JsonSchema));
    }

    #[test]
    fn objects_with_schema_errors_are_left_alone() {
        let objects = [object(1, 1, json!({"type": 42}))];
        let (published, problems) = parse(&objects, |_| true);
        assert!(published.is_empty() && problems.is_empty());
    }

    #[test]
    fn only_the_highest_version_is_a_head_and_the_others_are_told_why() {
        let changed = json!({"type": "object"});
        let objects = [
            object(1, 1, object_schema()),
            object(2, 3, object_schema()),
            object(3, 3, object_schema()),
            object(4, 3, changed),
        ];
        let (published, _) = parse(&objects, |_| false);
        let (heads, problems) = versions(&published);
        assert_eq!(heads, vec![1]);
        let found: Vec<(usize, Severity)> = problems
            .iter()
            .map(|p| (p.document.unwrap(), p.severity))
            .collect();
        assert_eq!(
            found,
            vec![
                (3, Severity::Warning),
                (4, Severity::Error),
                (1, Severity::Warning)
            ]
        );
        assert!(
            problems[2]
                .message
                .contains("superseded by v3 in schemas.yaml (document 2)")
        );
        assert!(problems[1].message.contains("publish one of them as v4"));
    }
}
