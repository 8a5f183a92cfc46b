//! The controller runtime every kind runs on: one driver ([`driver`]) that a kind plugs its
//! stages into, the watches that feed it ([`watch`]), the single writer to the Kubernetes API
//! ([`writer`]), retry timing ([`retry`]), leader election ([`lease`]), health and metrics over
//! HTTP ([`http`], [`health`]), one shutdown signal for all of it ([`shutdown`]) and the
//! start-up check of the served CRDs ([`crd_check`]).

pub mod crd_check;
pub mod driver;
pub mod health;
pub mod http;
pub mod kube_events;
pub mod lease;
pub mod relations;
pub mod retry;
pub mod shutdown;
pub mod watch;
pub mod writer;

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use kube::{
    Api, Client,
    core::{DeserializeGuard, NamespaceResourceScope},
    runtime::{
        Controller, controller,
        events::{Recorder, Reporter},
    },
};
use tracing::{debug, info, warn};

use self::{
    crd_check::CrdCheckMode,
    driver::{Driven, Reconciler},
    health::Health,
    lease::Leadership,
    retry::Backoff,
    shutdown::Shutdown,
    writer::Writer,
};
use crate::{
    broker::{Broker, BrokerError, BrokerOptions},
    conditions::{Clock, SystemClock},
    crdgen,
    deadletter::{Outcome as DeadLetterOutcome, Relay, RelayConfig, Report},
    metrics::Metrics,
    reconcile::{
        dead_letter_policy::{
            DeadLetterPolicyReconciler, routes::CachedRoutes, wake::NewDeadLetters,
        },
        event_schema::EventSchemaReconciler,
        subscription::SubscriptionReconciler,
        topic::TopicReconciler,
    },
};

/// The field manager Switchyard writes with; server-side apply attributes fields to it.
pub const FIELD_MANAGER: &str = "switchyard";

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Watch only these namespaces; empty watches all namespaces.
    pub namespaces: Vec<String>,
    pub broker: BrokerOptions,
    /// How often an object in sync is looked at again, to catch drift on the broker and refresh
    /// its live figures.
    pub resync_interval: Duration,
    /// How often the lag of autoscaled Subscriptions is read.
    pub autoscale_interval: Duration,
    /// The first retry delay after a failure; later retries back off exponentially with jitter.
    pub retry_initial_delay: Duration,
    /// The longest retry delay.
    pub retry_max_delay: Duration,
    /// How long a deletion waits for NATS before the finalizer lets go and leaves the broker
    /// object behind, so an unreachable broker never wedges a namespace.
    pub finalizer_timeout: Duration,
    /// Objects of one kind reconciled at the same time.
    pub concurrency: u16,
    /// Names this operator instance in Events and in the leader Lease.
    pub instance: String,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; `None` serves nothing.
    pub http_addr: Option<SocketAddr>,
    /// Leader election; `None` runs as the only writer.
    pub election: Option<lease::LeaseConfig>,
    /// Image of the dispatcher sidecar in worker pods (the operator's own image).
    pub dispatcher_image: String,
    /// Secret (in each Subscription's namespace) mounted into the dispatchers as their NATS
    /// credentials directory; `None` gives them only the server URL.
    pub worker_nats_secret: Option<String>,
    /// How the dead-letter relay runs while this instance leads; `None`: no relay (failed
    /// events' advisories wait in their stream for a relay to come).
    pub dead_letter_relay: Option<RelayConfig>,
    /// What to do when the served CRDs are not those this operator was built with.
    pub crd_check: CrdCheckMode,
}

impl OperatorConfig {
    pub fn new(broker: BrokerOptions) -> Self {
        Self {
            namespaces: Vec::new(),
            broker,
            resync_interval: Duration::from_secs(60),
            autoscale_interval: Duration::from_secs(2),
            retry_initial_delay: Duration::from_secs(2),
            retry_max_delay: Duration::from_secs(60),
            finalizer_timeout: Duration::from_secs(300),
            concurrency: 16,
            instance: "switchyard".into(),
            http_addr: None,
            election: None,
            dispatcher_image: format!("switchyard:{}", env!("CARGO_PKG_VERSION")),
            worker_nats_secret: None,
            dead_letter_relay: Some(RelayConfig::default()),
            crd_check: CrdCheckMode::default(),
        }
    }

    /// The namespace of each set of controllers: every listed namespace, or `None` for all.
    pub fn scopes(&self) -> Vec<Option<String>> {
        if self.namespaces.is_empty() {
            return vec![None];
        }
        let mut namespaces = self.namespaces.clone();
        namespaces.sort();
        namespaces.dedup();
        namespaces.into_iter().map(Some).collect()
    }

    pub fn retry_backoff(&self) -> Backoff {
        Backoff {
            initial: self.retry_initial_delay,
            max: self.retry_max_delay.max(self.retry_initial_delay),
        }
    }
}

/// What every reconcile of every kind shares. Watching several namespaces runs one set of
/// controllers per namespace, each with its own context; they share everything but `namespace`.
pub struct Context {
    /// The namespace these controllers watch; `None`: all namespaces.
    pub namespace: Option<String>,
    pub client: Client,
    pub broker: Broker,
    pub clock: Arc<dyn Clock>,
    pub config: OperatorConfig,
    pub metrics: Arc<Metrics>,
    pub writer: Arc<Writer>,
}

/// Failures that abort a reconcile; the driver retries them with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error(transparent)]
    NotLeader(#[from] lease::NotLeader),
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    Election(String),
    #[error("watch caches not ready: {0}")]
    NotSynced(&'static str),
    #[error(transparent)]
    Crds(#[from] crd_check::CrdCheckError),
}

impl Error {
    /// Low-cardinality label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Self::Kube(_) => "kube",
            Self::Broker(_) => "broker",
            Self::MissingField(_) => "invalid_object",
            Self::NotLeader(_) => "not_leader",
            Self::Http { .. } => "http",
            Self::Election(_) => "election",
            Self::NotSynced(_) => "watch",
            Self::Crds(_) => "crds",
        }
    }
}

/// Runs the operator until `signal` resolves: the HTTP server, leader election, and every
/// controller while this instance leads.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    check_crds(&client, config.crd_check).await?;
    let shutdown = Shutdown::default();
    shutdown.trigger_on(signal);
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let http = match config.http_addr {
        Some(addr) => {
            let probes = Arc::new(http::OperatorProbes {
                metrics: metrics.clone(),
                health: health.clone(),
            });
            let task = http::serve(addr, probes, shutdown.clone())
                .await
                .map_err(|source| Error::Http { addr, source })?;
            info!(%addr, "serving /metrics, /healthz and /readyz");
            Some(task)
        }
        None => None,
    };
    let broker = Broker::connect(&config.broker).await?;
    follow_broker(&broker, &metrics, &health, &shutdown);
    let (leadership, elector) = match &config.election {
        None => (Leadership::always(config.instance.clone()), None),
        Some(lease) => {
            let (leadership, task) =
                lease::spawn(client.clone(), lease.clone(), shutdown.triggered())
                    .map_err(|e| Error::Election(e.to_string()))?;
            (leadership, Some(task))
        }
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "switchyard".into(),
            instance: Some(config.instance.clone()),
        },
    );
    let writer = Arc::new(Writer::new(
        client.clone(),
        recorder,
        leadership.clone(),
        metrics.clone(),
    ));
    let scopes: Vec<Arc<Context>> = config
        .scopes()
        .into_iter()
        .map(|namespace| {
            Arc::new(Context {
                namespace,
                client: client.clone(),
                writer: writer.clone(),
                broker: broker.clone(),
                clock: Arc::new(SystemClock),
                config: config.clone(),
                metrics: metrics.clone(),
            })
        })
        .collect();
    let mut leading = leadership.watch();
    loop {
        tokio::select! {
            () = shutdown.triggered() => break,
            changed = leading.wait_for(|l| *l) => if changed.is_err() { break },
        }
        info!(instance = %config.instance, "leading: starting controllers");
        metrics.leader.set(1);
        health.set_leading(true);
        let term = {
            let shutdown = shutdown.clone();
            let mut leading = leadership.watch();
            async move {
                tokio::select! {
                    () = shutdown.triggered() => {},
                    _ = leading.wait_for(|l| !*l) => {},
                }
            }
        };
        let term = futures::future::FutureExt::shared(Box::pin(term));
        let labelled = scopes.len() > 1;
        futures::future::join_all(
            scopes
                .iter()
                .map(|scope| run_controllers(scope, &health, labelled, term.clone())),
        )
        .await;
        metrics.leader.set(0);
        health.set_leading(false);
        if shutdown.is_triggered() {
            break;
        }
        warn!(instance = %config.instance, "lost leadership: controllers stopped, standing by");
    }
    // The elector releases the Lease on shutdown, so a standby takes over at once.
    if let Some(task) = elector {
        let _ = task.await;
    }
    if let Some(task) = http {
        let _ = task.await;
    }
    info!("operator stopped");
    Ok(())
}

/// Compares the served CRDs with the embedded ones, as `mode` says.
async fn check_crds(client: &Client, mode: CrdCheckMode) -> Result<(), Error> {
    if mode == CrdCheckMode::Off {
        return Ok(());
    }
    match crd_check::verify(client, &crdgen::all()).await {
        Ok(()) => {
            info!("the served CRDs are this operator's");
            Ok(())
        }
        Err(e) if mode == CrdCheckMode::Warn => {
            warn!("{e}; running anyway (--crd-check warn)");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Mirrors the NATS connection state into metrics and readiness until shutdown.
fn follow_broker(
    broker: &Broker,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
    shutdown: &Shutdown,
) {
    let mut state = broker.connection_state();
    let (metrics, health, stop) = (metrics.clone(), health.clone(), shutdown.triggered());
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            let connected = *state.borrow_and_update();
            metrics.broker_connected.set(i64::from(connected));
            health.set_broker_connected(connected);
            tokio::select! {
                () = &mut stop => return,
                changed = state.changed() => if changed.is_err() { return },
            }
        }
    });
}

/// Resolves to `()` each time the NATS connection comes back, so every object whose reconcile
/// waits out a backoff for the broker is reconciled at once.
fn reconnects(
    state: tokio::sync::watch::Receiver<bool>,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold((state, false), |(mut state, mut was)| async move {
        loop {
            state.changed().await.ok()?;
            let now = *state.borrow_and_update();
            let reconnected = now && !was;
            was = now;
            if reconnected {
                return Some(((), (state, was)));
            }
        }
    })
}

/// Runs every kind's controller of one scope until `term` resolves (shutdown or lost
/// leadership). `labelled`: name the namespace in readiness, as there are several.
async fn run_controllers(
    ctx: &Arc<Context>,
    health: &Arc<Health>,
    labelled: bool,
    term: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let health = &Watched {
        health: health.clone(),
        namespace: ctx.namespace.clone().filter(|_| labelled),
    };
    let policies = DeadLetterPolicyReconciler::default();
    let new_dead_letters = policies.new_dead_letters.clone();
    tokio::join!(
        run_controller(TopicReconciler, ctx, health, term.clone()),
        run_controller(SubscriptionReconciler::default(), ctx, health, term.clone()),
        run_controller(policies, ctx, health, term.clone()),
        run_controller(EventSchemaReconciler::default(), ctx, health, term.clone()),
        run_dead_letter_relay(ctx, new_dead_letters, term.clone()),
    );
}

/// Copies failed events into their DeadLetterPolicy's target while this instance leads (two
/// relays would both work, but only one needs to), counting what it did per policy and reason.
async fn run_dead_letter_relay(
    ctx: &Arc<Context>,
    new_dead_letters: NewDeadLetters,
    term: impl Future<Output = ()> + Send,
) {
    let Some(mut config) = ctx.config.dead_letter_relay.clone() else {
        return;
    };
    // Every installation reads the account's one advisory stream through its own consumer
    // (the stream keeps advisories by age, not by acknowledgement): one scoped to a namespace
    // settles only its namespace's and passes over the rest, which its neighbours' relays copy.
    if let Some(namespace) = &ctx.namespace {
        config.consumer = format!("{}_{namespace}", config.consumer);
    }
    let (routes, watches) = CachedRoutes::watching(ctx);
    // Reports are counted as fast as they come; the bound only matters if counting stalls.
    let (reports, mut received) = tokio::sync::mpsc::channel::<Report>(1024);
    let relay = Relay::new(ctx.broker.clone(), Arc::new(routes), reports, config);
    let metrics = ctx.metrics.clone();
    let count = async move {
        while let Some(report) = received.recv().await {
            record_dead_letter(&metrics, &report);
            if let (DeadLetterOutcome::Copied { .. }, Some(policy)) =
                (&report.outcome, &report.policy)
            {
                new_dead_letters.stored(policy);
            }
        }
    };
    info!("dead-letter relay started");
    tokio::select! {
        ((), ()) = async { tokio::join!(relay.run(term), count) } => {}
        () = watches => {}
    }
    info!("dead-letter relay stopped");
}

fn record_dead_letter(metrics: &Metrics, report: &Report) {
    let reason = report
        .failure
        .as_ref()
        .map_or("", |f| f.reason.kind().as_str());
    let policy = report.policy.clone().unwrap_or_default();
    metrics
        .dead_letters
        .get_or_create(&crate::metrics::DeadLetterLabels {
            policy: policy.clone(),
            reason,
            outcome: report.outcome.label(),
        })
        .inc();
    let (stream, sequence, consumer) = report
        .failure
        .as_ref()
        .map(|f| (f.stream.as_str(), f.sequence, f.consumer.as_str()))
        .unwrap_or_default();
    match &report.outcome {
        DeadLetterOutcome::Copied {
            duplicate: false, ..
        } => {
            debug!(
                policy,
                stream, sequence, consumer, reason, "dead letter stored"
            );
        }
        DeadLetterOutcome::OriginalGone => info!(
            policy,
            stream,
            sequence,
            consumer,
            reason,
            "a failed event was already removed by the server; nothing to dead-letter"
        ),
        DeadLetterOutcome::Failed {
            step,
            error,
            retry_in,
        } => warn!(
            policy, stream, sequence, consumer, ?step, %error, ?retry_in,
            "dead-lettering failed; retrying"
        ),
        DeadLetterOutcome::Malformed { subject, problem } => {
            warn!(
                subject,
                problem, "ignored an advisory the relay cannot read"
            );
        }
        other => debug!(
            policy,
            stream,
            sequence,
            outcome = other.label(),
            "advisory settled"
        ),
    }
}

/// Runs one kind's controller on the lifecycle-filtered watch until `term` resolves.
async fn run_controller<R>(
    reconciler: R,
    ctx: &Arc<Context>,
    health: &Watched,
    term: impl Future<Output = ()> + Send + Sync + 'static,
) where
    R: Reconciler,
{
    let api: Api<DeserializeGuard<R::Kind>> = api_for(&ctx.client, ctx.namespace.as_deref());
    health.set_synced(R::KIND, false);
    let listed = Arc::new(AtomicBool::new(false));
    let (store, stream, deletions) = {
        let (health, listed) = (health.clone(), listed.clone());
        watch::lifecycle_stream(api, move || {
            listed.store(true, Ordering::Relaxed);
            health.set_synced(R::KIND, true);
        })
    };
    info!(
        kind = R::KIND,
        namespace = ctx.namespace.as_deref().unwrap_or("<all>"),
        "starting controller"
    );
    let controller = Controller::for_stream(stream, store.clone());
    let controller = reconciler.watch_related(controller, store, ctx);
    let driven = Arc::new(Driven::new(reconciler, ctx.clone()));
    let term = futures::future::FutureExt::shared(Box::pin(term));
    let stop_waiting = stop_waiting(term.clone(), listed);
    // Runs next to the controller and ends with it (the deletions channel closes with the
    // watch), so deletions are reported only while this instance leads.
    let deletions = driver::report_deletions(driven.clone(), deletions);
    let controller = controller
        .with_config(controller::Config::default().concurrency(ctx.config.concurrency))
        .reconcile_all_on(reconnects(ctx.broker.connection_state()))
        .graceful_shutdown_on(term)
        .run(driver::reconcile::<R>, driver::error_policy::<R>, driven)
        .for_each(|result| async move {
            match result {
                // Failed reconciles are logged by the error policy, with their retry delay.
                Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(controller::Error::ObjectNotFound(obj)) => {
                    tracing::debug!(kind = R::KIND, %obj, "object gone before its reconcile");
                }
                // Watch failures (RBAC, API server away) are retried by the watch's backoff.
                Err(e) => warn!(kind = R::KIND, error = %e, "watch failed; retrying"),
            }
        });
    // Dropping the controller drops its watch, which ends the deletions channel too.
    let controller = async move {
        tokio::select! {
            () = controller => {}
            listed = stop_waiting => if listed {
                warn!(kind = R::KIND, grace = ?SHUTDOWN_GRACE, "reconciles still running at shutdown were cancelled");
            },
        }
    };
    tokio::join!(controller, deletions);
    info!(kind = R::KIND, "controller stopped");
}

/// Readiness of one scope's watches: by kind, and by namespace when there are several scopes.
#[derive(Clone)]
struct Watched {
    health: Arc<Health>,
    namespace: Option<String>,
}

impl Watched {
    fn set_synced(&self, kind: &'static str, synced: bool) {
        let watch = match &self.namespace {
            Some(namespace) => format!("{kind} in {namespace}"),
            None => kind.to_string(),
        };
        self.health.set_synced(watch, synced);
    }
}

/// How long running reconciles may take to finish once the controller is asked to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Resolves when a controller asked to stop (`term`) must be dropped rather than waited for:
/// at once if its watch never finished listing (kube's controller then waits for a store that
/// will never be ready, so its graceful shutdown would never end), else after
/// [`SHUTDOWN_GRACE`]. Says whether the watch had listed.
async fn stop_waiting(term: impl Future<Output = ()>, listed: Arc<AtomicBool>) -> bool {
    term.await;
    let listed = listed.load(Ordering::Relaxed);
    if listed {
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    }
    listed
}

/// An Api over the watched namespace, or over all namespaces.
pub fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_namespace_is_one_scope_and_no_list_is_all_namespaces() {
        let mut config = OperatorConfig::new(BrokerOptions::new("nats://127.0.0.1:4222"));
        assert_eq!(config.scopes(), [None]);
        config.namespaces = vec!["team-b".into(), "team-a".into(), "team-b".into()];
        assert_eq!(
            config.scopes(),
            [Some("team-a".to_string()), Some("team-b".to_string())]
        );
    }

    #[tokio::test]
    async fn every_return_of_the_connection_is_one_reconnect() {
        let (state, receiver) = tokio::sync::watch::channel(false);
        let mut stream = Box::pin(reconnects(receiver));
        state.send_replace(true);
        assert_eq!(stream.next().await, Some(()));
        state.send_replace(false);
        let quiet = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
        assert!(quiet.is_err(), "losing the connection is no reconnect");
        state.send_replace(true);
        assert_eq!(stream.next().await, Some(()));
        drop(state);
        assert_eq!(stream.next().await, None, "ends with the connection");
    }
}
