//! The schema registry: every registered version of every event type's schema, in a JetStream
//! key-value bucket, moved forward only.
//!
//! - [`keys`]: which key holds what.
//! - [`record`]: what a version's entry holds, and the fingerprint.
//! - [`decide`]: whether a candidate version may be registered (pure).
//! - [`store`]: reading, registering by compare-and-set, following a key.

pub mod decide;
pub mod keys;
pub mod record;
pub mod store;

pub use self::{
    decide::{Candidate, Decision, Holding, decide},
    record::{Latest, SchemaRecord, fingerprint},
    store::{Registration, Registry},
};
