//! Reconciling a set of manifests straight into NATS, without Kubernetes: what `switchyard
//! plan`, `apply` and `status` do. The operator's reconcile core does the work: each kind's
//! pure translation (spec → stream, consumer, registry candidate), its planner, and the broker
//! writes of its apply step. Only where the objects come from (files, not the API server) and
//! what is reported (a plan, not status conditions) differ.
//!
//! - [`manifests`]: the typed objects of a set.
//! - [`plan`]: what would change on the broker, object by object, with [`fields`] (the settings
//!   that differ, old → new) and [`schemas`] (the registry as it will be once the set's
//!   versions are registered).
//! - [`prune`]: broker objects of the set's namespaces that the set no longer names.
//! - [`apply`]: carrying a plan out.
//! - [`topology`]: the live topology, read from NATS alone.

pub mod apply;
pub mod fields;
pub mod manifests;
pub mod plan;
pub mod prune;
pub mod schemas;
pub mod topology;

pub use self::{
    apply::{Applied, StepOutcome, apply},
    manifests::Manifests,
    plan::{Action, ObjectRef, Plan, PlanOptions, Step, Target, plan},
    topology::{Topology, topology},
};
