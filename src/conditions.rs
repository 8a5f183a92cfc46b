//! The condition vocabulary, and the one rule for updating a condition list:
//! `lastTransitionTime` moves only when a condition's status changes.
//!
//! Condition types are shared; reasons are per kind ([`ReasonCode`]), so a Subscription can never
//! report a Topic's `StreamReady`. Every kind's reason enum is declared with [`condition_reasons!`],
//! which adds the reasons the shared runtime itself reports ([`CommonReason`]).

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
    fn as_str(self) -> &'static str;
    fn common(reason: CommonReason) -> Self;

    /// The reason a stored condition names, if it is one of this kind's.
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

/// Declares a kind's reason enum: the listed reasons plus every [`CommonReason`].
#[macro_export]
macro_rules! condition_reasons {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
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
        }
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
}
