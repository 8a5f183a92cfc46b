//! Topic → JetStream stream. The stages: the desired stream from the spec (pure,
//! [`stream_config`]), the actual one from the broker, the plan (pure, [`plan`]), applying it,
//! and the figures the status shows (pure, [`status`]). The runtime does the rest. Deleting a
//! Topic names the Subscriptions still reading it ([`readers`]).

pub mod plan;
pub mod readers;
pub mod status;
pub mod stream_config;

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
};

use async_nats::jetstream::stream::{Config as StreamConfig, Info as StreamInfo};
use kube::ResourceExt;
use tracing::{info, warn};

use self::stream_config::{TopicIdentity, desired_stream, metadata};
use crate::{
    api::{Topic, TopicStatus, topic::DeletionPolicy},
    broker::BrokerError,
    condition_reasons,
    conditions::{self, ConditionType},
    naming,
    reconcile::{
        plan::{Plan as StreamPlan, PlanInputs, plan},
        stream_apply::{self, StreamReasons},
    },
    runtime::{
        Context,
        driver::{Outcome, Reconciler, Unresolved},
        kube_events::KubeEvent,
        watch::lifecycle_hash,
    },
};

/// Held while a Topic with `deletionPolicy: Delete` exists, so its stream is deleted with it.
pub const FINALIZER: &str = "switchyard.dev/stream-cleanup";

condition_reasons! {
    /// Why a Topic is (not) Ready.
    pub enum TopicReason {
        /// The stream exists and matches the spec.
        StreamReady,
        /// A stream with this name exists and was not created for this Topic.
        StreamNotOwned,
        /// The spec asks for a change JetStream cannot apply in place.
        ChangeRefused,
        /// The subjects overlap those of another stream, which keeps them.
        SubjectsOverlap,
        /// Replicated: the leader and every replica of the stream are current.
        ReplicasCurrent,
        /// Replicated: a replica is offline, catching up or not placed; the message names it.
        ReplicasBehind,
        /// Replicated: the stream has no leader in its cluster.
        NoStreamLeader,
    }
    // Each needs the stream, the Topic or the other Topic changed; nothing changes by itself.
    stalled: [StreamNotOwned, ChangeRefused, SubjectsOverlap]
}

impl StreamReasons for TopicReason {
    const IN_SYNC: Self = Self::StreamReady;
    const NOT_OWNED: Self = Self::StreamNotOwned;
    const CHANGE_REFUSED: Self = Self::ChangeRefused;
    const SUBJECTS_OVERLAP: Self = Self::SubjectsOverlap;
}

/// Reconciles Topics into streams.
pub struct TopicReconciler;

impl Reconciler for TopicReconciler {
    type Kind = Topic;
    type Status = TopicStatus;
    type Reason = TopicReason;
    type Refs = ();
    type Desired = StreamConfig;
    type Actual = Option<StreamInfo>;
    type Plan = StreamPlan;
    type Figures = StreamInfo;

    const KIND: &'static str = "Topic";
    const FINALIZER: &'static str = FINALIZER;

    fn status(topic: &Topic) -> Option<&TopicStatus> {
        topic.status.as_ref()
    }

    fn cleans_up(topic: &Topic) -> bool {
        topic.spec.deletion_policy == DeletionPolicy::Delete
    }

    async fn dereference(
        &self,
        _: &Context,
        _: &Topic,
    ) -> Result<Result<(), Unresolved<Self>>, crate::runtime::Error> {
        // A Topic's references (schema, dead-letter policy) are read by the kinds using them.
        Ok(Ok(()))
    }

    fn desired(topic: &Topic, (): &()) -> Result<StreamConfig, String> {
        let namespace = topic.namespace().unwrap_or_default();
        let name = topic.name_any();
        let id = TopicIdentity {
            namespace: &namespace,
            name: &name,
            generation: topic.metadata.generation.unwrap_or_default(),
        };
        desired_stream(id, &topic.spec).map_err(|invalid| invalid.to_string())
    }

    async fn observe(
        &self,
        ctx: &Context,
        desired: &StreamConfig,
    ) -> Result<Option<StreamInfo>, BrokerError> {
        ctx.broker.stream_info(&desired.name).await
    }

    fn plan(desired: &StreamConfig, actual: &Option<StreamInfo>, inputs: PlanInputs) -> StreamPlan {
        plan(desired, actual.as_ref().map(|i| &i.config), inputs)
    }

    async fn apply(
        &self,
        ctx: &Context,
        _: &Topic,
        desired: &StreamConfig,
        actual: Option<StreamInfo>,
        plan: StreamPlan,
    ) -> Outcome<Self> {
        let outcome = stream_apply::apply(ctx, desired, actual, plan).await;
        match outcome.figures.as_ref().and_then(status::replicated) {
            Some(verdict) => outcome.with_condition(verdict),
            None => outcome,
        }
    }

    async fn broker_failure(
        &self,
        ctx: &Context,
        desired: &StreamConfig,
        error: BrokerError,
    ) -> Outcome<Self> {
        stream_apply::failure(ctx, desired, error).await
    }

    fn project(status: &mut TopicStatus, topic: &Topic, info: Option<&StreamInfo>) {
        let stream = naming::stream_name(&topic.namespace().unwrap_or_default(), &topic.name_any());
        status::project(status, &stream, info);
    }

    async fn cleanup(&self, ctx: &Context, topic: &Topic) -> Result<KubeEvent, BrokerError> {
        let namespace = topic.namespace().unwrap_or_default();
        let stream = naming::stream_name(&namespace, &topic.name_any());
        let ours = naming::owner_id("Topic", &namespace, &topic.name_any());
        let event = match ctx.broker.stream_info(&stream).await? {
            None => KubeEvent::normal("StreamDeleted", format!("stream {stream} was already gone")),
            Some(info) if info.config.metadata.get(metadata::OWNER) != Some(&ours) => {
                KubeEvent::normal(
                    "StreamDeleted",
                    format!("stream {stream} is not owned by this Topic and was left untouched"),
                )
            }
            Some(_) => {
                // Not knowing who reads the stream must not keep it: the Event then names nobody.
                let readers = readers::reading(ctx, topic).await.unwrap_or_else(|e| {
                    warn!(topic = %topic.name_any(), %namespace, error = %e, "cannot list the Subscriptions of a deleted Topic");
                    Vec::new()
                });
                ctx.broker.delete_stream(&stream).await?;
                info!(stream, "stream deleted");
                readers::stream_deleted_event(&stream, &readers)
            }
        };
        Ok(event)
    }

    async fn deleted(
        &self,
        ctx: &Context,
        topic: &Topic,
    ) -> Result<Option<KubeEvent>, crate::runtime::Error> {
        let stream = naming::stream_name(&topic.namespace().unwrap_or_default(), &topic.name_any());
        let readers = readers::reading(ctx, topic).await?;
        Ok(readers::retained_event(
            &topic.name_any(),
            &stream,
            &readers,
        ))
    }

    fn retained(topic: &Topic) -> KubeEvent {
        let stream = naming::stream_name(&topic.namespace().unwrap_or_default(), &topic.name_any());
        KubeEvent::normal(
            "StreamRetained",
            format!("kept stream {stream} as the Topic is deleted"),
        )
    }

    fn left_behind(topic: &Topic, error: &BrokerError) -> KubeEvent {
        let stream = naming::stream_name(&topic.namespace().unwrap_or_default(), &topic.name_any());
        KubeEvent::warning(
            "StreamLeftBehind",
            format!("stream {stream} could not be deleted and is left behind: {error}"),
        )
    }
}

/// What of a Topic the objects referring to it act on: its lifecycle, and whether it is Ready
/// (so a Subscription applied together with its Topic goes on the moment the stream exists). Its
/// figures are left out: they move with traffic.
pub fn referred_topic_change(topic: &Topic) -> Option<u64> {
    let ready = topic
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, ConditionType::Ready))
        .map(|c| c.status.clone());
    let mut hasher = DefaultHasher::new();
    lifecycle_hash(topic).hash(&mut hasher);
    ready.hash(&mut hasher);
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        apimachinery::pkg::apis::meta::v1::{Condition, Time},
        jiff::Timestamp,
    };

    use super::*;
    use crate::api::TopicStatus;

    fn topic(ready: Option<&str>, messages: i64) -> Topic {
        let mut topic = Topic::new("orders", serde_yaml::from_str("{}").unwrap());
        topic.metadata.generation = Some(1);
        topic.status = Some(TopicStatus {
            conditions: ready
                .map(|status| Condition {
                    type_: "Ready".into(),
                    status: status.into(),
                    reason: "StreamInSync".into(),
                    message: String::new(),
                    last_transition_time: Time(Timestamp::UNIX_EPOCH),
                    observed_generation: Some(1),
                })
                .into_iter()
                .collect(),
            messages: Some(messages),
            ..TopicStatus::default()
        });
        topic
    }

    #[test]
    fn referrers_wake_when_their_topic_turns_ready_not_when_its_figures_move() {
        assert_ne!(
            referred_topic_change(&topic(None, 0)),
            referred_topic_change(&topic(Some("False"), 0))
        );
        assert_ne!(
            referred_topic_change(&topic(Some("False"), 0)),
            referred_topic_change(&topic(Some("True"), 0))
        );
        assert_eq!(
            referred_topic_change(&topic(Some("True"), 0)),
            referred_topic_change(&topic(Some("True"), 5_000))
        );
        let mut edited = topic(Some("True"), 0);
        edited.metadata.generation = Some(2);
        assert_ne!(
            referred_topic_change(&topic(Some("True"), 0)),
            referred_topic_change(&edited)
        );
    }
}
