//! One reconciler per kind, each plugged into the shared runtime ([`crate::runtime`]): a kind
//! supplies its pure stages and its broker I/O, nothing of the controller lifecycle.

pub mod topic;
