//! `make bench-schema`: what validating every event against its bound schema costs.
//!
//! - (1) In process: validations per second of a representative 1 KiB `order.placed` event
//!   against its compiled schema, as the dispatcher does it per event (the body parsed as JSON,
//!   then validated), the parse alone, and the same through a `serde_json::Value`; also an event
//!   that fails (the error path formats a message).
//! - (2) The release `switchyard dispatch` draining a pre-filled stream of such events into the
//!   same handler as `make bench-dispatch` (benches/support/harness.rs), with the schema bound
//!   (`--schema-key`, the record registered in the server's registry) and without, in
//!   alternating rounds against the same server: events per second from the consumer's ack
//!   floor, CPU time per event of each process. Every event is valid, so both runs deliver
//!   every event to the handler.
//!
//! Prints Markdown lines for BENCHMARKS.md on stdout and progress on stderr. A benchmark, not a
//! test: it asserts nothing about the figures.
//!
//! Usage: `cargo bench --bench schema_validation -- --nats-url URL --nats-pid PID --switchyard
//! BIN --work-dir DIR [--concurrency 64] [--events N] [--seconds S] [--rounds R]`.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/procfs.rs"]
mod procfs;

use std::{
    hint::black_box,
    path::PathBuf,
    time::{Duration, Instant},
};

use async_nats::jetstream::{
    self,
    consumer::DeliverPolicy,
    stream::{self, StorageType},
};
use bytes::Bytes;
use clap::Parser;
use harness::*;
use http::Method;
use serde_json::{Value, json};
use switchyard::{
    api::EventSchema,
    broker::{Broker, BrokerOptions},
    dispatcher::validation::{CompiledSchema, document::Document},
    registry::{Candidate, Registry},
};

const STREAM: &str = "bench_schema";
const SUBJECT_PREFIX: &str = "bench.orders";
const SUBJECT: &str = "bench.orders.order.placed";
const NAMESPACE: &str = "bench";
const SCHEMA_KEY: &str = "bench.order.placed.latest";

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    nats_url: String,
    /// The nats-server's PID, to read its CPU time.
    #[arg(long)]
    nats_pid: u32,
    /// The release `switchyard` binary.
    #[arg(long)]
    switchyard: PathBuf,
    /// Where the dispatchers' logs go.
    #[arg(long)]
    work_dir: PathBuf,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Events in the pre-filled stream: enough that no window drains it (each run reads it
    /// from the start).
    #[arg(long, default_value_t = 400_000)]
    events: u64,
    /// Length of each throughput window.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds of (validation off, validation on), alternating which goes first.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The events' Content-Type header; none: unset, so the dispatcher sniffs the payload
    /// (parsing it) and validation reuses that parse.
    #[arg(long)]
    content_type: Option<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    if args.get(1).map(String::as_str) == Some("handler") {
        handler_main();
    }
    let args = Args::parse_from(args);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(bench(args));
}

/// A schema of the size and kinds of rules real order events have: nested objects, an array of
/// items through `$ref`, patterns, enums, bounds, a closed top level.
fn order_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "required": ["orderId", "placedAt", "customer", "items", "currency", "total"],
        "properties": {
            "orderId": {"type": "string", "pattern": "^ord-[0-9]{4}-[0-9]{9}$"},
            "placedAt": {"type": "string", "format": "date-time"},
            "customer": {
                "type": "object",
                "required": ["id", "email"],
                "properties": {
                    "id": {"type": "string", "minLength": 1, "maxLength": 64},
                    "email": {"type": "string", "format": "email"},
                    "name": {"type": "string", "maxLength": 200},
                    "tier": {"enum": ["standard", "silver", "gold"]}
                }
            },
            "shippingAddress": {"$ref": "#/$defs/address"},
            "items": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"$ref": "#/$defs/item"}},
            "currency": {"enum": ["EUR", "USD", "GBP", "CHF"]},
            "subtotal": {"type": "number", "minimum": 0},
            "shipping": {"type": "number", "minimum": 0},
            "total": {"type": "number", "minimum": 0},
            "couponCode": {"type": "string", "pattern": "^[A-Z0-9]{4,16}$"},
            "channel": {"enum": ["web", "app", "store", "phone"]},
            "notes": {"type": "string", "maxLength": 500}
        },
        "$defs": {
            "address": {
                "type": "object",
                "required": ["street", "city", "postalCode", "country"],
                "properties": {
                    "street": {"type": "string"},
                    "city": {"type": "string"},
                    "postalCode": {"type": "string", "maxLength": 16},
                    "country": {"type": "string", "pattern": "^[A-Z]{2}$"}
                }
            },
            "item": {
                "type": "object",
                "required": ["sku", "quantity", "unitPrice"],
                "additionalProperties": false,
                "properties": {
                    "sku": {"type": "string", "pattern": "^SKU-[0-9]{5}$"},
                    "name": {"type": "string", "maxLength": 200},
                    "quantity": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "unitPrice": {"type": "number", "minimum": 0}
                }
            }
        }
    })
}

/// An event that satisfies [`order_schema`], about 1 KiB of JSON.
fn order_event() -> Bytes {
    let items = [
        ("SKU-10001", "Espresso beans, dark roast, 1 kg", 2, 18.9),
        ("SKU-20417", "Ceramic cup, 180 ml, white", 4, 7.5),
        ("SKU-31120", "Milk frothing jug, stainless steel", 1, 24.0),
        ("SKU-40988", "Descaling tablets, pack of 12", 3, 9.95),
        ("SKU-52230", "Hand grinder, conical burr", 1, 0.0),
    ];
    let event = json!({
        "orderId": "ord-2026-000123456",
        "placedAt": "2026-12-05T10:15:30Z",
        "customer": {"id": "cus-48213", "email": "jane.doe@example.com", "name": "Jane Doe", "tier": "gold"},
        "shippingAddress": {"street": "Hauptstrasse 12, 3rd floor", "city": "Berlin", "postalCode": "10115", "country": "DE"},
        "items": items.iter().map(|(sku, name, quantity, price)| json!({"sku": sku, "name": name, "quantity": quantity, "unitPrice": price})).collect::<Vec<_>>(),
        "currency": "EUR",
        "subtotal": 127.15,
        "shipping": 4.9,
        "total": 132.05,
        "couponCode": "WINTER10",
        "channel": "web",
        "notes": "Please leave the parcel with the neighbours at number 14 if nobody answers the door; the bell on the left works, the one on the right does not. Gift wrap the grinder."
    });
    Bytes::from(serde_json::to_vec(&event).expect("JSON"))
}

/// The registry's candidate for the schema, as the EventSchema reconciler makes it.
fn candidate() -> Candidate {
    let evs: EventSchema = serde_json::from_value(json!({
        "apiVersion": "switchyard.dev/v1alpha1",
        "kind": "EventSchema",
        "metadata": {"name": "order-placed", "namespace": NAMESPACE},
        "spec": {"eventType": "order.placed", "version": 1, "compatibility": "None", "schema": order_schema()}
    }))
    .expect("EventSchema");
    switchyard::reconcile::event_schema::candidate(&evs, "2026-12-05T00:00:00Z".into())
        .expect("a valid schema")
}

/// Calls `f` for about `for_how_long` and returns how many calls a second it made.
fn per_second(for_how_long: Duration, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < for_how_long {
        for _ in 0..256 {
            f();
        }
        calls += 256;
    }
    calls as f64 / started.elapsed().as_secs_f64()
}

fn in_process(compiled: &CompiledSchema, event: &Bytes) {
    let value: Value = serde_json::from_slice(event).expect("JSON");
    let mut bad: Value = value.clone();
    bad["items"][2]["quantity"] = json!(0);
    let bad_bytes = serde_json::to_vec(&bad).expect("JSON");
    let window = Duration::from_secs(2);
    // Warm caches and the allocator before the first window.
    let _ = per_second(Duration::from_millis(300), || {
        let _ = black_box(compiled.check(None, black_box(event)));
    });
    let full = per_second(window, || {
        let _ = black_box(compiled.check(Some("application/json"), black_box(event)));
    });
    let parse = per_second(window, || {
        let _ = black_box(Document::parse(black_box(event)).expect("JSON"));
    });
    let through_value = per_second(window, || {
        let value: Value = serde_json::from_slice(black_box(event)).expect("JSON");
        let _ = black_box(compiled.check_parsed(None, event, Some(&value)));
    });
    let failing = per_second(window, || {
        let _ = black_box(compiled.check(None, black_box(&bad_bytes)));
    });
    let violation = compiled
        .check(None, &bad_bytes)
        .expect_err("the altered event fails");
    println!(
        "- (1) In process, one thread, a {}-byte event: parse + validate (what the dispatcher does per labelled event) **{}/s** ({:.2} µs each); the parse alone {}/s ({:.2} µs), so validation alone ≈ {:.2} µs; through a `serde_json::Value` instead {}/s ({:.2} µs); a failing event (error path, message formatted: `{violation}`) {}/s",
        event.len(),
        thousands(full),
        1e6 / full,
        thousands(parse),
        1e6 / parse,
        (1e6 / full - 1e6 / parse).max(0.0),
        thousands(through_value),
        1e6 / through_value,
        thousands(failing),
    );
}

struct Run {
    validated: bool,
    rate: Rate,
    violations: f64,
}

async fn bench(args: Args) {
    let ticks = procfs::clock_ticks();
    let candidate = candidate();
    let compiled = CompiledSchema::compile(&candidate.record).expect("compiles");
    let event = order_event();
    assert!(
        compiled.check(None, &event).is_ok(),
        "the bench event must be valid"
    );
    eprintln!("(1) validations in process");
    in_process(&compiled, &event);

    let client = async_nats::connect(args.nats_url.as_str())
        .await
        .expect("connect to NATS");
    let js = jetstream::new(client.clone());
    let broker = Broker::connect(&BrokerOptions::new(args.nats_url.clone()))
        .await
        .expect("broker");
    let mut connection = broker.connection_state();
    tokio::time::timeout(Duration::from_secs(10), connection.wait_for(|up| *up))
        .await
        .expect("connected to NATS in time")
        .expect("connection state");
    let registry = Registry::open(&broker).await.expect("registry");
    let holding = registry
        .holding(NAMESPACE, "order.placed", false)
        .await
        .expect("registry read");
    if holding.latest.is_none() {
        registry
            .register(&candidate, &holding)
            .await
            .expect("register the schema");
    }
    let _ = js.delete_stream(STREAM).await;
    let stream = js
        .create_stream(stream::Config {
            name: STREAM.into(),
            subjects: vec![format!("{SUBJECT_PREFIX}.>")],
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create the stream");
    eprintln!("pre-filling {STREAM} with {} events", args.events);
    let mut headers = async_nats::HeaderMap::new();
    if let Some(content_type) = &args.content_type {
        headers.insert("Content-Type", content_type.as_str());
    }
    let prefill_rate =
        prefill_with_headers(&js, SUBJECT, headers, event.clone(), args.events).await;
    let labelled = match &args.content_type {
        Some(content_type) => format!("Content-Type {content_type}: parsed by validation only"),
        None => "Content-Type unset: parsed once to look for an envelope, which validation reuses"
            .into(),
    };
    println!(
        "- Stream: {} events of {} bytes (JSON, plain payload, {labelled}), file storage, pre-filled at {}/s",
        args.events,
        event.len(),
        thousands(prefill_rate)
    );
    let handler = start_handler().await;
    let http = http_client();
    let command = DispatcherCommand {
        switchyard: &args.switchyard,
        nats_url: &args.nats_url,
        work_dir: &args.work_dir,
        stream: STREAM,
        subject_prefix: SUBJECT_PREFIX,
    };
    let window = Duration::from_secs(args.seconds);
    let mut runs = Vec::new();
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for validated in order {
            let name = format!("run_{round}_{}", if validated { "on" } else { "off" });
            eprintln!(
                "(2) round {round}: validation {}",
                if validated { "on" } else { "off" }
            );
            fresh_consumer(&stream, &name, DeliverPolicy::All).await;
            let extra: &[&str] = if validated {
                &["--schema-key", SCHEMA_KEY]
            } else {
                &[]
            };
            let dispatcher =
                start_dispatcher(&command, &name, args.concurrency, handler.port, extra);
            dispatcher.ready(&http).await;
            let rate = measure(
                async || ack_floor(&stream, &name).await,
                args.events,
                window,
                &[
                    ("nats-server", args.nats_pid),
                    ("dispatcher", dispatcher.pid),
                    ("handler", handler.pid),
                ],
                ticks,
            )
            .await;
            let metrics = get_text(
                &http,
                &format!("http://{}/metrics", dispatcher.http),
                Method::GET,
            )
            .await
            .map(|(_, t)| t)
            .unwrap_or_default();
            let violations = metrics
                .lines()
                .filter(|l| l.starts_with("switchyard_dispatch_outcomes_total{"))
                .filter(|l| l.contains("reason=\"schema_violation\""))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum();
            dispatcher.stop().await;
            let _ = stream.delete_consumer(&name).await;
            runs.push(Run {
                validated,
                rate,
                violations,
            });
        }
    }
    report(&runs);
    let _ = js.delete_stream(STREAM).await;
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The dispatcher's CPU time per event in a run, in µs.
fn dispatcher_cpu(run: &Run) -> f64 {
    run.rate
        .usage
        .iter()
        .find(|(name, _)| *name == "dispatcher")
        .map_or(0.0, |(_, u)| {
            u.cpu_seconds / (run.rate.events.max(1) as f64) * 1e6
        })
}

fn report(runs: &[Run]) {
    let of = |validated: bool| -> Vec<&Run> {
        runs.iter().filter(|r| r.validated == validated).collect()
    };
    let rates = |runs: &[&Run]| -> Vec<f64> { runs.iter().map(|r| r.rate.per_second()).collect() };
    let (off, on) = (of(false), of(true));
    let (off_rate, on_rate) = (median(rates(&off)), median(rates(&on)));
    let list = |runs: &[&Run]| {
        runs.iter()
            .map(|r| thousands(r.rate.per_second()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "- (2) `switchyard dispatch`, events/s by round: validation off {}; on {}",
        list(&off),
        list(&on)
    );
    println!(
        "  - Medians: off **{}/s**, on **{}/s**: validation costs **{:.1} %** of the dispatcher's throughput (target < 10 %)",
        thousands(off_rate),
        thousands(on_rate),
        (1.0 - on_rate / off_rate.max(f64::EPSILON)) * 100.0
    );
    let cpu = |runs: &[&Run]| median(runs.iter().map(|r| dispatcher_cpu(r)).collect());
    println!(
        "  - Dispatcher CPU time per event (median): off {:.1} µs, on {:.1} µs; schema violations counted while on: {}",
        cpu(&off),
        cpu(&on),
        on.iter().map(|r| r.violations).fold(0.0, |a, b| a + b)
    );
    for run in runs {
        println!(
            "    - validation {}: {}/s; CPU time / cs per event: {}",
            if run.validated { "on" } else { "off" },
            thousands(run.rate.per_second()),
            run.rate.usage_text()
        );
    }
}
