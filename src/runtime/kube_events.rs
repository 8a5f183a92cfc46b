//! Kubernetes Events about our objects (what `kubectl describe` lists). Named apart from the
//! CloudEvents that Switchyard moves through NATS, which are a different thing entirely.

use kube::runtime::events::EventType;

/// One Kubernetes Event to record on the reconciled object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeEvent {
    pub type_: EventType,
    /// CamelCase, from a fixed vocabulary (e.g. `StreamCreated`).
    pub reason: &'static str,
    pub note: String,
}

impl KubeEvent {
    pub fn normal(reason: &'static str, note: impl Into<String>) -> Self {
        Self {
            type_: EventType::Normal,
            reason,
            note: note.into(),
        }
    }

    pub fn warning(reason: &'static str, note: impl Into<String>) -> Self {
        Self {
            type_: EventType::Warning,
            reason,
            note: note.into(),
        }
    }
}

/// Whether an outcome's Event is worth recording: actions (which leave the object Ready) every
/// time they happen; a failure repeats on every retry, so it is recorded only when the Ready
/// reason changes.
pub fn worth_recording(ready: bool, reason_changed: bool) -> bool {
    ready || reason_changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_are_recorded_once_actions_always() {
        assert!(worth_recording(false, true), "a new failure");
        assert!(!worth_recording(false, false), "the same failure again");
        assert!(
            worth_recording(true, false),
            "an action, e.g. drift corrected again"
        );
    }
}
