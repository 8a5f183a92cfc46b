//! `switchyard dispatch` against a real nats-server and real HTTP handlers in the test process.

mod common;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, consumer::pull, stream::Config as StreamConfig};
use axum::{Router, extract::State, http::HeaderMap, response::IntoResponse, routing::post};
use common::*;
use futures::StreamExt;
use switchyard::{
    broker::BrokerOptions,
    dispatcher::{self, DispatchConfig, cloudevents::TopicLayout},
};
use tokio::sync::oneshot;

/// One request the handler received.
#[derive(Clone, Debug)]
struct Call {
    id: String,
    headers: HeaderMap,
    body: Vec<u8>,
    /// When the request came.
    started: Instant,
    /// When the handler answered (until then, when the request came).
    at: Instant,
    /// The status the handler answered with.
    status: u16,
}

/// How the handler answers the n-th call (0-based) for an event id: (status, Retry-After,
/// time to take).
type Script = Arc<dyn Fn(&Call, usize) -> (u16, Option<u64>, Duration) + Send + Sync>;

/// An HTTP handler in the test process that records every call.
#[derive(Clone)]
struct TestHandler {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
}

#[derive(Clone)]
struct Served {
    calls: Arc<Mutex<Vec<Call>>>,
    script: Script,
}

impl TestHandler {
    async fn start(script: Script) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/events", post(receive))
            .with_state(Served {
                calls: calls.clone(),
                script,
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, calls }
    }

    fn ok() -> Script {
        Arc::new(|_, _| (200, None, Duration::ZERO))
    }

    fn endpoint(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn calls_of(&self, id: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.id == id).collect()
    }

    // Read in place: the handler records every call under the same lock, and tests poll
    // these while thousands of calls come in.
    fn distinct_ids(&self) -> HashSet<String> {
        let calls = self.calls.lock().unwrap();
        calls.iter().map(|c| c.id.clone()).collect()
    }

    fn succeeded_ids(&self) -> HashSet<String> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| (200..300).contains(&c.status))
            .map(|c| c.id.clone())
            .collect()
    }
}

async fn receive(
    State(served): State<Served>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let call = Call {
        id: headers
            .get("ce-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        headers,
        body: body.to_vec(),
        started: Instant::now(),
        at: Instant::now(),
        status: 0,
    };
    let attempt = {
        let mut calls = served.calls.lock().unwrap();
        let attempt = calls.iter().filter(|c| c.id == call.id).count();
        calls.push(call.clone());
        attempt
    };
    let (status, retry_after, takes) = (served.script)(&call, attempt);
    tokio::time::sleep(takes).await;
    // Recorded once answered: for events of one key, the log is then in handling order.
    {
        let mut calls = served.calls.lock().unwrap();
        if let Some(recorded) = calls
            .iter_mut()
            .rev()
            .find(|c| c.id == call.id && c.at == call.at)
        {
            recorded.status = status;
            recorded.at = Instant::now();
        }
    }
    let mut response = axum::http::StatusCode::from_u16(status)
        .unwrap()
        .into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
    }
    response
}

/// A stream with one or more durable consumers, deleted when dropped.
struct Fixture {
    stream: String,
    prefix: String,
    jetstream: jetstream::Context,
    _guard: StreamGuard,
}

impl Fixture {
    async fn new(name: &str) -> Self {
        let suffix = format!("{:x}", rand::random::<u32>());
        let stream = format!("dispatch{suffix}_{name}");
        let prefix = format!("dispatch{suffix}.{name}");
        let guard = StreamGuard(stream.clone());
        let jetstream = jetstream::new(async_nats::connect(nats_url()).await.unwrap());
        jetstream
            .create_stream(StreamConfig {
                name: stream.clone(),
                subjects: vec![format!("{prefix}.>")],
                ..Default::default()
            })
            .await
            .expect("stream");
        Self {
            stream,
            prefix,
            jetstream,
            _guard: guard,
        }
    }

    async fn consumer(&self, name: &str, tweak: impl FnOnce(&mut pull::Config)) {
        let mut config = pull::Config {
            durable_name: Some(name.into()),
            ack_wait: Duration::from_secs(30),
            max_deliver: 10,
            ..Default::default()
        };
        tweak(&mut config);
        self.jetstream
            .get_stream(&self.stream)
            .await
            .unwrap()
            .create_consumer(config)
            .await
            .expect("consumer");
    }

    async fn publish(&self, event_type: &str, count: usize) {
        let mut acks = futures::stream::FuturesUnordered::new();
        for i in 0..count {
            let ack = self
                .jetstream
                .publish(
                    format!("{}.{event_type}", self.prefix),
                    format!("event {i}").into(),
                )
                .await
                .expect("publish");
            acks.push(ack.into_future());
            if acks.len() >= 256 {
                acks.next().await.unwrap().expect("stored");
            }
        }
        while let Some(ack) = acks.next().await {
            ack.expect("stored");
        }
    }

    async fn consumer_state(&self, name: &str) -> jetstream::consumer::Info {
        let mut stream = self.jetstream.get_stream(&self.stream).await.unwrap();
        let _ = stream.info().await;
        stream
            .get_consumer::<pull::Config>(name)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone()
    }

    fn config(&self, consumer: &str, handler: &TestHandler, concurrency: usize) -> DispatchConfig {
        DispatchConfig {
            broker: BrokerOptions::new(nats_url()),
            stream: self.stream.clone(),
            consumers: vec![consumer.into()],
            per_key: false,
            endpoint: handler.endpoint(),
            concurrency,
            timeout: None,
            layout: TopicLayout {
                subject_prefix: self.prefix.clone(),
                partition_type_tokens: None,
                source: format!("/streams/{}", self.stream),
            },
            http_addr: None,
        }
    }
}

/// A dispatcher running in the test process until dropped (or stopped).
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), dispatcher::DispatchError>>,
}

impl Running {
    fn start(config: DispatchConfig) -> Self {
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(dispatcher::run(config, async {
            let _ = rx.await;
        }));
        Self {
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap().expect("dispatcher run");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn wait_for_calls(handler: &TestHandler, what: &str, done: impl Fn(&[Call]) -> bool) {
    wait_until(what, || async {
        let calls = handler.calls.lock().unwrap();
        done(&calls).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_dispatchers_of_a_worker_group_handle_every_event_exactly_once() {
    let fixture = Fixture::new("orders").await;
    fixture.consumer("group", |_| {}).await;
    let handler = TestHandler::start(TestHandler::ok()).await;
    let dispatchers: Vec<Running> = (0..3)
        .map(|_| Running::start(fixture.config("group", &handler, 32)))
        .collect();
    fixture.publish("order.placed", 10_000).await;
    wait_for_calls(&handler, "10,000 events handled", |calls| {
        calls.len() >= 10_000
    })
    .await;
    wait_until("every event acknowledged", || async {
        let info = fixture.consumer_state("group").await;
        (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
    })
    .await;
    let calls = handler.calls();
    assert_eq!(calls.len(), 10_000, "no event handled twice");
    let ids: HashSet<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 10_000);
    let sample = &calls[0];
    let header = |name: &str| {
        sample
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("ce-specversion"), "1.0");
    assert_eq!(header("ce-type"), "order.placed");
    assert_eq!(header("ce-source"), format!("/streams/{}", fixture.stream));
    assert_eq!(header("ce-deliverycount"), "1");
    assert!(String::from_utf8_lossy(&sample.body).starts_with("event "));
    for running in dispatchers {
        running.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn broadcast_consumers_each_get_every_event() {
    let fixture = Fixture::new("prices").await;
    let mut handlers = Vec::new();
    let mut dispatchers = Vec::new();
    for pod in 0..3 {
        let consumer = format!("pod{pod}");
        fixture.consumer(&consumer, |_| {}).await;
        let handler = TestHandler::start(TestHandler::ok()).await;
        dispatchers.push(Running::start(fixture.config(&consumer, &handler, 8)));
        handlers.push(handler);
    }
    fixture.publish("price.changed", 300).await;
    for handler in &handlers {
        wait_for_calls(handler, "300 events at each replica", |calls| {
            calls.len() >= 300
        })
        .await;
        assert_eq!(handler.distinct_ids().len(), 300);
    }
    for running in dispatchers {
        running.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn handler_failures_are_redelivered_with_the_backoff_and_refusals_terminated() {
    let fixture = Fixture::new("payments").await;
    fixture
        .consumer("retry", |c| {
            c.backoff = vec![Duration::from_secs(1), Duration::from_secs(2)];
            c.max_deliver = 5;
        })
        .await;
    let terminated = fixture
        .jetstream
        .client()
        .subscribe(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{}.retry",
            fixture.stream
        ))
        .await
        .unwrap();
    // By type: 500, 500, 200 | 429 (Retry-After 2), 200 | 400.
    let handler = TestHandler::start(Arc::new(|call, attempt| {
        let kind = call
            .headers
            .get("ce-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        match (kind.as_str(), attempt) {
            ("flaky", 0 | 1) => (500, None, Duration::ZERO),
            ("busy", 0) => (429, Some(2), Duration::ZERO),
            ("bad", _) => (400, None, Duration::ZERO),
            _ => (200, None, Duration::ZERO),
        }
    }))
    .await;
    let running = Running::start(fixture.config("retry", &handler, 4));
    fixture.publish("flaky", 1).await;
    fixture.publish("busy", 1).await;
    fixture.publish("bad", 1).await;
    wait_for_calls(&handler, "flaky handled on its third delivery", |calls| {
        calls.iter().filter(|c| c.id == "1").count() >= 3
    })
    .await;
    wait_for_calls(&handler, "busy handled on its second delivery", |calls| {
        calls.iter().filter(|c| c.id == "2").count() >= 2
    })
    .await;
    let flaky = handler.calls_of("1");
    let gaps: Vec<Duration> = flaky.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps[0] >= Duration::from_millis(950),
        "first backoff 1 s, got {gaps:?}"
    );
    assert!(
        gaps[1] >= Duration::from_millis(1_950),
        "second backoff 2 s, got {gaps:?}"
    );
    let counts: Vec<String> = flaky
        .iter()
        .map(|c| {
            c.headers
                .get("ce-deliverycount")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(counts, ["1", "2", "3"]);
    let busy = handler.calls_of("2");
    assert!(
        busy[1].at - busy[0].at >= Duration::from_millis(1_950),
        "Retry-After 2 s"
    );

    let advisory = tokio::time::timeout(Duration::from_secs(10), terminated.take(1).next())
        .await
        .expect("a terminated advisory")
        .unwrap();
    let advisory: serde_json::Value = serde_json::from_slice(&advisory.payload).unwrap();
    assert_eq!(advisory["stream_seq"], 3);
    assert_eq!(advisory["reason"], "HandlerRejected: HTTP 400");
    wait_until("everything settled", || async {
        let info = fixture.consumer_state("retry").await;
        (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
    })
    .await;
    assert_eq!(
        handler.calls_of("3").len(),
        1,
        "a refused event is not redelivered"
    );
    assert_eq!(handler.calls_of("1").len(), 3);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_slower_than_ack_wait_but_within_its_timeout_is_not_redelivered() {
    let fixture = Fixture::new("reports").await;
    fixture
        .consumer("slow", |c| c.ack_wait = Duration::from_secs(1))
        .await;
    let handler =
        TestHandler::start(Arc::new(|_, _| (200, None, Duration::from_millis(2_500)))).await;
    let mut config = fixture.config("slow", &handler, 2);
    config.timeout = Some(Duration::from_secs(5));
    let running = Running::start(config);
    fixture.publish("report.requested", 1).await;
    wait_until("the slow event acknowledged", || async {
        let info = fixture.consumer_state("slow").await;
        (info.ack_floor.stream_sequence == 1).then_some(())
    })
    .await;
    assert_eq!(handler.calls().len(), 1, "kept alive, not redelivered");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_that_never_answers_or_hangs_up_gets_the_event_again() {
    let fixture = Fixture::new("jobs").await;
    fixture
        .consumer("stuck", |c| c.backoff = vec![Duration::from_millis(300)])
        .await;
    let handler = TestHandler::start(Arc::new(|_, attempt| match attempt {
        0 => (200, None, Duration::from_secs(30)),
        _ => (200, None, Duration::ZERO),
    }))
    .await;
    let mut config = fixture.config("stuck", &handler, 1);
    config.timeout = Some(Duration::from_millis(500));
    let running = Running::start(config);
    fixture.publish("job.started", 1).await;
    wait_until("acknowledged on the second delivery", || async {
        let info = fixture.consumer_state("stuck").await;
        (info.ack_floor.stream_sequence == 1).then_some(())
    })
    .await;
    assert_eq!(handler.calls_of("1").len(), 2);
    running.stop().await;

    // Nothing listens at the endpoint: redelivered with the backoff until something does.
    let closed = free_addr();
    let mut config = fixture.config("stuck", &handler, 1);
    config.endpoint = format!("http://{closed}/events");
    let running = Running::start(config);
    fixture.publish("job.started", 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let info = fixture.consumer_state("stuck").await;
    assert_eq!(
        info.ack_floor.stream_sequence, 1,
        "not acknowledged without a handler"
    );
    assert!(
        info.num_redelivered >= 1 || info.num_ack_pending == 1,
        "{info:?}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_endpoint_is_a_clear_error() {
    let fixture = Fixture::new("misc").await;
    fixture.consumer("any", |_| {}).await;
    let handler = TestHandler::start(TestHandler::ok()).await;
    for endpoint in ["https://127.0.0.1:1/x", "localhost:8080", ""] {
        let mut config = fixture.config("any", &handler, 1);
        config.endpoint = endpoint.into();
        let err = dispatcher::run(config, std::future::pending())
            .await
            .expect_err(endpoint);
        assert!(err.to_string().starts_with("--endpoint"), "{err}");
    }
    let mut config = fixture.config("any", &handler, 1);
    config.concurrency = 0;
    let err = dispatcher::run(config, std::future::pending())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--concurrency"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dispatcher_rides_out_a_nats_restart() {
    let mut nats = PrivateNats::start();
    let jetstream = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    jetstream
        .create_stream(StreamConfig {
            name: "restart_orders".into(),
            subjects: vec!["restart.orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    jetstream
        .get_stream("restart_orders")
        .await
        .unwrap()
        .create_consumer(pull::Config {
            durable_name: Some("group".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let handler = TestHandler::start(TestHandler::ok()).await;
    let mut broker = BrokerOptions::new(nats.url());
    broker.request_timeout = Duration::from_secs(2);
    let running = Running::start(DispatchConfig {
        broker,
        stream: "restart_orders".into(),
        consumers: vec!["group".into()],
        per_key: false,
        endpoint: handler.endpoint(),
        concurrency: 4,
        timeout: None,
        layout: TopicLayout {
            subject_prefix: "restart.orders".into(),
            partition_type_tokens: None,
            source: "/restart".into(),
        },
        http_addr: None,
    });
    let publish = |n: usize| {
        let jetstream = jetstream.clone();
        async move {
            for i in 0..n {
                jetstream
                    .publish("restart.orders.order.placed", format!("{i}").into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        }
    };
    publish(10).await;
    wait_for_calls(&handler, "the first 10", |calls| calls.len() >= 10).await;
    nats.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.resume();
    let jetstream = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    for i in 0..10 {
        jetstream
            .publish("restart.orders.order.placed", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    wait_for_calls(&handler, "the next 10 after the restart", |calls| {
        calls
            .iter()
            .map(|c| c.id.clone())
            .collect::<HashSet<_>>()
            .len()
            >= 20
    })
    .await;
    running.stop().await;
}

/// A dispatcher process, killed when the test ends, also when it fails.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn id(&self) -> String {
        self.0.id().to_string()
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.id()])
            .status();
        self.0.wait().expect("exit status")
    }
}

/// The `switchyard` binary as a separate process, for signals.
fn spawn_binary(
    fixture: &Fixture,
    consumer: &str,
    handler: &TestHandler,
    concurrency: usize,
) -> Process {
    spawn_dispatcher(vec![
        "--stream".into(),
        fixture.stream.clone(),
        "--consumer".into(),
        consumer.into(),
        "--endpoint".into(),
        handler.endpoint(),
        "--concurrency".into(),
        concurrency.to_string(),
        "--subject-prefix".into(),
        fixture.prefix.clone(),
    ])
}

/// `switchyard dispatch` with these arguments (and no HTTP server) against the test NATS.
fn spawn_dispatcher(args: Vec<String>) -> Process {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("dispatch")
        .args(args)
        .args(["--http-addr", "off", "--nats-url", &nats_url()])
        .stdout(
            if std::env::var_os("SWITCHYARD_TEST_DISPATCHER_LOGS").is_some() {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            },
        )
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("switchyard binary");
    Process(child)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_events_and_kill_loses_nothing() {
    let fixture = Fixture::new("burst").await;
    fixture
        .consumer("group", |c| c.ack_wait = Duration::from_secs(2))
        .await;
    let handler = TestHandler::start(Arc::new(|_, _| (200, None, Duration::from_millis(5)))).await;
    fixture.publish("order.placed", 5_000).await;

    // SIGTERM mid-burst: the process stops by itself, quickly, with code 0.
    let mut first = spawn_binary(&fixture, "group", &handler, 16);
    wait_for_calls(&handler, "the burst under way", |calls| calls.len() >= 500).await;
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &first.id()])
            .status()
            .unwrap()
            .success()
    );
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = first.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    let after_term = handler.distinct_ids().len();
    assert!(after_term < 5_000, "the burst was cut short ({after_term})");

    // kill -9 mid-burst: what it held comes back after the ackWait.
    let second = spawn_binary(&fixture, "group", &handler, 16);
    wait_for_calls(&handler, "the burst going on", |calls| {
        calls
            .iter()
            .map(|c| c.id.clone())
            .collect::<HashSet<_>>()
            .len()
            >= after_term + 500
    })
    .await;
    drop(second); // SIGKILL

    let mut third = spawn_binary(&fixture, "group", &handler, 16);
    wait_until("every event handled and acknowledged", || async {
        let info = fixture.consumer_state("group").await;
        (handler.distinct_ids().len() == 5_000
            && info.num_ack_pending == 0
            && info.num_pending == 0)
            .then_some(())
    })
    .await;
    assert!(third.terminate().success());
    let mut handled: HashMap<String, usize> = HashMap::new();
    for call in handler.calls() {
        *handled.entry(call.id).or_default() += 1;
    }
    assert_eq!(handled.len(), 5_000, "no event lost");
    let repeated = handled.values().filter(|n| **n > 1).count();
    // Only what the killed process held may come twice: at most its in-flight window plus
    // what its last fetch had asked for.
    assert!(repeated <= 32, "{repeated} events handled twice");
}

/// Publishes `per_key` events for each of `keys` keys on a partitioned Topic, interleaved, each
/// carrying its key and its index in the payload (`<key>:<index>`).
async fn publish_keyed(jetstream: &jetstream::Context, prefix: &str, keys: usize, per_key: usize) {
    let mut acks = futures::stream::FuturesUnordered::new();
    for index in 0..per_key {
        for key in 0..keys {
            let ack = jetstream
                .publish(
                    format!("{prefix}.order.placed.k{key}"),
                    format!("k{key}:{index}").into(),
                )
                .await
                .expect("publish");
            acks.push(ack.into_future());
            if acks.len() >= 256 {
                acks.next().await.unwrap().expect("stored");
            }
        }
    }
    while let Some(ack) = acks.next().await {
        ack.expect("stored");
    }
}

/// The key and index a keyed event carries (see [`publish_keyed`]).
fn key_and_index(call: &Call) -> (String, usize) {
    let body = String::from_utf8_lossy(&call.body);
    let (key, index) = body.split_once(':').expect("a keyed event");
    (key.to_string(), index.parse().expect("an index"))
}

/// Each key's successful handlings are in publish order, and every event succeeded. A retried
/// failure counts where it finally succeeded; an event handled twice (a replica died before
/// acknowledging it) counts at its first success.
fn assert_per_key_order(calls: &[Call], keys: usize, per_key: usize) {
    let mut succeeded: Vec<&Call> = calls.iter().filter(|c| c.status == 200).collect();
    succeeded.sort_by_key(|c| c.at);
    let mut next: HashMap<String, usize> = HashMap::new();
    let mut seen = HashSet::new();
    for call in succeeded {
        let (key, index) = key_and_index(call);
        if !seen.insert((key.clone(), index)) {
            continue;
        }
        let expected = next.entry(key.clone()).or_default();
        if index != *expected {
            let history: Vec<String> = calls
                .iter()
                .filter(|c| key_and_index(c).0 == key)
                .map(|c| {
                    let count = c
                        .headers
                        .get("ce-deliverycount")
                        .and_then(|v| v.to_str().ok());
                    format!(
                        "{}/{}/{}",
                        key_and_index(c).1,
                        c.status,
                        count.unwrap_or("?")
                    )
                })
                .collect();
            panic!(
                "key {key}: got event {index}, expected {expected}; its calls as index/status/delivery: {}",
                history.join(" ")
            );
        }
        *expected += 1;
    }
    assert_eq!(next.len(), keys);
    assert!(next.values().all(|n| *n == per_key), "{next:?}");
}

/// One call of a key at a time; returns how many calls started while another key's call was
/// in the handler.
fn assert_one_call_per_key_at_a_time(calls: &[Call]) -> usize {
    let mut answered: Vec<&Call> = calls.iter().filter(|c| c.status != 0).collect();
    answered.sort_by_key(|c| c.started);
    let mut key_busy_until: HashMap<String, Instant> = HashMap::new();
    let mut busy_until: Option<Instant> = None;
    let mut overlapping = 0;
    for call in answered {
        let (key, index) = key_and_index(call);
        if let Some(until) = key_busy_until.get(&key) {
            assert!(
                call.started >= *until,
                "{key}:{index} reached the handler while the previous event of {key} was in it"
            );
        }
        key_busy_until.insert(key, call.at);
        if busy_until.is_some_and(|until| call.started < until) {
            overlapping += 1;
        }
        busy_until = busy_until.max(Some(call.at));
    }
    overlapping
}

/// A Topic with 4 partitions and a PerKey Subscription's consumers (one per partition, pinned),
/// as the operator creates them; deleted when dropped.
struct PartitionedTopic {
    namespace: String,
    stream: String,
    consumers: Vec<String>,
    jetstream: jetstream::Context,
    _guard: StreamGuard,
}

impl PartitionedTopic {
    /// `retry`: the Subscription's `retry` field, in YAML.
    async fn new(retry: &str) -> Self {
        use switchyard::{
            api::{SubscriptionSpec, TopicSpec},
            reconcile::{
                subscription::consumer_config::{
                    SubscriptionIdentity, TopicView, desired_consumer, per_partition_consumers,
                },
                topic::stream_config::{TopicIdentity, desired_stream},
            },
        };
        let namespace = format!("perkey{:x}", rand::random::<u32>());
        let topic_spec: TopicSpec = serde_yaml::from_str("partitions: 4").unwrap();
        let topic = TopicIdentity {
            namespace: &namespace,
            name: "ledger",
            generation: 1,
        };
        let stream = desired_stream(topic, &topic_spec).unwrap();
        let guard = StreamGuard(stream.name.clone());
        let jetstream = jetstream::new(async_nats::connect(nats_url()).await.unwrap());
        let created = jetstream
            .create_stream(stream.clone())
            .await
            .expect("stream");
        let view = TopicView {
            name: "ledger".into(),
            subjects: stream.subjects.clone(),
            partition_type_tokens: Some(2),
            work_queue: false,
            partitions: Some(4),
        };
        let sub_spec: SubscriptionSpec = serde_yaml::from_str(&format!(
            "topicRef: {{name: ledger}}\nackWait: 3s\nretry: {retry}"
        ))
        .unwrap();
        let id = SubscriptionIdentity {
            namespace: &namespace,
            name: "books",
            generation: 1,
        };
        let subscription = desired_consumer(id, &sub_spec, &view, &[]).unwrap();
        let mut consumers = Vec::new();
        for config in per_partition_consumers(&subscription, &view, &namespace).unwrap() {
            consumers.push(config.durable_name.clone().unwrap());
            created
                .create_consumer(config)
                .await
                .expect("partition consumer");
        }
        Self {
            namespace,
            stream: stream.name,
            consumers,
            jetstream,
            _guard: guard,
        }
    }

    fn prefix(&self) -> String {
        format!("{}.ledger", self.namespace)
    }

    /// A `switchyard dispatch --ordering per-key` process reading every partition.
    fn spawn(&self, handler: &TestHandler, concurrency: usize) -> Process {
        let mut args = vec![
            "--stream".to_string(),
            self.stream.clone(),
            "--endpoint".into(),
            handler.endpoint(),
            "--concurrency".into(),
            concurrency.to_string(),
            "--ordering".into(),
            "per-key".into(),
            "--subject-prefix".into(),
            self.prefix(),
            "--partition-type-tokens".into(),
            "2".into(),
        ];
        for name in &self.consumers {
            args.extend(["--consumer".into(), name.clone()]);
        }
        spawn_dispatcher(args)
    }
}

/// Random handling times up to `most_micros`; `percent` of first deliveries fail with a 503.
fn flaky_handler(most_micros: u64, percent: u8) -> Script {
    Arc::new(move |_, attempt| {
        let takes = Duration::from_micros(rand::random::<u64>() % most_micros);
        if attempt == 0 && rand::random::<u8>() % 100 < percent {
            (503, None, takes)
        } else {
            (200, None, takes)
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn per_key_order_holds_across_failures_parallel_keys_and_a_killed_replica() {
    // A 200 ms backoff: the consumer's ack deadline is 200 ms too.
    let topic = PartitionedTopic::new("{maxDeliveries: 20, backoff: {delays: [200ms]}}").await;
    let handler = TestHandler::start(flaky_handler(3_000, 5)).await;
    let first = topic.spawn(&handler, 16);
    publish_keyed(&topic.jetstream, &topic.prefix(), 20, 500).await;
    // The first replica holds every partition's pin; the second stands by.
    wait_for_calls(&handler, "the first replica under way", |calls| {
        calls.len() >= 500
    })
    .await;
    let mut second = topic.spawn(&handler, 16);

    // Kill the first mid-run; the second takes over once the pins expire.
    wait_for_calls(&handler, "a third of the events handled", |calls| {
        calls.len() >= 3_300
    })
    .await;
    drop(first); // SIGKILL
    wait_until("every event handled", || async {
        (handler.succeeded_ids().len() == 10_000).then_some(())
    })
    .await;
    assert!(second.terminate().success());

    let calls = handler.calls();
    assert_per_key_order(&calls, 20, 500);
    assert!(
        assert_one_call_per_key_at_a_time(&calls) > 0,
        "keys ran one after another"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn per_key_sigterm_hands_a_replicas_keys_over_in_order_at_once() {
    let topic = PartitionedTopic::new("{maxDeliveries: 20, backoff: {delays: [300ms]}}").await;
    let handler = TestHandler::start(flaky_handler(2_000, 10)).await;
    let mut first = topic.spawn(&handler, 8);
    publish_keyed(&topic.jetstream, &topic.prefix(), 8, 150).await;
    // The first replica holds every partition's pin; the second stands by.
    wait_for_calls(&handler, "the first replica under way", |calls| {
        calls.len() >= 100
    })
    .await;
    let mut second = topic.spawn(&handler, 8);
    wait_for_calls(&handler, "a third of the events handled", |calls| {
        calls.len() >= 400
    })
    .await;

    // SIGTERM: the replica finishes what is in the handler, hands the rest back key by key in
    // order, and gives up its pins, so the other replica goes on without waiting for them to
    // expire (10 s).
    let stopping = Instant::now();
    assert!(first.terminate().success());
    let stopped = stopping.elapsed();
    assert!(stopped < Duration::from_secs(5), "stopped in {stopped:?}");
    wait_until("every event handled", || async {
        (handler.succeeded_ids().len() == 8 * 150).then_some(())
    })
    .await;
    let handed_over = stopping.elapsed();
    assert!(second.terminate().success());
    assert!(
        handed_over < Duration::from_secs(9),
        "the rest took {handed_over:?}: the pins were not given up"
    );

    let calls = handler.calls();
    assert_per_key_order(&calls, 8, 150);
    assert_one_call_per_key_at_a_time(&calls);
    let handled_twice = calls.len() - calls.iter().map(|c| &c.id).collect::<HashSet<_>>().len();
    let failed_once = calls.iter().filter(|c| c.status == 503).count();
    assert_eq!(
        handled_twice, failed_once,
        "only failures are retried: a graceful stop hands nothing back that was handled"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn per_key_retries_a_failed_event_in_place_then_dead_letters_it_and_its_key_moves_on() {
    let fixture = Fixture::new("accounts").await;
    fixture
        .consumer("ordered", |c| {
            c.backoff = vec![Duration::from_millis(300)];
            c.max_deliver = 3;
        })
        .await;
    let terminated = fixture
        .jetstream
        .client()
        .subscribe(format!(
            "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{}.ordered",
            fixture.stream
        ))
        .await
        .unwrap();
    // k1:0 always fails; everything else succeeds.
    let handler = TestHandler::start(Arc::new(|call, _| {
        if call.body == b"k1:0" {
            (503, None, Duration::ZERO)
        } else {
            (200, None, Duration::ZERO)
        }
    }))
    .await;
    let mut config = fixture.config("ordered", &handler, 4);
    config.per_key = true;
    config.layout.partition_type_tokens = Some(2);
    let running = Running::start(config);
    // One partition token, then the type and the key.
    publish_keyed(&fixture.jetstream, &format!("{}.0", fixture.prefix), 2, 3).await;

    wait_for_calls(&handler, "every event of k0 and k1 tried", |calls| {
        calls.iter().filter(|c| c.status == 200).count() >= 5
    })
    .await;
    let advisory = tokio::time::timeout(Duration::from_secs(10), terminated.take(1).next())
        .await
        .expect("a terminated advisory")
        .unwrap();
    let advisory: serde_json::Value = serde_json::from_slice(&advisory.payload).unwrap();
    assert_eq!(advisory["stream_seq"], 2, "k1:0");
    assert_eq!(
        advisory["reason"],
        "MaxDeliveries: 3 deliveries, the last: HTTP 503"
    );
    wait_until("everything settled", || async {
        let info = fixture.consumer_state("ordered").await;
        (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
    })
    .await;
    let info = fixture.consumer_state("ordered").await;
    assert_eq!(
        info.num_redelivered, 0,
        "retried in place and kept alive meanwhile: JetStream redelivered nothing"
    );

    let calls = handler.calls();
    let attempts: Vec<&Call> = calls.iter().filter(|c| c.body == b"k1:0").collect();
    let counts: Vec<&str> = attempts
        .iter()
        .map(|c| c.headers["ce-deliverycount"].to_str().unwrap())
        .collect();
    assert_eq!(
        counts,
        ["1", "2", "3"],
        "local attempts count as deliveries"
    );
    for pair in attempts.windows(2) {
        let gap = pair[1].started - pair[0].at;
        assert!(
            gap >= Duration::from_millis(280),
            "backoff 300 ms, got {gap:?}"
        );
    }
    let given_up = attempts[2].at;
    let at = |body: &[u8]| calls.iter().find(|c| c.body == body).unwrap();
    assert!(
        at(b"k1:1").started >= given_up && at(b"k1:2").started >= at(b"k1:1").at,
        "k1 waits for its failed event, then goes on in order"
    );
    assert!(
        at(b"k0:2").at < attempts[1].started,
        "k0 does not wait for k1"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn per_key_takeover_sorts_what_jetstream_hands_back_out_of_order() {
    let fixture = Fixture::new("tills").await;
    fixture
        .consumer("pinned", |c| {
            c.backoff = vec![Duration::from_millis(200)];
            c.priority_groups = vec!["group".into()];
            c.priority_policy = jetstream::consumer::PriorityPolicy::PinnedClient;
            c.priority_timeout = Duration::from_secs(2);
        })
        .await;
    publish_keyed(&fixture.jetstream, &format!("{}.0", fixture.prefix), 1, 10).await;
    let next = format!("$JS.API.CONSUMER.MSG.NEXT.{}.pinned", fixture.stream);
    let ask = |expires_ms: u64| {
        serde_json::json!({"batch": 10, "expires": expires_ms * 1_000_000, "group": "group"})
            .to_string()
    };

    // A client takes the pin and all ten events, and dies without a word.
    let holder = async_nats::connect(nats_url()).await.unwrap();
    let inbox = holder.new_inbox();
    let mut taken = holder.subscribe(inbox.clone()).await.unwrap();
    holder
        .publish_with_reply(next.clone(), inbox, ask(1_000).into())
        .await
        .unwrap();
    for _ in 0..10 {
        tokio::time::timeout(Duration::from_secs(5), taken.next())
            .await
            .expect("the events")
            .unwrap();
    }
    drop((taken, holder));
    // While the dead client still holds the pin, another one asks now and then: each time,
    // JetStream puts the first event it has queued for redelivery at the back.
    let standby = async_nats::connect(nats_url()).await.unwrap();
    let inbox = standby.new_inbox();
    let _replies = standby.subscribe(inbox.clone()).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        standby
            .publish_with_reply(next.clone(), inbox.clone(), ask(100).into())
            .await
            .unwrap();
    }
    // Once the pin has expired, a per-key dispatcher takes over.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let handler = TestHandler::start(TestHandler::ok()).await;
    let mut config = fixture.config("pinned", &handler, 4);
    config.per_key = true;
    config.layout.partition_type_tokens = Some(2);
    let running = Running::start(config);
    wait_for_calls(&handler, "all ten handled", |calls| calls.len() >= 10).await;
    let calls = handler.calls();
    assert!(
        calls.iter().all(|c| c.headers["ce-deliverycount"] == "2"),
        "all handed back by JetStream"
    );
    assert_per_key_order(&calls, 1, 10);
    running.stop().await;
}
