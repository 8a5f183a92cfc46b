//! One reconciler per kind, each plugged into the shared runtime ([`crate::runtime`]): a kind
//! supplies its pure stages and its broker I/O, nothing of the controller lifecycle.

pub mod dead_letter_policy;
pub mod event_schema;
pub mod plan;
pub mod stream_apply;
pub mod subscription;
pub mod topic;

use std::fmt;

/// A spec value that cannot become broker configuration, with the field to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSpec {
    pub field: String,
    pub message: String,
}

impl InvalidSpec {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidSpec {}

#[cfg(test)]
mod tests {
    use super::{
        dead_letter_policy::DeadLetterPolicyReason, event_schema::EventSchemaReason,
        subscription::SubscriptionReason, topic::TopicReason,
    };
    use crate::conditions::ReasonCode;

    fn stalling<R: ReasonCode>() -> Vec<&'static str> {
        let mut names: Vec<_> = R::ALL
            .iter()
            .filter(|r| r.stalls())
            .map(|r| r.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// The table "Which Ready=False reasons are on their way and which have failed" of the
    /// README; every reason not listed is on its way (Reconciling).
    #[test]
    fn reasons_that_stall_are_those_the_readme_lists() {
        assert_eq!(
            stalling::<TopicReason>(),
            [
                "BrokerRejected",
                "ChangeRefused",
                "InvalidSpec",
                "StreamNotOwned",
                "SubjectsOverlap"
            ]
        );
        assert_eq!(
            stalling::<SubscriptionReason>(),
            [
                "BrokerRejected",
                "ChangeRefused",
                "ConsumerNotOwned",
                "InvalidSpec"
            ]
        );
        assert_eq!(
            stalling::<DeadLetterPolicyReason>(),
            [
                "BrokerRejected",
                "ChangeRefused",
                "InvalidSpec",
                "StreamNotOwned",
                "SubjectsOverlap",
                "TargetCapturedByPolicy"
            ]
        );
        assert_eq!(
            stalling::<EventSchemaReason>(),
            [
                "BrokerRejected",
                "IncompatibleChange",
                "InvalidSpec",
                "RegistryUnreadable",
                "VersionContentChanged",
                "VersionDowngrade"
            ]
        );
    }
}
