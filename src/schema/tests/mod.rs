//! Tests of the compatibility engine: one table of rules checked in both directions and under
//! every mode, the properties every verdict must have, and inputs that must never crash it.

mod documents;
mod draft07;
mod properties;
mod robustness;
mod rules;

use serde_json::Value;

use super::{ChangeKind, Schema, diff};

/// A schema the test expects to be valid.
fn schema(document: Value) -> Schema {
    Schema::parse(document.clone())
        .unwrap_or_else(|error| panic!("{document} should be a valid schema: {error}"))
}

/// The kinds of the differences from `old` to `new`, sorted.
fn kinds(old: &Schema, new: &Schema) -> Vec<ChangeKind> {
    let mut kinds: Vec<_> = diff(old, new).into_iter().map(|d| d.kind).collect();
    kinds.sort_unstable();
    kinds
}
