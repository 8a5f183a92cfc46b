//! What an EventSchema's conditions say about a registry decision. Pure: every message is built
//! from the spec and the registry's records alone, so a resync that finds nothing new writes
//! nothing.

use crate::{
    api::EventSchema,
    conditions::{ConditionType, Verdict},
    registry::{Decision, Latest, decide::breaking_summary},
    schema::{Compatibility, Report},
};

use super::EventSchemaReason as Reason;

/// Breaking changes listed in a condition message; the rest are counted.
pub const LISTED_BREAKING: usize = 10;
/// Longest condition message; Kubernetes allows 32768, kubectl shows far less.
const MESSAGE_LIMIT: usize = 2048;

/// The Ready and Compatible verdicts for `decision` about `schema`, given the registry's latest
/// pointer after it (`None`: nothing registered).
pub fn verdicts(
    schema: &EventSchema,
    decision: &Decision,
    latest: Option<&Latest>,
) -> (Verdict<Reason>, Verdict<Reason>) {
    let spec = &schema.spec;
    let (event_type, version) = (&spec.event_type, spec.version);
    match decision {
        Decision::Register { .. } | Decision::Registered => {
            let versions = latest
                .map(|l| versions_text(&l.versions))
                .unwrap_or_default();
            let ready = Verdict::ready(
                Reason::Registered,
                format!("{event_type} v{version} is registered (registered versions: {versions})"),
            );
            let first = latest.is_none_or(|l| l.versions.first() == Some(&version));
            let compatible = if first {
                format!(
                    "v{version} is the first registered version of {event_type}: nothing to check against"
                )
            } else if spec.compatibility == Compatibility::None {
                format!("compatibility None: v{version} was registered without a check")
            } else {
                format!(
                    "v{version} passed the {:?} check against the registered versions below it",
                    spec.compatibility
                )
            };
            (
                ready,
                Verdict::new(
                    ConditionType::Compatible,
                    true,
                    Reason::Registered,
                    compatible,
                ),
            )
        }
        Decision::Downgrade { latest: highest } => {
            let by = latest
                .map(|l| {
                    format!(
                        ", registered at {} by {}",
                        l.record.registered_at, l.record.registered_by
                    )
                })
                .unwrap_or_default();
            let message = format!(
                "spec.version {version} is below v{highest}, the latest registered version of {event_type} in this namespace{by}; versions never go down, so the registry and every consumer keep v{highest}: publish changes as a version above {highest}"
            );
            both_false(Reason::VersionDowngrade, message)
        }
        Decision::ContentChanged { registered } => {
            let message = format!(
                "{event_type} v{version} is registered with other content (registered fingerprint {registered}); a registered version never changes: publish this schema as a version above {version}"
            );
            both_false(Reason::VersionContentChanged, message)
        }
        Decision::Incompatible { report } => {
            let message = incompatible_message(version, report, latest);
            (
                Verdict::not_ready(Reason::IncompatibleChange, message.clone()),
                Verdict::new(
                    ConditionType::Compatible,
                    false,
                    Reason::BreakingChanges,
                    message,
                ),
            )
        }
        Decision::HistoryUnreadable {
            version: bad,
            error,
        } => {
            let message = format!(
                "registered version v{bad} of {event_type} cannot be read as a JSON Schema ({error}); nothing is registered until it can"
            );
            both_false(Reason::RegistryUnreadable, message)
        }
    }
}

fn both_false(reason: Reason, message: String) -> (Verdict<Reason>, Verdict<Reason>) {
    (
        Verdict::not_ready(reason, message.clone()),
        Verdict::new(ConditionType::Compatible, false, reason, message),
    )
}

/// "v3 breaks Backward compatibility with the registered versions: 2 breaking change(s): …".
pub fn incompatible_message(version: i64, report: &Report, latest: Option<&Latest>) -> String {
    // The report indexes the history it was given: the earlier versions the mode needed, then
    // the latest; the pointer's list holds them in the same ascending order.
    let history: Vec<i64> = latest
        .map(|l| {
            let transitive = matches!(
                report.mode,
                Compatibility::BackwardTransitive
                    | Compatibility::ForwardTransitive
                    | Compatibility::FullTransitive
            );
            if transitive {
                l.versions.clone()
            } else {
                vec![l.record.version]
            }
        })
        .unwrap_or_default();
    let count = report.breaking().count();
    let mut message = format!(
        "v{version} breaks {:?} compatibility with the registered versions: {count} breaking change(s): {}",
        report.mode,
        breaking_summary(report, &history, LISTED_BREAKING)
    );
    if message.len() > MESSAGE_LIMIT {
        let mut cut = MESSAGE_LIMIT - 1;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}

fn versions_text(versions: &[i64]) -> String {
    versions
        .iter()
        .map(|v| format!("v{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
