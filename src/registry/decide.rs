//! Whether a candidate version may be registered, judged against what the registry holds. Pure.
//!
//! Versions only move forward: below the latest is a downgrade, equal must be the same content,
//! above must pass the compatibility check of the candidate's mode against the history.

use crate::schema::{Compatibility, Report, Schema, check};

use super::record::{Latest, SchemaRecord};

/// A version an EventSchema asks to register.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub namespace: String,
    pub event_type: String,
    pub version: i64,
    pub compatibility: Compatibility,
    pub schema: Schema,
    /// See [`super::record::fingerprint`].
    pub fingerprint: String,
    pub record: SchemaRecord,
}

/// What the registry holds for an event type.
#[derive(Clone, Debug, Default)]
pub struct Holding {
    /// The `latest` pointer and its revision, absent before the first registration.
    pub latest: Option<(Latest, u64)>,
    /// Earlier versions' records, ascending; read only when the candidate's mode is transitive.
    pub earlier: Vec<SchemaRecord>,
}

impl Holding {
    pub fn latest_version(&self) -> Option<i64> {
        self.latest.as_ref().map(|(l, _)| l.record.version)
    }
}

/// The decision for a candidate.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Register it; `report` is the compatibility check it passed (`None`: nothing to check).
    Register { report: Option<Report> },
    /// This version with this content is registered already.
    Registered,
    /// The registry holds a higher version; it keeps it.
    Downgrade { latest: i64 },
    /// This version is registered with other content.
    ContentChanged { registered: String },
    /// The candidate breaks compatibility with the history under its mode.
    Incompatible { report: Report },
    /// A registered version cannot be read as a schema any more (stored by a newer Switchyard,
    /// or written by hand): nothing is decided against a history that cannot be read.
    HistoryUnreadable { version: i64, error: String },
}

/// Decides what to do with `candidate` given `holding`.
pub fn decide(candidate: &Candidate, holding: &Holding) -> Decision {
    let Some((latest, _)) = &holding.latest else {
        return Decision::Register { report: None };
    };
    let newest = &latest.record;
    if candidate.version < newest.version {
        return Decision::Downgrade {
            latest: newest.version,
        };
    }
    if candidate.version == newest.version {
        return if candidate.fingerprint == newest.fingerprint {
            Decision::Registered
        } else {
            Decision::ContentChanged {
                registered: newest.fingerprint.clone(),
            }
        };
    }
    if candidate.compatibility == Compatibility::None {
        return Decision::Register { report: None };
    }
    let transitive = matches!(
        candidate.compatibility,
        Compatibility::BackwardTransitive
            | Compatibility::ForwardTransitive
            | Compatibility::FullTransitive
    );
    let records = holding
        .earlier
        .iter()
        .filter(|_| transitive)
        .filter(|r| r.version < newest.version)
        .chain(std::iter::once(newest));
    let mut history = Vec::new();
    for record in records {
        match Schema::parse(record.schema.clone()) {
            Ok(schema) => history.push(schema),
            Err(error) => {
                return Decision::HistoryUnreadable {
                    version: record.version,
                    error: error.to_string(),
                };
            }
        }
    }
    let report = check(candidate.compatibility, &history, &candidate.schema);
    if report.compatible {
        Decision::Register {
            report: Some(report),
        }
    } else {
        Decision::Incompatible { report }
    }
}

/// The versions registered once `candidate` is: the latest's list plus the candidate.
pub fn versions_after(holding: &Holding, candidate: &Candidate) -> Vec<i64> {
    let mut versions = holding
        .latest
        .as_ref()
        .map(|(l, _)| l.versions.clone())
        .unwrap_or_default();
    if !versions.contains(&candidate.version) {
        versions.push(candidate.version);
    }
    versions.sort_unstable();
    versions
}

/// The breaking changes of a report for a status message: one per line, at most `limit`, with
/// the count of those left out.
pub fn breaking_summary(report: &Report, history_versions: &[i64], limit: usize) -> String {
    let breaking: Vec<String> = report
        .breaking()
        .map(|(pair, difference)| {
            let against = history_versions
                .get(pair.against)
                .map_or_else(String::new, |v| {
                    format!(" (against v{v}, {:?})", pair.direction)
                });
            format!("{difference}{against}")
        })
        .collect();
    let mut lines: Vec<String> = breaking.iter().take(limit).cloned().collect();
    if breaking.len() > limit {
        lines.push(format!("… and {} more", breaking.len() - limit));
    }
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::registry::record::fingerprint;

    fn record(version: i64, schema: &Value) -> SchemaRecord {
        SchemaRecord {
            event_type: "order.placed".into(),
            version,
            compatibility: Compatibility::Backward,
            fingerprint: fingerprint(schema).1,
            schema: schema.clone(),
            defaults: None,
            registered_at: "2026-12-05T00:00:00Z".into(),
            registered_by: "shop/order-placed".into(),
        }
    }

    fn candidate(version: i64, mode: Compatibility, schema: Value) -> Candidate {
        Candidate {
            namespace: "shop".into(),
            event_type: "order.placed".into(),
            version,
            compatibility: mode,
            schema: Schema::parse(schema.clone()).unwrap(),
            fingerprint: fingerprint(&schema).1,
            record: record(version, &schema),
        }
    }

    fn holding(records: &[SchemaRecord]) -> Holding {
        let (newest, earlier) = records.split_last().unwrap();
        Holding {
            latest: Some((
                Latest {
                    record: newest.clone(),
                    versions: records.iter().map(|r| r.version).collect(),
                },
                7,
            )),
            earlier: earlier.to_vec(),
        }
    }

    /// A closed object: Confluent's rules let a closed model gain optional properties under
    /// Backward, not required ones.
    fn open(required: &[&str]) -> Value {
        json!({"type": "object", "properties": {"id": {"type": "string"}, "note": {"type": "string"}}, "required": required, "additionalProperties": false})
    }

    #[test]
    fn the_first_version_is_registered_without_a_check() {
        let decision = decide(
            &candidate(3, Compatibility::Full, open(&[])),
            &Holding::default(),
        );
        assert!(matches!(decision, Decision::Register { report: None }));
    }

    #[test]
    fn a_lower_version_is_a_downgrade_even_when_it_was_registered_once() {
        let v1 = record(1, &open(&[]));
        let v2 = record(2, &open(&["id"]));
        let decision = decide(
            &candidate(1, Compatibility::Backward, open(&[])),
            &holding(&[v1, v2]),
        );
        assert!(matches!(decision, Decision::Downgrade { latest: 2 }));
    }

    #[test]
    fn the_same_version_must_keep_its_content() {
        let v1 = record(1, &open(&[]));
        let same = decide(
            &candidate(1, Compatibility::Backward, open(&[])),
            &holding(std::slice::from_ref(&v1)),
        );
        assert!(matches!(same, Decision::Registered));
        let changed = decide(
            &candidate(1, Compatibility::Backward, open(&["id"])),
            &holding(std::slice::from_ref(&v1)),
        );
        let Decision::ContentChanged { registered } = changed else {
            panic!("expected ContentChanged, got {changed:?}");
        };
        assert_eq!(registered, v1.fingerprint);
    }

    #[test]
    fn a_new_required_property_breaks_backward_and_an_optional_one_does_not() {
        let v1 = record(1, &open(&[]));
        let required = json!({"type": "object", "properties": {"id": {"type": "string"}, "note": {"type": "string"}, "total": {"type": "number"}}, "required": ["total"], "additionalProperties": false});
        let Decision::Incompatible { report } = decide(
            &candidate(2, Compatibility::Backward, required),
            &holding(std::slice::from_ref(&v1)),
        ) else {
            panic!("a required property must break Backward");
        };
        let summary = breaking_summary(&report, &[1], 5);
        assert!(
            summary.contains("#/required/total") || summary.contains("total"),
            "{summary}"
        );
        assert!(summary.contains("against v1"), "{summary}");
        let optional = json!({"type": "object", "properties": {"id": {"type": "string"}, "note": {"type": "string"}, "total": {"type": "number"}}, "additionalProperties": false});
        assert!(matches!(
            decide(
                &candidate(2, Compatibility::Backward, optional),
                &holding(&[v1])
            ),
            Decision::Register { report: Some(_) }
        ));
    }

    #[test]
    fn transitive_modes_judge_against_every_version_and_plain_ones_against_the_latest() {
        // v1 closed to `note`, v2 drops it, v3 brings it back as an integer: v3 is fine next to v2
        // but not next to v1.
        let v1 = record(
            1,
            &json!({"type": "object", "properties": {"note": {"type": "string"}}}),
        );
        let v2 = record(2, &json!({"type": "object", "properties": {}}));
        let v3 = json!({"type": "object", "properties": {"note": {"type": "integer"}}});
        let plain = decide(
            &candidate(3, Compatibility::Forward, v3.clone()),
            &holding(&[v1.clone(), v2.clone()]),
        );
        let transitive = decide(
            &candidate(3, Compatibility::ForwardTransitive, v3),
            &holding(&[v1, v2]),
        );
        assert!(matches!(plain, Decision::Register { .. }), "{plain:?}");
        assert!(
            matches!(transitive, Decision::Incompatible { .. }),
            "{transitive:?}"
        );
    }

    #[test]
    fn mode_none_registers_anything_higher() {
        let v1 = record(1, &open(&[]));
        let decision = decide(
            &candidate(5, Compatibility::None, json!({"type": "string"})),
            &holding(&[v1]),
        );
        assert!(matches!(decision, Decision::Register { report: None }));
    }

    #[test]
    fn an_unreadable_history_decides_nothing() {
        let mut v1 = record(1, &open(&[]));
        v1.schema = json!({"type": 42});
        let decision = decide(
            &candidate(2, Compatibility::Backward, open(&[])),
            &holding(&[v1]),
        );
        assert!(
            matches!(decision, Decision::HistoryUnreadable { version: 1, .. }),
            "{decision:?}"
        );
    }

    #[test]
    fn the_version_list_grows_in_order() {
        let v1 = record(1, &open(&[]));
        let v4 = record(4, &open(&[]));
        let after = versions_after(
            &holding(&[v1, v4]),
            &candidate(7, Compatibility::None, open(&[])),
        );
        assert_eq!(after, vec![1, 4, 7]);
        assert_eq!(
            versions_after(
                &Holding::default(),
                &candidate(2, Compatibility::None, open(&[]))
            ),
            vec![2]
        );
    }
}
