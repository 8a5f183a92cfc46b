//! Shared harness for integration tests: a real kube-apiserver (KUBECONFIG) and a real
//! nats-server (NATS_URL), both started by `make cluster-up`. Every test gets a fresh namespace
//! and its own operator instance watching only that namespace, so tests run in parallel.

#![allow(dead_code)]

use std::{
    future::Future,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{core::v1::Namespace, events::v1::Event},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::wait::{await_condition, conditions},
};
use switchyard::{
    api::Topic,
    broker::{Broker, BrokerOptions},
    conditions::ConditionType,
    crdgen,
    reconcile::{self, OperatorConfig},
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

/// A namespace that exists for one test and is deleted afterwards.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let suffix = format!(
            "{:x}{n}",
            std::process::id() ^ (Instant::now().elapsed().subsec_nanos())
        );
        let name = format!("{prefix}-{suffix}");
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        Self {
            name,
            client: client.clone(),
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let name = self.name.clone();
        // Best effort: the test is over either way, and the environment is torn down after the run.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = api.delete(&name, &DeleteParams::background()).await;
            });
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
        config.namespace = Some(namespace.to_string());
        config.resync_interval = Duration::from_secs(2);
        config.broker_retry_interval = Duration::from_secs(1);
        config.finalizer_timeout = Duration::from_secs(30);
        config.instance = format!("test-{namespace}");
        tweak(&mut config);
        switchyard::telemetry::init(switchyard::telemetry::LogFormat::Pretty);
        let (tx, rx) = oneshot::channel();
        let client = client.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            reconcile::run(client, config, shutdown)
                .await
                .expect("operator run");
        });
        Self {
            stop: Some(tx),
            task,
        }
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
pub async fn wait_until<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Ready condition as (status, reason, message), if the Topic has one.
pub fn ready_of(topic: &Topic) -> Option<(String, String, String)> {
    let status = topic.status.as_ref()?;
    let c = switchyard::conditions::find(&status.conditions, ConditionType::Ready)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the Topic's Ready condition has `status` and `reason` for its current generation.
pub async fn wait_for_ready(api: &Api<Topic>, name: &str, status: &str, reason: &str) -> Topic {
    let what = format!("Topic {name} Ready={status}/{reason}");
    let mut last = None;
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(topic) = api.get(name).await {
            let ready = ready_of(&topic);
            let current = topic.status.as_ref().and_then(|s| s.observed_generation)
                == topic.metadata.generation;
            if current
                && ready
                    .as_ref()
                    .is_some_and(|(s, r, _)| s == status && r == reason)
            {
                return topic;
            }
            last = ready;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last Ready condition: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates a Topic from YAML (server-side apply, as kubectl and GitOps tools do).
pub async fn apply_topic(api: &Api<Topic>, yaml: &str) -> Result<Topic, kube::Error> {
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
