//! Switchyard: a Kubernetes operator that reconciles a declarative event topology into NATS
//! JetStream. The binary in `main.rs` only wires these modules together.
//!
//! - [`api`]: the CRD types users write.
//! - [`runtime`]: the controller runtime every kind runs on (lifecycle, status, leader election).
//! - [`reconcile`]: each kind's stages, turning its objects into broker state.
//! - [`broker`]: the only module that speaks to NATS.
//! - [`dispatcher`]: the worker pods' sidecar, delivering events to handlers over HTTP.
//! - [`conditions`], [`naming`], [`subjects`]: the shared vocabulary of status, broker names and
//!   subject patterns.
//! - [`registry`]: the schema registry, every EventSchema version in a key-value bucket.
//! - [`gitops`]: the same reconcile core without Kubernetes, for `switchyard plan`, `apply` and
//!   `status`.
//! - [`cli`], [`crdgen`], [`telemetry`]: the binary's edges.

pub mod api;
pub mod broker;
pub mod cli;
pub mod conditions;
pub mod crdgen;
pub mod deadletter;
pub mod dispatcher;
pub mod gitops;
pub mod metrics;
pub mod naming;
pub mod reconcile;
pub mod registry;
pub mod runtime;
pub mod schema;
pub mod subjects;
pub mod telemetry;
