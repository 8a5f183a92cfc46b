//! The `switchyard.dev/v1alpha1` API: the four kinds users write, and the vocabulary they share.

mod common;
pub mod dead_letter_policy;
pub mod event_schema;
pub mod subscription;
#[cfg(test)]
mod test_support;
pub mod topic;

pub use common::{
    ByteSize, ByteSizeError, GoDuration, GoDurationError, LocalObjectRef, ObjectRefWithVersion,
    RetryBackoff,
};
pub use dead_letter_policy::{DeadLetterPolicy, DeadLetterPolicySpec, DeadLetterPolicyStatus};
pub use event_schema::{EventSchema, EventSchemaSpec, EventSchemaStatus};
pub use subscription::{Subscription, SubscriptionSpec, SubscriptionStatus};
pub use topic::{Topic, TopicReplication, TopicSpec, TopicStatus};

/// The API group of every Switchyard kind.
pub const GROUP: &str = "switchyard.dev";
/// The only served version so far.
pub const VERSION: &str = "v1alpha1";

/// Annotations users put on any Switchyard resource.
pub mod annotations {
    /// `"true"` stops reconciling the object until the annotation is removed.
    pub const PAUSED: &str = "switchyard.dev/paused";
    /// `"true"` allows taking over a broker object Switchyard did not create.
    pub const ADOPT: &str = "switchyard.dev/adopt";
    /// On a DeadLetterPolicy: any new value (a timestamp, by convention) replays the dead
    /// letters it holds once; the status's `lastReplay.trigger` records the value answered.
    pub const REPLAY: &str = "switchyard.dev/replay";
}

/// Whether an annotation is set to the literal `"true"` (anything else counts as unset).
pub fn annotation_is_true(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .is_some_and(|v| v == "true")
}
