//! An EventSchema judged against what was published before it, by the registry's own rule
//! ([`crate::registry::decide`]): the history is the registry's records or the same file in a
//! git revision, made to look alike. Pure.

use super::{
    event_schemas::Published,
    report::{Check, Problem, Severity},
};
use crate::{
    registry::{Candidate, Decision, Holding, Latest, decide},
    schema::Compatibility,
};

/// What the history is, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline<'a> {
    /// The registry's records.
    Registry,
    /// A file in a git revision, written `<rev>:<path>`.
    Git(&'a str),
}

/// The history of one earlier version, as a registry would hold it: a file's previous content.
pub fn holding_of(previous: &Candidate) -> Holding {
    Holding {
        latest: Some((
            Latest {
                record: previous.record.clone(),
                versions: vec![previous.version],
            },
            0,
        )),
        earlier: Vec::new(),
    }
}

/// The problems of `published` judged against `holding`.
pub fn judge(published: &Published<'_>, holding: &Holding, baseline: Baseline<'_>) -> Vec<Problem> {
    let candidate = &published.candidate;
    let (event_type, version) = (&candidate.event_type, candidate.version);
    let problem = |severity, check, path: &str, message: String| {
        Problem::of(
            severity,
            check,
            &published.object.origin,
            &published.object.id,
            Some(path.to_string()),
            message,
        )
    };
    let latest = holding.latest.as_ref().map(|(latest, _)| latest);
    let place = |v: i64| match (baseline, latest) {
        (Baseline::Registry, Some(l)) => format!(
            "the registry (v{v} of {event_type} in namespace {}, registered at {} by {})",
            candidate.namespace, l.record.registered_at, l.record.registered_by
        ),
        (Baseline::Registry, None) => "the registry".into(),
        (Baseline::Git(spec), _) => format!("{spec} (v{v})"),
    };
    match decide(candidate, holding) {
        Decision::Register { .. } | Decision::Registered => Vec::new(),
        Decision::Downgrade { latest } => vec![problem(
            Severity::Error,
            Check::Version,
            "spec.version",
            format!(
                "spec.version {version} is below {}: versions never go down, so the registry and every consumer would keep v{latest}; publish changes as a version above {latest}",
                place(latest)
            ),
        )],
        Decision::ContentChanged { registered } => vec![problem(
            Severity::Error,
            Check::Version,
            "spec.schema",
            format!(
                "{event_type} v{version} has other content than in {} (fingerprint {registered}, here {}): a published version never changes; publish this schema as a version above {version}",
                place(version),
                candidate.fingerprint
            ),
        )],
        Decision::Incompatible { report } => {
            let history = history_versions(candidate, holding);
            report
                .breaking()
                .map(|(pair, difference)| {
                    let against = history.get(pair.against).copied().unwrap_or_default();
                    problem(
                        Severity::Error,
                        Check::Compatibility,
                        &format!("spec.schema{}", difference.pointer),
                        format!(
                            "v{version} breaks {:?} compatibility with {}: {} ({:?} check)",
                            report.mode,
                            place(against),
                            difference.kind,
                            pair.direction
                        ),
                    )
                })
                .collect()
        }
        Decision::HistoryUnreadable {
            version: bad,
            error,
        } => {
            let severity = match baseline {
                Baseline::Registry => Severity::Error,
                Baseline::Git(_) => Severity::Warning,
            };
            vec![problem(
                severity,
                Check::Compatibility,
                "spec.schema",
                format!(
                    "{} cannot be read as a JSON Schema ({error}): nothing was compared",
                    place(bad)
                ),
            )]
        }
    }
}

/// The versions a compatibility report indexes, as [`decide`] gathers them: the earlier ones a
/// transitive mode needs, then the latest.
fn history_versions(candidate: &Candidate, holding: &Holding) -> Vec<i64> {
    let Some((latest, _)) = &holding.latest else {
        return Vec::new();
    };
    let transitive = matches!(
        candidate.compatibility,
        Compatibility::BackwardTransitive
            | Compatibility::ForwardTransitive
            | Compatibility::FullTransitive
    );
    holding
        .earlier
        .iter()
        .filter(|_| transitive)
        .map(|r| r.version)
        .filter(|v| *v < latest.record.version)
        .chain(std::iter::once(latest.record.version))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::cli::validate::{
        event_schemas,
        objects::Object,
        report::{ObjectId, Origin},
    };

    fn object(version: i64, mode: &str, schema: Value) -> Object {
        Object {
            origin: Origin {
                file: "order-placed.yaml".into(),
                document: 1,
            },
            id: ObjectId {
                kind: "EventSchema".into(),
                namespace: "shop".into(),
                name: "order-placed".into(),
            },
            value: json!({
                "apiVersion": "switchyard.dev/v1alpha1", "kind": "EventSchema",
                "metadata": {"name": "order-placed", "namespace": "shop"},
                "spec": {"eventType": "order.placed", "version": version, "compatibility": mode, "schema": schema},
            }),
        }
    }

    fn v1() -> Value {
        json!({"type": "object", "properties": {"id": {"type": "string"}}, "additionalProperties": false})
    }

    fn judged(old: &Object, new: &Object) -> Vec<Problem> {
        let objects = [old.clone(), new.clone()];
        let (published, problems) = event_schemas::parse(&objects, |_| false);
        assert!(problems.is_empty(), "{problems:#?}");
        judge(
            &published[1],
            &holding_of(&published[0].candidate),
            Baseline::Git("HEAD:order-placed.yaml"),
        )
    }

    #[test]
    fn a_lower_version_is_a_downgrade() {
        let problems = judged(&object(2, "Backward", v1()), &object(1, "Backward", v1()));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].check, Check::Version);
        assert_eq!(problems[0].path.as_deref(), Some("spec.version"));
        assert!(
            problems[0]
                .message
                .contains("below HEAD:order-placed.yaml (v2)"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn the_same_version_must_keep_its_content_but_not_its_key_order() {
        let reordered = json!({"additionalProperties": false, "properties": {"id": {"type": "string"}}, "type": "object"});
        assert!(
            judged(
                &object(1, "Backward", v1()),
                &object(1, "Backward", reordered)
            )
            .is_empty()
        );
        let problems = judged(
            &object(1, "Backward", v1()),
            &object(1, "Backward", json!({"type": "object"})),
        );
        assert_eq!(problems[0].path.as_deref(), Some("spec.schema"));
        assert!(problems[0].message.contains("other content"));
    }

    #[test]
    fn each_breaking_change_is_reported_at_its_pointer() {
        let v2 = json!({"type": "object", "properties": {"id": {"type": "string"}, "total": {"type": "number"}}, "required": ["total"], "additionalProperties": false});
        let problems = judged(
            &object(1, "Backward", v1()),
            &object(2, "Backward", v2.clone()),
        );
        assert!(!problems.is_empty());
        assert!(problems.iter().all(|p| p.check == Check::Compatibility));
        assert!(
            problems
                .iter()
                .any(|p| p.path.as_deref().unwrap().contains("total")),
            "{problems:#?}"
        );
        assert!(
            problems[0]
                .message
                .contains("breaks Backward compatibility with HEAD:order-placed.yaml (v1)"),
            "{}",
            problems[0].message
        );
        assert!(judged(&object(1, "Backward", v1()), &object(2, "None", v2)).is_empty());
    }
}
