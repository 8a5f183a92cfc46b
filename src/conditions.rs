//! The condition vocabulary every kind reports, and the one rule for updating a condition list:
//! `lastTransitionTime` moves only when a condition's status changes.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

/// Condition types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// The object's broker state matches its spec.
    Ready,
    /// The `switchyard.dev/paused` annotation is set; nothing is reconciled.
    ReconciliationPaused,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::ReconciliationPaused => "ReconciliationPaused",
        }
    }
}

/// Why a condition has its status. Low cardinality: also used as metric label and Event reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The stream exists and matches the spec.
    StreamReady,
    /// The spec contains a value Switchyard cannot translate.
    InvalidSpec,
    /// NATS cannot be reached, or JetStream does not answer.
    BrokerUnavailable,
    /// A stream with this name exists and was not created for this object.
    StreamNotOwned,
    /// The spec asks for a change JetStream cannot apply in place.
    ChangeRefused,
    /// The subjects overlap those of another stream, which keeps them.
    SubjectsOverlap,
    /// JetStream refused the request for another reason; the message quotes the server.
    BrokerRejected,
    /// The `switchyard.dev/paused` annotation is set.
    Paused,
    /// The object is being deleted and the broker object is being cleaned up.
    Deleting,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Self::StreamReady,
        Self::InvalidSpec,
        Self::BrokerUnavailable,
        Self::StreamNotOwned,
        Self::ChangeRefused,
        Self::SubjectsOverlap,
        Self::BrokerRejected,
        Self::Paused,
        Self::Deleting,
    ];

    /// The reason a stored condition names, if it is one of ours.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::StreamReady => "StreamReady",
            Self::InvalidSpec => "InvalidSpec",
            Self::BrokerUnavailable => "BrokerUnavailable",
            Self::StreamNotOwned => "StreamNotOwned",
            Self::ChangeRefused => "ChangeRefused",
            Self::SubjectsOverlap => "SubjectsOverlap",
            Self::BrokerRejected => "BrokerRejected",
            Self::Paused => "Paused",
            Self::Deleting => "Deleting",
        }
    }
}

/// A condition as the reconciler decides it, before times are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub type_: ConditionType,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

impl Verdict {
    pub fn new(
        type_: ConditionType,
        status: bool,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }

    pub fn ready(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(ConditionType::Ready, true, reason, message)
    }

    pub fn not_ready(reason: Reason, message: impl Into<String>) -> Self {
        Self::new(ConditionType::Ready, false, reason, message)
    }
}

/// Where "now" comes from, so tests can pin it.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock, truncated to whole seconds as the API server stores condition times.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// Returns `current` with `verdict` applied: the condition of that type is replaced, keeping its
/// `lastTransitionTime` unless the status flips; other conditions are kept in order.
pub fn apply(
    current: &[Condition],
    verdict: &Verdict,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let status = if verdict.status { "True" } else { "False" };
    let type_ = verdict.type_.as_str();
    let previous = current.iter().find(|c| c.type_ == type_);
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(now),
    };
    let updated = Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: verdict.reason.as_str().to_string(),
        message: verdict.message.clone(),
        observed_generation: generation,
        last_transition_time,
    };
    let mut out: Vec<Condition> = current.to_vec();
    match out.iter_mut().find(|c| c.type_ == type_) {
        Some(slot) => *slot = updated,
        None => out.push(updated),
    }
    out
}

/// Returns `current` without the condition of that type.
pub fn remove(current: &[Condition], type_: ConditionType) -> Vec<Condition> {
    current
        .iter()
        .filter(|c| c.type_ != type_.as_str())
        .cloned()
        .collect()
}

/// The condition of that type, if present.
pub fn find(current: &[Condition], type_: ConditionType) -> Option<&Condition> {
    current.iter().find(|c| c.type_ == type_.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn reasons_round_trip_through_their_names() {
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("SomethingElse"), None);
    }

    #[test]
    fn new_condition_gets_the_current_time() {
        let v = Verdict::ready(Reason::StreamReady, "ok");
        let out = apply(&[], &v, Some(3), at(100));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, "True");
        assert_eq!(out[0].reason, "StreamReady");
        assert_eq!(out[0].observed_generation, Some(3));
        assert_eq!(out[0].last_transition_time, Time(at(100)));
    }

    #[test]
    fn same_status_keeps_transition_time_even_when_reason_changes() {
        let first = apply(
            &[],
            &Verdict::not_ready(Reason::BrokerUnavailable, "down"),
            Some(1),
            at(100),
        );
        let second = apply(
            &first,
            &Verdict::not_ready(Reason::InvalidSpec, "bad"),
            Some(2),
            at(200),
        );
        assert_eq!(second[0].last_transition_time, Time(at(100)));
        assert_eq!(second[0].reason, "InvalidSpec");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn status_flip_moves_transition_time() {
        let first = apply(
            &[],
            &Verdict::not_ready(Reason::BrokerUnavailable, "down"),
            Some(1),
            at(100),
        );
        let second = apply(
            &first,
            &Verdict::ready(Reason::StreamReady, "ok"),
            Some(1),
            at(200),
        );
        assert_eq!(second[0].last_transition_time, Time(at(200)));
    }

    #[test]
    fn other_conditions_are_kept_and_can_be_removed() {
        let paused = Verdict::new(
            ConditionType::ReconciliationPaused,
            true,
            Reason::Paused,
            "paused",
        );
        let both = apply(
            &apply(&[], &Verdict::ready(Reason::StreamReady, "ok"), None, at(1)),
            &paused,
            None,
            at(2),
        );
        assert_eq!(both.len(), 2);
        let ready_only = remove(&both, ConditionType::ReconciliationPaused);
        assert_eq!(ready_only.len(), 1);
        assert!(find(&ready_only, ConditionType::Ready).is_some());
    }
}
