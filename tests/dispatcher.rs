//! `switchyard dispatch` against a real nats-server and real HTTP handlers in the test process.

mod common;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::jetstream::{
    self,
    consumer::pull,
    stream::{Config as StreamConfig, RetentionPolicy},
};
use axum::{Router, extract::State, http::HeaderMap, response::IntoResponse, routing::post};
use common::*;
use futures::{FutureExt, StreamExt};
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
        Self::with_retention(name, RetentionPolicy::Limits).await
    }

    async fn with_retention(name: &str, retention: RetentionPolicy) -> Self {
        let suffix = format!("{:x}", rand::random::<u32>());
        let stream = format!("dispatch{suffix}_{name}");
        let prefix = format!("dispatch{suffix}.{name}");
        let guard = StreamGuard(stream.clone());
        let jetstream = jetstream::new(async_nats::connect(nats_url()).await.unwrap());
        jetstream
            .create_stream(StreamConfig {
                name: stream.clone(),
                subjects: vec![format!("{prefix}.>")],
                retention,
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

    /// Publishes one event of `event_type` with these headers; its stream sequence.
    async fn publish_with(
        &self,
        event_type: &str,
        headers: &[(&str, &str)],
        payload: &[u8],
    ) -> u64 {
        let mut map = async_nats::HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, *value);
        }
        self.jetstream
            .publish_with_headers(
                format!("{}.{event_type}", self.prefix),
                map,
                payload.to_vec().into(),
            )
            .await
            .expect("publish")
            .await
            .expect("stored")
            .sequence
    }

    /// The terminated advisories of `consumer`, from now on, by stream sequence: their reasons.
    async fn terminations(&self, consumer: &str) -> Terminations {
        let subscriber = self
            .jetstream
            .client()
            .subscribe(format!(
                "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{}.{consumer}",
                self.stream
            ))
            .await
            .unwrap();
        self.jetstream.client().flush().await.unwrap();
        Terminations {
            subscriber,
            seen: HashMap::new(),
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
            hold_rejections: false,
            schema_key: None,
        }
    }
}

/// Terminated advisories as they come.
struct Terminations {
    subscriber: async_nats::Subscriber,
    seen: HashMap<u64, String>,
}

impl Terminations {
    /// The reason the event at `sequence` was terminated with, waiting for it if need be.
    async fn reason(&mut self, sequence: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.seen.contains_key(&sequence) {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, self.subscriber.next())
                .await
                .unwrap_or_else(|_| panic!("no terminated advisory for {sequence}"))
                .expect("advisories");
            let advisory: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            self.seen.insert(
                advisory["stream_seq"].as_u64().unwrap(),
                advisory["reason"].as_str().unwrap_or_default().to_string(),
            );
        }
        self.seen[&sequence].clone()
    }

    /// Every advisory that came so far, without waiting.
    fn so_far(&mut self) -> usize {
        while let Some(Some(message)) = self.subscriber.next().now_or_never() {
            let advisory: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            self.seen
                .insert(advisory["stream_seq"].as_u64().unwrap(), String::new());
        }
        self.seen.len()
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
    let first_times: HashSet<&str> = flaky
        .iter()
        .map(|c| header_of(c, "ce-firstdeliverytime").expect("first delivery time"))
        .collect();
    assert_eq!(first_times.len(), 1, "redeliveries carry the first time");
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
    let calls = handler.calls_of("1");
    assert_eq!(calls.len(), 2);
    // Given up on after the timeout, redelivered after the backoff.
    let gap = calls[1].started - calls[0].started;
    assert!(
        gap >= Duration::from_millis(750),
        "redelivered after {gap:?}"
    );
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
        hold_rejections: false,
        schema_key: None,
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

/// Publishes `count` events `event i` with `Nats-Msg-Id: i`, retrying each until the stream
/// stores it: through a node loss some acknowledgements time out, and the id keeps a retried
/// event from being stored twice.
async fn publish_surviving(jetstream: jetstream::Context, subject: &str, count: usize) {
    for i in 0..count {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", i.to_string().as_str());
            let stored = match jetstream
                .publish_with_headers(subject.to_string(), headers, format!("event {i}").into())
                .await
            {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            };
            if stored {
                break;
            }
            assert!(Instant::now() < deadline, "event {i} was never stored");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_group_delivers_every_event_through_the_loss_of_a_cluster_node() {
    const EVENTS: usize = 10_000;
    let mut cluster = common::nats_cluster::NatsCluster::start(3).await;
    let urls = cluster.url();
    let urls: Vec<&str> = urls.split(',').collect();
    let jetstream = jetstream::new(async_nats::connect(urls.as_slice()).await.unwrap());
    let mut stream = jetstream
        .create_stream(StreamConfig {
            name: "cluster_orders".into(),
            subjects: vec!["cluster.orders.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("an R3 stream");
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("group".into()),
            // An acknowledgement lost with a node comes back as a redelivery this soon.
            ack_wait: Duration::from_secs(5),
            ..Default::default()
        })
        .await
        .expect("a consumer, replicated as its stream");
    let handler = TestHandler::start(TestHandler::ok()).await;
    let dispatchers: Vec<Running> = (0..3)
        .map(|_| {
            let mut broker = BrokerOptions::new(cluster.url());
            broker.request_timeout = Duration::from_secs(2);
            Running::start(DispatchConfig {
                broker,
                stream: "cluster_orders".into(),
                consumers: vec!["group".into()],
                per_key: false,
                endpoint: handler.endpoint(),
                concurrency: 16,
                timeout: None,
                layout: TopicLayout {
                    subject_prefix: "cluster.orders".into(),
                    partition_type_tokens: None,
                    source: "/cluster".into(),
                },
                http_addr: None,
                hold_rejections: false,
                schema_key: None,
            })
        })
        .collect();
    let publisher = tokio::spawn(publish_surviving(
        jetstream.clone(),
        "cluster.orders.order.placed",
        EVENTS,
    ));

    // Mid-stream, the node leading the consumer dies: the hardest one to lose.
    wait_for_calls(&handler, "a third of the events handled", |calls| {
        calls.len() >= EVENTS / 3
    })
    .await;
    let leader = consumer
        .cached_info()
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone());
    let mut consumer = stream.get_consumer::<pull::Config>("group").await.unwrap();
    let leader = consumer
        .info()
        .await
        .ok()
        .and_then(|info| info.cluster.as_ref().and_then(|c| c.leader.clone()))
        .or(leader)
        .expect("the consumer has a leader");
    let lost = cluster.index_of(&leader);
    cluster.kill(lost);

    publisher.await.expect("every event stored");
    let bodies = |handler: &TestHandler| -> HashSet<Vec<u8>> {
        let calls = handler.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| (200..300).contains(&c.status))
            .map(|c| c.body.clone())
            .collect()
    };
    wait_until("every event handled", || async {
        (bodies(&handler).len() >= EVENTS).then_some(())
    })
    .await;
    // The lag as the consumer's new leader reads it, whichever node answers.
    wait_until("nothing pending or unacknowledged", || {
        let mut consumer = consumer.clone();
        async move {
            let info = consumer.info().await.ok()?;
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        }
    })
    .await;
    let handled = bodies(&handler);
    for i in 0..EVENTS {
        assert!(
            handled.contains(format!("event {i}").as_bytes()),
            "event {i} was lost"
        );
    }
    let stored = stream.info().await.expect("the stream").state.messages;
    assert_eq!(stored, EVENTS as u64, "a retried publish was stored twice");
    let calls = handler.calls().len();
    eprintln!(
        "{EVENTS} events, {calls} handler calls ({} redelivered after {leader} was killed)",
        calls - EVENTS
    );

    cluster.restart(lost).await;
    for running in dispatchers {
        running.stop().await;
    }
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

fn header_of<'c>(call: &'c Call, name: &str) -> Option<&'c str> {
    call.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn payloads_that_are_no_cloudevents_and_huge_headers_get_a_clear_outcome_each() {
    let fixture = Fixture::new("intake").await;
    fixture.consumer("intake", |_| {}).await;
    let mut terminations = fixture.terminations("intake").await;
    let handler = TestHandler::start(TestHandler::ok()).await;
    let running = Running::start(fixture.config("intake", &handler, 4));

    // Delivered as plain payloads, byte for byte, whatever they hold.
    let blob: Vec<u8> = (0..2_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let blob_seq = fixture.publish_with("blob.stored", &[], &blob).await;
    let array_seq = fixture.publish_with("list.made", &[], b"[1,2,3]").await;
    // Headers that are no attributes are not forwarded, however large; an unusable trace is
    // dropped (tracing is best effort).
    let junk = "j".repeat(60_000);
    let junk_seq = fixture
        .publish_with("junk.attached", &[("X-Junk", &junk)], b"j")
        .await;
    let trace = "0".repeat(5_000);
    let trace_seq = fixture
        .publish_with("trace.huge", &[("traceparent", &trace)], b"t")
        .await;
    // Given up on, with the reason in the terminated advisory.
    let long = "y".repeat(10_000);
    let long_seq = fixture
        .publish_with("attribute.long", &[("ce-comment", &long)], b"l")
        .await;
    let names: Vec<String> = (0..100).map(|i| format!("ce-x{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let many_seq = fixture.publish_with("attributes.many", &many, b"m").await;
    let broken_seq = fixture
        .publish_with(
            "envelope.broken",
            &[("Content-Type", "application/cloudevents+json")],
            br#"{"specversion": "#,
        )
        .await;
    // And the dispatcher goes on.
    let after_seq = fixture.publish_with("order.placed", &[], b"fine").await;

    assert_eq!(
        terminations.reason(long_seq).await,
        "InvalidEvent: attribute comment is 10000 bytes long; at most 4096 are allowed"
    );
    assert_eq!(
        terminations.reason(many_seq).await,
        "InvalidEvent: event has 100 attributes; at most 64 are allowed"
    );
    let broken = terminations.reason(broken_seq).await;
    assert!(
        broken.starts_with("InvalidEvent: structured event is not valid JSON: "),
        "{broken}"
    );
    wait_until("everything settled", || async {
        let info = fixture.consumer_state("intake").await;
        (info.num_ack_pending == 0 && info.num_pending == 0).then_some(())
    })
    .await;
    let calls = handler.calls();
    let by_id = |seq: u64| {
        let mut of: Vec<&Call> = calls.iter().filter(|c| c.id == seq.to_string()).collect();
        assert!(of.len() <= 1, "event {seq} handled {} times", of.len());
        of.pop()
    };
    let blob_call = by_id(blob_seq).expect("the blob delivered");
    assert_eq!(blob_call.body, blob);
    assert_eq!(header_of(blob_call, "ce-type"), Some("blob.stored"));
    assert_eq!(header_of(blob_call, "content-type"), None);
    let array_call = by_id(array_seq).expect("the array delivered");
    assert_eq!(array_call.body, b"[1,2,3]");
    let junk_call = by_id(junk_seq).expect("the event with a huge header delivered");
    assert!(junk_call.headers.get("x-junk").is_none());
    let trace_call = by_id(trace_seq).expect("the event with a huge trace delivered");
    assert!(trace_call.headers.get("traceparent").is_none());
    for refused in [long_seq, many_seq, broken_seq] {
        assert!(by_id(refused).is_none(), "{refused} reached the handler");
    }
    assert!(by_id(after_seq).is_some(), "the dispatcher went on");
    assert_eq!(calls.len(), 5);
    running.stop().await;
}

/// How the transport-level handler treats one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    /// Reads the first bytes of the request and closes the connection.
    CloseMidRequest,
    /// Reads the whole request and closes the connection without a word.
    CloseUnanswered,
    /// Reads the whole request and answers something that is not HTTP.
    Garbage,
    /// Answers every request with 200, keeping the connection alive.
    Serve,
}

/// A request as the transport-level handler read it.
#[derive(Clone, Debug)]
struct RawCall {
    connection: usize,
    headers: HashMap<String, String>,
    at: Instant,
}

/// An HTTP handler written against raw TCP, so it can misbehave the way no framework lets
/// one: the n-th connection (0-based) that sends anything is treated as `plan(n)` says
/// (connections that send nothing are the dispatcher's readiness probes).
struct RawHandler {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<RawCall>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawHandler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawHandler {
    async fn start(plan: fn(usize) -> Transport) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls: Arc<Mutex<Vec<RawCall>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let (recorded, counted) = (calls.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (counted, recorded) = (counted.clone(), recorded.clone());
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut first = vec![0u8; 16];
                    let Ok(read @ 1..) = socket.read(&mut first).await else {
                        return;
                    };
                    first.truncate(read);
                    let connection = counted.fetch_add(1, Ordering::SeqCst);
                    Self::serve(socket, first, connection, plan(connection), recorded).await;
                });
            }
        });
        Self {
            addr,
            calls,
            connections,
            task,
        }
    }

    /// Serves a connection whose first bytes were `buffer`.
    async fn serve(
        mut socket: tokio::net::TcpStream,
        mut buffer: Vec<u8>,
        connection: usize,
        transport: Transport,
        calls: Arc<Mutex<Vec<RawCall>>>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if transport == Transport::CloseMidRequest {
            calls.lock().unwrap().push(RawCall {
                connection,
                headers: HashMap::new(),
                at: Instant::now(),
            });
            return;
        }
        loop {
            // One request: headers up to the blank line, then Content-Length bytes of body.
            let head_end = loop {
                if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end + 4;
                }
                let mut chunk = [0u8; 4096];
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
            let headers: HashMap<String, String> = head
                .lines()
                .skip(1)
                .filter_map(|line| line.split_once(':'))
                .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
                .collect();
            let length: usize = headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buffer.len() < head_end + length {
                let mut chunk = [0u8; 4096];
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            buffer.drain(..head_end + length);
            calls.lock().unwrap().push(RawCall {
                connection,
                headers,
                at: Instant::now(),
            });
            let answer: &[u8] = match transport {
                Transport::CloseMidRequest | Transport::CloseUnanswered => return,
                Transport::Garbage => b"220 mail.example.com ESMTP ready\r\n\r\n",
                Transport::Serve => b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            };
            if socket.write_all(answer).await.is_err() || transport == Transport::Garbage {
                return;
            }
        }
    }

    fn calls(&self) -> Vec<RawCall> {
        self.calls.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_that_drops_connections_gets_the_event_again_after_the_backoff() {
    let fixture = Fixture::new("uploads").await;
    let backoff = Duration::from_millis(400);
    fixture
        .consumer("uploads", |c| c.backoff = vec![backoff])
        .await;
    let handler = RawHandler::start(|connection| match connection {
        0 => Transport::CloseMidRequest,
        1 => Transport::CloseUnanswered,
        2 => Transport::Garbage,
        _ => Transport::Serve,
    })
    .await;
    let mut config = fixture.config("uploads", &TestHandler::start(TestHandler::ok()).await, 1);
    config.endpoint = format!("http://{}/events", handler.addr);
    let running = Running::start(config);
    fixture.publish("upload.finished", 1).await;
    wait_until("acknowledged on the fourth delivery", || async {
        let info = fixture.consumer_state("uploads").await;
        (info.ack_floor.stream_sequence == 1).then_some(())
    })
    .await;
    let calls = handler.calls();
    let connections: Vec<usize> = calls.iter().map(|c| c.connection).collect();
    assert_eq!(connections, [0, 1, 2, 3], "one delivery per connection");
    for pair in calls.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= backoff - Duration::from_millis(50),
            "redelivered after the backoff: {:?}",
            pair[1].at - pair[0].at
        );
    }
    let header = |call: &RawCall, name: &str| call.headers.get(name).cloned();
    let counts: Vec<Option<String>> = calls[1..]
        .iter()
        .map(|c| header(c, "ce-deliverycount"))
        .collect();
    assert_eq!(
        counts,
        [Some("2".into()), Some("3".into()), Some("4".into())]
    );
    // Every redelivery tells when the event first reached the handler: the same time.
    let first = header(&calls[1], "ce-firstdeliverytime").expect("first delivery time");
    assert!(
        calls[2..]
            .iter()
            .all(|c| header(c, "ce-firstdeliverytime").as_ref() == Some(&first))
    );

    // Recovered: the next events go through the healthy connection.
    fixture.publish("upload.finished", 20).await;
    wait_until("the next 20 acknowledged", || async {
        let info = fixture.consumer_state("uploads").await;
        (info.ack_floor.stream_sequence == 21).then_some(())
    })
    .await;
    let calls = handler.calls();
    assert_eq!(calls.len(), 24);
    assert!(
        calls[4..]
            .iter()
            .all(|c| header(c, "ce-deliverycount").as_deref() == Some("1"))
    );
    assert!(
        handler
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
            < 24,
        "connections are kept alive"
    );
    running.stop().await;
}

/// Routes every consumer's dead letters to one target, as the operator would for a Subscription
/// whose DeadLetterPolicy names it.
struct OneTarget(Arc<switchyard::deadletter::Target>);

impl switchyard::deadletter::Routes for OneTarget {
    async fn route(&self, _stream: &str, _consumer: &str) -> switchyard::deadletter::Route {
        switchyard::deadletter::Route::Deliver(self.0.clone())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_in_a_work_queue_topic_are_held_for_the_relay_which_copies_then_removes_them() {
    use switchyard::{
        api::dead_letter_policy::CaptureReason,
        broker::{Lookup, Read},
        deadletter::{
            AdvisoryScope, AdvisoryStream, Rejection, Relay, RelayConfig, SubjectLayout, Target,
            format::header,
        },
    };
    let fixture = Fixture::with_retention("chores", RetentionPolicy::WorkQueue).await;
    fixture
        .consumer("chores", |c| c.backoff = vec![Duration::from_millis(500)])
        .await;
    let broker = connected(&nats_url()).await;
    let mut terminations = fixture.terminations("chores").await;
    let handler = TestHandler::start(Arc::new(|call, _| match header_of(call, "ce-type") {
        Some("chore.refused") => (400, None, Duration::ZERO),
        _ => (200, None, Duration::ZERO),
    }))
    .await;
    let mut config = fixture.config("chores", &handler, 2);
    config.hold_rejections = true;
    let running = Running::start(config);

    // No advisory stream yet (no relay installed): the rejection cannot be stored, so the event
    // is not given up but comes back after the backoff, and stays in the stream.
    let refused = fixture.publish_with("chore.refused", &[], b"refused").await;
    wait_for_calls(&handler, "the refused event offered twice", |calls| {
        calls.iter().filter(|c| c.id == refused.to_string()).count() >= 2
    })
    .await;
    let stored = |sequence| {
        let broker = broker.clone();
        let stream = fixture.stream.clone();
        async move {
            broker
                .stream_message(&stream, sequence, Read::Leader)
                .await
                .unwrap()
        }
    };
    assert!(matches!(stored(refused).await, Lookup::Found(_)));

    // With the advisory stream, the rejection is published there and the event held back.
    let advisories = AdvisoryStream {
        name: unique("dispatchadv"),
        scope: AdvisoryScope::Streams(vec![fixture.stream.clone()]),
        max_age: Duration::from_secs(600),
        replicas: 1,
    };
    let _advisories_guard = StreamGuard(advisories.name.clone());
    advisories
        .ensure(&broker, "relay", Duration::from_secs(2))
        .await
        .expect("advisory stream");
    let invalid = fixture
        .publish_with(
            "chore.garbled",
            &[("Content-Type", "application/cloudevents+json")],
            b"{",
        )
        .await;
    let rejected_subject = format!("$SWITCHYARD.REJECTED.{}.chores", fixture.stream);
    let rejections = wait_until("both rejections stored", || async {
        let info = broker.stream_info(&advisories.name).await.unwrap().unwrap();
        let mut found: HashMap<u64, Rejection> = HashMap::new();
        for seq in info.state.first_sequence.max(1)..=info.state.last_sequence {
            if let Lookup::Found(m) = broker
                .stream_message(&advisories.name, seq, Read::Leader)
                .await
                .unwrap()
                && m.subject == rejected_subject
            {
                let rejection: Rejection = serde_json::from_slice(&m.payload).unwrap();
                found.insert(rejection.stream_seq, rejection);
            }
        }
        (found.len() == 2).then_some(found)
    })
    .await;
    let handler_rejected = &rejections[&refused];
    assert_eq!(handler_rejected.reason, "HandlerRejected: HTTP 400");
    assert_eq!(handler_rejected.stream, fixture.stream);
    assert_eq!(handler_rejected.consumer, "chores");
    assert!(handler_rejected.deliveries >= 2);
    assert!(
        rejections[&invalid].reason.starts_with("InvalidEvent: "),
        "{:?}",
        rejections[&invalid]
    );
    // Held: nothing terminated, both originals still there, waiting unacknowledged.
    let calls_before = handler.calls_of(&refused.to_string()).len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        handler.calls_of(&refused.to_string()).len(),
        calls_before,
        "a held event is not offered again"
    );
    assert_eq!(terminations.so_far(), 0, "nothing terminated");
    for sequence in [refused, invalid] {
        assert!(matches!(stored(sequence).await, Lookup::Found(_)));
    }
    assert_eq!(fixture.consumer_state("chores").await.num_ack_pending, 2);

    // The relay copies each and acknowledges it for the consumer: the originals go.
    let dlq = unique("dispatchdlq");
    let _dlq_guard = StreamGuard(dlq.clone());
    fixture
        .jetstream
        .create_stream(StreamConfig {
            name: dlq.clone(),
            subjects: vec![format!("{dlq}.>")],
            ..Default::default()
        })
        .await
        .expect("dead-letter stream");
    let target = Arc::new(Target {
        policy: "dispatch/dead-letters".into(),
        stream: dlq.clone(),
        subject_prefix: dlq.clone(),
        layout: SubjectLayout {
            topic_prefix: fixture.prefix.clone(),
            partitioned: false,
        },
        capture: vec![CaptureReason::Terminated],
        release_original: true,
    });
    let (reports, mut report_rx) = tokio::sync::mpsc::channel(16);
    let relay = Relay::new(
        connected(&nats_url()).await,
        Arc::new(OneTarget(target)),
        reports,
        RelayConfig {
            stream: advisories.clone(),
            consumer: "relay".into(),
            ack_wait: Duration::from_secs(2),
            fetch_wait: Duration::from_millis(500),
            ..Default::default()
        },
    );
    let (stop_relay, relay_stopped) = oneshot::channel::<()>();
    let relay = tokio::spawn(relay.run(async move {
        let _ = relay_stopped.await;
    }));
    let drain = tokio::spawn(async move { while report_rx.recv().await.is_some() {} });
    wait_until("both originals removed", || async {
        let gone = matches!(stored(refused).await, Lookup::Gone)
            && matches!(stored(invalid).await, Lookup::Gone);
        gone.then_some(())
    })
    .await;
    let info = broker.stream_info(&dlq).await.unwrap().unwrap();
    assert_eq!(info.state.messages, 2, "one copy each");
    let mut reasons = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if let Lookup::Found(m) = broker
            .stream_message(&dlq, seq, Read::Leader)
            .await
            .unwrap()
        {
            reasons.push(
                m.headers
                    .get(header::REASON)
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default(),
            );
        }
    }
    reasons.sort();
    assert_eq!(reasons, ["HandlerRejected", "Terminated"]);
    assert_eq!(fixture.consumer_state("chores").await.num_ack_pending, 0);
    let _ = stop_relay.send(());
    let _ = relay.await;
    drain.abort();
    running.stop().await;
}

/// Per-key order in a WorkQueue Topic: a refused event is held for the relay, and while its
/// rejection cannot be stored (no advisory stream yet) it keeps its place, so the later events
/// of its key wait for it and other keys do not; the handler is not asked again meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn per_key_refusals_in_a_work_queue_topic_keep_their_place_until_held() {
    use switchyard::deadletter::{AdvisoryScope, AdvisoryStream};
    let fixture = Fixture::with_retention("ledgers", RetentionPolicy::WorkQueue).await;
    fixture
        .consumer("ledgers", |c| c.backoff = vec![Duration::from_millis(300)])
        .await;
    let handler = TestHandler::start(Arc::new(|call, _| {
        if call.body == b"k1:0" {
            (422, None, Duration::ZERO)
        } else {
            (200, None, Duration::ZERO)
        }
    }))
    .await;
    let mut config = fixture.config("ledgers", &handler, 4);
    config.per_key = true;
    config.hold_rejections = true;
    config.layout.partition_type_tokens = Some(2);
    let running = Running::start(config);
    publish_keyed(&fixture.jetstream, &format!("{}.0", fixture.prefix), 2, 3).await;

    wait_for_calls(&handler, "k0 handled and k1:0 refused", |calls| {
        let k0 = calls.iter().filter(|c| c.body.starts_with(b"k0:")).count();
        k0 == 3 && calls.iter().any(|c| c.body == b"k1:0")
    })
    .await;
    // Several retry delays later k1 still waits behind its refused event.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = handler.calls();
    assert!(
        !calls
            .iter()
            .any(|c| c.body.starts_with(b"k1:") && c.body != b"k1:0"),
        "k1's later events overtook its refused event: {:?}",
        calls
            .iter()
            .map(|c| String::from_utf8_lossy(&c.body).into_owned())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        calls.iter().filter(|c| c.body == b"k1:0").count(),
        1,
        "the refusal is retried, not the handler"
    );

    // Once the rejection can be stored, the event is held and its key moves on, in order.
    let broker = connected(&nats_url()).await;
    let advisories = AdvisoryStream {
        name: unique("perkeyadv"),
        scope: AdvisoryScope::Streams(vec![fixture.stream.clone()]),
        max_age: Duration::from_secs(600),
        replicas: 1,
    };
    let _advisories_guard = StreamGuard(advisories.name.clone());
    advisories
        .ensure(&broker, "relay", Duration::from_secs(2))
        .await
        .expect("advisory stream");
    wait_for_calls(&handler, "k1's later events handled", |calls| {
        calls.iter().filter(|c| c.body.starts_with(b"k1:")).count() == 3
    })
    .await;
    let calls = handler.calls();
    let k1: Vec<String> = calls
        .iter()
        .filter(|c| c.body.starts_with(b"k1:"))
        .map(|c| String::from_utf8_lossy(&c.body).into_owned())
        .collect();
    assert_eq!(k1, ["k1:0", "k1:1", "k1:2"]);
    let stored = broker.stream_info(&advisories.name).await.unwrap().unwrap();
    assert_eq!(stored.state.messages, 1, "one rejection stored");
    // Held, not acknowledged: the original waits for the relay.
    let info = fixture.consumer_state("ledgers").await;
    assert_eq!(info.num_ack_pending, 1, "{info:?}");
    running.stop().await;
}

/// An endpoint whose host does not resolve is no reason to stop: every event is answered with
/// a delayed nak, the dispatcher says it is not ready, and nothing is acknowledged.
#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_whose_host_does_not_resolve_naks_and_is_not_ready() {
    let fixture = Fixture::new("nowhere").await;
    fixture
        .consumer("nowhere", |c| c.backoff = vec![Duration::from_millis(200)])
        .await;
    let handler = TestHandler::start(TestHandler::ok()).await;
    let mut config = fixture.config("nowhere", &handler, 2);
    config.endpoint = "http://handler.invalid:8080/events".into();
    let addr = free_addr();
    config.http_addr = Some(addr);
    let running = Running::start(config);
    fixture.publish("order.placed", 3).await;
    wait_until("the events redelivered after naks", || async {
        let info = fixture.consumer_state("nowhere").await;
        (info.num_redelivered >= 3).then_some(())
    })
    .await;
    let info = fixture.consumer_state("nowhere").await;
    assert_eq!(
        info.ack_floor.stream_sequence, 0,
        "nothing acknowledged: {info:?}"
    );
    let (code, body) = http_get(addr, "/readyz").await.expect("/readyz answers");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("handler"), "{body}");
    running.stop().await;
}
