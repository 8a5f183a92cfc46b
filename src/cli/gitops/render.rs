//! Plans, applied plans and the topology as text for people or JSON for scripts. Pure.
//!
//! The JSON shapes carry `format` 1; new fields may be added, none will change meaning without
//! raising it.

use std::fmt::Write as _;

use serde::Serialize;

use crate::gitops::{
    Action, Applied, Plan, Step, StepOutcome, Topology, fields::FieldChange, plan::Summary,
};

/// Version of the JSON shapes.
pub const JSON_FORMAT: u32 = 1;

/// The steps that change something or are refused or skipped; unchanged ones only count.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    for step in plan.steps.iter().filter(|s| s.action != Action::Unchanged) {
        step_text(&mut out, step, verb(step.action));
    }
    let summary = plan.summary();
    if summary.refused > 0 {
        let _ = writeln!(
            out,
            "\n{} refused: `switchyard apply` applies nothing while a change is refused; each says what to do.",
            plural(summary.refused, "change")
        );
    } else if plan.changes() == 0 {
        out.push_str("No changes: the broker matches the manifests.\n");
    }
    let _ = writeln!(out, "Plan: {}.", summary_text(&summary));
    out
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Create => "+ create",
        Action::Update => "~ update",
        Action::Delete => "- delete",
        Action::Unchanged => "  unchanged",
        Action::Refused => "! refused",
        Action::Skipped => "  skipped",
    }
}

/// `<verb> <object> → <target>`, then the fields and the message indented.
fn step_text(out: &mut String, step: &Step, verb: &str) {
    let _ = writeln!(out, "{verb} {} → {}", step.object, step.target);
    for field in &step.fields {
        let _ = writeln!(out, "      {}", field_text(field));
    }
    if let Some(message) = &step.message {
        let _ = writeln!(out, "      # {message}");
    }
}

fn field_text(field: &FieldChange) -> String {
    match (&field.old, &field.new) {
        (None, Some(new)) => format!("{}: {new}", field.field),
        (Some(old), Some(new)) => format!("{}: {old} → {new}", field.field),
        (Some(old), None) => format!("{}: {old} → (none)", field.field),
        (None, None) => field.field.clone(),
    }
}

fn summary_text(summary: &Summary) -> String {
    format!(
        "{} to create, {} to update, {} to delete, {} unchanged, {} refused, {} skipped",
        summary.create,
        summary.update,
        summary.delete,
        summary.unchanged,
        summary.refused,
        summary.skipped
    )
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonPlan<'a> {
    format: u32,
    summary: Summary,
    steps: &'a [Step],
}

pub fn plan_json(plan: &Plan) -> String {
    let json = JsonPlan {
        format: JSON_FORMAT,
        summary: plan.summary(),
        steps: &plan.steps,
    };
    to_json(&json)
}

/// What was done, step by step; a refused plan lists its refusals and says nothing was applied.
pub fn applied_text(applied: &Applied) -> String {
    let mut out = String::new();
    let refused = applied
        .steps
        .iter()
        .filter(|(s, _)| s.action == Action::Refused)
        .count();
    if refused > 0 {
        for (step, _) in applied
            .steps
            .iter()
            .filter(|(s, _)| s.action == Action::Refused)
        {
            step_text(&mut out, step, verb(step.action));
        }
        let _ = writeln!(
            out,
            "\nNothing was applied: {} refused (above), and no object is applied while one is. Fix each as it says and run again.",
            plural(refused, "change")
        );
        return out;
    }
    for (step, outcome) in &applied.steps {
        let verb = match (outcome, step.action) {
            (StepOutcome::NothingToDo, Action::Unchanged) => continue,
            (StepOutcome::Done, Action::Create) => "+ created",
            (StepOutcome::Done, Action::Update) => "~ updated",
            (StepOutcome::Done, Action::Delete) => "- deleted",
            (StepOutcome::Done, _) | (StepOutcome::NothingToDo, _) => verb(step.action),
            (StepOutcome::Failed(_), _) => "✗ failed",
            (StepOutcome::NotAttempted, _) => "  not attempted",
        };
        let _ = writeln!(out, "{verb} {} → {}", step.object, step.target);
        match outcome {
            StepOutcome::Failed(error) => {
                let _ = writeln!(out, "      # {error}");
            }
            _ if step.action == Action::Skipped => {
                if let Some(message) = &step.message {
                    let _ = writeln!(out, "      # {message}");
                }
            }
            _ => {}
        }
    }
    let count = |pick: fn(&StepOutcome, Action) -> bool| {
        applied
            .steps
            .iter()
            .filter(|(s, o)| pick(o, s.action))
            .count()
    };
    let done = applied.done();
    if applied.complete() {
        let _ = writeln!(
            out,
            "Applied: {} ({} created, {} updated, {} deleted), {} unchanged, {} skipped.",
            plural(done, "change"),
            count(|o, a| *o == StepOutcome::Done && a == Action::Create),
            count(|o, a| *o == StepOutcome::Done && a == Action::Update),
            count(|o, a| *o == StepOutcome::Done && a == Action::Delete),
            count(|_, a| a == Action::Unchanged),
            count(|_, a| a == Action::Skipped),
        );
    } else {
        let _ = writeln!(
            out,
            "\nStopped at the failure above: {} applied before it, {} not attempted. Run `switchyard plan` to see what is left.",
            plural(done, "change"),
            count(|o, _| *o == StepOutcome::NotAttempted),
        );
    }
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonApplied<'a> {
    format: u32,
    /// Every step that had something to do was done.
    applied: bool,
    steps: Vec<JsonAppliedStep<'a>>,
}

#[derive(Serialize)]
struct JsonAppliedStep<'a> {
    #[serde(flatten)]
    step: &'a Step,
    #[serde(flatten)]
    outcome: &'a StepOutcome,
}

pub fn applied_json(applied: &Applied) -> String {
    let json = JsonApplied {
        format: JSON_FORMAT,
        applied: applied.complete(),
        steps: applied
            .steps
            .iter()
            .map(|(step, outcome)| JsonAppliedStep { step, outcome })
            .collect(),
    };
    to_json(&json)
}

/// The topology as tables: Topics, Subscriptions, dead-letter streams, schemas.
pub fn topology_text(topology: &Topology, namespace: Option<&str>) -> String {
    let mut sections = Vec::new();
    if !topology.topics.is_empty() {
        let rows = topology.topics.iter().map(|t| {
            vec![
                format!("{}/{}", t.namespace, t.name),
                t.stream.clone(),
                t.subjects.join(","),
                t.partitions.map_or_else(|| "-".into(), |p| p.to_string()),
                t.messages.to_string(),
                t.bytes.to_string(),
                t.consumers.to_string(),
            ]
        });
        sections.push(table(
            &[
                "TOPIC",
                "STREAM",
                "SUBJECTS",
                "PARTITIONS",
                "MESSAGES",
                "BYTES",
                "CONSUMERS",
            ],
            rows,
        ));
    }
    if !topology.subscriptions.is_empty() {
        let rows = topology.subscriptions.iter().map(|s| {
            let consumer = match s.consumers.as_slice() {
                [one] => one.clone(),
                [first, rest @ ..] => format!("{first} (+{} more)", rest.len()),
                [] => "-".into(),
            };
            vec![
                format!("{}/{}", s.namespace, s.name),
                s.topic.clone(),
                consumer,
                s.pending.to_string(),
                s.ack_pending.to_string(),
                s.redelivered.to_string(),
                s.lag.to_string(),
            ]
        });
        sections.push(table(
            &[
                "SUBSCRIPTION",
                "TOPIC",
                "CONSUMER",
                "PENDING",
                "ACK PENDING",
                "REDELIVERED",
                "LAG",
            ],
            rows,
        ));
    }
    if !topology.dead_letters.is_empty() {
        let rows = topology.dead_letters.iter().map(|d| {
            vec![
                format!("{}/{}", d.namespace, d.policy),
                d.stream.clone(),
                d.dead_letters.to_string(),
                d.last_dead_letter_time
                    .clone()
                    .unwrap_or_else(|| "-".into()),
            ]
        });
        sections.push(table(
            &["DEAD-LETTER POLICY", "STREAM", "DEAD LETTERS", "LAST"],
            rows,
        ));
    }
    if !topology.schemas.is_empty() {
        let rows = topology.schemas.iter().map(|s| {
            vec![
                format!("{}/{}", s.namespace, s.event_type),
                format!("v{}", s.latest_version),
                s.versions
                    .iter()
                    .map(|v| format!("v{v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                s.registered_by.clone(),
            ]
        });
        sections.push(table(
            &["SCHEMA", "LATEST", "VERSIONS", "REGISTERED BY"],
            rows,
        ));
    }
    if sections.is_empty() {
        return match namespace {
            Some(ns) => format!("Switchyard manages nothing on this broker in namespace {ns}.\n"),
            None => "Switchyard manages nothing on this broker.\n".into(),
        };
    }
    sections.join("\n")
}

/// Columns padded to their widest cell, two spaces apart.
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    lines.extend(rows);
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonTopology<'a> {
    format: u32,
    #[serde(flatten)]
    topology: &'a Topology,
}

pub fn topology_json(topology: &Topology) -> String {
    to_json(&JsonTopology {
        format: JSON_FORMAT,
        topology,
    })
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Plain data: serializing it cannot fail.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::{
        ObjectRef, Target,
        topology::{SubscriptionFigures, TopicFigures},
    };

    fn step(action: Action, fields: Vec<FieldChange>, message: Option<&str>) -> Step {
        let object = ObjectRef {
            kind: "Topic".into(),
            namespace: "shop".into(),
            name: "orders".into(),
        };
        let target = Target::Stream {
            name: "shop_orders".into(),
        };
        let mut step = match action {
            Action::Refused => Step::refused(object, target, message.unwrap_or_default()),
            Action::Skipped => Step::skipped(object, target, message.unwrap_or_default()),
            _ => {
                let mut step = Step::skipped(object, target, "");
                step.action = action;
                step.message = message.map(str::to_owned);
                step
            }
        };
        step.fields = fields;
        step
    }

    #[test]
    fn a_plan_shows_what_changes_old_to_new_and_counts_the_rest() {
        let plan = Plan {
            steps: vec![
                step(
                    Action::Update,
                    vec![FieldChange::new(
                        "maxAge",
                        Some("1h".into()),
                        Some("2h".into()),
                    )],
                    None,
                ),
                step(Action::Unchanged, Vec::new(), None),
            ],
        };
        let text = plan_text(&plan);
        assert_eq!(
            text,
            "~ update Topic shop/orders → stream shop_orders\n      maxAge: 1h → 2h\nPlan: 0 to create, 1 to update, 0 to delete, 1 unchanged, 0 refused, 0 skipped.\n"
        );
        let json: serde_json::Value = serde_json::from_str(&plan_json(&plan)).unwrap();
        assert_eq!(json["format"], 1);
        assert_eq!(json["summary"]["update"], 1);
        assert_eq!(json["steps"][0]["action"], "update");
        assert_eq!(json["steps"][0]["target"]["type"], "stream");
        assert_eq!(json["steps"][0]["fields"][0]["old"], "1h");
        assert_eq!(json["steps"][1]["action"], "unchanged");
    }

    #[test]
    fn an_empty_plan_says_so_and_a_refused_one_says_nothing_is_applied() {
        let unchanged = Plan {
            steps: vec![step(Action::Unchanged, Vec::new(), None)],
        };
        assert!(plan_text(&unchanged).starts_with("No changes"));
        let refused = Plan {
            steps: vec![step(
                Action::Refused,
                Vec::new(),
                Some("spec.partitions: cannot shrink"),
            )],
        };
        let text = plan_text(&refused);
        assert!(
            text.contains("! refused Topic shop/orders → stream shop_orders\n      # spec.partitions: cannot shrink"),
            "{text}"
        );
        let applied = Applied {
            steps: refused
                .steps
                .into_iter()
                .map(|s| (s, StepOutcome::NotAttempted))
                .collect(),
        };
        assert!(applied_text(&applied).contains("Nothing was applied"));
    }

    #[test]
    fn an_applied_plan_says_what_was_done_and_where_it_stopped() {
        let applied = Applied {
            steps: vec![
                (step(Action::Create, Vec::new(), None), StepOutcome::Done),
                (
                    step(Action::Update, Vec::new(), None),
                    StepOutcome::Failed("JetStream refused".into()),
                ),
                (
                    step(Action::Create, Vec::new(), None),
                    StepOutcome::NotAttempted,
                ),
            ],
        };
        let text = applied_text(&applied);
        assert!(text.starts_with("+ created Topic shop/orders"), "{text}");
        assert!(text.contains("✗ failed"), "{text}");
        assert!(
            text.contains("1 change applied before it, 1 not attempted"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&applied_json(&applied)).unwrap();
        assert_eq!(json["applied"], false);
        assert_eq!(json["steps"][0]["outcome"], "done");
        assert_eq!(json["steps"][1]["outcome"], "failed");
        assert_eq!(json["steps"][1]["error"], "JetStream refused");
        assert_eq!(json["steps"][1]["action"], "update");
    }

    #[test]
    fn the_topology_is_a_set_of_aligned_tables() {
        let topology = Topology {
            topics: vec![TopicFigures {
                namespace: "shop".into(),
                name: "orders".into(),
                stream: "shop_orders".into(),
                subjects: vec!["shop.orders.>".into()],
                partitions: None,
                messages: 3,
                bytes: 312,
                consumers: 1,
            }],
            subscriptions: vec![SubscriptionFigures {
                namespace: "shop".into(),
                name: "billing".into(),
                topic: "orders".into(),
                stream: "shop_orders".into(),
                consumers: vec!["sub_shop_billing".into()],
                pending: 3,
                ack_pending: 0,
                redelivered: 0,
                lag: 3,
            }],
            ..Topology::default()
        };
        let text = topology_text(&topology, None);
        assert_eq!(
            text,
            "TOPIC        STREAM       SUBJECTS       PARTITIONS  MESSAGES  BYTES  CONSUMERS\n\
             shop/orders  shop_orders  shop.orders.>  -           3         312    1\n\
             \n\
             SUBSCRIPTION  TOPIC   CONSUMER          PENDING  ACK PENDING  REDELIVERED  LAG\n\
             shop/billing  orders  sub_shop_billing  3        0            0            3\n"
        );
        let json: serde_json::Value = serde_json::from_str(&topology_json(&topology)).unwrap();
        assert_eq!(json["format"], 1);
        assert_eq!(json["subscriptions"][0]["ackPending"], 0);
        assert_eq!(json["topics"][0]["messages"], 3);
        assert_eq!(
            topology_text(&Topology::default(), Some("shop")),
            "Switchyard manages nothing on this broker in namespace shop.\n"
        );
    }
}
