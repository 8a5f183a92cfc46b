//! `make bench-dlq`: how long the dead-letter relay takes from an event's final failed delivery
//! to its stored copy, and how many dead letters a second it sustains.
//!
//! Against a nats-server of its own (the script starts one): an origin stream with a handler's
//! durable pull consumer, a dead-letter stream, and an advisory stream scoped to the origin.
//! The relay runs in this process as the operator runs it (the library's `Relay`, default
//! settings), with a fixed route table sending the handler's dead letters to the dead-letter
//! stream. The handler (this process too) terminates events with `+TERM HandlerRejected: HTTP
//! 400`, the final failed delivery; a copy counts as stored when the relay reports it, which it
//! does once the dead-letter stream has acknowledged it.
//!
//! - (a) latency: events terminated one at a time at a modest fixed rate; time from each `+TERM`
//!   to its copy stored, p50/p99/max.
//! - (b) live throughput: N events terminated as fast as the handler can, the relay running;
//!   copies stored per second from the first `+TERM` to the last copy, and their latency.
//! - (c) backlog: the relay stopped while N events are terminated (their advisories wait in
//!   their stream), then started; copies stored per second from its start to the last copy,
//!   the relay alone. CPU per dead letter of this process and of nats-server, and this
//!   process's peak RSS (reset just before), mostly the relay's.
//!
//! Prints Markdown lines for BENCHMARKS.md on stdout and progress on stderr. A benchmark, not a
//! test: it asserts nothing about the figures.
//!
//! Usage: `cargo bench --bench dlq -- --nats-url URL --nats-pid PID [--rate R]
//! [--latency-events L] [--events N] [--work-dir DIR]`. With a work directory, the latency
//! samples go there.

#[path = "support/procfs.rs"]
mod procfs;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        consumer::{AckPolicy, PullConsumer, pull},
        stream::{Config as StreamConfig, StorageType},
    },
};
use clap::Parser;
use futures::{StreamExt, stream::FuturesUnordered};
use switchyard::{
    api::dead_letter_policy::CaptureReason,
    broker::{Broker, BrokerOptions},
    deadletter::{
        AdvisoryScope, AdvisoryStream, Outcome, Relay, RelayConfig, Report, Route, Routes,
        SubjectLayout, Target,
    },
};
use tokio::{sync::mpsc, task::JoinHandle};

const ORIGIN: &str = "bench_orders";
const ORIGIN_PREFIX: &str = "bench.orders";
const HANDLER: &str = "bench_handler";
const DEAD_LETTERS: &str = "bench_dlq";
const DEAD_LETTER_PREFIX: &str = "bench.dlq";
const ADVISORIES: &str = "bench_advisories";
const RELAY: &str = "bench_relay";
const EVENT_SIZE: usize = 256;
const REASON: &str = "+TERM HandlerRejected: HTTP 400";
/// How long the copies of one phase may take before the phase gives up on the rest.
const PHASE_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    nats_url: String,
    /// The nats-server's PID, to read its CPU time.
    #[arg(long)]
    nats_pid: u32,
    /// Events terminated a second in the latency phase.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Events terminated in the latency phase.
    #[arg(long, default_value_t = 2000)]
    latency_events: u64,
    /// Events terminated in each throughput phase.
    #[arg(long, default_value_t = 20_000)]
    events: u64,
    /// Where the latency samples go (`dlq-<phase>.txt`: stream sequence and nanoseconds).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let args = Args::parse_from(args);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(bench(args));
}

/// The route table of the bench: the handler's dead letters go to the dead-letter stream,
/// nothing else is managed.
struct OneRoute(Arc<Target>);

impl Routes for OneRoute {
    async fn route(&self, stream: &str, consumer: &str) -> Route {
        if stream == ORIGIN && consumer == HANDLER {
            Route::Deliver(self.0.clone())
        } else {
            Route::NotManaged
        }
    }
}

/// When each original's copy was reported stored, and what became of every advisory.
#[derive(Default)]
struct Ledger {
    stored: Mutex<HashMap<u64, Instant>>,
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
}

impl Ledger {
    fn record(&self, report: &Report) {
        *lock(&self.outcomes)
            .entry(report.outcome.label())
            .or_default() += 1;
        if let (Some(failure), Outcome::Copied { .. }) = (&report.failure, &report.outcome) {
            lock(&self.stored)
                .entry(failure.sequence)
                .or_insert_with(Instant::now);
        }
    }

    fn stored_count(&self) -> usize {
        lock(&self.stored).len()
    }

    fn stored_at(&self, sequence: u64) -> Option<Instant> {
        lock(&self.stored).get(&sequence).copied()
    }

    fn outcomes(&self) -> String {
        lock(&self.outcomes)
            .iter()
            .map(|(label, n)| format!("{label} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The relay running in this process, as the operator runs it.
struct RunningRelay {
    stop: tokio::sync::oneshot::Sender<()>,
    relay: JoinHandle<()>,
    reports: JoinHandle<()>,
}

async fn start_relay(url: &str, target: &Arc<Target>, ledger: &Arc<Ledger>) -> RunningRelay {
    let broker = connect(url).await;
    // As the operator: reports are counted as fast as they come.
    let (tx, mut rx) = mpsc::channel::<Report>(1024);
    let ledger = ledger.clone();
    let reports = tokio::spawn(async move {
        while let Some(report) = rx.recv().await {
            ledger.record(&report);
        }
    });
    let relay = Relay::new(
        broker,
        Arc::new(OneRoute(target.clone())),
        tx,
        RelayConfig {
            stream: advisory_stream(),
            consumer: RELAY.into(),
            ..RelayConfig::default()
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(relay.run(async move {
        let _ = stopped.await;
    }));
    RunningRelay {
        stop,
        relay,
        reports,
    }
}

impl RunningRelay {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.relay.await;
        let _ = self.reports.await;
    }
}

fn advisory_stream() -> AdvisoryStream {
    AdvisoryStream {
        name: ADVISORIES.into(),
        scope: AdvisoryScope::Streams(vec![ORIGIN.into()]),
        ..AdvisoryStream::default()
    }
}

async fn connect(url: &str) -> Broker {
    let broker = Broker::connect(&BrokerOptions::new(url))
        .await
        .expect("connect to NATS");
    let mut state = broker.connection_state();
    tokio::time::timeout(Duration::from_secs(10), state.wait_for(|up| *up))
        .await
        .expect("connected in time")
        .expect("connection state");
    broker
}

/// The streams and the handler's consumer; the advisory stream captures from now on.
async fn set_up(js: &jetstream::Context, broker: &Broker) -> PullConsumer {
    for (name, prefix) in [(ORIGIN, ORIGIN_PREFIX), (DEAD_LETTERS, DEAD_LETTER_PREFIX)] {
        let _ = js.delete_stream(name).await;
        js.create_stream(StreamConfig {
            name: name.into(),
            subjects: vec![format!("{prefix}.>")],
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create stream");
    }
    let _ = js.delete_stream(ADVISORIES).await;
    advisory_stream()
        .ensure(broker, RELAY, RelayConfig::default().ack_wait)
        .await
        .expect("advisory stream");
    let origin = js.get_stream(ORIGIN).await.expect("origin stream");
    origin
        .create_consumer(pull::Config {
            durable_name: Some(HANDLER.into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(120),
            max_ack_pending: -1,
            ..Default::default()
        })
        .await
        .expect("handler consumer");
    origin
        .get_consumer(HANDLER)
        .await
        .expect("handler consumer")
}

/// Publishes `count` 256-byte CloudEvents (binary mode) and waits until all are stored.
async fn publish(js: &jetstream::Context, count: u64) {
    let payload = bytes::Bytes::from(vec![b'x'; EVENT_SIZE]);
    let mut acks = FuturesUnordered::new();
    for n in 0..count {
        if acks.len() >= 256 {
            acks.next().await;
        }
        let mut headers = HeaderMap::new();
        headers.insert("ce-specversion", "1.0");
        headers.insert("ce-type", "order.placed");
        headers.insert("ce-source", "/bench/orders");
        headers.insert("ce-id", format!("bench-{n}").as_str());
        let ack = js
            .publish_with_headers(
                format!("{ORIGIN_PREFIX}.order.placed"),
                headers,
                payload.clone(),
            )
            .await
            .expect("publish");
        acks.push(ack.into_future());
    }
    while let Some(ack) = acks.next().await {
        ack.expect("event stored");
    }
}

/// The handler: terminates the next `count` events, one every `1 / rate` seconds or, without a
/// rate, as fast as they come. Returns each event's stream sequence and when its `+TERM` went
/// out. One pull stream serves every phase: a dropped one could leave a pull request behind
/// that takes events to nobody.
async fn terminate(
    client: &async_nats::Client,
    messages: &mut pull::Stream,
    count: u64,
    rate: Option<f64>,
) -> Vec<(u64, Instant)> {
    let mut tick = rate.map(|r| tokio::time::interval(Duration::from_secs_f64(1.0 / r)));
    let mut sent = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    while (sent.len() as u64) < count {
        if let Some(tick) = tick.as_mut() {
            tick.tick().await;
        }
        let message = messages
            .next()
            .await
            .expect("an event")
            .expect("an event, not an error");
        let sequence = message.info().expect("delivery info").stream_sequence;
        let reply = message.reply.clone().expect("reply subject");
        let at = Instant::now();
        client
            .publish(reply, REASON.into())
            .await
            .expect("terminate");
        if tick.is_some() {
            client.flush().await.expect("flush");
        }
        sent.push((sequence, at));
    }
    client.flush().await.expect("flush");
    sent
}

/// Waits until every sequence of `sent` has a stored copy, or the phase limit passed.
async fn wait_stored(ledger: &Ledger, sent: &[(u64, Instant)], before: usize) -> Option<Instant> {
    let started = Instant::now();
    let want = before + sent.len();
    loop {
        if ledger.stored_count() >= want {
            return sent.iter().filter_map(|(s, _)| ledger.stored_at(*s)).max();
        }
        if started.elapsed() > PHASE_LIMIT {
            eprintln!(
                "gave up after {PHASE_LIMIT:?}: {} of {} copies stored",
                ledger.stored_count() - before,
                sent.len()
            );
            return None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    samples: usize,
    missing: usize,
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 **{:.1} ms**, p99 **{:.1} ms**, max {:.1} ms ({} samples",
            self.p50_ms, self.p99_ms, self.max_ms, self.samples
        )?;
        if self.missing > 0 {
            write!(f, ", {} never stored", self.missing)?;
        }
        write!(f, ")")
    }
}

/// `+TERM` → copy stored for every event of `sent`; the samples go to `file` if given.
fn latency(ledger: &Ledger, sent: &[(u64, Instant)], file: Option<PathBuf>) -> Latency {
    let mut samples: Vec<(u64, u64)> = sent
        .iter()
        .filter_map(|(sequence, at)| {
            let stored = ledger.stored_at(*sequence)?;
            let nanos = u64::try_from(stored.saturating_duration_since(*at).as_nanos()).ok()?;
            Some((*sequence, nanos))
        })
        .collect();
    if let Some(file) = file {
        let lines: String = samples.iter().map(|(s, n)| format!("{s} {n}\n")).collect();
        if let Err(e) = std::fs::write(&file, lines) {
            eprintln!("cannot write {}: {e}", file.display());
        }
    }
    samples.sort_unstable_by_key(|(_, nanos)| *nanos);
    let quantile = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
        samples.get(i).map_or(0.0, |(_, n)| *n as f64 / 1e6)
    };
    Latency {
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
        max_ms: quantile(1.0),
        samples: samples.len(),
        missing: sent.len() - samples.len(),
    }
}

// ---------------------------------------------------------------------------------------------
// Processes: CPU time and peak RSS from /proc.
// ---------------------------------------------------------------------------------------------

/// Starts this process's peak RSS over from its current RSS.
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("cannot reset the peak RSS: {e}");
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn per_second(count: usize, over: Duration) -> String {
    let rate = count as f64 / over.as_secs_f64().max(f64::EPSILON);
    let rate = rate.round() as u64;
    if rate >= 1000 {
        format!("{},{:03}", rate / 1000, rate % 1000)
    } else {
        rate.to_string()
    }
}

async fn bench(args: Args) {
    let ticks = procfs::clock_ticks();
    let nats_pid = args.nats_pid.to_string();
    let broker = connect(&args.nats_url).await;
    let client = async_nats::connect(&args.nats_url)
        .await
        .expect("connect to NATS");
    let js = jetstream::new(client.clone());
    let mut handler = set_up(&js, &broker)
        .await
        .stream()
        .max_messages_per_batch(500)
        .messages()
        .await
        .expect("handler pull");
    let target = Arc::new(Target {
        policy: "bench/dead-letters".into(),
        stream: DEAD_LETTERS.into(),
        subject_prefix: DEAD_LETTER_PREFIX.into(),
        layout: SubjectLayout {
            topic_prefix: ORIGIN_PREFIX.into(),
            partitioned: false,
        },
        capture: vec![CaptureReason::Terminated],
        release_original: false,
    });
    let ledger = Arc::new(Ledger::default());
    let file = |phase: &str| {
        args.work_dir
            .as_ref()
            .map(|dir| dir.join(format!("dlq-{phase}.txt")))
    };

    // (a) latency at a modest rate.
    let relay = start_relay(&args.nats_url, &target, &ledger).await;
    publish(&js, args.latency_events).await;
    eprintln!(
        "(a) terminating {} events at {}/s",
        args.latency_events, args.rate
    );
    let before = ledger.stored_count();
    let sent = terminate(&client, &mut handler, args.latency_events, Some(args.rate)).await;
    wait_stored(&ledger, &sent, before).await;
    let light = latency(&ledger, &sent, file("latency"));

    // (b) as fast as the handler terminates, the relay running.
    publish(&js, args.events).await;
    eprintln!("(b) terminating {} events at once", args.events);
    let before = ledger.stored_count();
    let sent = terminate(&client, &mut handler, args.events, None).await;
    let last = wait_stored(&ledger, &sent, before).await;
    let first_term = sent.first().map(|(_, at)| *at).expect("events terminated");
    let last_term = sent.last().map(|(_, at)| *at).expect("events terminated");
    let live = latency(&ledger, &sent, file("live"));
    let live_copied = ledger.stored_count() - before;
    let live_rate = last.map(|last| per_second(live_copied, last - first_term));
    let term_rate = per_second(sent.len(), last_term - first_term);
    relay.stop().await;

    // (c) a backlog of advisories, the relay stopped meanwhile.
    publish(&js, args.events).await;
    let captured_before = broker
        .stream_info(ADVISORIES)
        .await
        .ok()
        .flatten()
        .map_or(0, |i| i.state.messages);
    eprintln!("(c) terminating {} events, the relay stopped", args.events);
    let sent = terminate(&client, &mut handler, args.events, None).await;
    let started = Instant::now();
    loop {
        let captured = broker
            .stream_info(ADVISORIES)
            .await
            .ok()
            .flatten()
            .map_or(0, |i| i.state.messages);
        if captured >= captured_before + args.events || started.elapsed() > PHASE_LIMIT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = ledger.stored_count();
    reset_peak_rss();
    let rss_before = procfs::status_kib("self", "VmRSS:");
    let (bench_cpu, nats_cpu) = (
        procfs::cpu_seconds("self", ticks),
        procfs::cpu_seconds(&nats_pid, ticks),
    );
    let started = Instant::now();
    eprintln!("(c) relay started on a backlog of {}", args.events);
    let relay = start_relay(&args.nats_url, &target, &ledger).await;
    let last = wait_stored(&ledger, &sent, before).await;
    let drained = last.map(|last| last - started);
    let (bench_cpu, nats_cpu) = (
        procfs::cpu_seconds("self", ticks) - bench_cpu,
        procfs::cpu_seconds(&nats_pid, ticks) - nats_cpu,
    );
    let peak = procfs::status_kib("self", "VmHWM:");
    let backlog_copied = ledger.stored_count() - before;
    relay.stop().await;
    let in_target = broker
        .stream_info(DEAD_LETTERS)
        .await
        .ok()
        .flatten()
        .map_or(0, |i| i.state.messages);

    let n = args.events;
    println!(
        "- (a) `+TERM` → copy stored, {} events at {}/s: {light} (target p99 ≤ 250 ms)",
        args.latency_events, args.rate
    );
    println!(
        "- (b) {n} events terminated as fast as the handler could ({term_rate}/s), relay running: **{}** dead letters/s from the first `+TERM` to the last copy (target ≥ 5,000/s); `+TERM` → copy stored {live}",
        live_rate.unwrap_or_else(|| format!("incomplete ({live_copied} of {n})")),
    );
    let backlog_rate = drained.map(|d| per_second(backlog_copied, d));
    let per_letter = |cpu: f64| cpu * 1e6 / backlog_copied.max(1) as f64;
    println!(
        "- (c) backlog of {n} advisories, relay started on it: **{}** dead letters/s ({} s); CPU per dead letter: this process (relay) {:.1} µs, nats-server {:.1} µs",
        backlog_rate.unwrap_or_else(|| format!("incomplete ({backlog_copied} of {n})")),
        drained.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64())),
        per_letter(bench_cpu),
        per_letter(nats_cpu),
    );
    println!(
        "- Peak RSS of the bench process while the relay drained the backlog: **{:.1} MiB** ({:.1} MiB before it started; the relay runs in the bench process)",
        mib(peak),
        mib(rss_before)
    );
    println!(
        "- Advisories settled: {}; copies in the dead-letter stream: {in_target} for {} events terminated",
        ledger.outcomes(),
        args.latency_events + 2 * n
    );
}
