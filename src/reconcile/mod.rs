//! The controllers: one per kind, sharing one broker connection, one event recorder and one clock.

pub mod topic;

use std::{future::Future, sync::Arc, time::Duration};

use futures::StreamExt;
use kube::{
    Api, Client,
    core::DeserializeGuard,
    runtime::{
        Controller,
        controller::{self, Action},
        events::{Recorder, Reporter},
        watcher,
    },
};
use tracing::{info, warn};

use crate::{
    api::Topic,
    broker::{Broker, BrokerError, BrokerOptions},
    conditions::{Clock, SystemClock},
    metrics::{self, Metrics},
};

/// The field manager Switchyard writes with; server-side apply attributes fields to it.
pub const FIELD_MANAGER: &str = "switchyard";

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Watch only this namespace; `None` watches all namespaces.
    pub namespace: Option<String>,
    pub broker: BrokerOptions,
    /// How often an object in sync is looked at again, to catch drift on the broker.
    pub resync_interval: Duration,
    /// How soon to retry while NATS is unavailable.
    pub broker_retry_interval: Duration,
    /// How long a deletion waits for NATS before the finalizer lets go and leaves the broker
    /// object behind, so an unreachable broker never wedges a namespace.
    pub finalizer_timeout: Duration,
    /// Objects of one kind reconciled at the same time.
    pub concurrency: u16,
    /// Names this operator instance in Events.
    pub instance: String,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; `None` serves nothing.
    pub http_addr: Option<std::net::SocketAddr>,
}

impl OperatorConfig {
    pub fn new(broker: BrokerOptions) -> Self {
        Self {
            namespace: None,
            broker,
            resync_interval: Duration::from_secs(60),
            broker_retry_interval: Duration::from_secs(5),
            finalizer_timeout: Duration::from_secs(300),
            concurrency: 16,
            instance: "switchyard".into(),
            http_addr: None,
        }
    }
}

/// What every reconcile needs.
pub struct Context {
    pub client: Client,
    pub broker: Broker,
    pub recorder: Recorder,
    pub clock: Arc<dyn Clock>,
    pub config: OperatorConfig,
    pub metrics: Arc<Metrics>,
}

/// Failures that abort a reconcile; the controller retries them with a delay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("object has no {0}")]
    MissingField(&'static str),
}

impl Error {
    /// Low-cardinality label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Broker(_) => "broker",
            Self::MissingField(_) => "invalid_object",
        }
    }
}

fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs every controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let broker = Broker::connect(&config.broker).await?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "switchyard".into(),
            instance: Some(config.instance.clone()),
        },
    );
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = config.http_addr {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, metrics).await {
                // Without probes the pod would be restarted anyway; say why.
                tracing::error!(%addr, error = %e, "cannot serve metrics and health endpoints");
                std::process::exit(1);
            }
        });
        info!(%addr, "serving /metrics, /healthz and /readyz");
    }
    let ctx = Arc::new(Context {
        client: client.clone(),
        broker,
        recorder,
        clock: Arc::new(SystemClock),
        config: config.clone(),
        metrics,
    });
    let topics: Api<DeserializeGuard<Topic>> = api_for(&client, config.namespace.as_deref());
    info!(
        namespace = config.namespace.as_deref().unwrap_or("<all>"),
        "starting Topic controller"
    );
    Controller::new(topics, watcher::Config::default().any_semantic())
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(topic::reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                log_controller_error(&e);
            }
        })
        .await;
    info!("controllers stopped");
    Ok(())
}

/// The kind as a static label; the Kubernetes kind strings are static for our types.
fn kind_label<K: kube::Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Topic" => "Topic",
        "Subscription" => "Subscription",
        "DeadLetterPolicy" => "DeadLetterPolicy",
        "EventSchema" => "EventSchema",
        _ => "Other",
    }
}

fn log_controller_error<E: std::error::Error>(e: &E) {
    warn!(error = %e, "reconcile failed");
}

fn error_policy<K: kube::Resource<DynamicType = ()>>(
    _: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    warn!(category = error.category(), error = %error, "reconcile error, retrying");
    ctx.metrics
        .observe_error(kind_label::<K>(), error.category());
    Action::requeue(ctx.config.broker_retry_interval)
}
