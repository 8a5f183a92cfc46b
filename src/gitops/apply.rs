//! Carrying a plan out with the operator's own apply steps: a stream plan through
//! [`stream_apply::carry_out`], a consumer plan through [`carry_out_consumer`], a schema
//! version through [`event_schema::settle`] after deciding again against the registry (as the
//! operator does before each registration), deletions as the operator's clean-up does them.
//!
//! A plan with a refused step is not applied at all. Otherwise the steps are carried out in
//! order; the first that fails stops the run, and the outcome says what was done before it.

use serde::Serialize;

use super::plan::{ConsumerWork, Plan, Step, StreamWork, Work};
use crate::{
    broker::{Broker, BrokerError, codes},
    reconcile::{
        event_schema::{self, holding_for},
        stream_apply::{self, StreamApplied},
        subscription::{ConsumerApplied, carry_out_consumer},
    },
    registry::{Decision, Registry, decide},
};

/// What became of one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "error", rename_all = "camelCase")]
pub enum StepOutcome {
    /// The broker was changed as planned.
    Done,
    /// Nothing to do (unchanged, or skipped).
    NothingToDo,
    /// The step failed; the run stopped here.
    Failed(String),
    /// Not tried: the plan was refused, or an earlier step failed.
    NotAttempted,
}

/// A plan as it was carried out.
#[derive(Debug, Serialize)]
pub struct Applied {
    pub steps: Vec<(Step, StepOutcome)>,
}

impl Applied {
    /// Whether every step that had something to do was done.
    pub fn complete(&self) -> bool {
        self.steps
            .iter()
            .all(|(_, o)| matches!(o, StepOutcome::Done | StepOutcome::NothingToDo))
    }

    /// How many steps changed the broker.
    pub fn done(&self) -> usize {
        self.steps
            .iter()
            .filter(|(_, o)| *o == StepOutcome::Done)
            .count()
    }
}

/// Carries `plan` out; nothing at all if a step is refused.
pub async fn apply(broker: &Broker, plan: Plan) -> Applied {
    if plan.refused() > 0 {
        return Applied {
            steps: plan
                .steps
                .into_iter()
                .map(|s| (s, StepOutcome::NotAttempted))
                .collect(),
        };
    }
    let mut registry = None;
    let mut failed = false;
    let mut steps = Vec::with_capacity(plan.steps.len());
    for mut step in plan.steps {
        if failed {
            steps.push((step, StepOutcome::NotAttempted));
            continue;
        }
        let work = std::mem::take(&mut step.work);
        let outcome = match carry_out(broker, &mut registry, &step, work).await {
            Ok(true) => StepOutcome::Done,
            Ok(false) => StepOutcome::NothingToDo,
            Err(message) => {
                failed = true;
                StepOutcome::Failed(message)
            }
        };
        steps.push((step, outcome));
    }
    Applied { steps }
}

/// Carries out one step's work; `Ok(false)`: there was none.
async fn carry_out(
    broker: &Broker,
    registry: &mut Option<Registry>,
    step: &Step,
    work: Work,
) -> Result<bool, String> {
    match work {
        Work::None => Ok(false),
        Work::Stream(work) => {
            let StreamWork {
                kind,
                desired,
                actual,
                plan,
            } = *work;
            match stream_apply::carry_out(broker, kind, &desired, actual, plan).await {
                Ok(
                    StreamApplied::Created(_)
                    | StreamApplied::Recreated(_)
                    | StreamApplied::Updated { .. },
                ) => Ok(true),
                Ok(StreamApplied::InSync(_)) => Ok(false),
                Ok(StreamApplied::NotOwned { .. } | StreamApplied::Refused { .. }) => {
                    unreachable!("refused plans are not applied")
                }
                Err(e) if e.code() == Some(codes::STREAM_SUBJECT_OVERLAP) => Err(
                    stream_apply::overlap_message(broker, &desired.name, &desired.subjects).await,
                ),
                Err(e) => Err(e.to_string()),
            }
        }
        Work::Consumer(work) => {
            let ConsumerWork {
                stream,
                config,
                found,
                plan,
            } = *work;
            match carry_out_consumer(broker, &stream, &config, found, plan).await {
                Ok(
                    ConsumerApplied::Created(_)
                    | ConsumerApplied::Recreated(_)
                    | ConsumerApplied::Updated { .. },
                ) => Ok(true),
                Ok(ConsumerApplied::InSync(_)) => Ok(false),
                Ok(ConsumerApplied::NotOwned { .. } | ConsumerApplied::Refused { .. }) => {
                    unreachable!("refused plans are not applied")
                }
                Err(e) if e.code() == Some(codes::STREAM_NOT_FOUND) => Err(format!(
                    "stream {stream} does not exist: its Topic's step did not create it"
                )),
                Err(e) => Err(e.to_string()),
            }
        }
        Work::Schema { candidate } => {
            let registry = match registry {
                Some(registry) => registry,
                None => registry.insert(Registry::open(broker).await.map_err(|e| e.to_string())?),
            };
            register(registry, step, &candidate).await
        }
        Work::DeleteConsumer { stream, name } => broker
            .delete_consumer(&stream, &name)
            .await
            .map_err(|e| e.to_string()),
        Work::DeleteStream { name } => broker.delete_stream(&name).await.map_err(|e| e.to_string()),
    }
}

/// Registers a version as the operator does: reads what the registry holds now, decides, and
/// registers by compare-and-set.
async fn register(
    registry: &Registry,
    step: &Step,
    candidate: &crate::registry::Candidate,
) -> Result<bool, String> {
    let failed = |e: BrokerError| e.to_string();
    let holding = holding_for(registry, candidate).await.map_err(failed)?;
    let decision = decide(candidate, &holding);
    let now = || k8s_openapi::jiff::Timestamp::now().to_string();
    let (decision, _) = event_schema::settle(registry, candidate, holding, decision, now)
        .await
        .map_err(failed)?;
    match decision {
        Decision::Register { .. } => Ok(true),
        // Registered meanwhile by someone else, with this very content.
        Decision::Registered => Ok(false),
        other => {
            let why = match other {
                Decision::Downgrade { latest } => format!("v{latest} was registered meanwhile"),
                Decision::ContentChanged { .. } => {
                    "the version was registered meanwhile with other content".into()
                }
                Decision::Incompatible { .. } => {
                    "a version registered meanwhile makes it incompatible".into()
                }
                _ => "a registered version cannot be read any more".into(),
            };
            Err(format!(
                "{}: the registry changed since the plan was made ({why}); run plan again",
                step.object
            ))
        }
    }
}
