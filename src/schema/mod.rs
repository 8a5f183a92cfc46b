//! The JSON Schema compatibility engine behind `EventSchema`: which differences separate two
//! versions of an event's schema, and whether a new version keeps events readable under a
//! compatibility mode.
//!
//! The rules are Confluent Schema Registry's for JSON Schema, so teams moving from it get the
//! same verdicts: a version is first compared with another ([`diff`]) into a list of
//! [`Difference`]s, each of a [`ChangeKind`] that is compatible or not, then [`check`] judges a
//! candidate against the history by mode. Pure code: no I/O, nothing fetched.
//!
//! Documents may be written in drafts 04, 06 and 07, 2019-09 or 2020-12 ([`Draft`]); one
//! without `$schema` is read as draft-07, as Confluent reads it. Each keyword counts only in the
//! dialects that have it (`dependencies` up to draft-07, tuple `items` with `additionalItems`
//! up to 2019-09, `prefixItems` from 2020-12), so a keyword of another dialect is ignored as a
//! validator would ignore it. Documents may nest up to [`MAX_DEPTH`] levels.
//!
//! - [`document`]: parsing, meta-schema validation and compilation into a [`Schema`].
//! - [`change`]: the kinds of difference and their verdicts.
//! - `diff`: the comparison, one module per schema family.
//! - [`compat`]: verdicts per mode.

pub mod change;
pub mod compat;
pub mod document;
pub mod error;

mod build;
mod canonical;
mod diff;
mod model;
mod refs;

#[cfg(test)]
mod tests;

pub use self::{
    change::{ChangeKind, Difference},
    compat::{Direction, PairCheck, Report, check, verdicts},
    diff::{MAX_LISTED, diff},
    document::{Draft, MAX_DEPTH, Schema},
    error::SchemaError,
};
pub use crate::api::event_schema::Compatibility;

/// The canonical text of a document (object keys sorted, numbers by value), from which the
/// registry's fingerprints are taken. Call it on documents [`Schema::parse`] accepted: their
/// depth is bounded.
pub fn canonical_text(document: &serde_json::Value) -> String {
    canonical::canonical(document)
}
