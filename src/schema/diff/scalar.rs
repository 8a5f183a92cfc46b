//! Strings, enums and the bound comparisons every family shares (Confluent's
//! `StringSchemaDiff` and `EnumSchemaDiff`).

use super::context::Ctx;
use crate::schema::{change::ChangeKind, model::StringKind};

/// The four outcomes of comparing one optional bound.
pub(crate) struct BoundKinds {
    pub added: ChangeKind,
    pub removed: ChangeKind,
    pub increased: ChangeKind,
    pub decreased: ChangeKind,
}

/// Reports how an optional bound named `keyword` moved between two versions.
pub(crate) fn compare_bound<T: PartialOrd>(
    ctx: &mut Ctx,
    keyword: &str,
    old: Option<T>,
    new: Option<T>,
    kinds: BoundKinds,
) {
    let kind = match (old, new) {
        (None, Some(_)) => kinds.added,
        (Some(_), None) => kinds.removed,
        (Some(old), Some(new)) if old < new => kinds.increased,
        (Some(old), Some(new)) if old > new => kinds.decreased,
        _ => return,
    };
    ctx.add_at(keyword, kind);
}

pub(crate) fn compare_strings(ctx: &mut Ctx, old: &StringKind, new: &StringKind) {
    use ChangeKind::*;
    compare_bound(
        ctx,
        "maxLength",
        old.max_length,
        new.max_length,
        BoundKinds {
            added: MaxLengthAdded,
            removed: MaxLengthRemoved,
            increased: MaxLengthIncreased,
            decreased: MaxLengthDecreased,
        },
    );
    compare_bound(
        ctx,
        "minLength",
        old.min_length,
        new.min_length,
        BoundKinds {
            added: MinLengthAdded,
            removed: MinLengthRemoved,
            increased: MinLengthIncreased,
            decreased: MinLengthDecreased,
        },
    );
    let pattern = match (&old.pattern, &new.pattern) {
        (None, Some(_)) => PatternAdded,
        (Some(_), None) => PatternRemoved,
        (Some(old), Some(new)) if old != new => PatternChanged,
        _ => return,
    };
    ctx.add_at("pattern", pattern);
}

/// Both lists are sorted and free of duplicates, so subset tests are binary searches.
pub(crate) fn compare_enums(ctx: &mut Ctx, old: &[String], new: &[String]) {
    if old == new {
        return;
    }
    let contains_all = |outer: &[String], inner: &[String]| {
        inner.iter().all(|value| outer.binary_search(value).is_ok())
    };
    let kind = if contains_all(new, old) {
        ChangeKind::EnumArrayExtended
    } else if contains_all(old, new) {
        ChangeKind::EnumArrayNarrowed
    } else {
        ChangeKind::EnumArrayChanged
    };
    ctx.add_at("enum", kind);
}
