//! `allOf`, `anyOf`, `oneOf` and `not` (Confluent's `CombinedSchemaDiff`, `NotSchemaDiff` and
//! the combination cases of `SchemaDiff`).

use super::{Engine, context::Ctx, matching::maximum_matching};
use crate::schema::{
    change::ChangeKind,
    model::{Combined, Criterion, Kind, NodeId},
};

impl Engine<'_> {
    /// A plain schema against a combination, or the reverse. Returns whether that settled the
    /// comparison; if not, the caller goes on and reports a type change.
    pub(super) fn compare_across_combination(
        &mut self,
        ctx: &mut Ctx,
        old: NodeId,
        new: NodeId,
    ) -> bool {
        match (
            &self.old().nodes[old].kind,
            &self.new_side().nodes[new].kind,
        ) {
            (Kind::Combined(_), Kind::Combined(_)) => false,
            (_, Kind::Combined(sum)) => {
                // A schema that became one member of a sum (or the only member of anything)
                // still accepts what it did.
                if let [only] = sum.members[..] {
                    self.settle_if_compatible(ctx, Some(old), Some(only), None)
                } else if sum.criterion.is_sum() {
                    sum.members.iter().any(|&member| {
                        self.settle_if_compatible(
                            ctx,
                            Some(old),
                            Some(member),
                            Some(ChangeKind::SumTypeExtended),
                        )
                    })
                } else {
                    false
                }
            }
            (Kind::Combined(product), _) => {
                // Dropping all members of an `allOf` but one accepts more.
                if let [only] = product.members[..] {
                    self.settle_if_compatible(ctx, Some(only), Some(new), None)
                } else if product.criterion == Criterion::All {
                    product.members.iter().any(|&member| {
                        self.settle_if_compatible(
                            ctx,
                            Some(member),
                            Some(new),
                            Some(ChangeKind::ProductTypeNarrowed),
                        )
                    })
                } else {
                    false
                }
            }
            _ => false,
        }
    }

    /// Compares in a trial scope and keeps the result, plus `then`, only when compatible.
    fn settle_if_compatible(
        &mut self,
        ctx: &mut Ctx,
        old: Option<NodeId>,
        new: Option<NodeId>,
        then: Option<ChangeKind>,
    ) -> bool {
        let mut trial = ctx.sub();
        self.compare(&mut trial, old, new);
        if !trial.is_compatible() {
            return false;
        }
        ctx.absorb(trial);
        if let Some(kind) = then {
            ctx.add(kind);
        }
        true
    }

    /// Two combinations: the combinator, the number of members, then the best pairing of old
    /// members with new members that accept what they accepted.
    pub(super) fn compare_combined(&mut self, ctx: &mut Ctx, old: &Combined, new: &Combined) {
        if let Some(change) = criterion_change(old, new) {
            ctx.add(change);
            if change == ChangeKind::CombinedTypeChanged {
                return;
            }
        }
        let (old_len, new_len) = (old.members.len(), new.members.len());
        if old_len < new_len {
            ctx.add(if new.criterion == Criterion::All {
                ChangeKind::ProductTypeExtended
            } else {
                ChangeKind::SumTypeExtended
            });
        } else if old_len > new_len {
            ctx.add(if old.criterion.is_sum() {
                ChangeKind::SumTypeNarrowed
            } else {
                ChangeKind::ProductTypeNarrowed
            });
        }

        // Every old member against every new one; each trial is memoized per pair of nodes.
        let mut trials = Vec::with_capacity(old_len);
        for (index, &old_member) in old.members.iter().enumerate() {
            // Members of a synthetic combination have no place of their own in the document.
            if !old.synthetic {
                ctx.enter(old.criterion.keyword());
                ctx.enter_index(index);
            }
            let mut row = Vec::with_capacity(new_len);
            for &new_member in &new.members {
                let mut trial = ctx.sub();
                self.compare(&mut trial, Some(old_member), Some(new_member));
                row.push(trial);
            }
            if !old.synthetic {
                ctx.leave();
                ctx.leave();
            }
            trials.push(row);
        }

        let adjacency: Vec<Vec<usize>> = trials
            .iter()
            .map(|row| (0..new_len).filter(|&j| row[j].is_compatible()).collect())
            .collect();
        // Identical members pair up first, so that a schema compared with itself reports
        // nothing even when two members are compatible with each other.
        let mut taken = vec![false; new_len];
        let identical: Vec<Option<usize>> = trials
            .iter()
            .map(|row| {
                let j = (0..new_len).find(|&j| !taken[j] && row[j].is_empty())?;
                taken[j] = true;
                Some(j)
            })
            .collect();
        let matching = maximum_matching(&adjacency, new_len, &identical);
        let mut taken = vec![false; new_len];
        for (i, partner) in matching.iter().enumerate() {
            if let Some(j) = *partner {
                taken[j] = true;
                ctx.absorb(std::mem::take(&mut trials[i][j]));
            }
        }
        let matched = matching.iter().flatten().count();
        if matched < old_len.min(new_len) {
            ctx.add(ChangeKind::CombinedTypeSubschemasChanged);
            // Confluent stops at the verdict. Pairing each unmatched old member with an
            // unmatched new member of the same family, and reporting their differences, says
            // why (say ENUM_ARRAY_NARROWED where `type` and `enum` form a synthetic allOf).
            for (i, &old_member) in old.members.iter().enumerate() {
                if matching[i].is_some() {
                    continue;
                }
                let family = self.old_kind(old_member);
                let counterpart = (0..new_len)
                    .find(|&j| !taken[j] && self.new_kind(new.members[j]).same_class(family));
                if let Some(j) = counterpart {
                    taken[j] = true;
                    ctx.absorb(std::mem::take(&mut trials[i][j]));
                }
            }
        }
    }

    /// `not`: the negated schemas are compared the other way round, since a negated schema
    /// that accepts more makes the whole accept less.
    pub(super) fn compare_not(&mut self, ctx: &mut Ctx, old: NodeId, new: NodeId) {
        ctx.enter("not");
        let mut trial = ctx.sub();
        self.compare_reversed(&mut trial, old, new);
        // Confluent reports NOT_TYPE_NARROWED even for identical negated schemas; we stay
        // silent when there is no difference at all, so that a schema diffed with itself is
        // empty.
        if !trial.is_empty() {
            ctx.add(if trial.is_compatible() {
                ChangeKind::NotTypeNarrowed
            } else {
                ChangeKind::NotTypeExtended
            });
        }
        ctx.leave();
    }
}

/// The change of combinator, if any: towards `anyOf`, or between single-member combinations,
/// accepts at least as much; anything else may not.
fn criterion_change(old: &Combined, new: &Combined) -> Option<ChangeKind> {
    let (from, to) = (old.criterion, new.criterion);
    let single = |combined: &Combined| combined.members.len() == 1;
    if from == to {
        None
    } else if to == Criterion::Any
        || (single(old) && single(new))
        || (single(old) && to == Criterion::One)
        || (single(new) && from == Criterion::All)
    {
        Some(ChangeKind::CombinedTypeExtended)
    } else {
        Some(ChangeKind::CombinedTypeChanged)
    }
}
