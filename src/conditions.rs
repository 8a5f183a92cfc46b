//! The condition vocabulary, and the one rule for updating a condition list:
//! `lastTransitionTime` moves only when a condition's status changes.
//!
//! Condition types are shared; reasons are per kind ([`ReasonCode`]), so a Subscription can never
//! report a Topic's `StreamReady`. Every kind's reason enum is declared with [`condition_reasons!`],
//! which adds the reasons the shared runtime itself reports ([`CommonReason`]) and makes the kind
//! say which of its reasons need someone to act ([`ReasonCode::STALLED`]).
//!
//! Next to Ready every kind reports the two conditions kstatus (what Flux and `kubectl`-style
//! waits use) reads, "abnormal-true" and present only while true ([`with_progress`]):
//! `Reconciling` while the object is on its way to Ready by itself (a rollout, a referred object
//! still to come, a broker outage being retried), `Stalled` while it cannot get there until
//! someone changes it or the broker (an invalid spec, a stream owned by someone else).

use std::fmt::Debug;

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
    /// A Subscription's durable consumer matches its spec.
    ConsumerReady,
    /// A Subscription's worker Deployment has all its desired pods available.
    WorkersAvailable,
    /// A DeadLetterPolicy holds at least its alertThreshold of dead letters.
    DeadLettersAccumulating,
    /// An EventSchema version passed the compatibility check of its mode against the registry.
    Compatible,
    /// Every replica of a Topic's stream in a NATS cluster is current with its leader.
    Replicated,
    /// Not Ready yet, and getting there without anyone's help; present only while True.
    Reconciling,
    /// Not Ready, and staying so until someone changes the object or the broker; present only
    /// while True.
    Stalled,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::ReconciliationPaused => "ReconciliationPaused",
            Self::ConsumerReady => "ConsumerReady",
            Self::WorkersAvailable => "WorkersAvailable",
            Self::DeadLettersAccumulating => "DeadLettersAccumulating",
            Self::Compatible => "Compatible",
            Self::Replicated => "Replicated",
            Self::Reconciling => "Reconciling",
            Self::Stalled => "Stalled",
        }
    }
}

/// Reasons the shared runtime reports for any kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CommonReason {
    /// The spec contains a value Switchyard cannot translate; the message names the field.
    InvalidSpec,
    /// NATS cannot be reached, or JetStream does not answer.
    BrokerUnavailable,
    /// JetStream refused the request; the message quotes the server.
    BrokerRejected,
    /// The `switchyard.dev/paused` annotation is set.
    Paused,
    /// The object is being deleted and its broker objects are being cleaned up.
    Deleting,
}

/// A kind's reason vocabulary. Low cardinality: reasons double as metric labels.
pub trait ReasonCode: Copy + Eq + Debug + Send + Sync + 'static {
    /// Every reason of the kind, common ones included.
    const ALL: &'static [Self];
    /// The reasons of a Ready=False that needs someone to act (`Stalled`); every other reason of
    /// a Ready=False is on its way by itself (`Reconciling`).
    const STALLED: &'static [Self];
    fn as_str(self) -> &'static str;
    fn common(reason: CommonReason) -> Self;

    /// The reason a stored condition names, if it is one of this kind's.
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// Whether a Ready=False for this reason waits for someone to act.
    fn stalls(self) -> bool {
        Self::STALLED.contains(&self)
    }
}

/// Declares a kind's reason enum: the listed reasons plus every [`CommonReason`], and after
/// `stalled:` those of its own reasons that stall (see [`ReasonCode::STALLED`]; `InvalidSpec` and
/// `BrokerRejected` always do).
#[macro_export]
macro_rules! condition_reasons {
    (
        $(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }
        stalled: [$($stalled:ident),* $(,)?]
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant,)+
            /// The spec contains a value Switchyard cannot translate; the message names the field.
            InvalidSpec,
            /// NATS cannot be reached, or JetStream does not answer.
            BrokerUnavailable,
            /// JetStream refused the request; the message quotes the server.
            BrokerRejected,
            /// The `switchyard.dev/paused` annotation is set.
            Paused,
            /// The object is being deleted and its broker objects are being cleaned up.
            Deleting,
        }

        impl $crate::conditions::ReasonCode for $name {
            const ALL: &'static [Self] = &[
                $(Self::$variant,)+
                Self::InvalidSpec,
                Self::BrokerUnavailable,
                Self::BrokerRejected,
                Self::Paused,
                Self::Deleting,
            ];

            const STALLED: &'static [Self] = &[
                $(Self::$stalled,)*
                Self::InvalidSpec,
                Self::BrokerRejected,
            ];

            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant),)+
                    Self::InvalidSpec => "InvalidSpec",
                    Self::BrokerUnavailable => "BrokerUnavailable",
                    Self::BrokerRejected => "BrokerRejected",
                    Self::Paused => "Paused",
                    Self::Deleting => "Deleting",
                }
            }

            fn common(reason: $crate::conditions::CommonReason) -> Self {
                use $crate::conditions::CommonReason as C;
                match reason {
                    C::InvalidSpec => Self::InvalidSpec,
                    C::BrokerUnavailable => Self::BrokerUnavailable,
                    C::BrokerRejected => Self::BrokerRejected,
                    C::Paused => Self::Paused,
                    C::Deleting => Self::Deleting,
                }
            }
        }
    };
}

/// A condition as the reconciler decides it, before times are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict<R> {
    pub type_: ConditionType,
    pub status: bool,
    pub reason: R,
    pub message: String,
}

impl<R: ReasonCode> Verdict<R> {
    pub fn new(type_: ConditionType, status: bool, reason: R, message: impl Into<String>) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }

    pub fn ready(reason: R, message: impl Into<String>) -> Self {
        Self::new(ConditionType::Ready, true, reason, message)
    }

    pub fn not_ready(reason: R, message: impl Into<String>) -> Self {
        Self::new(ConditionType::Ready, false, reason, message)
    }

    /// Not ready for a reason the runtime reports for every kind.
    pub fn common(reason: CommonReason, message: impl Into<String>) -> Self {
        Self::not_ready(R::common(reason), message)
    }

    /// The verdict a stored condition records, if its reason is one of this kind's.
    pub fn from_condition(condition: &Condition) -> Option<Self> {
        let type_ = [
            ConditionType::Ready,
            ConditionType::ReconciliationPaused,
            ConditionType::ConsumerReady,
            ConditionType::WorkersAvailable,
        ]
        .into_iter()
        .find(|t| t.as_str() == condition.type_)?;
        Some(Self::new(
            type_,
            condition.status == "True",
            R::parse(&condition.reason)?,
            condition.message.clone(),
        ))
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
pub fn apply<R: ReasonCode>(
    current: &[Condition],
    verdict: &Verdict<R>,
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

/// Returns `current` with the kstatus conditions following `ready`: none when Ready is True,
/// `Stalled` when its reason stalls, else `Reconciling`, each True with Ready's reason and message.
pub fn with_progress<R: ReasonCode>(
    current: &[Condition],
    ready: &Verdict<R>,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let (set, clear) = match (ready.status, ready.reason.stalls()) {
        (true, _) => {
            let cleared = remove(current, ConditionType::Reconciling);
            return remove(&cleared, ConditionType::Stalled);
        }
        (false, true) => (ConditionType::Stalled, ConditionType::Reconciling),
        (false, false) => (ConditionType::Reconciling, ConditionType::Stalled),
    };
    let verdict = Verdict::new(set, true, ready.reason, ready.message.clone());
    apply(&remove(current, clear), &verdict, generation, now)
}

/// The condition of that type, if present.
pub fn find(current: &[Condition], type_: ConditionType) -> Option<&Condition> {
    current.iter().find(|c| c.type_ == type_.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    condition_reasons! {
        enum TestReason {
            /// Everything matches.
            Fine,
            /// Waiting for something that comes by itself.
            Waiting,
            /// Needs a person.
            Broken,
        }
        stalled: [Broken]
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn reasons_round_trip_through_their_names() {
        for reason in TestReason::ALL {
            assert_eq!(TestReason::parse(reason.as_str()), Some(*reason));
        }
        assert_eq!(TestReason::parse("SomethingElse"), None);
        assert_eq!(
            TestReason::common(CommonReason::BrokerUnavailable).as_str(),
            "BrokerUnavailable"
        );
    }

    #[test]
    fn new_condition_gets_the_current_time() {
        let v = Verdict::ready(TestReason::Fine, "ok");
        let out = apply(&[], &v, Some(3), at(100));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, "True");
        assert_eq!(out[0].reason, "Fine");
        assert_eq!(out[0].observed_generation, Some(3));
        assert_eq!(out[0].last_transition_time, Time(at(100)));
    }

    #[test]
    fn same_status_keeps_transition_time_even_when_reason_changes() {
        let first = apply(
            &[],
            &Verdict::not_ready(TestReason::BrokerUnavailable, "down"),
            Some(1),
            at(100),
        );
        let second = apply(
            &first,
            &Verdict::not_ready(TestReason::InvalidSpec, "bad"),
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
            &Verdict::not_ready(TestReason::BrokerUnavailable, "down"),
            Some(1),
            at(100),
        );
        let second = apply(
            &first,
            &Verdict::ready(TestReason::Fine, "ok"),
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
            TestReason::Paused,
            "paused",
        );
        let both = apply(
            &apply(&[], &Verdict::ready(TestReason::Fine, "ok"), None, at(1)),
            &paused,
            None,
            at(2),
        );
        assert_eq!(both.len(), 2);
        let ready_only = remove(&both, ConditionType::ReconciliationPaused);
        assert_eq!(ready_only.len(), 1);
        assert!(find(&ready_only, ConditionType::Ready).is_some());
    }

    fn types(conditions: &[Condition]) -> Vec<(&str, &str, &str)> {
        conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect()
    }

    #[test]
    fn stalling_reasons_are_the_listed_and_the_common_failures() {
        assert!(TestReason::Broken.stalls());
        assert!(TestReason::InvalidSpec.stalls());
        assert!(TestReason::BrokerRejected.stalls());
        for waits in [
            TestReason::Waiting,
            TestReason::BrokerUnavailable,
            TestReason::Deleting,
        ] {
            assert!(!waits.stalls(), "{waits:?}");
        }
    }

    #[test]
    fn not_ready_on_its_way_is_reconciling_and_a_failure_is_stalled() {
        let ready = apply(
            &[],
            &Verdict::not_ready(TestReason::Waiting, "soon"),
            Some(1),
            at(1),
        );
        let waiting = with_progress(
            &ready,
            &Verdict::not_ready(TestReason::Waiting, "soon"),
            Some(1),
            at(1),
        );
        assert_eq!(
            types(&waiting),
            [
                ("Ready", "False", "Waiting"),
                ("Reconciling", "True", "Waiting")
            ]
        );
        assert_eq!(waiting[1].message, "soon");
        assert_eq!(waiting[1].observed_generation, Some(1));

        let broken = with_progress(
            &waiting,
            &Verdict::not_ready(TestReason::Broken, "fix it"),
            Some(2),
            at(5),
        );
        assert_eq!(
            types(&broken),
            [("Ready", "False", "Waiting"), ("Stalled", "True", "Broken")]
        );
        assert_eq!(broken[1].last_transition_time, Time(at(5)));
    }

    #[test]
    fn ready_clears_both_and_repeating_a_verdict_changes_nothing() {
        let failing = Verdict::not_ready(TestReason::Broken, "fix it");
        let first = with_progress(&[], &failing, Some(1), at(1));
        assert_eq!(with_progress(&first, &failing, Some(1), at(9)), first);
        let healed = with_progress(
            &first,
            &Verdict::ready(TestReason::Fine, "ok"),
            Some(1),
            at(2),
        );
        assert!(healed.is_empty(), "{healed:?}");
    }
}
