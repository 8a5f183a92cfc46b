//! What the dispatcher benches share: the handler process, the HTTP client as the dispatcher
//! builds it, CPU time and rates measured the same way, the dispatcher process and its
//! figures. Each bench uses its part of it.

#![allow(dead_code)]

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::Path,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
    stream,
};
use axum::{Router, extract::State, http::StatusCode, routing::get, routing::post};
use bytes::Bytes;
use futures::{StreamExt, stream::FuturesUnordered};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStdin, Command},
};

use crate::procfs;

/// Size of the timed events of the latency phases (the first 8 bytes their publication time,
/// see [`record`]); the handler times no other.
pub const EVENT_SIZE: usize = 256;
/// Measuring starts this long after the first event went through: connections are open, the
/// pool is warm, the stream's blocks are in the page cache.
pub const WARM_UP: Duration = Duration::from_secs(1);
/// How often progress is read while measuring; a window that ends by draining the stream is at
/// most this much too long.
pub const POLL: Duration = Duration::from_millis(20);

pub fn now_nanos() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since.as_nanos()).expect("nanoseconds fit in u64")
}

pub fn published_at(body: &[u8]) -> Option<u64> {
    let stamp = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
    (stamp != 0).then_some(stamp)
}

/// (publication time, latency), both in nanoseconds.
pub type Samples = Arc<Mutex<Vec<(u64, u64)>>>;

/// Records the latency of a timed event (one of [`EVENT_SIZE`] bytes with a stamp); other
/// bodies are not timed.
pub fn record(samples: &Samples, body: &[u8]) {
    if body.len() != EVENT_SIZE {
        return;
    }
    if let Some(published) = published_at(body) {
        let latency = now_nanos().saturating_sub(published);
        samples
            .lock()
            .expect("not poisoned")
            .push((published, latency));
    }
}

// ---------------------------------------------------------------------------------------------
// The handler process.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
pub struct Handled {
    pub count: AtomicU64,
    pub samples: Samples,
}

/// Serves `POST /` (an event: count it, time it if stamped, answer 200 with no body),
/// `GET /count` and `POST /samples` (hand over the latency samples and forget them). Prints its
/// port on stdout; exits when stdin closes, that is when the bench process is gone.
pub fn handler_main() -> ! {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    let handled = Arc::new(Handled::default());
    let app = Router::new()
        .route(
            "/",
            post(|State(h): State<Arc<Handled>>, body: Bytes| async move {
                h.count.fetch_add(1, Ordering::Relaxed);
                record(&h.samples, &body);
                StatusCode::OK
            }),
        )
        .route(
            "/count",
            get(|State(h): State<Arc<Handled>>| async move {
                h.count.load(Ordering::Relaxed).to_string()
            }),
        )
        .route(
            "/samples",
            post(|State(h): State<Arc<Handled>>| async move {
                let samples = std::mem::take(&mut *h.samples.lock().expect("not poisoned"));
                samples
                    .iter()
                    .map(|(p, l)| format!("{p} {l}\n"))
                    .collect::<String>()
            }),
        )
        .with_state(handled);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        use axum::serve::ListenerExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the handler's port");
        let port = listener.local_addr().expect("bound").port();
        println!("{port}");
        // Nagle's algorithm would hold small answers back; handlers commonly turn it off.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).await.expect("serve");
    });
    std::process::exit(0)
}

pub struct HandlerProcess {
    pub _child: Child,
    /// Held open: the handler exits when it closes.
    pub _stdin: ChildStdin,
    pub pid: u32,
    pub port: u16,
}

pub async fn start_handler() -> HandlerProcess {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .arg("handler")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the handler");
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("the handler's port");
    HandlerProcess {
        pid: child.id().expect("running"),
        port: line.trim().parse().expect("a port"),
        _child: child,
        _stdin: stdin,
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

/// Sends `request`; the status and the body read to its end (so the connection is reused).
pub async fn exchange(client: &HttpClient, request: Request<Full<Bytes>>) -> Option<(u16, Bytes)> {
    let response = client.request(request).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, body))
}

pub async fn get_text(client: &HttpClient, url: &str, method: Method) -> Option<(u16, String)> {
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.method_mut() = method;
    *request.uri_mut() = url.parse().ok()?;
    let (status, body) = exchange(client, request).await?;
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

// ---------------------------------------------------------------------------------------------
// Processes: CPU time and peak RSS from /proc.
// ---------------------------------------------------------------------------------------------

/// What a process used so far: CPU time (user + system) and context switches (voluntary and
/// not, summed over its threads: each is a thread going to sleep or being pushed off a core).
pub struct Usage {
    pub cpu_seconds: f64,
    pub switches: f64,
}

impl Usage {
    pub fn of(pid: u32, ticks: f64) -> Self {
        let switches = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|task| {
                std::fs::read_to_string(task.path().join("status"))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                    .sum::<f64>()
            })
            .sum();
        Self {
            cpu_seconds: procfs::cpu_seconds(&pid.to_string(), ticks),
            switches,
        }
    }

    pub fn since(&self, before: &Self) -> Self {
        Self {
            cpu_seconds: self.cpu_seconds - before.cpu_seconds,
            switches: self.switches - before.switches,
        }
    }
}

/// Clock ticks the whole machine has spent so far, from /proc/stat: busy in all, and in
/// interrupts (the kernel's loopback TCP work in soft interrupts) or stolen by the hypervisor.
/// Shows what the processes measured do not, such as other processes on the machine.
#[derive(Clone, Copy)]
pub struct MachineTicks {
    pub busy: f64,
    pub interrupts: f64,
}

impl MachineTicks {
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<f64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or(0.0);
        Self {
            // user nice system idle iowait irq softirq steal
            busy: (0..8).map(field).sum::<f64>() - field(3) - field(4),
            interrupts: field(5) + field(6) + field(7),
        }
    }

    /// "machine 1.99 cores busy (0.20 in interrupts): 1.40 these processes, 0.59 other
    /// processes", from `before` to now, over `seconds`, with `ours` CPU seconds used by the
    /// processes measured. Time in interrupts is counted in the figures of the process it
    /// interrupted as well (tick-based accounting), so it is not added to them.
    pub fn busy_since(before: Self, seconds: f64, ours: f64, ticks: f64) -> String {
        let now = Self::now();
        let cores = |t: f64| t / ticks / seconds.max(f64::EPSILON);
        let machine = cores(now.busy - before.busy);
        let interrupts = cores(now.interrupts - before.interrupts);
        let ours = ours / seconds.max(f64::EPSILON);
        format!(
            "machine {machine:.2} cores busy ({interrupts:.2} in interrupts): {ours:.2} these processes, {:.2} other processes",
            (machine - ours).max(0.0)
        )
    }
}

pub fn free_addr() -> SocketAddr {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A point in time with the CPU time used so far by the machine and by some processes, to tell
/// afterwards how busy the machine was in between and how much of that was not theirs.
pub struct Mark {
    pub at: Instant,
    pub machine: MachineTicks,
    pub ours: f64,
}

impl Mark {
    pub fn now(pids: &[u32], ticks: f64) -> Self {
        Self {
            at: Instant::now(),
            machine: MachineTicks::now(),
            ours: pids
                .iter()
                .map(|pid| Usage::of(*pid, ticks).cpu_seconds)
                .sum(),
        }
    }

    /// How busy the machine was since the mark, and with what.
    pub fn busy_since(&self, pids: &[u32], ticks: f64) -> String {
        let ours: f64 = pids
            .iter()
            .map(|pid| Usage::of(*pid, ticks).cpu_seconds)
            .sum();
        MachineTicks::busy_since(
            self.machine,
            self.at.elapsed().as_secs_f64(),
            ours - self.ours,
            ticks,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring a rate.
// ---------------------------------------------------------------------------------------------

pub struct Rate {
    pub events: u64,
    pub seconds: f64,
    /// What each process used over the window.
    pub usage: Vec<(&'static str, Usage)>,
    /// How busy the whole machine was over the window.
    pub machine: String,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.seconds.max(f64::EPSILON)
    }

    /// "nats-server 4.1 µs / 0.30 cs, … (total …; machine …)": CPU time and
    /// context switches per event of each process, and how busy the machine was.
    pub fn usage_text(&self) -> String {
        let per_event = |x: f64| x / (self.events.max(1) as f64);
        let parts: Vec<String> = self
            .usage
            .iter()
            .map(|(name, u)| {
                format!(
                    "{name} {:.1} µs / {:.2} cs",
                    per_event(u.cpu_seconds) * 1e6,
                    per_event(u.switches)
                )
            })
            .collect();
        let total: f64 = self.usage.iter().map(|(_, u)| u.cpu_seconds).sum();
        format!(
            "{} (total {:.1} µs; {})",
            parts.join(", "),
            per_event(total) * 1e6,
            self.machine
        )
    }
}

/// Waits for the first event to go through, lets things warm up, then counts `progress` over
/// `window` (or until it reaches `total`) and what `processes` used meanwhile.
pub async fn measure(
    mut progress: impl AsyncFnMut() -> u64,
    total: u64,
    window: Duration,
    processes: &[(&'static str, u32)],
    ticks: f64,
) -> Rate {
    let started = Instant::now();
    while progress().await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no event went through in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(WARM_UP).await;
    let before: Vec<Usage> = processes
        .iter()
        .map(|(_, pid)| Usage::of(*pid, ticks))
        .collect();
    let machine_before = MachineTicks::now();
    let from = Instant::now();
    let first = progress().await;
    assert!(
        first < total,
        "the stream ran dry during the warm-up: raise --events"
    );
    loop {
        tokio::time::sleep(POLL).await;
        let now = progress().await;
        let elapsed = from.elapsed();
        if now >= total || elapsed >= window {
            let usage: Vec<(&'static str, Usage)> = processes
                .iter()
                .zip(before)
                .map(|((name, pid), before)| (*name, Usage::of(*pid, ticks).since(&before)))
                .collect();
            let ours = usage.iter().map(|(_, u)| u.cpu_seconds).sum();
            return Rate {
                machine: MachineTicks::busy_since(
                    machine_before,
                    elapsed.as_secs_f64(),
                    ours,
                    ticks,
                ),
                events: now - first,
                seconds: elapsed.as_secs_f64(),
                usage,
            };
        }
    }
}

pub async fn fresh_consumer(
    stream: &stream::Stream,
    name: &str,
    deliver_policy: DeliverPolicy,
) -> PullConsumer {
    let _ = stream.delete_consumer(name).await;
    stream
        .create_consumer(pull::Config {
            durable_name: Some(name.to_string()),
            ack_policy: AckPolicy::Explicit,
            deliver_policy,
            ..Default::default()
        })
        .await
        .expect("create the consumer")
}

/// Events the consumer has seen acknowledged, in order (its ack floor).
pub async fn ack_floor(stream: &stream::Stream, name: &str) -> u64 {
    stream
        .consumer_info(name)
        .await
        .map(|info| info.ack_floor.consumer_sequence)
        .unwrap_or(0)
}

/// Publishes `events` copies of `payload` on `subject` with a window of acknowledgements in
/// flight; the rate it reached.
pub async fn prefill(js: &jetstream::Context, subject: &str, payload: Bytes, events: u64) -> f64 {
    prefill_with_headers(js, subject, async_nats::HeaderMap::new(), payload, events).await
}

/// [`prefill`], each event carrying `headers`.
pub async fn prefill_with_headers(
    js: &jetstream::Context,
    subject: &str,
    headers: async_nats::HeaderMap,
    payload: Bytes,
    events: u64,
) -> f64 {
    let started = Instant::now();
    let mut acks = FuturesUnordered::new();
    let mut sent = 0;
    while sent < events || !acks.is_empty() {
        while sent < events && acks.len() < 256 {
            let ack = js
                .publish_with_headers(subject.to_string(), headers.clone(), payload.clone())
                .await
                .expect("publish");
            acks.push(ack.into_future());
            sent += 1;
        }
        if let Some(ack) = acks.next().await {
            ack.expect("stored");
        }
    }
    events as f64 / started.elapsed().as_secs_f64()
}

pub async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        if started.elapsed() > limit {
            eprintln!("gave up waiting for {what} after {limit:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The dispatcher process.
// ---------------------------------------------------------------------------------------------

pub struct Dispatcher {
    pub child: Child,
    pub pid: u32,
    pub http: SocketAddr,
}

/// How dispatchers are started: the binary, the server, where their logs go, the stream they
/// read and its subject prefix.
pub struct DispatcherCommand<'a> {
    pub switchyard: &'a Path,
    pub nats_url: &'a str,
    pub work_dir: &'a Path,
    pub stream: &'a str,
    pub subject_prefix: &'a str,
}

/// `switchyard dispatch` reading `consumer`, delivering to the handler on `handler_port`, with
/// `extra` arguments; its log goes to `<work dir>/<consumer>.log`.
pub fn start_dispatcher(
    command: &DispatcherCommand<'_>,
    consumer: &str,
    concurrency: usize,
    handler_port: u16,
    extra: &[&str],
) -> Dispatcher {
    let http = free_addr();
    let log =
        std::fs::File::create(command.work_dir.join(format!("{consumer}.log"))).expect("log file");
    let child = Command::new(command.switchyard)
        .args([
            "--log-format",
            "json",
            "dispatch",
            "--stream",
            command.stream,
            "--consumer",
            consumer,
        ])
        .args(["--endpoint", &format!("http://127.0.0.1:{handler_port}/")])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["--subject-prefix", command.subject_prefix])
        .args(["--http-addr", &http.to_string()])
        .args(["--nats-url", command.nats_url])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start switchyard dispatch");
    Dispatcher {
        pid: child.id().expect("running"),
        child,
        http,
    }
}

impl Dispatcher {
    pub async fn ready(&self, client: &HttpClient) {
        let url = format!("http://{}/readyz", self.http);
        wait_until(
            "the dispatcher to be ready",
            Duration::from_secs(30),
            async || matches!(get_text(client, &url, Method::GET).await, Some((200, _))),
        )
        .await;
    }

    /// Sum and count of one of its histograms.
    pub async fn histogram(&self, client: &HttpClient, name: &str) -> (f64, f64) {
        let url = format!("http://{}/metrics", self.http);
        let text = get_text(client, &url, Method::GET)
            .await
            .map(|(_, t)| t)
            .unwrap_or_default();
        let value = |suffix: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}_{suffix} ")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        (value("sum"), value("count"))
    }

    /// SIGTERM (it drains and exits), then its peak RSS in KiB, read just before.
    pub async fn stop(mut self) -> u64 {
        let hwm = procfs::status_kib(&self.pid.to_string(), "VmHWM:");
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        hwm
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn thousands(rate: f64) -> String {
    let n = rate.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
