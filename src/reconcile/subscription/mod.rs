//! Subscription → durable JetStream consumer (and, later, worker Deployment). So far only the
//! pure translation of the spec into the consumer configuration exists ([`consumer_config`]);
//! the reconciler that applies it plugs into the runtime like the Topic's.

pub mod consumer_config;
pub mod plan;
