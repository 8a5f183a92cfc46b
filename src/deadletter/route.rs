//! Where a consumer's dead letters go. The relay asks for every advisory; the operator answers
//! from the consumer's Subscription, its DeadLetterPolicy and their Topics, so the relay knows
//! nothing of Kubernetes.

use std::{future::Future, sync::Arc};

use super::format::{ReasonKind, SubjectLayout};
use crate::api::dead_letter_policy::CaptureReason;

/// Answers where the dead letters of a consumer go. Called once per advisory, concurrently:
/// answer from memory.
pub trait Routes: Send + Sync + 'static {
    fn route(&self, stream: &str, consumer: &str) -> impl Future<Output = Route> + Send;
}

/// Where the dead letters of one consumer go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Not a consumer whose dead letters Switchyard keeps: the advisory is dropped.
    NotManaged,
    /// Copy them to this target.
    Deliver(Arc<Target>),
    /// The consumer's policy cannot take dead letters now (its stream is missing, it is being
    /// changed, it is not Ready): the advisory waits in its stream and is tried again later.
    Wait { why: String },
}

/// A place for dead letters, and what the relay needs to know about the Topic they come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The DeadLetterPolicy, `<namespace>/<name>`, named in reports.
    pub policy: String,
    /// The dead-letter stream: the copy is stored there or not at all.
    pub stream: String,
    /// Copies are published on `<subject prefix>.<event type tokens>`.
    pub subject_prefix: String,
    /// The original Topic's subject layout, to find the event type tokens.
    pub layout: SubjectLayout,
    /// Which failures are copied.
    pub capture: Vec<CaptureReason>,
    /// The original Topic has WorkQueue or Interest retention: once copied, a max-delivered
    /// original is acknowledged on its consumer's behalf, so that the server removes it when no
    /// one else needs it instead of keeping it forever.
    pub release_original: bool,
}

impl Target {
    pub fn captures(&self, kind: ReasonKind) -> bool {
        self.capture.contains(&kind.captured_by())
    }
}
