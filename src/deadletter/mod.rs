//! Dead letters: copies of the events Subscriptions give up on, kept in the stream their
//! DeadLetterPolicy names.
//!
//! - [`format`]: what a stored dead letter looks like; pure, shared with listing and replay.

pub mod format;

pub use format::{DeadLetter, Reason, ReasonKind, SubjectLayout};
