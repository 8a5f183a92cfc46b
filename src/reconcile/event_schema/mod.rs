//! EventSchema → the schema registry. The stages: the candidate version from the spec (pure:
//! the document validated, canonicalised and fingerprinted), what the registry holds for the
//! event type, the decision (pure, [`crate::registry::decide`]), registering by
//! compare-and-set, and conditions built from the records alone (pure, [`verdicts`]).
//!
//! Registered versions are permanent: deleting an EventSchema leaves the registry as it is.

pub mod verdicts;

use kube::ResourceExt;

use crate::conditions::ReasonCode;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::{
    api::{EventSchema, EventSchemaStatus},
    broker::BrokerError,
    condition_reasons,
    registry::{
        Candidate, Decision, Holding, Latest, Registration, Registry, SchemaRecord, decide,
        fingerprint,
    },
    runtime::{
        Context,
        driver::{Outcome, Reconciler, Unresolved},
        kube_events::KubeEvent,
    },
    schema::{Compatibility, Schema},
};

/// Never held: deleting an EventSchema cleans nothing up.
pub const FINALIZER: &str = "switchyard.dev/schema-registry";

/// Attempts at registering against a pointer that others keep moving, before giving up until
/// the next retry.
const REGISTRATION_ATTEMPTS: usize = 8;

condition_reasons! {
    /// Why an EventSchema is (not) Ready and (not) Compatible.
    pub enum EventSchemaReason {
        /// The version is registered with this content.
        Registered,
        /// The registry holds a higher version of the event type.
        VersionDowngrade,
        /// The version is registered with other content.
        VersionContentChanged,
        /// The version breaks the compatibility its mode asks for.
        IncompatibleChange,
        /// The compatibility check found breaking changes (the Compatible condition).
        BreakingChanges,
        /// A registered version cannot be read as a JSON Schema.
        RegistryUnreadable,
    }
    // A version the registry refuses stays refused until the spec (or the registry) changes.
    stalled: [VersionDowngrade, VersionContentChanged, IncompatibleChange, RegistryUnreadable]
}

/// Reconciles EventSchemas into the registry.
#[derive(Default)]
pub struct EventSchemaReconciler {
    registry: OnceCell<Registry>,
}

impl EventSchemaReconciler {
    async fn registry(&self, ctx: &Context) -> Result<&Registry, BrokerError> {
        self.registry
            .get_or_try_init(|| Registry::open(&ctx.broker))
            .await
    }
}

/// What the registry shows for the event type after a pass.
#[derive(Clone, Debug)]
pub struct RegistryFigures {
    pub latest: Latest,
}

impl Reconciler for EventSchemaReconciler {
    type Kind = EventSchema;
    type Status = EventSchemaStatus;
    type Reason = EventSchemaReason;
    type Refs = ();
    type Desired = Candidate;
    type Actual = Holding;
    type Plan = Decision;
    type Figures = RegistryFigures;

    const KIND: &'static str = "EventSchema";
    const FINALIZER: &'static str = FINALIZER;

    fn status(schema: &EventSchema) -> Option<&EventSchemaStatus> {
        schema.status.as_ref()
    }

    fn cleans_up(_: &EventSchema) -> bool {
        false
    }

    async fn dereference(
        &self,
        _: &Context,
        _: &EventSchema,
    ) -> Result<Result<(), Unresolved<Self>>, crate::runtime::Error> {
        Ok(Ok(()))
    }

    fn desired(schema: &EventSchema, (): &()) -> Result<Candidate, String> {
        candidate(schema, String::new())
    }

    async fn observe(&self, ctx: &Context, candidate: &Candidate) -> Result<Holding, BrokerError> {
        holding_for(self.registry(ctx).await?, candidate).await
    }

    fn plan(
        candidate: &Candidate,
        holding: &Holding,
        _: crate::reconcile::plan::PlanInputs,
    ) -> Decision {
        decide(candidate, holding)
    }

    async fn apply(
        &self,
        ctx: &Context,
        schema: &EventSchema,
        candidate: &Candidate,
        holding: Holding,
        decision: Decision,
    ) -> Outcome<Self> {
        match self.settle(ctx, candidate, holding, decision).await {
            Ok((decision, latest)) => outcome(schema, &decision, latest),
            Err(error) => self.broker_failure(ctx, candidate, error).await,
        }
    }

    fn project(status: &mut EventSchemaStatus, _: &EventSchema, figures: Option<&RegistryFigures>) {
        if let Some(RegistryFigures { latest }) = figures {
            status.latest_version = Some(latest.record.version);
            status.registered_versions = latest.versions.clone();
            status.fingerprint = Some(latest.record.fingerprint.clone());
        }
    }

    async fn cleanup(&self, _: &Context, schema: &EventSchema) -> Result<KubeEvent, BrokerError> {
        Ok(Self::retained(schema))
    }

    fn retained(schema: &EventSchema) -> KubeEvent {
        KubeEvent::normal(
            "SchemaRetained",
            format!(
                "the registry keeps every registered version of {}: registered versions are permanent",
                schema.spec.event_type
            ),
        )
    }

    fn left_behind(schema: &EventSchema, _: &BrokerError) -> KubeEvent {
        Self::retained(schema)
    }
}

impl EventSchemaReconciler {
    /// Carries out a decision to register; see [`settle`].
    async fn settle(
        &self,
        ctx: &Context,
        candidate: &Candidate,
        holding: Holding,
        decision: Decision,
    ) -> Result<(Decision, Option<Latest>), BrokerError> {
        let registry = self.registry(ctx).await?;
        settle(registry, candidate, holding, decision, || {
            ctx.clock.now().to_string()
        })
        .await
    }
}

/// What the registry holds for the candidate's event type: the latest version, and the earlier
/// ones when its mode is transitive.
pub async fn holding_for(
    registry: &Registry,
    candidate: &Candidate,
) -> Result<Holding, BrokerError> {
    let transitive = matches!(
        candidate.compatibility,
        Compatibility::BackwardTransitive
            | Compatibility::ForwardTransitive
            | Compatibility::FullTransitive
    );
    registry
        .holding(&candidate.namespace, &candidate.event_type, transitive)
        .await
}

/// Carries out a decision to register, deciding again as long as others win the race for the
/// pointer; returns the final decision and the pointer after it. `now` stamps the record. The
/// registry writes of the operator and `switchyard apply` alike.
pub async fn settle(
    registry: &Registry,
    candidate: &Candidate,
    mut holding: Holding,
    mut decision: Decision,
    now: impl Fn() -> String,
) -> Result<(Decision, Option<Latest>), BrokerError> {
    for _ in 0..REGISTRATION_ATTEMPTS {
        if !matches!(decision, Decision::Register { .. }) {
            return Ok((decision, holding.latest.map(|(l, _)| l)));
        }
        let mut stamped = candidate.clone();
        stamped.record.registered_at = now();
        match registry.register(&stamped, &holding).await? {
            Registration::Committed(latest, _) => {
                info!(
                    namespace = %candidate.namespace,
                    event_type = %candidate.event_type,
                    version = candidate.version,
                    "schema version registered"
                );
                return Ok((decision, Some(*latest)));
            }
            Registration::Raced => {
                holding = holding_for(registry, candidate).await?;
                decision = decide(candidate, &holding);
            }
        }
    }
    warn!(
        namespace = %candidate.namespace,
        event_type = %candidate.event_type,
        "the registry pointer kept moving; registering again later"
    );
    Err(BrokerError::Unavailable(format!(
        "the registry's latest pointer for {} moved {REGISTRATION_ATTEMPTS} times in a row while registering",
        candidate.event_type
    )))
}

/// The candidate an EventSchema asks to register: its document validated as a JSON Schema,
/// canonical and fingerprinted. `registered_at` is stamped when it is written.
pub fn candidate(schema: &EventSchema, registered_at: String) -> Result<Candidate, String> {
    let namespace = schema.namespace().unwrap_or_default();
    let spec = &schema.spec;
    let parsed = Schema::parse(spec.schema.clone()).map_err(|e| format!("spec.schema: {e}"))?;
    let (canonical, fingerprint) = fingerprint(&spec.schema);
    let canonical = serde_json::from_str(&canonical)
        .map_err(|e| format!("spec.schema: cannot be stored in canonical form: {e}"))?;
    let record = SchemaRecord {
        event_type: spec.event_type.clone(),
        version: spec.version,
        compatibility: spec.compatibility,
        fingerprint: fingerprint.clone(),
        schema: canonical,
        defaults: spec.defaults.clone(),
        registered_at,
        registered_by: format!("{namespace}/{}", schema.name_any()),
    };
    Ok(Candidate {
        namespace,
        event_type: spec.event_type.clone(),
        version: spec.version,
        compatibility: spec.compatibility,
        schema: parsed,
        fingerprint,
        record,
    })
}

fn outcome(
    schema: &EventSchema,
    decision: &Decision,
    latest: Option<Latest>,
) -> Outcome<EventSchemaReconciler> {
    let (ready, compatible) = verdicts::verdicts(schema, decision, latest.as_ref());
    let event = match decision {
        Decision::Register { .. } => {
            Some(KubeEvent::normal("SchemaRegistered", ready.message.clone()))
        }
        Decision::Registered => None,
        _ => Some(KubeEvent::warning(
            ready.reason.as_str(),
            ready.message.clone(),
        )),
    };
    let mut outcome = Outcome::new(ready)
        .with_condition(compatible)
        .with_figures(latest.map(|latest| RegistryFigures { latest }));
    if let Some(event) = event {
        outcome = outcome.with_event(event);
    }
    outcome
}
