//! Objects: required properties, properties under open, closed and partially open content
//! models, dependencies, additional and unevaluated properties, and property counts
//! (Confluent's `ObjectSchemaDiff`).

use std::collections::BTreeSet;

use super::{
    Engine,
    context::Ctx,
    scalar::{BoundKinds, compare_bound},
};
use crate::schema::{
    change::ChangeKind,
    model::{Kind, Model, NodeId, ObjectKind},
};

impl Engine<'_> {
    pub(super) fn compare_objects(&mut self, ctx: &mut Ctx, old: &ObjectKind, new: &ObjectKind) {
        self.compare_required(ctx, old, new);
        self.compare_properties(ctx, old, new);
        self.compare_pattern_properties(ctx, old, new);
        self.compare_dependencies(ctx, old, new);
        self.compare_additional_properties(ctx, old, new);
        self.compare_unevaluated_properties(ctx, old, new);
        compare_property_counts(ctx, old, new);
    }

    /// Properties declared in both versions that became required or stopped being so. Names
    /// required without being declared in either version count too: Confluent skips them, but
    /// requiring a name old data may lack breaks it all the same.
    fn compare_required(&self, ctx: &mut Ctx, old: &ObjectKind, new: &ObjectKind) {
        let undeclared = |name: &String| {
            !old.properties.contains_key(name) && !new.properties.contains_key(name)
        };
        let declared_in_both = old
            .properties
            .keys()
            .filter(|name| new.properties.contains_key(*name));
        let required_only_by_name = old
            .required
            .union(&new.required)
            .filter(|name| undeclared(name));
        let names: BTreeSet<&String> = declared_in_both.chain(required_only_by_name).collect();
        ctx.enter("required");
        for name in names {
            let kind = match (old.required.contains(name), new.required.contains(name)) {
                (true, false) => ChangeKind::RequiredAttributeRemoved,
                (false, true) if self.has_default(self.new_side(), new.properties.get(name)) => {
                    ChangeKind::RequiredAttributeWithDefaultAdded
                }
                (false, true) => ChangeKind::RequiredAttributeAdded,
                _ => continue,
            };
            ctx.add_at(name, kind);
        }
        ctx.leave();
    }

    fn compare_properties(&mut self, ctx: &mut Ctx, old: &ObjectKind, new: &ObjectKind) {
        let names: BTreeSet<&String> = old.properties.keys().chain(new.properties.keys()).collect();
        ctx.enter("properties");
        for name in names {
            ctx.enter(name);
            match (old.properties.get(name), new.properties.get(name)) {
                (Some(&removed), None) => self.property_removed(ctx, name, removed, new),
                (None, Some(&added)) => self.property_added(ctx, name, added, old, new),
                (old_schema, new_schema) => {
                    self.compare(ctx, old_schema.copied(), new_schema.copied())
                }
            }
            ctx.leave();
        }
        ctx.leave();
    }

    /// Only the new content model matters: old data may hold the removed property, and the
    /// new schema has to accept it somewhere.
    fn property_removed(&mut self, ctx: &mut Ctx, name: &str, removed: NodeId, new: &ObjectKind) {
        use ChangeKind::*;
        if is_open(self.new_side(), new) {
            ctx.add(PropertyRemovedFromOpenContentModel);
        } else if let Some(cover) = partial_schema(self.new_side(), new, name) {
            let mut trial = ctx.sub();
            self.compare(&mut trial, Some(removed), Some(cover));
            let covered = trial.is_compatible();
            ctx.absorb(trial);
            ctx.add(if covered {
                PropertyRemovedIsCoveredByPartiallyOpenContentModel
            } else {
                PropertyRemovedNotCoveredByPartiallyOpenContentModel
            });
        } else if matches!(self.old_kind(removed), Kind::False) {
            ctx.add(PropertyWithFalseRemovedFromClosedContentModel);
        } else {
            ctx.add(PropertyRemovedFromClosedContentModel);
        }
    }

    /// Only the old content model matters: under an open one, old data may already hold the
    /// name with any value.
    fn property_added(
        &mut self,
        ctx: &mut Ctx,
        name: &str,
        added: NodeId,
        old: &ObjectKind,
        new: &ObjectKind,
    ) {
        use ChangeKind::*;
        let required = new.required.contains(name);
        let with_default = self.has_default(self.new_side(), Some(&added));
        if is_open(self.old(), old) {
            ctx.add(
                match (
                    matches!(self.new_kind(added), Kind::True),
                    required,
                    with_default,
                ) {
                    (true, _, _) => PropertyWithEmptySchemaAddedToOpenContentModel,
                    (false, true, false) => RequiredPropertyAddedToOpenContentModel,
                    (false, true, true) => RequiredPropertyWithDefaultAddedToOpenContentModel,
                    (false, false, _) => OptionalPropertyAddedToOpenContentModel,
                },
            );
            return;
        }
        if let Some(cover) = partial_schema(self.old(), old, name) {
            let mut trial = ctx.sub();
            self.compare(&mut trial, Some(cover), Some(added));
            let covered = trial.is_compatible();
            ctx.absorb(trial);
            ctx.add(if covered {
                PropertyAddedIsCoveredByPartiallyOpenContentModel
            } else {
                PropertyAddedNotCoveredByPartiallyOpenContentModel
            });
        }
        ctx.add(match (required, with_default) {
            (true, false) => RequiredPropertyAddedToUnopenContentModel,
            (true, true) => RequiredPropertyWithDefaultAddedToUnopenContentModel,
            (false, _) => OptionalPropertyAddedToUnopenContentModel,
        });
    }

    /// Schemas of the same pattern in both versions. Confluent only uses `patternProperties`
    /// to decide whether a model is partially open; a pattern's schema changing breaks data
    /// just as a property's does, so we compare it like one.
    fn compare_pattern_properties(&mut self, ctx: &mut Ctx, old: &ObjectKind, new: &ObjectKind) {
        let mut entered = false;
        for (pattern, old_pattern) in &old.pattern_properties {
            let Some(new_pattern) = new.pattern_properties.get(pattern) else {
                continue;
            };
            if !entered {
                ctx.enter("patternProperties");
                entered = true;
            }
            ctx.enter(pattern);
            self.compare(ctx, Some(old_pattern.schema), Some(new_pattern.schema));
            ctx.leave();
        }
        if entered {
            ctx.leave();
        }
    }

    fn compare_dependencies(&mut self, ctx: &mut Ctx, old: &ObjectKind, new: &ObjectKind) {
        use ChangeKind::*;
        let names: BTreeSet<&String> = old
            .dependent_required
            .keys()
            .chain(new.dependent_required.keys())
            .collect();
        ctx.enter(new.dependent_required_keyword);
        for name in names {
            let kind = match (
                old.dependent_required.get(name),
                new.dependent_required.get(name),
            ) {
                (_, None) => DependencyArrayRemoved,
                (None, Some(_)) => DependencyArrayAdded,
                (Some(old), Some(new)) if old == new => continue,
                (Some(old), Some(new)) if new.is_superset(old) => DependencyArrayExtended,
                (Some(old), Some(new)) if old.is_superset(new) => DependencyArrayNarrowed,
                _ => DependencyArrayChanged,
            };
            ctx.add_at(name, kind);
        }
        ctx.leave();

        let names: BTreeSet<&String> = old
            .dependent_schemas
            .keys()
            .chain(new.dependent_schemas.keys())
            .collect();
        ctx.enter(new.dependent_schemas_keyword);
        for name in names {
            ctx.enter(name);
            match (
                old.dependent_schemas.get(name),
                new.dependent_schemas.get(name),
            ) {
                (_, None) => ctx.add(DependencySchemaRemoved),
                (None, Some(_)) => ctx.add(DependencySchemaAdded),
                (Some(&old), Some(&new)) => self.compare(ctx, Some(old), Some(new)),
            }
            ctx.leave();
        }
        ctx.leave();
    }

    fn compare_additional_properties(&mut self, ctx: &mut Ctx, old: &ObjectKind, new: &ObjectKind) {
        use ChangeKind::*;
        let (old, new) = (old.additional, new.additional);
        ctx.enter("additionalProperties");
        if old.permits != new.permits {
            ctx.add(if new.permits {
                AdditionalPropertiesAdded
            } else {
                AdditionalPropertiesRemoved
            });
        } else {
            match (old.schema, new.schema) {
                (None, Some(_)) => ctx.add(AdditionalPropertiesNarrowed),
                (Some(_), None) => ctx.add(AdditionalPropertiesExtended),
                (old, new) => self.compare(ctx, old, new),
            }
        }
        ctx.leave();
    }

    fn compare_unevaluated_properties(
        &mut self,
        ctx: &mut Ctx,
        old: &ObjectKind,
        new: &ObjectKind,
    ) {
        use ChangeKind::*;
        let kinds = Unevaluated {
            added: UnevaluatedPropertiesAdded,
            removed: UnevaluatedPropertiesRemoved,
            extended: UnevaluatedPropertiesExtended,
            narrowed: UnevaluatedPropertiesNarrowed,
        };
        self.compare_unevaluated(
            ctx,
            "unevaluatedProperties",
            old.unevaluated,
            new.unevaluated,
            kinds,
        );
    }

    /// `unevaluatedProperties` and `unevaluatedItems`: `false` forbids, absent or `true`
    /// allows anything, and a schema sits in between.
    pub(super) fn compare_unevaluated(
        &mut self,
        ctx: &mut Ctx,
        keyword: &str,
        old: Option<NodeId>,
        new: Option<NodeId>,
        kinds: Unevaluated,
    ) {
        let old_kind = old.map(|id| self.old_kind(id));
        let new_kind = new.map(|id| self.new_kind(id));
        let kind = match (old_kind, new_kind) {
            // Absent and `true` both allow anything.
            (None, None | Some(Kind::True)) | (Some(Kind::True), None) => return,
            (None, Some(Kind::False)) => kinds.removed,
            (None, Some(_)) => kinds.narrowed,
            (Some(Kind::False), None) => kinds.added,
            (Some(_), None) => kinds.extended,
            (Some(Kind::False), Some(Kind::False)) => return,
            (Some(Kind::False), Some(_)) => kinds.added,
            (Some(_), Some(Kind::False)) => kinds.removed,
            (Some(Kind::True), Some(Kind::True)) => return,
            (Some(Kind::True), Some(_)) => kinds.narrowed,
            (Some(_), Some(Kind::True)) => kinds.extended,
            (Some(_), Some(_)) => {
                ctx.enter(keyword);
                self.compare(ctx, old, new);
                ctx.leave();
                return;
            }
        };
        ctx.add_at(keyword, kind);
    }

    /// Whether a property schema carries a `default`, looking through a `$ref`.
    fn has_default(&self, model: &Model, property: Option<&NodeId>) -> bool {
        property.is_some_and(|&id| {
            model.nodes[id].annotations.default.is_some()
                || model.node(id).annotations.default.is_some()
        })
    }
}

/// The four outcomes of comparing an `unevaluated*` keyword.
pub(super) struct Unevaluated {
    pub added: ChangeKind,
    pub removed: ChangeKind,
    pub extended: ChangeKind,
    pub narrowed: ChangeKind,
}

fn compare_property_counts(ctx: &mut Ctx, old: &ObjectKind, new: &ObjectKind) {
    use ChangeKind::*;
    compare_bound(
        ctx,
        "maxProperties",
        old.max_properties,
        new.max_properties,
        BoundKinds {
            added: MaxPropertiesAdded,
            removed: MaxPropertiesRemoved,
            increased: MaxPropertiesIncreased,
            decreased: MaxPropertiesDecreased,
        },
    );
    compare_bound(
        ctx,
        "minProperties",
        old.min_properties,
        new.min_properties,
        BoundKinds {
            added: MinPropertiesAdded,
            removed: MinPropertiesRemoved,
            increased: MinPropertiesIncreased,
            decreased: MinPropertiesDecreased,
        },
    );
}

/// Open: any property not declared is accepted with any value.
fn is_open(model: &Model, object: &ObjectKind) -> bool {
    object.pattern_properties.is_empty()
        && object.additional.is_open()
        && object
            .unevaluated
            .is_none_or(|id| matches!(model.node(id).kind, Kind::True))
}

/// The schema an undeclared property named `name` must match in a partially open model: the
/// first matching `patternProperties` entry, else `additionalProperties`, else a schema-valued
/// `unevaluatedProperties`.
fn partial_schema(model: &Model, object: &ObjectKind, name: &str) -> Option<NodeId> {
    let by_pattern = object
        .pattern_properties
        .values()
        .find(|pattern| pattern.regex.is_match(name).unwrap_or(false))
        .map(|pattern| pattern.schema);
    by_pattern.or(object.additional.schema).or_else(|| {
        let unevaluated = object.unevaluated.filter(|_| object.additional.is_open())?;
        match model.node(unevaluated).kind {
            Kind::True | Kind::False => None,
            _ => Some(unevaluated),
        }
    })
}
