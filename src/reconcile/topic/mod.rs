//! Topic → JetStream stream. The pipeline: validate and build the desired stream (pure), read the
//! actual one, plan (pure), apply the plan, then write status only if it changed.

pub mod plan;
pub mod status;
pub mod stream_config;

use std::sync::Arc;

use async_nats::jetstream::stream::Info as StreamInfo;
use k8s_openapi::jiff::SignedDuration;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    core::DeserializeGuard,
    runtime::{
        controller::Action,
        events::{Event, EventType},
    },
};
use serde_json::json;
use tracing::{debug, info, warn};

use self::{
    plan::{StreamPlan, UpdateCause, plan},
    stream_config::{TopicIdentity, desired_stream, metadata},
};
use super::{Context, Error, FIELD_MANAGER};
use crate::{
    api::{Topic, TopicStatus, annotation_is_true, annotations, topic::DeletionPolicy},
    broker::{BrokerError, codes},
    conditions::{self, ConditionType, Reason, Verdict},
    naming,
};

/// Held while a Topic with `deletionPolicy: Delete` exists, so its stream is deleted with it.
pub const FINALIZER: &str = "switchyard.dev/stream-cleanup";

/// What syncing the stream produced: the Ready verdict, the stream as last seen, and an Event
/// worth recording.
struct Outcome {
    ready: Verdict,
    info: Option<StreamInfo>,
    event: Option<(EventType, &'static str, String)>,
}

impl Outcome {
    /// An outcome that did not look at the stream.
    fn without_stream(ready: Verdict) -> Self {
        Self {
            ready,
            info: None,
            event: None,
        }
    }
}

pub async fn reconcile(
    guard: Arc<DeserializeGuard<Topic>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    ctx.metrics
        .broker_connected
        .set(i64::from(ctx.broker.is_connected()));
    let topic = match &guard.0 {
        Ok(topic) => topic,
        Err(invalid) => {
            // The apiserver's schema makes this rare (an object stored under an older schema);
            // report it on the object and keep the watch alive.
            let name = invalid.metadata.name.as_deref().unwrap_or("<unnamed>");
            warn!(topic = name, error = %invalid.error, "Topic cannot be read");
            publish(
                &ctx,
                &guard.object_ref(&()),
                EventType::Warning,
                "InvalidObject",
                format!(
                    "Topic cannot be read by this Switchyard version: {}",
                    invalid.error
                ),
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    let namespace = topic
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &namespace);
    let paused = annotation_is_true(&topic.metadata, annotations::PAUSED);

    if topic.metadata.deletion_timestamp.is_some() {
        return finalize(topic, &api, &ctx, paused).await;
    }
    sync_finalizer(topic, &api).await?;

    let stream_name = naming::stream_name(&namespace, &topic.name_any());
    let outcome = if paused {
        paused_outcome(topic)
    } else {
        sync_stream(topic, &namespace, &ctx).await
    };

    let previous_reason = topic
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, ConditionType::Ready))
        .map(|c| c.reason.clone());
    let reason_changed = previous_reason.as_deref() != Some(outcome.ready.reason.as_str());
    if let Some((kind, reason, note)) = outcome.event {
        // Actions (created, updated, drift corrected) are recorded each time they happen; a
        // failure repeats on every retry, so it is recorded only when it starts.
        if outcome.ready.status || reason_changed {
            publish(&ctx, &topic.object_ref(&()), kind, reason, note).await;
        }
    }

    // A paused object has not been reconciled at its current generation; say so.
    let observed_generation = if paused {
        topic.status.as_ref().and_then(|s| s.observed_generation)
    } else {
        topic.metadata.generation
    };
    let next = status::next_status(
        topic.status.as_ref(),
        &outcome.ready,
        paused,
        &stream_name,
        outcome.info.as_ref(),
        observed_generation,
        ctx.clock.now(),
    );
    if topic.status.as_ref() != Some(&next) {
        write_status(&api, topic, &next).await?;
    }
    ctx.metrics
        .observe_reconcile("Topic", outcome.ready.reason.as_str(), started.elapsed());

    Ok(match outcome.ready.reason {
        _ if paused => Action::await_change(),
        Reason::BrokerUnavailable => Action::requeue(ctx.config.broker_retry_interval),
        _ => Action::requeue(ctx.config.resync_interval),
    })
}

fn paused_outcome(topic: &Topic) -> Outcome {
    // Keep whatever Ready said before the pause: the stream has not been looked at since.
    let ready = topic
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, ConditionType::Ready))
        .map(|c| Verdict {
            type_: ConditionType::Ready,
            status: c.status == "True",
            reason: Reason::parse(&c.reason).unwrap_or(Reason::Paused),
            message: c.message.clone(),
        })
        .unwrap_or_else(|| {
            Verdict::not_ready(
                Reason::Paused,
                "reconciliation is paused before the stream was ever synced",
            )
        });
    Outcome::without_stream(ready)
}

async fn sync_stream(topic: &Topic, namespace: &str, ctx: &Context) -> Outcome {
    let name = topic.name_any();
    let id = TopicIdentity {
        namespace,
        name: &name,
        generation: topic.metadata.generation.unwrap_or_default(),
    };
    let desired = match desired_stream(id, &topic.spec) {
        Ok(desired) => desired,
        Err(invalid) => {
            return Outcome {
                ready: Verdict::not_ready(Reason::InvalidSpec, invalid.to_string()),
                info: None,
                event: Some((EventType::Warning, "InvalidSpec", invalid.to_string())),
            };
        }
    };
    let broker = &ctx.broker;
    let actual = match broker.stream_info(&desired.name).await {
        Ok(actual) => actual,
        Err(e) => return broker_failure(ctx, &desired.name, &desired.subjects, &e).await,
    };
    let adopt = annotation_is_true(&topic.metadata, annotations::ADOPT);
    let stream = &desired.name;
    match plan(&desired, actual.as_ref().map(|i| &i.config), adopt) {
        StreamPlan::InSync => Outcome {
            ready: in_sync(stream),
            info: actual,
            event: None,
        },
        StreamPlan::Create => match broker.create_stream(&desired).await {
            Ok(info) => {
                info!(topic = %name, namespace, stream, "stream created");
                Outcome {
                    ready: in_sync(stream),
                    info: Some(info),
                    event: Some((
                        EventType::Normal,
                        "StreamCreated",
                        format!("created stream {stream}"),
                    )),
                }
            }
            Err(e) => broker_failure(ctx, &desired.name, &desired.subjects, &e).await,
        },
        StreamPlan::Update { cause, changed } => match broker.update_stream(&desired).await {
            Ok(info) => {
                let fields = changed.join(", ");
                let (kind, reason, note) = match cause {
                    UpdateCause::SpecChanged => (
                        EventType::Normal,
                        "StreamUpdated",
                        format!("updated stream {stream}: {fields}"),
                    ),
                    UpdateCause::Drift => (
                        EventType::Warning,
                        "DriftCorrected",
                        format!(
                            "stream {stream} was changed outside Switchyard ({fields}); restored the declared configuration"
                        ),
                    ),
                    UpdateCause::Adoption => (
                        EventType::Normal,
                        "StreamAdopted",
                        format!("adopted existing stream {stream} and applied the spec ({fields})"),
                    ),
                };
                info!(topic = %name, namespace, stream, ?cause, fields, "stream updated");
                Outcome {
                    ready: in_sync(stream),
                    info: Some(info),
                    event: Some((kind, reason, note)),
                }
            }
            Err(e) => broker_failure(ctx, &desired.name, &desired.subjects, &e).await,
        },
        StreamPlan::NotOwned { owner } => {
            let found = match owner {
                Some(owner) => format!("its metadata names {owner} as owner"),
                None => "it records no Switchyard owner".into(),
            };
            let message = format!(
                "stream {stream} already exists and was not created for this Topic ({found}); it is left untouched. \
                 To take it over, annotate the Topic with {}=\"true\"",
                annotations::ADOPT
            );
            Outcome {
                ready: Verdict::not_ready(Reason::StreamNotOwned, message.clone()),
                info: None,
                event: Some((EventType::Warning, "StreamNotOwned", message)),
            }
        }
        StreamPlan::Refused { field, message } => {
            let message = format!("{field}: {message}");
            Outcome {
                ready: Verdict::not_ready(Reason::ChangeRefused, message.clone()),
                info: actual,
                event: Some((EventType::Warning, "ChangeRefused", message)),
            }
        }
    }
}

fn in_sync(stream: &str) -> Verdict {
    Verdict::ready(
        Reason::StreamReady,
        format!("stream {stream} matches the spec"),
    )
}

async fn broker_failure(
    ctx: &Context,
    stream: &str,
    subjects: &[String],
    error: &BrokerError,
) -> Outcome {
    let (reason, message) = match error {
        BrokerError::Unavailable(why) => (
            Reason::BrokerUnavailable,
            format!(
                "cannot reach NATS JetStream ({why}); retrying every {:?}",
                ctx.config.broker_retry_interval
            ),
        ),
        BrokerError::Rejected { code, .. } if *code == codes::STREAM_SUBJECT_OVERLAP => (
            Reason::SubjectsOverlap,
            overlap_message(ctx, stream, subjects).await,
        ),
        other => (Reason::BrokerRejected, other.to_string()),
    };
    let kind = EventType::Warning;
    Outcome {
        ready: Verdict::not_ready(reason, message.clone()),
        info: None,
        event: Some((kind, reason.as_str(), message)),
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

async fn write_status(api: &Api<Topic>, topic: &Topic, status: &TopicStatus) -> Result<(), Error> {
    let patch = json!({
        "apiVersion": Topic::api_version(&()),
        "kind": Topic::kind(&()),
        "status": status,
    });
    api.patch_status(
        &topic.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    debug!(topic = %topic.name_any(), "status written");
    Ok(())
}

/// The finalizer is held exactly while the policy is Delete, so Retain Topics never wait on NATS.
async fn sync_finalizer(topic: &Topic, api: &Api<Topic>) -> Result<(), Error> {
    let has = topic.finalizers().iter().any(|f| f == FINALIZER);
    let wants = topic.spec.deletion_policy == DeletionPolicy::Delete;
    if has == wants {
        return Ok(());
    }
    let mut finalizers: Vec<String> = topic
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if wants {
        finalizers.push(FINALIZER.to_string());
    }
    set_finalizers(api, topic, finalizers).await
}

async fn set_finalizers(
    api: &Api<Topic>,
    topic: &Topic,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    // The resourceVersion makes this a compare-and-set: another writer's finalizer is never lost.
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": topic.resource_version(),
        }
    });
    api.patch(
        &topic.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn finalize(
    topic: &Topic,
    api: &Api<Topic>,
    ctx: &Context,
    paused: bool,
) -> Result<Action, Error> {
    if !topic.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let namespace = topic.namespace().unwrap_or_default();
    let stream = naming::stream_name(&namespace, &topic.name_any());
    let reference = topic.object_ref(&());
    let release = |reason: &'static str, note: String| async move {
        publish(ctx, &reference, EventType::Normal, reason, note).await;
    };
    if topic.spec.deletion_policy == DeletionPolicy::Retain || paused {
        release(
            "StreamRetained",
            format!("kept stream {stream} as the Topic is deleted"),
        )
        .await;
    } else {
        match delete_owned_stream(ctx, topic, &stream).await {
            Ok(note) => release("StreamDeleted", note).await,
            Err(BrokerError::Unavailable(why)) if !deletion_overdue(topic, ctx) => {
                let ready = Verdict::not_ready(
                    Reason::Deleting,
                    format!(
                        "waiting for NATS to delete stream {stream} ({why}); the Topic is released without it after {:?}",
                        ctx.config.finalizer_timeout
                    ),
                );
                let next = status::next_status(
                    topic.status.as_ref(),
                    &ready,
                    paused,
                    &stream,
                    None,
                    topic.metadata.generation,
                    ctx.clock.now(),
                );
                if topic.status.as_ref() != Some(&next) {
                    write_status(api, topic, &next).await?;
                }
                return Ok(Action::requeue(ctx.config.broker_retry_interval));
            }
            Err(e) => {
                let note = format!("stream {stream} could not be deleted and is left behind: {e}");
                warn!(topic = %topic.name_any(), namespace, "{note}");
                publish(
                    ctx,
                    &topic.object_ref(&()),
                    EventType::Warning,
                    "StreamLeftBehind",
                    note,
                )
                .await;
            }
        }
    }
    let rest = topic
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(api, topic, rest).await?;
    Ok(Action::await_change())
}

/// Deletes the stream only if it is ours; a foreign stream of the same name survives the Topic.
async fn delete_owned_stream(
    ctx: &Context,
    topic: &Topic,
    stream: &str,
) -> Result<String, BrokerError> {
    let ours = naming::owner_id(
        "Topic",
        &topic.namespace().unwrap_or_default(),
        &topic.name_any(),
    );
    match ctx.broker.stream_info(stream).await? {
        None => Ok(format!("stream {stream} was already gone")),
        Some(info) if info.config.metadata.get(metadata::OWNER) != Some(&ours) => Ok(format!(
            "stream {stream} is not owned by this Topic and was left untouched"
        )),
        Some(_) => {
            ctx.broker.delete_stream(stream).await?;
            info!(stream, "stream deleted");
            Ok(format!("deleted stream {stream} and its events"))
        }
    }
}

fn deletion_overdue(topic: &Topic, ctx: &Context) -> bool {
    let Some(since) = topic.metadata.deletion_timestamp.as_ref() else {
        return false;
    };
    let waited = ctx.clock.now().duration_since(since.0);
    let limit =
        SignedDuration::try_from(ctx.config.finalizer_timeout).unwrap_or(SignedDuration::MAX);
    waited >= limit
}

async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        warn!(error = %e, reason, "could not record Event");
    }
}
