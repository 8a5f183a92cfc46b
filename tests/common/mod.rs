//! Shared harness for integration tests: a real kube-apiserver (KUBECONFIG) and a real
//! nats-server (NATS_URL), both started by `make cluster-up`. Every test gets a fresh namespace,
//! unique per run, and its own operator instance watching only that namespace, so tests run in
//! parallel. The namespace and every broker object named after it are removed when the test
//! ends, also when it fails. Helpers are generic over the kinds: apply any manifest, wait for
//! any condition by watching.

#![allow(dead_code)]

pub mod nats_cluster;

use std::{
    future::Future,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::{
    api::{core::v1::Namespace, events::v1::Event},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    core::NamespaceResourceScope,
    runtime::wait::{await_condition, conditions},
};
use serde::{Serialize, de::DeserializeOwned};
use switchyard::{
    api::{DeadLetterPolicy, EventSchema, Subscription, Topic},
    broker::{Broker, BrokerOptions},
    crdgen,
    runtime::{self, OperatorConfig, crd_check::CrdCheckMode},
};
use tokio::{sync::oneshot, task::JoinHandle};

/// How long any single expectation may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(45);

pub fn nats_url() -> String {
    std::env::var("NATS_URL").expect("NATS_URL is not set: run the tests through `make test`")
}

pub async fn kube_client() -> Client {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is not set: run the tests through `make test`"
    );
    Client::try_default().await.expect("kube client")
}

pub async fn broker(url: &str) -> Broker {
    let broker = Broker::connect(&BrokerOptions::new(url))
        .await
        .expect("broker");
    wait_until("NATS connection", || async {
        broker.is_connected().then_some(())
    })
    .await;
    broker
}

/// Installs (server-side applies) the CRDs the code generates and waits until they are served.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crdgen::all() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply("switchyard-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("applying CRD {name}: {e}"));
        tokio::time::timeout(
            PATIENCE,
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not established"))
        .expect("watching CRD");
    }
}

/// A namespace that exists for one test. When dropped (the test passed or panicked) it removes
/// every broker stream named after it, releases the finalizers Switchyard put on its objects (the
/// operator under test may be gone) and deletes the namespace, waiting until it is gone.
pub struct TestNamespace {
    pub name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Identifies this test run, so namespaces of an earlier run never clash with this one's.
/// `SWITCHYARD_TEST_RUN` chooses it (e.g. to find a failed run's objects by name).
fn run_id() -> &'static str {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        std::env::var("SWITCHYARD_TEST_RUN")
            .unwrap_or_else(|_| format!("{:06x}", rand::random::<u32>() & 0xff_ffff))
    })
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}-{}-{n}", run_id());
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A thread with its own runtime and clients: the test's runtime may be unwinding, and
        // its clients' background tasks may no longer be polled.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(remove_namespace(&name))
        });
        if let Ok(Err(problem)) = cleanup.join() {
            eprintln!("test cleanup: {problem}");
        }
    }
}

async fn remove_namespace(name: &str) -> Result<(), String> {
    let client = Client::try_default().await.map_err(|e| e.to_string())?;
    release_finalizers::<Topic>(&client, name).await;
    release_finalizers::<Subscription>(&client, name).await;
    release_finalizers::<DeadLetterPolicy>(&client, name).await;
    release_finalizers::<EventSchema>(&client, name).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(name, &DeleteParams::background()).await;
    let gone = tokio::time::timeout(
        PATIENCE,
        await_condition(namespaces, name, |ns: Option<&Namespace>| ns.is_none()),
    )
    .await;
    // Streams last: an operator still running could otherwise recreate one for a Topic that
    // was not deleted yet.
    let streams = delete_streams_of(name).await;
    match (gone, streams) {
        (Ok(Ok(_)), Ok(())) => Ok(()),
        (Ok(Err(e)), _) => Err(format!("watching namespace {name}: {e}")),
        (Err(_), _) => Err(format!("namespace {name} still exists after {PATIENCE:?}")),
        (_, Err(e)) => Err(e),
    }
}

async fn release_finalizers<K>(client: &Client, namespace: &str)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = api.list(&ListParams::default()).await else {
        return;
    };
    let patch = serde_json::json!({"metadata": {"finalizers": null}});
    for obj in list.items.iter().filter(|o| !o.finalizers().is_empty()) {
        let _ = api
            .patch(
                &obj.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
    }
}

/// Deletes every stream of the shared NATS server named after the namespace (`<ns>_…`), with
/// their consumers, and the namespace's keys in the schema registry.
pub async fn delete_streams_of(namespace: &str) -> Result<(), String> {
    let Ok(url) = std::env::var("NATS_URL") else {
        return Ok(());
    };
    let client = async_nats::connect(&url)
        .await
        .map_err(|e| format!("connecting to NATS for cleanup: {e}"))?;
    let jetstream = async_nats::jetstream::new(client);
    let prefix = format!("{namespace}_");
    let names: Vec<String> = jetstream
        .stream_names()
        .filter_map(|n| async move { n.ok() })
        .collect()
        .await;
    for stream in names.iter().filter(|n| n.starts_with(&prefix)) {
        jetstream
            .delete_stream(stream)
            .await
            .map_err(|e| format!("deleting stream {stream}: {e}"))?;
    }
    forget_schemas_of(&jetstream, namespace).await
}

/// Removes the namespace's schema versions from the shared registry bucket (every key of it,
/// tombstones included), which outlives any namespace by design.
async fn forget_schemas_of(
    jetstream: &async_nats::jetstream::Context,
    namespace: &str,
) -> Result<(), String> {
    let stream = format!("KV_{}", switchyard::naming::SCHEMA_BUCKET);
    let Ok(stream) = jetstream.get_stream(&stream).await else {
        return Ok(());
    };
    stream
        .purge()
        .filter(format!(
            "$KV.{}.{namespace}.>",
            switchyard::naming::SCHEMA_BUCKET
        ))
        .await
        .map(|_| ())
        .map_err(|e| format!("purging the registry keys of {namespace}: {e}"))
}

/// A namespace that exists only on the broker (tests without Kubernetes): when dropped, also
/// when the test fails, every stream named after it and its registry keys are removed.
pub struct BrokerNamespace {
    pub name: String,
}

impl BrokerNamespace {
    pub fn new(prefix: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Self {
            name: format!("{prefix}-{}-{n}", run_id()),
        }
    }
}

impl Drop for BrokerNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(delete_streams_of(&name))
        });
        if let Ok(Err(problem)) = cleanup.join() {
            eprintln!("test cleanup: {problem}");
        }
    }
}

/// An operator running inside the test process, scoped to one namespace.
pub struct Operator {
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl Operator {
    pub fn start(client: &Client, namespace: &str, nats_url: &str) -> Self {
        Self::start_with(client, namespace, nats_url, |_| {})
    }

    pub fn start_with(
        client: &Client,
        namespace: &str,
        nats_url: &str,
        tweak: impl FnOnce(&mut OperatorConfig),
    ) -> Self {
        let mut broker = BrokerOptions::new(nats_url);
        broker.request_timeout = Duration::from_secs(2);
        let mut config = OperatorConfig::new(broker);
        config.namespaces = vec![namespace.to_string()];
        config.resync_interval = Duration::from_secs(2);
        config.retry_initial_delay = Duration::from_millis(500);
        config.retry_max_delay = Duration::from_secs(2);
        config.finalizer_timeout = Duration::from_secs(30);
        config.instance = format!("test-{namespace}");
        // The account's advisory stream is one for everybody; tests that relay dead letters
        // give their operator a relay on a stream of their own (see dead_letter_policy tests).
        config.dead_letter_relay = None;
        // The CRDs are shared by every test run on the cluster, possibly of other checkouts
        // with other CRDs; a mismatch is logged, not fatal. tests/crd_check.rs tests the check.
        config.crd_check = CrdCheckMode::Warn;
        tweak(&mut config);
        switchyard::telemetry::init(switchyard::telemetry::LogFormat::Pretty);
        let (tx, rx) = oneshot::channel();
        let client = client.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            runtime::run(client, config, shutdown)
                .await
                .expect("operator run");
        });
        Self {
            stop: Some(tx),
            task,
        }
    }

    /// Stops the operator and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// The operator has neither panicked nor stopped.
    pub fn assert_alive(&self) {
        assert!(
            !self.task.is_finished(),
            "the operator task ended (panic or exit)"
        );
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Polls `probe` until it yields a value, failing the test after [`PATIENCE`].
pub async fn wait_until<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_until_within(what, PATIENCE, Duration::from_millis(200), probe).await
}

/// Polls `probe` every `every` until it yields a value, failing the test after `patience`.
pub async fn wait_until_within<T, F, Fut>(
    what: &str,
    patience: Duration,
    every: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {patience:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// A condition of any kind's object as (status, reason, message), if it has one.
pub fn condition_of<K: Serialize>(obj: &K, type_: &str) -> Option<(String, String, String)> {
    let value = serde_json::to_value(obj).ok()?;
    let condition = value
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    let text = |field: &str| condition[field].as_str().unwrap_or_default().to_string();
    Some((text("status"), text("reason"), text("message")))
}

/// The Ready condition as (status, reason, message), if the object has one.
pub fn ready_of<K: Serialize>(obj: &K) -> Option<(String, String, String)> {
    condition_of(obj, "Ready")
}

fn observed_generation<K: Serialize>(obj: &K) -> Option<i64> {
    serde_json::to_value(obj)
        .ok()?
        .pointer("/status/observedGeneration")?
        .as_i64()
}

/// Waits, by watching the object, until `accept` holds, and returns the object then. Fails
/// after [`PATIENCE`] with the last state seen.
pub async fn wait_for<K>(api: &Api<K>, name: &str, what: &str, accept: impl Fn(&K) -> bool) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let last = std::sync::Mutex::new(None::<K>);
    let condition = |obj: Option<&K>| {
        if let Some(obj) = obj {
            *last.lock().unwrap() = Some(obj.clone());
            return accept(obj);
        }
        false
    };
    // A watch the API server ends (410 Gone when its cache restarts, e.g. as a CRD is
    // installed again) is started anew; only the patience bounds the wait.
    let watch = async {
        loop {
            match await_condition(api.clone(), name, &condition).await {
                Ok(found) => return found,
                Err(e) => {
                    eprintln!("watching {name} for {what} broke off ({e}); watching again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    match tokio::time::timeout(PATIENCE, watch).await {
        Ok(Some(obj)) => obj,
        Ok(None) => panic!("{name} was deleted while waiting for {what}"),
        Err(_) => panic!(
            "timed out after {PATIENCE:?} waiting for {what}; last seen: {:?}",
            last.lock().unwrap().as_ref()
        ),
    }
}

/// Waits until the object's Ready condition has `status` and `reason` for its current
/// generation.
pub async fn wait_for_ready<K>(api: &Api<K>, name: &str, status: &str, reason: &str) -> K
where
    K: Resource + Serialize + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let what = format!("{name} Ready={status}/{reason}");
    wait_for(api, name, &what, |obj| {
        observed_generation(obj) == obj.meta().generation
            && ready_of(obj).is_some_and(|(s, r, _)| s == status && r == reason)
    })
    .await
}

/// Waits until the object is gone.
pub async fn wait_until_deleted<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tokio::time::timeout(
        PATIENCE,
        await_condition(api.clone(), name, |obj: Option<&K>| obj.is_none()),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} still exists after {PATIENCE:?}"))
    .unwrap_or_else(|e| panic!("watching {name}: {e}"));
}

/// Applies a manifest of any kind from YAML (server-side apply, as kubectl and GitOps tools do).
pub async fn apply<K>(api: &Api<K>, yaml: &str) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    // Sent as written, untyped: bad values must reach the API server, not stop at our parser.
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("test manifest is YAML");
    let name = value["metadata"]["name"]
        .as_str()
        .expect("manifest has a name")
        .to_string();
    api.patch(
        &name,
        &PatchParams::apply("switchyard-tests").force(),
        &Patch::Apply(&value),
    )
    .await
}

/// A manifest of one of Switchyard's kinds; `spec` is indented YAML (e.g. `"  maxAge: 1h\n"`).
pub fn manifest(kind: &str, ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n{spec}"
    )
}

/// A Topic manifest; `spec` is indented YAML (e.g. `"  maxAge: 1h\n"`).
pub fn topic_yaml(ns: &str, name: &str, spec: &str) -> String {
    manifest("Topic", ns, name, spec)
}

/// Creates a Topic from YAML.
pub async fn apply_topic(api: &Api<Topic>, yaml: &str) -> Result<Topic, kube::Error> {
    apply(api, yaml).await
}

/// Events recorded for an object, as (type, reason, note).
pub async fn events_for(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Vec<(String, String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&ListParams::default()).await.expect("list events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect()
}

/// Runs kubectl against the test cluster; returns (success, stdout + stderr).
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl on PATH (make test puts it there)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Deletes the test stream when dropped, also when the test fails.
pub struct StreamGuard(pub String);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(client) = async_nats::connect(nats_url()).await {
                    let _ = async_nats::jetstream::new(client)
                        .delete_stream(&name)
                        .await;
                }
            });
        })
        .join();
    }
}

/// A nats-server owned by one test, for tests that stop and start the broker.
pub struct PrivateNats {
    pub port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl PrivateNats {
    pub fn start() -> Self {
        let port = free_port();
        let store =
            std::env::temp_dir().join(format!("switchyard-nats-{port}-{}", std::process::id()));
        let mut nats = Self {
            port,
            store,
            child: None,
        };
        nats.resume();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port with the same storage.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "nats-server already running");
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on PATH (make test puts it there)");
        self.child = Some(child);
        wait_for_port(self.port);
    }

    /// Kills the server, as a crash or network partition would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The repository root, for tests that read files of the project.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A free loopback address for a server a test starts.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// GET over plain HTTP/1.0; returns (status code, body).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// A TCP forwarder to the API server that can be cut and restored, so an operator sees the API
/// server become unreachable while the test itself keeps talking to it directly.
pub struct ApiProxy {
    pub addr: std::net::SocketAddr,
    up: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ApiProxy {
    pub async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, _) = tokio::sync::watch::channel(true);
        let state = up.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut up = state.subscribe();
                if !*up.borrow() {
                    continue; // dropped: the connection is refused
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {},
                        _ = up.wait_for(|up| !*up) => {},
                    }
                });
            }
        });
        Self { addr, up, task }
    }

    /// Cuts every open connection and refuses new ones, or lets them through again.
    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }

    /// A client of the API server that goes through this proxy.
    pub async fn client(&self) -> Client {
        let mut config = kube::Config::infer().await.expect("kubeconfig");
        config.cluster_url = format!("https://{}", self.addr).parse().unwrap();
        Client::try_from(config).expect("client through the proxy")
    }

    /// The API server's address from the kubeconfig.
    pub async fn api_server_addr() -> std::net::SocketAddr {
        let config = kube::Config::infer().await.expect("kubeconfig");
        let host = config
            .cluster_url
            .host()
            .expect("API server host")
            .to_string();
        let port = config.cluster_url.port_u16().unwrap_or(443);
        format!("{host}:{port}")
            .parse()
            .expect("API server on an IP address")
    }
}

impl Drop for ApiProxy {
    fn drop(&mut self) {
        self.set_up(false);
        self.task.abort();
    }
}

/// A metric's value from an OpenMetrics text, summed over the series matching all `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter(|line| {
            line[name.len()..].starts_with(['{', ' '])
                && labels.iter().all(|label| line.contains(label))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// A name no other test, run or process uses, valid as a stream name and a subject token.
pub fn unique(prefix: &str) -> String {
    static UNIQUE: AtomicU32 = AtomicU32::new(0);
    let n = UNIQUE.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}{}x{n}x{nanos:x}", std::process::id())
}

/// A broker on `url` with short requests, once it is connected.
pub async fn connected(url: &str) -> Broker {
    let mut options = BrokerOptions::new(url);
    options.request_timeout = Duration::from_secs(3);
    let broker = Broker::connect(&options).await.expect("broker");
    let mut state = broker.connection_state();
    tokio::time::timeout(PATIENCE, state.wait_for(|up| *up))
        .await
        .expect("connected in time")
        .expect("state watch");
    assert!(broker.is_connected());
    broker
}
