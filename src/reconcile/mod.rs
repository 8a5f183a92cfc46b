//! One reconciler per kind, each plugged into the shared runtime ([`crate::runtime`]): a kind
//! supplies its pure stages and its broker I/O, nothing of the controller lifecycle.

pub mod dead_letter_policy;
pub mod event_schema;
pub mod plan;
pub mod stream_apply;
pub mod subscription;
pub mod topic;

use std::fmt;

/// A spec value that cannot become broker configuration, with the field to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidSpec {
    pub field: String,
    pub message: String,
}

impl InvalidSpec {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidSpec {}
