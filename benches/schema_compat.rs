//! `make bench-schema-compat`: how long a compatibility check takes for a realistic pair of schema
//! versions and for a very large one, and how memory grows with schema size. Prints a Markdown
//! section for BENCHMARKS.md. A benchmark, not a test: it asserts nothing about time.

use std::{
    hint::black_box,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Map, Value, json};
use switchyard::schema::{Compatibility, Schema, check};

/// One leaf property of a generated schema; `evolved` relaxes or extends it compatibly.
fn leaf(i: usize, evolved: bool) -> Value {
    match i % 6 {
        0 => {
            json!({"type": "string", "maxLength": if evolved { 256 } else { 128 }, "description": format!("field {i}")})
        }
        1 => {
            json!({"type": "integer", "minimum": 0, "maximum": if evolved { 10_000 } else { 1_000 }})
        }
        2 => {
            let mut values = vec!["new", "paid", "shipped"];
            if evolved {
                values.push("refunded");
            }
            json!({"type": "string", "enum": values})
        }
        3 => json!({"type": if evolved { "number" } else { "integer" }}),
        4 => json!({"type": "array", "items": {"type": "string"}, "maxItems": 50}),
        _ => json!({"anyOf": [{"type": "string"}, {"type": "null"}]}),
    }
}

/// An object schema with `groups` nested objects of `per_group` properties each, a `$defs`
/// reference, and a oneOf sum type. `evolved` adds optional fields and relaxes constraints.
fn generated(groups: usize, per_group: usize, evolved: bool) -> Value {
    let mut properties = Map::new();
    for g in 0..groups {
        let mut inner = Map::new();
        for p in 0..per_group {
            inner.insert(format!("f{p}"), leaf(g * per_group + p, evolved));
        }
        if evolved {
            inner.insert("addedLater".into(), json!({"type": "string"}));
        }
        properties.insert(
            format!("group{g}"),
            json!({"type": "object", "properties": inner, "required": ["f0"], "additionalProperties": false}),
        );
    }
    properties.insert("address".into(), json!({"$ref": "#/$defs/address"}));
    let mut payment = vec![
        json!({"$ref": "#/$defs/card"}),
        json!({"$ref": "#/$defs/invoice"}),
    ];
    if evolved {
        payment.push(json!({"type": "object", "properties": {"voucher": {"type": "string"}}}));
    }
    properties.insert("payment".into(), json!({"oneOf": payment}));
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.com/order.placed",
        "type": "object",
        "properties": properties,
        "required": ["group0"],
        "$defs": {
            "address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}},
            "card": {"type": "object", "properties": {"last4": {"type": "string", "pattern": "^[0-9]{4}$"}}},
            "invoice": {"type": "object", "properties": {"number": {"type": "integer"}}}
        }
    })
}

fn count_properties(v: &Value) -> usize {
    match v {
        Value::Object(map) => {
            let here = map
                .get("properties")
                .and_then(Value::as_object)
                .map_or(0, Map::len);
            here + map.values().map(count_properties).sum::<usize>()
        }
        Value::Array(items) => items.iter().map(count_properties).sum(),
        _ => 0,
    }
}

/// Median and 95th percentile of `iterations` runs of `f`.
fn time(iterations: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..iterations.min(10) {
        f();
    }
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 95 / 100],
    )
}

fn pair(groups: usize, per_group: usize) -> (Schema, Schema, usize) {
    let old = generated(groups, per_group, false);
    let props = count_properties(&old);
    let old = Schema::parse(old).expect("generated schema is valid");
    let new = Schema::parse(generated(groups, per_group, true)).expect("generated schema is valid");
    (old, new, props)
}

/// Parses two versions of `groups` × 50 properties, checks them, and prints the peak RSS in KiB.
fn memory_probe(groups: usize) {
    // Zero groups still compiles the validator and checks a small pair: that is the baseline.
    let old = Schema::parse(generated(groups, 50, false)).unwrap();
    let new = Schema::parse(generated(groups, 50, true)).unwrap();
    black_box(check(Compatibility::Full, std::slice::from_ref(&old), &new));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    println!("{kib}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, groups] = args.as_slice()
        && flag == "--memory-probe"
    {
        memory_probe(groups.parse().expect("groups"));
        return;
    }
    let modes = [Compatibility::Backward, Compatibility::Full];
    let mut lines = Vec::new();
    for (label, groups, per_group, iterations) in
        [("realistic", 12, 16, 2_000), ("large", 100, 50, 50)]
    {
        let (old, new, props) = pair(groups, per_group);
        for mode in modes {
            let report = check(mode, std::slice::from_ref(&old), &new);
            let (median, p95) = time(iterations, || {
                black_box(check(
                    mode,
                    black_box(std::slice::from_ref(&old)),
                    black_box(&new),
                ));
            });
            lines.push(format!(
                "- {label} pair ({props} properties), {mode:?}: median **{:.3} ms**, p95 {:.3} ms over {iterations} runs (verdict: {})",
                median.as_secs_f64() * 1e3,
                p95.as_secs_f64() * 1e3,
                if report.compatible { "compatible" } else { "incompatible" },
            ));
        }
        let document = generated(groups, per_group, true);
        let (median, _) = time(iterations.min(200), || {
            black_box(Schema::parse(black_box(document.clone())).unwrap());
        });
        lines.push(format!(
            "- {label}: parsing and validating one version takes median {:.3} ms",
            median.as_secs_f64() * 1e3
        ));
    }
    // Peak memory is read from a fresh process per size (VmHWM cannot be reset), minus a
    // process that does everything but the schema work.
    let probe = |groups: usize| -> u64 {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--memory-probe", &groups.to_string()])
            .output()
            .expect("memory probe runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("probe prints KiB")
    };
    let baseline = probe(0);
    let mut memory = Vec::new();
    for groups in [25, 50, 100, 200] {
        let props = count_properties(&generated(groups, 50, false));
        let kib = probe(groups).saturating_sub(baseline);
        memory.push(format!(
            "{props} properties: {:.1} MiB ({} bytes/property)",
            kib as f64 / 1024.0,
            kib * 1024 / props as u64
        ));
    }
    lines.push(format!(
        "- Peak memory (RSS above baseline) for parsing two versions and a Full check: {}",
        memory.join("; ")
    ));
    for line in lines {
        println!("{line}");
    }
}
