//! `switchyard dispatch`: the worker pods' sidecar. It pulls events from a Subscription's
//! durable consumer and delivers each to the handler next to it as a CloudEvents 1.0 HTTP
//! request ([`cloudevents`], [`handler`]), then tells JetStream what became of it
//! ([`outcome`]): acknowledged, redelivered later with the Subscription's backoff, or
//! terminated with a reason.
//!
//! Flow control: at most `concurrency` events are in flight; the dispatcher asks JetStream for
//! exactly as many as it has room for, so no event waits in a local buffer (where its ackWait
//! would run out unseen). A handler that takes long keeps its event alive with in-progress
//! acknowledgements, up to the timeout.
//!
//! Shutdown (SIGTERM): stop asking for events, let the events in flight finish (or time out and
//! be redelivered), and exit; an event is acknowledged once at most, and an event that was
//! handed out but not handled is redelivered. Broker and handler outages are waited out, not
//! fatal.

pub mod cloudevents;
mod deliver;
pub mod handler;
pub mod key_order;
pub mod metrics;
pub mod outcome;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use self::{
    cloudevents::TopicLayout, deliver::Deliverer, handler::Handler, metrics::DispatchMetrics,
    outcome::Redelivery,
};
use crate::{
    broker::{Broker, BrokerError, BrokerOptions, delivery::BoundConsumer},
    runtime::{http, shutdown::Shutdown},
};

/// How long one request for events stays open when fewer arrive.
const FETCH_EXPIRES: Duration = Duration::from_secs(5);
/// Retry delays while the consumer does not exist or NATS is away.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Per-key order: events lined up ahead of their turn, per unit of concurrency (and at least
/// the minimum): enough to keep every key busy, few enough to keep alive cheaply.
const LOOKAHEAD_PER_SLOT: usize = 8;
const MIN_LOOKAHEAD: usize = 64;
/// How often the handler's port is probed for readiness.
const HANDLER_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Everything `switchyard dispatch` is told.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    pub broker: BrokerOptions,
    pub stream: String,
    /// The consumers to read: one, or one per partition of a Topic (`ordering: PerKey`, where
    /// JetStream pins each to one dispatcher replica).
    pub consumers: Vec<String>,
    /// Deliver the events of one partition key one at a time, in stream order (needs
    /// `layout.partition_type_tokens`).
    pub per_key: bool,
    /// The handler: `http://127.0.0.1:<port><path>`.
    pub endpoint: String,
    /// Events handled at the same time.
    pub concurrency: usize,
    /// How long a handler may take; `None`: the consumer's ackWait.
    pub timeout: Option<Duration>,
    pub layout: TopicLayout,
    /// Where to serve `/metrics`, `/healthz`, `/readyz`; `None` serves nothing.
    pub http_addr: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Endpoint(#[from] handler::EndpointError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("--concurrency must be at least 1")]
    Concurrency,
    #[error("{0}")]
    Arguments(&'static str),
}

/// What readiness and metrics report.
#[derive(Default)]
struct State {
    metrics: DispatchMetrics,
    bound: AtomicBool,
    handler_reachable: AtomicBool,
    connected: AtomicBool,
}

impl http::Probes for State {
    fn metrics(&self) -> String {
        self.metrics.render()
    }

    fn readiness(&self) -> (bool, String) {
        let yes = |flag: &AtomicBool| flag.load(Ordering::Relaxed);
        let lines = [
            ("consumer bound", yes(&self.bound)),
            ("handler reachable", yes(&self.handler_reachable)),
            ("nats connected", yes(&self.connected)),
        ];
        let text = lines
            .iter()
            .map(|(what, ok)| format!("{what}: {}\n", if *ok { "yes" } else { "no" }))
            .collect();
        (lines.iter().all(|(_, ok)| *ok), text)
    }
}

/// Runs the dispatcher until `signal` resolves and the events in flight are done.
pub async fn run(
    config: DispatchConfig,
    signal: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DispatchError> {
    if config.concurrency == 0 {
        return Err(DispatchError::Concurrency);
    }
    if config.consumers.is_empty() {
        return Err(DispatchError::Arguments("name at least one --consumer"));
    }
    let key_order = match (config.per_key, config.layout.partition_type_tokens) {
        (false, _) => None,
        (true, Some(type_tokens)) => Some(deliver::KeyLines {
            order: Default::default(),
            subject_prefix: config.layout.subject_prefix.clone(),
            type_tokens,
            lookahead: Arc::new(Semaphore::new(
                (config.concurrency * LOOKAHEAD_PER_SLOT).max(MIN_LOOKAHEAD),
            )),
        }),
        (true, None) => {
            return Err(DispatchError::Arguments(
                "--ordering per-key needs --partition-type-tokens: keys are only known on partitioned Topics",
            ));
        }
    };
    let handler = Handler::new(&config.endpoint)?;
    let shutdown = Shutdown::default();
    shutdown.trigger_on(signal);
    let state = Arc::new(State::default());
    let http = match config.http_addr {
        Some(addr) => Some(
            http::serve(addr, state.clone(), shutdown.clone())
                .await
                .map_err(|source| DispatchError::Http { addr, source })?,
        ),
        None => None,
    };
    let broker = Broker::connect(&config.broker).await?;
    follow_connection(&broker, &state, &shutdown);
    probe_handler(&handler, &state, &shutdown);

    let mut bound = Vec::with_capacity(config.consumers.len());
    for consumer in &config.consumers {
        let Some(one) = bind(&broker, &config.stream, consumer, &shutdown).await else {
            return finish(http).await;
        };
        bound.push(one);
    }
    state.bound.store(true, Ordering::Relaxed);
    // The consumers of one Subscription share their redelivery settings.
    let redelivery = Redelivery {
        backoff: bound[0].config.backoff.clone(),
        ack_wait: bound[0].config.ack_wait,
    };
    let max_deliveries = bound[0].config.max_deliver;
    let timeout = config.timeout.unwrap_or(redelivery.ack_wait);
    info!(
        stream = config.stream,
        consumers = ?config.consumers,
        per_key = config.per_key,
        endpoint = %handler.endpoint(),
        concurrency = config.concurrency,
        ?timeout,
        "dispatching"
    );
    let deliverer = Arc::new(Deliverer {
        handler,
        layout: config.layout.clone(),
        redelivery,
        max_deliveries,
        timeout,
        state: state.clone(),
        key_order,
        shutdown: shutdown.clone(),
        in_flight: Default::default(),
    });
    pull_all(&bound, deliverer, config.concurrency, &shutdown).await;
    info!("dispatcher stopped");
    finish(http).await
}

async fn finish(
    http: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
) -> Result<(), DispatchError> {
    if let Some(task) = http {
        let _ = task.await;
    }
    Ok(())
}

/// Binds to the consumer, waiting while it does not exist yet (the operator creates it, in
/// Broadcast mode only once the pod exists) or NATS is away; `None` on shutdown.
async fn bind(
    broker: &Broker,
    stream: &str,
    consumer: &str,
    shutdown: &Shutdown,
) -> Option<BoundConsumer> {
    let mut delay = RETRY_FIRST;
    let mut told = false;
    loop {
        match broker.bind(stream, consumer).await {
            Ok(Some(bound)) => return Some(bound),
            Ok(None) if !told => {
                info!(stream, consumer, "waiting for the consumer to exist");
                told = true;
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot read the consumer; retrying"),
        }
        tokio::select! {
            () = shutdown.triggered() => return None,
            () = tokio::time::sleep(delay) => {},
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// Asks each consumer for as many events as there is room for, hands each to a delivery task,
/// and on shutdown waits for the deliveries in flight.
async fn pull_all(
    bound: &[BoundConsumer],
    deliverer: Arc<Deliverer>,
    concurrency: usize,
    shutdown: &Shutdown,
) {
    let room = Arc::new(Semaphore::new(concurrency));
    futures::future::join_all(
        bound
            .iter()
            .map(|consumer| pull(consumer, deliverer.clone(), room.clone(), shutdown)),
    )
    .await;
    // Every delivery task holds a read guard: the write lock waits for them all.
    let _ = deliverer.in_flight.write().await;
}

/// One consumer's fetch loop. Room is reserved before asking (all of it that is free), and
/// each event takes its share of the reservation, so no event ever waits for room unseen.
async fn pull(
    bound: &BoundConsumer,
    deliverer: Arc<Deliverer>,
    room: Arc<Semaphore>,
    shutdown: &Shutdown,
) {
    if let Some(group) = bound.pinned_group() {
        return pull_pinned(bound, group, deliverer, room, shutdown).await;
    }
    let mut delay = RETRY_FIRST;
    'fetching: loop {
        let mut reserved = tokio::select! {
            () = shutdown.triggered() => break,
            permit = room.clone().acquire_owned() => permit.expect("never closed"),
        };
        if let Ok(more) = room
            .clone()
            .try_acquire_many_owned(room.available_permits() as u32)
        {
            reserved.merge(more);
        }
        let wanted = reserved.num_permits();
        let fetch_started = std::time::Instant::now();
        let batch = tokio::select! {
            () = shutdown.triggered() => break,
            batch = bound.fetch(wanted, FETCH_EXPIRES) => batch,
        };
        let mut batch = match batch {
            Ok(batch) => Box::pin(batch),
            Err(e) => {
                warn!(error = %e, retry_in = ?delay, "cannot fetch events");
                drop(reserved);
                tokio::select! {
                    () = shutdown.triggered() => break,
                    () = tokio::time::sleep(delay) => {},
                }
                delay = (delay * 2).min(RETRY_MAX);
                continue;
            }
        };
        let mut first = true;
        loop {
            let next = tokio::select! {
                () = shutdown.triggered() => {
                    // Events already on their way to us: hand them back at once.
                    release_rest(&mut batch).await;
                    break 'fetching;
                }
                next = batch.next() => next,
            };
            let delivered = match next {
                None => break,
                Some(Ok(delivered)) => delivered,
                Some(Err(e)) => {
                    warn!(error = %e, "fetching events failed");
                    break;
                }
            };
            if std::mem::take(&mut first) {
                deliverer
                    .state
                    .metrics
                    .fetch_seconds
                    .observe(fetch_started.elapsed().as_secs_f64());
            }
            delay = RETRY_FIRST;
            let Some(permit) = reserved.split(1) else {
                break; // More than asked for: cannot happen; JetStream redelivers it.
            };
            // The reservation is handed back and taken again at once by `dispatch`.
            drop(permit);
            deliverer.clone().dispatch(delivered, &room).await;
        }
    }
}

/// A pinned consumer's loop: a continuous pull (JetStream decides which replica gets the
/// partition), each event taking room as it arrives.
async fn pull_pinned(
    bound: &BoundConsumer,
    group: &str,
    deliverer: Arc<Deliverer>,
    room: Arc<Semaphore>,
    shutdown: &Shutdown,
) {
    let concurrency = room.available_permits().max(1);
    let mut delay = RETRY_FIRST;
    loop {
        let mut messages = match bound.pinned(group, concurrency).await {
            Ok(messages) => Box::pin(messages),
            Err(e) => {
                warn!(error = %e, retry_in = ?delay, "cannot pull events");
                tokio::select! {
                    () = shutdown.triggered() => return,
                    () = tokio::time::sleep(delay) => {},
                }
                delay = (delay * 2).min(RETRY_MAX);
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                () = shutdown.triggered() => {
                    release_rest(&mut messages).await;
                    return;
                }
                next = messages.next() => next,
            };
            let delivered = match next {
                None => break,
                Some(Ok(delivered)) => delivered,
                Some(Err(e)) => {
                    // Heartbeats missed or the connection went: pull again.
                    warn!(error = %e, "pulling events failed");
                    break;
                }
            };
            delay = RETRY_FIRST;
            deliverer.clone().dispatch(delivered, &room).await;
        }
    }
}

/// Naks, without delay, the events of a fetch that arrive after shutdown began, for at most a
/// moment: another dispatcher gets them at once instead of after the ackWait.
async fn release_rest(
    batch: &mut (
             impl futures::Stream<Item = Result<crate::broker::delivery::Delivered, BrokerError>> + Unpin
         ),
) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(Some(Ok(delivered))) = tokio::time::timeout_at(deadline, batch.next()).await {
        let _ = delivered.nak(Duration::ZERO).await;
    }
}

fn follow_connection(broker: &Broker, state: &Arc<State>, shutdown: &Shutdown) {
    let mut connection = broker.connection_state();
    let (state, stop) = (state.clone(), shutdown.triggered());
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            let connected = *connection.borrow_and_update();
            state.connected.store(connected, Ordering::Relaxed);
            tokio::select! {
                () = &mut stop => return,
                changed = connection.changed() => if changed.is_err() { return },
            }
        }
    });
}

fn probe_handler(handler: &Handler, state: &Arc<State>, shutdown: &Shutdown) {
    let (handler, state, stop) = (handler.clone(), state.clone(), shutdown.triggered());
    tokio::spawn(async move {
        tokio::pin!(stop);
        let mut ticks = tokio::time::interval(HANDLER_PROBE_INTERVAL);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticks.tick() => {
                    let reachable = handler.reachable().await;
                    state.handler_reachable.store(reachable, Ordering::Relaxed);
                }
            }
        }
    });
}
