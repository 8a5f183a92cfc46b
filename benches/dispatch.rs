//! `make bench-dispatch`: how fast `switchyard dispatch` moves 256-byte events from a JetStream
//! durable pull consumer to an HTTP handler, next to the two halves it is made of, all measured
//! in the same run against the same nats-server and the same handler:
//!
//! - (a) a bare async-nats pull consumer shaped like the dispatcher (pull requests for up to
//!   `concurrency` events, the next one once the batch is in), acking each event, no HTTP;
//! - (b) a bare HTTP client (hyper-util's legacy client, built as the dispatcher's handler
//!   module builds it) keeping `concurrency` POSTs in flight over keep-alive connections;
//! - (c) the release `switchyard dispatch` binary draining a pre-filled stream, its rate read
//!   from the consumer's ack floor (JetStream consumer info).
//!
//! For reference: (a′) async-nats's own continuous pull, and (c′) the least a dispatcher of the
//! same shape does (pull, a task per event, POST, ack), run in the bench process: the gap
//! between (c′) and (c) is the implementation's, the gap between (c′) and min(a, b) the shape's
//! and the machine's (every process shares the same cores).
//!
//! Then latency at half of (c)'s rate, and again at a light fixed rate: events published at a
//! fixed rate, each carrying its publication time; the time from publication to receipt by a bare consumer shaped as in (a),
//! and to the handler through the dispatcher. "Added" latency is the difference of the two at
//! each percentile. The dispatcher's peak RSS is its VmHWM. CPU time and context switches per
//! event of every process taking part, and how busy the whole machine was, show where the time
//! goes (and whether something else on the machine took part of it).
//!
//! The handler (axum, answering 200 with an empty body) is a process of its own (this binary
//! with the argument `handler`), so the CPU of client, handler and dispatcher can be told apart.
//!
//! Prints Markdown lines for BENCHMARKS.md on stdout and progress on stderr. A benchmark, not
//! a test: it asserts nothing about the figures.
//!
//! Usage: `cargo bench --bench dispatch -- --nats-url URL --nats-pid PID --switchyard BIN
//! --work-dir DIR [--concurrency 1,16,64] [--events N] [--seconds S] [--latency-seconds L]
//! [--light-rate R]`. The dispatchers' logs and every latency sample go to DIR.

#[path = "support/harness.rs"]
mod harness;
#[path = "support/procfs.rs"]
mod procfs;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{DeliverPolicy, PullConsumer},
    stream::{self, StorageType},
};
use bytes::Bytes;
use clap::Parser;
use futures::StreamExt;
use harness::*;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use tokio::sync::Semaphore;

const STREAM: &str = "bench_dispatch";
const SUBJECT_PREFIX: &str = "bench.dispatch";
const SUBJECT: &str = "bench.dispatch.page.viewed";
/// As the dispatcher's pull requests.
const FETCH_EXPIRES: Duration = Duration::from_secs(5);
/// Latency samples published during the first second of a phase are left out, for the same
/// reason as the warm-up.
const LATENCY_WARM_UP_NANOS: u64 = 1_000_000_000;

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
    #[arg(long, value_delimiter = ',', default_value = "64")]
    concurrency: Vec<usize>,
    /// Events in the pre-filled stream: enough that no measurement window drains it.
    #[arg(long, default_value_t = 1_500_000)]
    events: u64,
    /// Length of each throughput window.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Length of each fixed-rate latency phase.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// A light load (events a second) at which latency is measured too, through a bare consumer
    /// and through the dispatcher: what the dispatcher adds when nothing queues for the CPU.
    /// 0: not measured.
    #[arg(long, default_value_t = 1000.0)]
    light_rate: f64,
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

// ---------------------------------------------------------------------------------------------
// Events: 256 bytes, the first 8 the publication time (nanoseconds since the epoch, little
// endian; 0 for the pre-filled events, which are not timed).
// ---------------------------------------------------------------------------------------------

fn event(published: u64) -> Bytes {
    let mut body = vec![b'x'; EVENT_SIZE];
    body[..8].copy_from_slice(&published.to_le_bytes());
    Bytes::from(body)
}

// ---------------------------------------------------------------------------------------------
// HTTP, as src/dispatcher/handler.rs does it.
// ---------------------------------------------------------------------------------------------

/// The request the dispatcher sends for a plain payload: same method, headers and body size.
fn event_request(endpoint: &Uri, sequence: u64, body: Bytes) -> Request<Full<Bytes>> {
    let mut headers = HeaderMap::new();
    headers.insert("ce-id", HeaderValue::from(sequence));
    headers.insert("ce-type", HeaderValue::from_static("page.viewed"));
    headers.insert(
        "ce-source",
        HeaderValue::from_static("/streams/bench_dispatch"),
    );
    headers.insert("ce-specversion", HeaderValue::from_static("1.0"));
    headers.insert("ce-deliverycount", HeaderValue::from_static("1"));
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = endpoint.clone();
    *request.headers_mut() = headers;
    request
}

// ---------------------------------------------------------------------------------------------
// JetStream.
// ---------------------------------------------------------------------------------------------

/// (a): pull requests for up to `batch` events, the next one once the batch is in (the
/// dispatcher's shape when handling takes no time); each event acked as it arrives.
async fn bare_consume(
    consumer: PullConsumer,
    batch: usize,
    received: Arc<AtomicU64>,
    samples: Option<Samples>,
) {
    loop {
        let mut messages = match consumer
            .batch()
            .max_messages(batch)
            .expires(FETCH_EXPIRES)
            .messages()
            .await
        {
            Ok(messages) => messages,
            Err(e) => {
                eprintln!("bare consumer: pull request failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while let Some(Ok(message)) = messages.next().await {
            if let Some(samples) = &samples {
                record(samples, &message.payload);
            }
            let _ = message.ack_with(AckKind::Ack).await;
            received.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// (c′), for reference: the least a dispatcher of the same shape does, in the bench process. As
/// `switchyard dispatch` pulls: a pull request for as many events as there is room for, the next
/// once the batch is in; each event POSTed in a task of its own, acked on a 200. Without what
/// the dispatcher adds: CloudEvents translation, metrics, in-progress acknowledgements, timeouts,
/// naks. Tells the cost of the shape from the cost of the implementation.
async fn minimal_pipeline(
    consumer: PullConsumer,
    concurrency: usize,
    http: HttpClient,
    endpoint: Uri,
) {
    let room = Arc::new(Semaphore::new(concurrency));
    let mut sequence = 0;
    loop {
        let first = room.clone().acquire_owned().await.expect("never closed");
        let wanted = 1 + room.available_permits();
        let Ok(mut batch) = consumer
            .batch()
            .max_messages(wanted)
            .expires(FETCH_EXPIRES)
            .messages()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut first = Some(first);
        while let Some(Ok(message)) = batch.next().await {
            let permit = match first.take() {
                Some(permit) => permit,
                None => room.clone().acquire_owned().await.expect("never closed"),
            };
            let request = event_request(&endpoint, sequence, message.payload.clone());
            sequence += 1;
            let http = http.clone();
            tokio::spawn(async move {
                if let Some((200, _)) = exchange(&http, request).await {
                    let _ = message.ack_with(AckKind::Ack).await;
                }
                drop(permit);
            });
        }
    }
}

/// (a′), for reference: async-nats's continuous pull (`messages()`, which keeps pull requests
/// for its default batch outstanding ahead of consumption).
async fn bare_stream(consumer: PullConsumer) {
    let mut messages = consumer.messages().await.expect("pull stream");
    while let Some(Ok(message)) = messages.next().await {
        let _ = message.ack_with(AckKind::Ack).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed-rate sources for the latency phases.
// ---------------------------------------------------------------------------------------------

/// The shortest pause of the pacer: above `1 / PACE_TICK` events a second, the events that fell
/// due during a tick go out together. Waking for every single event costs the load generator,
/// and nats-server receiving each event on its own, more CPU than the path being measured at
/// tens of thousands a second, on the same cores.
const PACE_TICK: Duration = Duration::from_micros(250);

/// Tells how many of `total` events are due, `rate` a second: each on its own when they are at
/// least [`PACE_TICK`] apart, else those that fell due, once a tick. A thread of its own:
/// tokio's timers tick by the millisecond.
fn pace(rate: f64, total: u64) -> tokio::sync::mpsc::UnboundedReceiver<u64> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut sent = 0;
        while sent < total {
            let due = ((start.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
            if due > sent {
                if tx.send(due - sent).is_err() {
                    return;
                }
                sent = due;
            }
            let next = start + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            std::thread::sleep(next.saturating_duration_since(now).max(PACE_TICK));
        }
    });
    rx
}

/// Publishes timed events at `rate` for `seconds` (core NATS publish: the stream captures the
/// subject; no acknowledgement round trip on the publishing side).
async fn publish_at_rate(client: &async_nats::Client, rate: f64, seconds: u64) -> u64 {
    let total = (rate * seconds as f64) as u64;
    let mut due = pace(rate, total);
    while let Some(count) = due.recv().await {
        for _ in 0..count {
            client
                .publish(SUBJECT, event(now_nanos()))
                .await
                .expect("publish");
        }
    }
    client.flush().await.expect("flush");
    total
}

struct Percentiles {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    samples: usize,
    /// p99 of each half second by publication time: the median and the worst of them. A worst
    /// far above the median is a backlog that built up and drained, not a steady cost.
    slice_p99_median_ms: f64,
    slice_p99_worst_ms: f64,
}

impl Percentiles {
    fn text(&self) -> String {
        format!(
            "p50 {:.3} ms, p99 {:.3} ms, max {:.1} ms ({} samples); p99 of each 0.5 s: median {:.3} ms, worst {:.1} ms",
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.samples,
            self.slice_p99_median_ms,
            self.slice_p99_worst_ms
        )
    }
}

/// Quantile `q` of sorted nanoseconds, in milliseconds.
fn quantile_ms(sorted: &[u64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(i).copied().unwrap_or(0) as f64 / 1e6
}

/// Also writes the samples to `file` (publication time and latency in nanoseconds, one pair a
/// line), to look at how latency moves over a phase.
fn percentiles(mut samples: Vec<(u64, u64)>, file: &std::path::Path) -> Percentiles {
    samples.sort_unstable();
    let lines: String = samples.iter().map(|(p, l)| format!("{p} {l}\n")).collect();
    if let Err(e) = std::fs::write(file, lines) {
        eprintln!("cannot write {}: {e}", file.display());
    }
    let first = samples.first().map_or(0, |(p, _)| *p);
    let kept: Vec<(u64, u64)> = samples
        .into_iter()
        .filter(|(p, _)| *p >= first + LATENCY_WARM_UP_NANOS)
        .collect();
    let mut slices: Vec<f64> = kept
        .chunk_by(|x, y| (x.0 - first) / 500_000_000 == (y.0 - first) / 500_000_000)
        .map(|slice| {
            let mut latencies: Vec<u64> = slice.iter().map(|(_, l)| *l).collect();
            latencies.sort_unstable();
            quantile_ms(&latencies, 0.99)
        })
        .collect();
    slices.sort_by(f64::total_cmp);
    let mut latencies: Vec<u64> = kept.into_iter().map(|(_, l)| l).collect();
    latencies.sort_unstable();
    Percentiles {
        p50_ms: quantile_ms(&latencies, 0.50),
        p99_ms: quantile_ms(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(0) as f64 / 1e6,
        samples: latencies.len(),
        slice_p99_median_ms: slices.get(slices.len() / 2).copied().unwrap_or(0.0),
        slice_p99_worst_ms: slices.last().copied().unwrap_or(0.0),
    }
}

// ---------------------------------------------------------------------------------------------
// The bench.
// ---------------------------------------------------------------------------------------------

/// How this bench starts dispatchers.
fn command(args: &Args) -> DispatcherCommand<'_> {
    DispatcherCommand {
        switchyard: &args.switchyard,
        nats_url: &args.nats_url,
        work_dir: &args.work_dir,
        stream: STREAM,
        subject_prefix: SUBJECT_PREFIX,
    }
}

async fn bench(args: Args) {
    let ticks = procfs::clock_ticks();
    let window = Duration::from_secs(args.seconds);
    let client = async_nats::connect(args.nats_url.as_str())
        .await
        .expect("connect to NATS");
    let publisher = async_nats::connect(args.nats_url.as_str())
        .await
        .expect("connect to NATS");
    let js = jetstream::new(client.clone());
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
    let prefill_rate = prefill(&js, SUBJECT, event(0), args.events).await;
    let handler = start_handler().await;
    let endpoint: Uri = format!("http://127.0.0.1:{}/", handler.port)
        .parse()
        .expect("a URI");
    let http = http_client();
    let me = std::process::id();
    let nats = ("nats-server", args.nats_pid);
    let total = args.events;
    let phases = Phases {
        args: &args,
        stream: &stream,
        publisher: &publisher,
        http: &http,
        endpoint: &endpoint,
        handler: &handler,
        ticks,
    };

    println!(
        "- Stream: {total} events of {EVENT_SIZE} bytes, file storage, pre-filled at {}/s (JetStream publish, 256 in flight)",
        thousands(prefill_rate)
    );

    // (a′) once: what the client library's own continuous pull reaches, for reference.
    let name = "bare_stream";
    let consumer = fresh_consumer(&stream, name, DeliverPolicy::All).await;
    let task = tokio::spawn(bare_stream(consumer));
    eprintln!("(a′) bare continuous pull");
    let stream_rate = measure(
        async || ack_floor(&stream, name).await,
        total,
        window,
        &[nats, ("bench", me)],
        ticks,
    )
    .await;
    task.abort();
    let _ = stream.delete_consumer(name).await;
    println!(
        "- For reference, (a′) bare continuous pull + ack (async-nats `messages()`, 200 prefetched): **{}/s**; CPU time / context switches per event: {}",
        thousands(stream_rate.per_second()),
        stream_rate.usage_text()
    );

    for &concurrency in &args.concurrency {
        // (a) bare pull consumer, dispatcher-shaped.
        let name = format!("bare_{concurrency}");
        let consumer = fresh_consumer(&stream, &name, DeliverPolicy::All).await;
        eprintln!("concurrency {concurrency}: (a) bare pull consumer");
        let task = tokio::spawn(bare_consume(consumer, concurrency, Arc::default(), None));
        let a = measure(
            async || ack_floor(&stream, &name).await,
            total,
            window,
            &[nats, ("bench", me)],
            ticks,
        )
        .await;
        task.abort();
        let _ = stream.delete_consumer(&name).await;

        // (b) bare HTTP client, `concurrency` requests in flight.
        eprintln!("concurrency {concurrency}: (b) bare HTTP client");
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (http, endpoint, done, failed) =
                    (http.clone(), endpoint.clone(), done.clone(), failed.clone());
                let body = event(0);
                tokio::spawn(async move {
                    loop {
                        let sequence = done.load(Ordering::Relaxed);
                        match exchange(&http, event_request(&endpoint, sequence, body.clone()))
                            .await
                        {
                            Some((200, _)) => done.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        let b = measure(
            async || done.load(Ordering::Relaxed),
            u64::MAX,
            window,
            &[("bench (client)", me), ("handler", handler.pid)],
            ticks,
        )
        .await;
        workers.iter().for_each(|w| w.abort());
        let b_failed = failed.load(Ordering::Relaxed);

        // (c) the dispatcher.
        eprintln!("concurrency {concurrency}: (c) switchyard dispatch");
        let name = format!("dispatch_{concurrency}");
        fresh_consumer(&stream, &name, DeliverPolicy::All).await;
        // The ack floor also moves for events the dispatcher terminates without a POST: the
        // handler's own count tells whether every acknowledged event reached it.
        let posted_before = phases.handler_count().await;
        let dispatcher = start_dispatcher(&command(&args), &name, concurrency, handler.port, &[]);
        let c = measure(
            async || ack_floor(&stream, &name).await,
            total,
            window,
            &[
                nats,
                ("dispatcher", dispatcher.pid),
                ("handler", handler.pid),
            ],
            ticks,
        )
        .await;
        let (fetch_sum, fetches) = dispatcher
            .histogram(&http, "switchyard_dispatch_fetch_duration_seconds")
            .await;
        let (handler_sum, handled) = dispatcher
            .histogram(&http, "switchyard_dispatch_handler_duration_seconds")
            .await;
        let c_rss = dispatcher.stop().await;
        let c_acked = ack_floor(&stream, &name).await;
        let c_posted = phases.handler_count().await - posted_before;
        let _ = stream.delete_consumer(&name).await;

        // (c′) the minimal pipeline of the same shape.
        eprintln!("concurrency {concurrency}: (c′) minimal pipeline");
        let name = format!("minimal_{concurrency}");
        let consumer = fresh_consumer(&stream, &name, DeliverPolicy::All).await;
        let task = tokio::spawn(minimal_pipeline(
            consumer,
            concurrency,
            http.clone(),
            endpoint.clone(),
        ));
        let minimal = measure(
            async || ack_floor(&stream, &name).await,
            total,
            window,
            &[nats, ("bench", me), ("handler", handler.pid)],
            ticks,
        )
        .await;
        task.abort();
        let _ = stream.delete_consumer(&name).await;

        let (a_rate, b_rate, c_rate) = (a.per_second(), b.per_second(), c.per_second());
        let ratio = c_rate / a_rate.min(b_rate);
        let rate = (c_rate / 2.0).max(1.0);

        // Latency at half of (c)'s rate: bare consumer first, then the HTTP hop alone, then the
        // dispatcher, each on a consumer that starts at the end of the stream.
        let tag = concurrency.to_string();
        let (bare_latency, bare_busy) = phases.latency_bare(concurrency, rate, &tag).await;
        let (http_latency, http_busy) = phases.latency_http(concurrency, rate, &tag).await;
        let (dispatch_latency, dispatch_busy, lat_rss) =
            phases.latency_dispatch(concurrency, rate, &tag).await;
        // And at a light load, where nothing queues for the CPU.
        let light = if args.light_rate > 0.0 && args.light_rate < rate {
            let tag = format!("{concurrency}-light");
            let (bare, _) = phases
                .latency_bare(concurrency, args.light_rate, &tag)
                .await;
            let (dispatch, busy, _) = phases
                .latency_dispatch(concurrency, args.light_rate, &tag)
                .await;
            Some((bare, dispatch, busy))
        } else {
            None
        };

        let added_p50 = dispatch_latency.p50_ms - bare_latency.p50_ms;
        let added_p99 = dispatch_latency.p99_ms - bare_latency.p99_ms;
        println!("- **Concurrency {concurrency}**");
        println!(
            "  - (a) bare pull consumer + ack (pull requests for {concurrency}): **{}/s**; (b) bare HTTP POST, {concurrency} in flight: **{}/s**{}; (c) `switchyard dispatch`: **{}/s**",
            thousands(a_rate),
            thousands(b_rate),
            if b_failed > 0 {
                format!(" ({b_failed} failed)")
            } else {
                String::new()
            },
            thousands(c_rate),
        );
        println!("  - c / min(a, b) = **{ratio:.2}** (target ≥ 0.70)");
        println!(
            "  - Added latency at {} events/s (half of c): p50 **{added_p50:.3} ms**, p99 **{added_p99:.3} ms** (target p99 ≤ 2 ms)",
            thousands(rate)
        );
        println!(
            "    - publish → handler through the dispatcher: {}; {dispatch_busy}",
            dispatch_latency.text()
        );
        println!(
            "    - publish → bare consumer (as in a): {}; {bare_busy}",
            bare_latency.text()
        );
        println!(
            "    - the HTTP hop alone (send → handler, as in b, open loop at the same rate): {}; {http_busy}",
            http_latency.text()
        );
        if let Some((bare, dispatch, busy)) = &light {
            println!(
                "  - At a light {} events/s: added p50 {:.3} ms, p99 {:.3} ms; through the dispatcher {}; {busy}; bare consumer {}",
                thousands(args.light_rate),
                dispatch.p50_ms - bare.p50_ms,
                dispatch.p99_ms - bare.p99_ms,
                dispatch.text(),
                bare.text()
            );
        }
        println!(
            "  - Dispatcher peak RSS (VmHWM): **{:.1} MiB** draining the stream, {:.1} MiB at half load (target ≤ 32)",
            mib(c_rss),
            mib(lat_rss)
        );
        println!(
            "  - CPU time / context switches (cs) per event: (a) {}",
            a.usage_text()
        );
        println!("    (b) {}", b.usage_text());
        println!("    (c) {}", c.usage_text());
        println!(
            "  - For reference, (c′) the least a dispatcher of the same shape does (pull requests for the room there is, a task per event, POST, ack on 200; in the bench process): **{}/s** = {:.2} of min(a, b); CPU time / cs per event: {}",
            thousands(minimal.per_second()),
            minimal.per_second() / a_rate.min(b_rate),
            minimal.usage_text()
        );
        println!(
            "  - Dispatcher's own figures over (c): {:.1} events per pull request ({} requests that brought events, {:.2} ms mean wait for the first event), handler answered in {:.3} ms on average; {c_acked} acknowledged by the end, {c_posted} received by the handler",
            handled / fetches.max(1.0),
            fetches,
            fetch_sum / fetches.max(1.0) * 1e3,
            handler_sum / handled.max(1.0) * 1e3,
        );
    }
    let _ = js.delete_stream(STREAM).await;
}

/// What the latency phases share.
struct Phases<'a> {
    args: &'a Args,
    stream: &'a stream::Stream,
    /// Timed events go out on a connection of their own, apart from the bare consumer's.
    publisher: &'a async_nats::Client,
    http: &'a HttpClient,
    endpoint: &'a Uri,
    handler: &'a HandlerProcess,
    ticks: f64,
}

impl Phases<'_> {
    fn handler_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.handler.port)
    }

    /// The latency samples the handler collected since last asked.
    async fn handler_samples(&self) -> Vec<(u64, u64)> {
        parse_samples(&get_text(self.http, &self.handler_url("samples"), Method::POST).await)
    }

    async fn handler_count(&self) -> u64 {
        get_text(self.http, &self.handler_url("count"), Method::GET)
            .await
            .and_then(|(_, t)| t.trim().parse::<u64>().ok())
            .unwrap_or(0)
    }

    fn log(&self, what: &str, tag: &str) -> PathBuf {
        self.args.work_dir.join(format!("latency-{what}-{tag}.log"))
    }

    /// Publication → receipt by a bare consumer shaped as in (a), `rate` events a second; and
    /// how busy the machine was.
    async fn latency_bare(
        &self,
        concurrency: usize,
        rate: f64,
        tag: &str,
    ) -> (Percentiles, String) {
        eprintln!("concurrency {concurrency}: latency at {rate:.0}/s, bare consumer");
        let name = format!("lat_bare_{}", tag.replace('-', "_"));
        let consumer = fresh_consumer(self.stream, &name, DeliverPolicy::New).await;
        let received = Arc::new(AtomicU64::new(0));
        let samples = Samples::default();
        let task = tokio::spawn(bare_consume(
            consumer,
            concurrency,
            received.clone(),
            Some(samples.clone()),
        ));
        let pids = [self.args.nats_pid, std::process::id()];
        let mark = Mark::now(&pids, self.ticks);
        let sent = publish_at_rate(self.publisher, rate, self.args.latency_seconds).await;
        let busy = mark.busy_since(&pids, self.ticks);
        wait_until("the bare consumer", Duration::from_secs(30), async || {
            received.load(Ordering::Relaxed) >= sent
        })
        .await;
        task.abort();
        let _ = self.stream.delete_consumer(&name).await;
        let samples = std::mem::take(&mut *samples.lock().expect("not poisoned"));
        (percentiles(samples, &self.log("bare", tag)), busy)
    }

    /// Sending → the handler, as in (b) but open loop at `rate` requests a second with at most
    /// `concurrency` in flight.
    async fn latency_http(
        &self,
        concurrency: usize,
        rate: f64,
        tag: &str,
    ) -> (Percentiles, String) {
        eprintln!("concurrency {concurrency}: latency at {rate:.0}/s, HTTP hop alone");
        let _ = self.handler_samples().await;
        let room = Arc::new(Semaphore::new(concurrency));
        let pids = [std::process::id(), self.handler.pid];
        let mark = Mark::now(&pids, self.ticks);
        let mut due = pace(rate, (rate * self.args.latency_seconds as f64) as u64);
        let mut sequence = 0;
        while let Some(count) = due.recv().await {
            for _ in 0..count {
                let permit = room.clone().acquire_owned().await.expect("never closed");
                let (http, request) = (
                    self.http.clone(),
                    event_request(self.endpoint, sequence, event(now_nanos())),
                );
                tokio::spawn(async move {
                    let _ = exchange(&http, request).await;
                    drop(permit);
                });
                sequence += 1;
            }
        }
        let _ = room.acquire_many(concurrency as u32).await;
        let busy = mark.busy_since(&pids, self.ticks);
        (
            percentiles(self.handler_samples().await, &self.log("http", tag)),
            busy,
        )
    }

    /// Publication → the handler through a `switchyard dispatch` started for the phase; and its
    /// peak RSS in KiB.
    async fn latency_dispatch(
        &self,
        concurrency: usize,
        rate: f64,
        tag: &str,
    ) -> (Percentiles, String, u64) {
        eprintln!("concurrency {concurrency}: latency at {rate:.0}/s, dispatcher");
        let name = format!("lat_dispatch_{}", tag.replace('-', "_"));
        fresh_consumer(self.stream, &name, DeliverPolicy::New).await;
        let dispatcher = start_dispatcher(
            &command(self.args),
            &name,
            concurrency,
            self.handler.port,
            &[],
        );
        dispatcher.ready(self.http).await;
        let _ = self.handler_samples().await;
        let before = self.handler_count().await;
        let pids = [
            self.args.nats_pid,
            std::process::id(),
            dispatcher.pid,
            self.handler.pid,
        ];
        let mark = Mark::now(&pids, self.ticks);
        let sent = publish_at_rate(self.publisher, rate, self.args.latency_seconds).await;
        let busy = mark.busy_since(&pids, self.ticks);
        wait_until("the dispatcher", Duration::from_secs(30), async || {
            self.handler_count().await >= before + sent
        })
        .await;
        let latency = percentiles(self.handler_samples().await, &self.log("dispatch", tag));
        let rss = dispatcher.stop().await;
        let _ = self.stream.delete_consumer(&name).await;
        (latency, busy, rss)
    }
}

fn parse_samples(response: &Option<(u16, String)>) -> Vec<(u64, u64)> {
    response
        .as_ref()
        .map(|(_, text)| {
            text.lines()
                .filter_map(|l| {
                    let (p, l) = l.split_once(' ')?;
                    Some((p.parse().ok()?, l.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}
