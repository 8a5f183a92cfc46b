//! Verdicts per compatibility mode, judged the way Confluent Schema Registry judges them:
//! Backward checks the differences from an earlier version to the candidate, Forward those
//! from the candidate to the earlier version, Full both; the Transitive modes do that against
//! every earlier version instead of only the latest.

use serde::Serialize;

use super::{Compatibility, change::Difference, diff::diff, document::Schema};

/// Which way a pair of versions was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Direction {
    /// Consumers using the candidate can read data written with the earlier version:
    /// the differences from the earlier version to the candidate.
    Backward,
    /// Consumers using the earlier version can read data written with the candidate:
    /// the differences from the candidate to the earlier version.
    Forward,
}

/// The candidate checked against one earlier version, in one direction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PairCheck {
    pub direction: Direction,
    /// Index of the earlier version in the history given to [`check`].
    pub against: usize,
    pub differences: Vec<Difference>,
}

impl PairCheck {
    /// Whether every difference keeps data readable in this direction.
    pub fn is_compatible(&self) -> bool {
        self.differences
            .iter()
            .all(|difference| difference.compatible)
    }
}

/// The verdict for a candidate version under one compatibility mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub mode: Compatibility,
    pub compatible: bool,
    /// Every pair checked, latest earlier version first.
    pub checks: Vec<PairCheck>,
}

impl Report {
    /// The differences that break compatibility, with the check that found each.
    pub fn breaking(&self) -> impl Iterator<Item = (&PairCheck, &Difference)> {
        self.checks.iter().flat_map(|check| {
            check
                .differences
                .iter()
                .filter(|difference| !difference.compatible)
                .map(move |difference| (check, difference))
        })
    }
}

/// Checks `candidate` against `history` (oldest first) under `mode`. With no history, or
/// under [`Compatibility::None`], the candidate is compatible and nothing is compared.
pub fn check(mode: Compatibility, history: &[Schema], candidate: &Schema) -> Report {
    let (backward, forward, transitive) = match mode {
        Compatibility::None => (false, false, false),
        Compatibility::Backward => (true, false, false),
        Compatibility::BackwardTransitive => (true, false, true),
        Compatibility::Forward => (false, true, false),
        Compatibility::ForwardTransitive => (false, true, true),
        Compatibility::Full => (true, true, false),
        Compatibility::FullTransitive => (true, true, true),
    };
    let earlier = if transitive {
        history.len()
    } else {
        history.len().min(1)
    };
    let mut checks = Vec::new();
    for against in (0..history.len()).rev().take(earlier) {
        let previous = &history[against];
        if backward {
            checks.push(PairCheck {
                direction: Direction::Backward,
                against,
                differences: diff(previous, candidate),
            });
        }
        if forward {
            checks.push(PairCheck {
                direction: Direction::Forward,
                against,
                differences: diff(candidate, previous),
            });
        }
    }
    Report {
        mode,
        compatible: checks.iter().all(PairCheck::is_compatible),
        checks,
    }
}

/// Every mode with its verdict, for callers that show them all. Each earlier version is diffed
/// at most once per direction, however many modes need it.
pub fn verdicts(history: &[Schema], candidate: &Schema) -> Vec<(Compatibility, bool)> {
    // Index 0 is the latest earlier version: the only one the non-transitive modes look at.
    let pairs = |forward: bool| -> Vec<bool> {
        history
            .iter()
            .rev()
            .map(|previous| {
                let differences = if forward {
                    diff(candidate, previous)
                } else {
                    diff(previous, candidate)
                };
                differences.iter().all(|d| d.compatible)
            })
            .collect()
    };
    let (backward, forward) = (pairs(false), pairs(true));
    let latest = |checks: &[bool]| checks.first().copied().unwrap_or(true);
    let every = |checks: &[bool]| checks.iter().all(|ok| *ok);
    vec![
        (Compatibility::None, true),
        (Compatibility::Backward, latest(&backward)),
        (Compatibility::BackwardTransitive, every(&backward)),
        (Compatibility::Forward, latest(&forward)),
        (Compatibility::ForwardTransitive, every(&forward)),
        (Compatibility::Full, latest(&backward) && latest(&forward)),
        (
            Compatibility::FullTransitive,
            every(&backward) && every(&forward),
        ),
    ]
}
