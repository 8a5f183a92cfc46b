//! Applying a stream plan, for every kind that owns a stream (a Topic's, a DeadLetterPolicy's
//! managed dead-letter stream): create, recreate after an outside deletion, update, or report a
//! stream that is not ours, a change JetStream refuses, or subjects another stream holds. The
//! kinds differ only in their reason vocabulary ([`StreamReasons`]) and in how they name
//! themselves in messages.

use async_nats::jetstream::stream::{Config as StreamConfig, Info as StreamInfo};
use tracing::info;

use crate::{
    broker::{Broker, BrokerError, codes},
    conditions::{ReasonCode, Verdict},
    naming::metadata,
    reconcile::plan::{Plan as StreamPlan, UpdateCause},
    runtime::{
        Context,
        driver::{Outcome, Reconciler, common_broker_failure},
        kube_events::KubeEvent,
    },
};

/// The reasons a stream-owning kind reports for what happened to its stream.
pub trait StreamReasons: ReasonCode {
    /// The stream exists and matches the spec.
    const IN_SYNC: Self;
    /// A stream with this name exists and was not created for this object.
    const NOT_OWNED: Self;
    /// The spec asks for a change JetStream cannot apply in place.
    const CHANGE_REFUSED: Self;
    /// The subjects overlap those of another stream, which keeps them.
    const SUBJECTS_OVERLAP: Self;
}

/// What carrying out a stream plan did to the broker. The operator turns it into conditions and
/// Events, `switchyard apply` into lines of its report.
#[derive(Debug)]
pub enum StreamApplied {
    /// Nothing to do; the stream as found.
    InSync(Option<StreamInfo>),
    Created(StreamInfo),
    /// Created again after it was deleted behind Switchyard's back.
    Recreated(StreamInfo),
    Updated {
        info: StreamInfo,
        cause: UpdateCause,
        changed: Vec<&'static str>,
    },
    /// Left alone: it exists and records another owner (or none).
    NotOwned {
        owner: Option<String>,
    },
    /// Left alone: JetStream cannot apply the change in place.
    Refused {
        field: &'static str,
        message: String,
        actual: Option<StreamInfo>,
    },
}

/// Carries out `plan` for the stream `desired` of an object of kind `kind`: the broker writes
/// every stream-owning kind makes, for the operator and `switchyard apply` alike.
pub async fn carry_out(
    broker: &Broker,
    kind: &str,
    desired: &StreamConfig,
    actual: Option<StreamInfo>,
    plan: StreamPlan,
) -> Result<StreamApplied, BrokerError> {
    let stream = &desired.name;
    Ok(match plan {
        StreamPlan::InSync => StreamApplied::InSync(actual),
        StreamPlan::Create | StreamPlan::Recreate => {
            let created = broker.create_stream(desired).await?;
            info!(kind, stream, ?plan, "stream created");
            if plan == StreamPlan::Recreate {
                StreamApplied::Recreated(created)
            } else {
                StreamApplied::Created(created)
            }
        }
        StreamPlan::Update { cause, changed } => {
            let info = broker.update_stream(desired).await?;
            info!(kind, stream, ?cause, fields = %changed.join(", "), "stream updated");
            StreamApplied::Updated {
                info,
                cause,
                changed,
            }
        }
        StreamPlan::NotOwned { owner } => StreamApplied::NotOwned { owner },
        StreamPlan::Refused { field, message } => StreamApplied::Refused {
            field,
            message,
            actual,
        },
    })
}

/// Why a stream that exists is left alone, and how to take it over.
pub fn not_owned_message(kind: &str, stream: &str, owner: Option<&str>) -> String {
    let found = match owner {
        Some(owner) => format!("its metadata names {owner} as owner"),
        None => "it records no Switchyard owner".into(),
    };
    format!(
        "stream {stream} already exists and was not created for this {kind} ({found}); it is left untouched. \
         To take it over, annotate the {kind} with {}=\"true\"",
        crate::api::annotations::ADOPT
    )
}

/// Carries out `plan` for the stream `desired` of an object of kind `R::KIND`.
pub async fn apply<R>(
    ctx: &Context,
    desired: &StreamConfig,
    actual: Option<StreamInfo>,
    plan: StreamPlan,
) -> Outcome<R>
where
    R: Reconciler,
    R::Figures: From<StreamInfo>,
    R::Reason: StreamReasons,
{
    let stream = &desired.name;
    let applied = match carry_out(&ctx.broker, R::KIND, desired, actual, plan).await {
        Ok(applied) => applied,
        Err(e) => return failure(ctx, desired, e).await,
    };
    match applied {
        StreamApplied::InSync(actual) => {
            Outcome::new(in_sync(stream)).with_figures(actual.map(Into::into))
        }
        StreamApplied::Created(created) => Outcome::new(in_sync(stream))
            .with_figures(Some(created.into()))
            .with_event(KubeEvent::normal(
                "StreamCreated",
                format!("created stream {stream}"),
            )),
        // Its own reason: Kubernetes folds repeated Events of one reason into a series that
        // keeps the first note.
        StreamApplied::Recreated(created) => Outcome::new(in_sync(stream))
            .with_figures(Some(created.into()))
            .with_event(KubeEvent::warning(
                "StreamRecreated",
                format!(
                    "stream {stream} was deleted outside Switchyard, with its events; recreated it empty"
                ),
            )),
        StreamApplied::Updated {
            info,
            cause,
            changed,
        } => Outcome::new(in_sync(stream))
            .with_figures(Some(info.into()))
            .with_event(update_event(cause, stream, &changed.join(", "))),
        StreamApplied::NotOwned { owner } => {
            let message = not_owned_message(R::KIND, stream, owner.as_deref());
            Outcome::new(Verdict::not_ready(R::Reason::NOT_OWNED, message.clone()))
                .with_event(KubeEvent::warning("StreamNotOwned", message))
        }
        StreamApplied::Refused {
            field,
            message,
            actual,
        } => {
            let message = format!("{field}: {message}");
            Outcome::new(Verdict::not_ready(
                R::Reason::CHANGE_REFUSED,
                message.clone(),
            ))
            .with_figures(actual.map(Into::into))
            .with_event(KubeEvent::warning("ChangeRefused", message))
        }
    }
}

/// A failed stream request: subjects held by another stream get their own reason naming it;
/// anything else is reported as every kind reports broker failures.
pub async fn failure<R>(ctx: &Context, desired: &StreamConfig, error: BrokerError) -> Outcome<R>
where
    R: Reconciler,
    R::Reason: StreamReasons,
{
    if error.code() != Some(codes::STREAM_SUBJECT_OVERLAP) {
        return common_broker_failure(ctx, &error);
    }
    let message = overlap_message(&ctx.broker, &desired.name, &desired.subjects).await;
    Outcome::new(Verdict::not_ready(
        R::Reason::SUBJECTS_OVERLAP,
        message.clone(),
    ))
    .with_event(KubeEvent::warning("SubjectsOverlap", message))
}

fn in_sync<Reason: StreamReasons>(stream: &str) -> Verdict<Reason> {
    Verdict::ready(Reason::IN_SYNC, format!("stream {stream} matches the spec"))
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

/// Names the stream (and the object owning it) that already holds one of our subjects: the
/// older object keeps the subjects, the newer one reports the conflict.
pub async fn overlap_message(broker: &Broker, own_stream: &str, subjects: &[String]) -> String {
    for subject in subjects {
        let Ok(names) = broker.streams_overlapping(subject).await else {
            continue;
        };
        let Some(other) = names.into_iter().find(|n| n != own_stream) else {
            continue;
        };
        let owner = match broker.stream_info(&other).await {
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
