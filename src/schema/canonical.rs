//! Canonical JSON text, so that values equal under JSON Schema's rules compare equal as
//! strings: object keys sorted, and numbers by value (`1` and `1.0` are the same number).

use std::fmt::Write;

use serde_json::{Number, Value};

/// Stack left before the recursion moves to a fresh segment, and that segment's size, so that
/// values nested as deep as documents may be (`MAX_DEPTH`) cost heap, not a stack overflow.
const RED_ZONE: usize = 64 * 1024;
const STACK_SEGMENT: usize = 1024 * 1024;

/// The canonical text of `value`.
pub(crate) fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// The canonical text of the object made of `entries`, without building it.
pub(crate) fn canonical_entries<'a>(entries: impl Iterator<Item = (&'a str, &'a Value)>) -> String {
    let mut out = String::new();
    write_object(&mut out, entries.collect());
    out
}

fn write_value(out: &mut String, value: &Value) {
    stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || write_value_here(out, value));
}

fn write_value_here(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map.iter().map(|(k, v)| (k.as_str(), v)).collect()),
    }
}

fn write_object(out: &mut String, mut entries: Vec<(&str, &Value)>) {
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, item);
    }
    out.push('}');
}

fn write_string(out: &mut String, s: &str) {
    // Serializing a string cannot fail; the fallback only keeps this total.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Integers print as integers whatever their JSON spelling (`2.0` is `2`); other numbers in
/// Rust's shortest round-trip form.
fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            let _ = write!(out, "{}", f as i64);
        } else {
            let _ = write!(out, "{f:e}");
        }
    }
}
