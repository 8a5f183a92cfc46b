//! Arrays: the schema of all items, tuples under open, closed and partially open content
//! models, additional and unevaluated items, and counts (Confluent's `ArraySchemaDiff`).

use super::{
    Engine,
    context::Ctx,
    object::Unevaluated,
    scalar::{BoundKinds, compare_bound},
};
use crate::schema::{
    change::ChangeKind,
    model::{ArrayKind, Kind, Model, NodeId},
};

impl Engine<'_> {
    pub(super) fn compare_arrays(&mut self, ctx: &mut Ctx, old: &ArrayKind, new: &ArrayKind) {
        ctx.enter("items");
        self.compare(ctx, old.items, new.items);
        ctx.leave();
        self.compare_tuples(ctx, old, new);
        self.compare_additional_items(ctx, old, new);
        let kinds = Unevaluated {
            added: ChangeKind::UnevaluatedItemsAdded,
            removed: ChangeKind::UnevaluatedItemsRemoved,
            extended: ChangeKind::UnevaluatedItemsExtended,
            narrowed: ChangeKind::UnevaluatedItemsNarrowed,
        };
        self.compare_unevaluated(
            ctx,
            "unevaluatedItems",
            old.unevaluated,
            new.unevaluated,
            kinds,
        );
        compare_item_counts(ctx, old, new);
    }

    /// Position by position; a position only one version has is judged by the other
    /// version's content model, as for properties.
    fn compare_tuples(&mut self, ctx: &mut Ctx, old: &ArrayKind, new: &ArrayKind) {
        use ChangeKind::*;
        let keyword = if new.prefix.is_empty() {
            old.prefix_keyword
        } else {
            new.prefix_keyword
        };
        let longest = old.prefix.len().max(new.prefix.len());
        for index in 0..longest {
            ctx.enter(keyword);
            ctx.enter_index(index);
            match (old.prefix.get(index), new.prefix.get(index)) {
                (Some(&old_item), Some(&new_item)) => {
                    self.compare(ctx, Some(old_item), Some(new_item));
                }
                (Some(&removed), None) => {
                    if is_open(self.new_side(), new) {
                        ctx.add(ItemRemovedFromOpenContentModel);
                    } else if let Some(cover) = partial_schema(self.new_side(), new) {
                        let covered = self.covers(ctx, removed, cover);
                        ctx.add(if covered {
                            ItemRemovedIsCoveredByPartiallyOpenContentModel
                        } else {
                            ItemRemovedNotCoveredByPartiallyOpenContentModel
                        });
                    } else if matches!(self.old_kind(removed), Kind::False) {
                        ctx.add(ItemWithFalseRemovedFromClosedContentModel);
                    } else {
                        ctx.add(ItemRemovedFromClosedContentModel);
                    }
                }
                (None, Some(&added)) => {
                    if is_open(self.old(), old) {
                        ctx.add(if matches!(self.new_kind(added), Kind::True) {
                            ItemWithEmptySchemaAddedToOpenContentModel
                        } else {
                            ItemAddedToOpenContentModel
                        });
                    } else if let Some(cover) = partial_schema(self.old(), old) {
                        let covered = self.covers(ctx, cover, added);
                        ctx.add(if covered {
                            ItemAddedIsCoveredByPartiallyOpenContentModel
                        } else {
                            ItemAddedNotCoveredByPartiallyOpenContentModel
                        });
                    } else {
                        ctx.add(ItemAddedToClosedContentModel);
                    }
                }
                (None, None) => {}
            }
            ctx.leave();
            ctx.leave();
        }
    }

    /// Compares `old` with `new`, keeps the differences, and tells whether all were
    /// compatible.
    fn covers(&mut self, ctx: &mut Ctx, old: NodeId, new: NodeId) -> bool {
        let mut trial = ctx.sub();
        self.compare(&mut trial, Some(old), Some(new));
        let compatible = trial.is_compatible();
        ctx.absorb(trial);
        compatible
    }

    fn compare_additional_items(&mut self, ctx: &mut Ctx, old: &ArrayKind, new: &ArrayKind) {
        use ChangeKind::*;
        let keyword = if new.prefix.is_empty() {
            old.additional_keyword
        } else {
            new.additional_keyword
        };
        let (old, new) = (old.additional, new.additional);
        ctx.enter(keyword);
        if old.permits != new.permits {
            ctx.add(if old.permits {
                AdditionalItemsRemoved
            } else {
                AdditionalItemsAdded
            });
        } else {
            match (old.schema, new.schema) {
                (None, Some(_)) => ctx.add(AdditionalItemsNarrowed),
                (Some(_), None) => ctx.add(AdditionalItemsExtended),
                (old, new) => self.compare(ctx, old, new),
            }
        }
        ctx.leave();
    }
}

fn compare_item_counts(ctx: &mut Ctx, old: &ArrayKind, new: &ArrayKind) {
    use ChangeKind::*;
    compare_bound(
        ctx,
        "maxItems",
        old.max_items,
        new.max_items,
        BoundKinds {
            added: MaxItemsAdded,
            removed: MaxItemsRemoved,
            increased: MaxItemsIncreased,
            decreased: MaxItemsDecreased,
        },
    );
    compare_bound(
        ctx,
        "minItems",
        old.min_items,
        new.min_items,
        BoundKinds {
            added: MinItemsAdded,
            removed: MinItemsRemoved,
            increased: MinItemsIncreased,
            decreased: MinItemsDecreased,
        },
    );
    match (old.unique_items, new.unique_items) {
        (true, false) => ctx.add_at("uniqueItems", UniqueItemsRemoved),
        (false, true) => ctx.add_at("uniqueItems", UniqueItemsAdded),
        _ => {}
    }
    compare_bound(
        ctx,
        "maxContains",
        old.max_contains,
        new.max_contains,
        BoundKinds {
            added: MaxContainsAdded,
            removed: MaxContainsRemoved,
            increased: MaxContainsIncreased,
            decreased: MaxContainsDecreased,
        },
    );
    compare_bound(
        ctx,
        "minContains",
        old.min_contains,
        new.min_contains,
        BoundKinds {
            added: MinContainsAdded,
            removed: MinContainsRemoved,
            increased: MinContainsIncreased,
            decreased: MinContainsDecreased,
        },
    );
}

/// Open: items after the tuple are accepted with any value.
fn is_open(model: &Model, array: &ArrayKind) -> bool {
    array.additional.is_open()
        && array
            .unevaluated
            .is_none_or(|id| matches!(model.node(id).kind, Kind::True))
}

/// The schema items after the tuple must match in a partially open array.
fn partial_schema(model: &Model, array: &ArrayKind) -> Option<NodeId> {
    array.additional.schema.or_else(|| {
        let unevaluated = array.unevaluated.filter(|_| array.additional.is_open())?;
        match model.node(unevaluated).kind {
            Kind::True | Kind::False => None,
            _ => Some(unevaluated),
        }
    })
}
