//! `integer` and `number` (Confluent's `NumberSchemaDiff`).

use serde_json::Number;

use super::{
    context::Ctx,
    scalar::{BoundKinds, compare_bound},
};
use crate::schema::{change::ChangeKind, model::NumberKind};

pub(crate) fn compare(ctx: &mut Ctx, old: &NumberKind, new: &NumberKind) {
    use ChangeKind::*;
    let bounds = [
        (
            "maximum",
            old.maximum,
            new.maximum,
            BoundKinds {
                added: MaximumAdded,
                removed: MaximumRemoved,
                increased: MaximumIncreased,
                decreased: MaximumDecreased,
            },
        ),
        (
            "minimum",
            old.minimum,
            new.minimum,
            BoundKinds {
                added: MinimumAdded,
                removed: MinimumRemoved,
                increased: MinimumIncreased,
                decreased: MinimumDecreased,
            },
        ),
        (
            "exclusiveMaximum",
            old.exclusive_maximum,
            new.exclusive_maximum,
            BoundKinds {
                added: ExclusiveMaximumAdded,
                removed: ExclusiveMaximumRemoved,
                increased: ExclusiveMaximumIncreased,
                decreased: ExclusiveMaximumDecreased,
            },
        ),
        (
            "exclusiveMinimum",
            old.exclusive_minimum,
            new.exclusive_minimum,
            BoundKinds {
                added: ExclusiveMinimumAdded,
                removed: ExclusiveMinimumRemoved,
                increased: ExclusiveMinimumIncreased,
                decreased: ExclusiveMinimumDecreased,
            },
        ),
    ];
    for (keyword, old, new, kinds) in bounds {
        compare_bound(ctx, keyword, old, new, kinds);
    }
    compare_draft4_exclusivity(ctx, old, new);
    let multiple_of = match (&old.multiple_of, &new.multiple_of) {
        (None, Some(_)) => Some(MultipleOfAdded),
        (Some(_), None) => Some(MultipleOfRemoved),
        (Some(old), Some(new)) if !same_number(old, new) => Some(if is_multiple(new, old) {
            MultipleOfExpanded
        } else if is_multiple(old, new) {
            MultipleOfReduced
        } else {
            MultipleOfChanged
        }),
        _ => None,
    };
    if let Some(kind) = multiple_of {
        ctx.add_at("multipleOf", kind);
    }
    match (old.integer, new.integer) {
        (true, false) => ctx.add(TypeExtended),
        (false, true) => ctx.add(TypeNarrowed),
        _ => {}
    }
}

/// Draft-04's `exclusiveMinimum: true` and `exclusiveMaximum: true`, which exclude the bound
/// itself. Confluent does not compare them at all. When the bound moved, its own difference
/// already says whether old values still pass; when it did not, excluding it refuses the one
/// value it admitted (`EXCLUSIVE_*_ADDED`, breaking) and including it admits one more
/// (`EXCLUSIVE_*_REMOVED`).
fn compare_draft4_exclusivity(ctx: &mut Ctx, old: &NumberKind, new: &NumberKind) {
    use ChangeKind::*;
    let flags = [
        (
            "exclusiveMaximum",
            old.maximum,
            new.maximum,
            (old.maximum_is_exclusive, new.maximum_is_exclusive),
            (ExclusiveMaximumAdded, ExclusiveMaximumRemoved),
        ),
        (
            "exclusiveMinimum",
            old.minimum,
            new.minimum,
            (old.minimum_is_exclusive, new.minimum_is_exclusive),
            (ExclusiveMinimumAdded, ExclusiveMinimumRemoved),
        ),
    ];
    for (keyword, old_bound, new_bound, (was, is), (added, removed)) in flags {
        if old_bound.is_some() && old_bound == new_bound && was != is {
            ctx.add_at(keyword, if is { added } else { removed });
        }
    }
}

fn same_number(a: &Number, b: &Number) -> bool {
    match (decimal(a), decimal(b)) {
        (Some(a), Some(b)) => normalize(a) == normalize(b),
        _ => a.as_f64() == b.as_f64(),
    }
}

/// Whether `value` is an integer multiple of `step`, exactly for decimals (Confluent compares
/// their integer parts, which divides by zero for steps below one).
fn is_multiple(value: &Number, step: &Number) -> bool {
    if let (Some((value_digits, value_exp)), Some((step_digits, step_exp))) =
        (decimal(value), decimal(step))
    {
        let exp = value_exp.min(step_exp);
        let scale = |digits: i128, from: i32| {
            10i128
                .checked_pow(u32::try_from(from - exp).ok()?)
                .and_then(|factor| digits.checked_mul(factor))
        };
        if let (Some(value), Some(step)) =
            (scale(value_digits, value_exp), scale(step_digits, step_exp))
        {
            return step != 0 && value % step == 0;
        }
    }
    match (value.as_f64(), step.as_f64()) {
        (Some(value), Some(step)) if step != 0.0 => {
            let ratio = value / step;
            (ratio - ratio.round()).abs() <= 1e-9 * ratio.abs().max(1.0)
        }
        _ => false,
    }
}

/// The number as `digits × 10^exponent`, from its JSON text; `None` beyond 38 digits.
fn decimal(number: &Number) -> Option<(i128, i32)> {
    let text = number.to_string();
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text.as_str(), 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: i128 = format!("{whole}{fraction}").parse().ok()?;
    let exponent = exponent.checked_sub(i32::try_from(fraction.len()).ok()?)?;
    Some((digits, exponent))
}

/// Strips trailing zeros so that `1.50` and `1.5` have one form.
fn normalize((mut digits, mut exponent): (i128, i32)) -> (i128, i32) {
    while digits != 0 && digits % 10 == 0 {
        digits /= 10;
        exponent += 1;
    }
    (digits, exponent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> Number {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn decimals_divide_exactly() {
        assert!(is_multiple(&n("0.3"), &n("0.1")));
        assert!(is_multiple(&n("10"), &n("2.5")));
        assert!(!is_multiple(&n("0.25"), &n("0.1")));
        assert!(is_multiple(&n("1e3"), &n("1e-2")));
        assert!(!is_multiple(&n("1"), &n("0")));
    }

    #[test]
    fn equal_numbers_in_different_spellings() {
        assert!(same_number(&n("1.50"), &n("1.5")));
        assert!(same_number(&n("2"), &n("2.0")));
        assert!(!same_number(&n("2"), &n("2.5")));
    }
}
