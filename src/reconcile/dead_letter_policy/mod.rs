//! DeadLetterPolicy → where dead letters are kept: a managed dead-letter stream or a Topic's.

pub mod target;
