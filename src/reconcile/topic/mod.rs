//! Topic → JetStream stream. The stages: the desired stream from the spec (pure,
//! [`stream_config`]), the actual one from the broker, the plan (pure, [`plan`]), applying it,
//! and the figures the status shows (pure, [`status`]). The runtime does the rest. Deleting a
//! Topic names the Subscriptions still reading it ([`readers`]).

pub mod plan;
pub mod readers;
pub mod status;
pub mod stream_config;

use async_nats::jetstream::stream::{Config as StreamConfig, Info as StreamInfo};
use kube::ResourceExt;
use tracing::{info, warn};

use self::stream_config::{TopicIdentity, desired_stream, metadata};
use crate::{
    api::{Topic, TopicStatus, topic::DeletionPolicy},
    broker::{BrokerError, codes},
    condition_reasons,
    conditions::Verdict,
    naming,
    reconcile::plan::{Plan as StreamPlan, PlanInputs, UpdateCause, plan},
    runtime::{
        Context,
        driver::{Outcome, Reconciler, Unresolved, common_broker_failure},
        kube_events::KubeEvent,
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
    }
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
        topic: &Topic,
        desired: &StreamConfig,
        actual: Option<StreamInfo>,
        plan: StreamPlan,
    ) -> Outcome<Self> {
        let stream = &desired.name;
        let topic_name = topic.name_any();
        let namespace = topic.namespace().unwrap_or_default();
        match plan {
            StreamPlan::InSync => Outcome::new(in_sync(stream)).with_figures(actual),
            StreamPlan::Create | StreamPlan::Recreate => {
                match ctx.broker.create_stream(desired).await {
                    Ok(info) => {
                        info!(topic = %topic_name, %namespace, stream, ?plan, "stream created");
                        // Its own reason: Kubernetes folds repeated Events of one reason into a
                        // series that keeps the first note.
                        let event = if plan == StreamPlan::Recreate {
                            KubeEvent::warning(
                                "StreamRecreated",
                                format!(
                                    "stream {stream} was deleted outside Switchyard, with its events; recreated it empty"
                                ),
                            )
                        } else {
                            KubeEvent::normal("StreamCreated", format!("created stream {stream}"))
                        };
                        Outcome::new(in_sync(stream))
                            .with_figures(Some(info))
                            .with_event(event)
                    }
                    Err(e) => self.broker_failure(ctx, desired, e).await,
                }
            }
            StreamPlan::Update { cause, changed } => {
                match ctx.broker.update_stream(desired).await {
                    Ok(info) => {
                        let fields = changed.join(", ");
                        info!(topic = %topic_name, %namespace, stream, ?cause, fields, "stream updated");
                        Outcome::new(in_sync(stream))
                            .with_figures(Some(info))
                            .with_event(update_event(cause, stream, &fields))
                    }
                    Err(e) => self.broker_failure(ctx, desired, e).await,
                }
            }
            StreamPlan::NotOwned { owner } => {
                let found = match owner {
                    Some(owner) => format!("its metadata names {owner} as owner"),
                    None => "it records no Switchyard owner".into(),
                };
                let message = format!(
                    "stream {stream} already exists and was not created for this Topic ({found}); it is left untouched. \
                     To take it over, annotate the Topic with {}=\"true\"",
                    crate::api::annotations::ADOPT
                );
                Outcome::new(Verdict::not_ready(
                    TopicReason::StreamNotOwned,
                    message.clone(),
                ))
                .with_event(KubeEvent::warning("StreamNotOwned", message))
            }
            StreamPlan::Refused { field, message } => {
                let message = format!("{field}: {message}");
                Outcome::new(Verdict::not_ready(
                    TopicReason::ChangeRefused,
                    message.clone(),
                ))
                .with_figures(actual)
                .with_event(KubeEvent::warning("ChangeRefused", message))
            }
        }
    }

    async fn broker_failure(
        &self,
        ctx: &Context,
        desired: &StreamConfig,
        error: BrokerError,
    ) -> Outcome<Self> {
        if error.code() != Some(codes::STREAM_SUBJECT_OVERLAP) {
            return common_broker_failure(ctx, &error);
        }
        let message = overlap_message(ctx, &desired.name, &desired.subjects).await;
        Outcome::new(Verdict::not_ready(
            TopicReason::SubjectsOverlap,
            message.clone(),
        ))
        .with_event(KubeEvent::warning("SubjectsOverlap", message))
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

fn in_sync(stream: &str) -> Verdict<TopicReason> {
    Verdict::ready(
        TopicReason::StreamReady,
        format!("stream {stream} matches the spec"),
    )
}

fn update_event(cause: UpdateCause, stream: &str, fields: &str) -> KubeEvent {
    match cause {
        UpdateCause::SpecChanged => KubeEvent::normal(
            "StreamUpdated",
            format!("updated stream {stream}: {fields}"),
        ),
        UpdateCause::Drift => KubeEvent::warning(
            "DriftCorrected",
            format!(
                "stream {stream} was changed outside Switchyard ({fields}); restored the declared configuration"
            ),
        ),
        UpdateCause::Adoption => KubeEvent::normal(
            "StreamAdopted",
            format!("adopted existing stream {stream} and applied the spec ({fields})"),
        ),
    }
}

/// Names the stream (and the Topic owning it) that already holds one of our subjects: the older
/// object keeps the subjects, the newer one reports the conflict.
async fn overlap_message(ctx: &Context, own_stream: &str, subjects: &[String]) -> String {
    for subject in subjects {
        let Ok(names) = ctx.broker.streams_overlapping(subject).await else {
            continue;
        };
        let Some(other) = names.into_iter().find(|n| n != own_stream) else {
            continue;
        };
        let owner = match ctx.broker.stream_info(&other).await {
            Ok(Some(info)) => info.config.metadata.get(metadata::OWNER).cloned(),
            _ => None,
        };
        let owned_by = owner.map(|o| format!(", owned by {o}")).unwrap_or_default();
        return format!(
            "subject {subject} overlaps stream {other}{owned_by}, which keeps it; choose subjects no other stream uses"
        );
    }
    "the subjects overlap those of another stream; choose subjects no other stream uses".into()
}
