//! `switchyard dispatch`: the worker pods' sidecar. It pulls events from a Subscription's
//! durable consumer and delivers each to the handler next to it as a CloudEvents 1.0 HTTP
//! request ([`cloudevents`], [`handler`]), then tells JetStream what became of it
//! ([`outcome`]): acknowledged, redelivered later with the Subscription's backoff, or
//! terminated with a reason, or held back for the dead-letter relay ([`refusal`]). With a
//! schema bound, events whose data fails it are refused before the handler sees them
//! ([`validation`]).
//!
//! Flow control: at most `concurrency` events are in flight; the dispatcher asks JetStream for
//! exactly as many as it has room for, so no event waits in a local buffer (where its ackWait
//! would run out unseen). A handler that takes long keeps its event alive with in-progress
//! acknowledgements, up to the timeout. With per-key order the room asked for is places in the
//! key lines ([`key_order`]), and the events waiting there are kept alive.
//!
//! Shutdown (SIGTERM): stop asking for events, let the events in flight finish (or time out and
//! be redelivered), and exit; an event is acknowledged once at most, and an event that was
//! handed out but not handled is handed back (with per-key order, each key's in order, once
//! the events in hand are done). Broker and handler outages are waited out, not fatal.

pub mod cloudevents;
mod deliver;
pub mod first_delivery;
pub mod handler;
pub mod key_order;
pub mod metrics;
pub mod outcome;
pub mod refusal;
pub mod validation;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{StreamExt, stream::BoxStream};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use self::{
    cloudevents::TopicLayout,
    deliver::{Deliverer, KeyLines},
    handler::Handler,
    key_order::{Handover, KeepAlive},
    metrics::DispatchMetrics,
    outcome::Redelivery,
    refusal::Refusals,
    validation::SchemaState,
};
use crate::{
    broker::{
        Broker, BrokerError, BrokerOptions,
        delivery::{BoundConsumer, Delivered},
    },
    runtime::{http, shutdown::Shutdown},
};

/// How long one request for events stays open when fewer arrive.
const FETCH_EXPIRES: Duration = Duration::from_secs(5);
/// The longest a pinned client's request stays open, or it waits for room before asking
/// anyway (see [`PinnedTiming`]).
const PINNED_FETCH_EXPIRES: Duration = Duration::from_secs(3);
/// How often, at most, a client that does not hold a consumer's pin looks whether it is free.
const STANDBY_LOOK: Duration = Duration::from_secs(1);
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
    /// The Topic keeps no copy of an event its consumers are done with (WorkQueue or Interest
    /// retention): refused events are held for the dead-letter relay instead of terminated
    /// (see [`refusal`]).
    pub hold_rejections: bool,
    /// The schema registry key whose record every event's data must satisfy (see
    /// [`validation`]); `None`: events are not validated.
    pub schema_key: Option<String>,
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
    schema: Arc<SchemaState>,
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
        let mut text: String = lines
            .iter()
            .map(|(what, ok)| format!("{what}: {}\n", if *ok { "yes" } else { "no" }))
            .collect();
        let mut ready = lines.iter().all(|(_, ok)| *ok);
        if let Some((in_force, line)) = self.schema.get() {
            text.push_str(&format!("schema {line}\n"));
            ready &= in_force;
        }
        (ready, text)
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
    if config
        .schema_key
        .as_deref()
        .is_some_and(|key| !validation::is_bound_key(key))
    {
        return Err(DispatchError::Arguments(
            "--schema-key must be <namespace>.<eventType>.latest or <namespace>.<eventType>.v<version>",
        ));
    }
    let type_tokens = match (config.per_key, config.layout.partition_type_tokens) {
        (false, _) => None,
        (true, Some(type_tokens)) => Some(type_tokens),
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
    let schema = config.schema_key.clone().map(|key| {
        let (first, in_force) = tokio::sync::oneshot::channel();
        tokio::spawn(validation::follow(
            broker.clone(),
            key,
            state.schema.clone(),
            state.metrics.schema_version.clone(),
            first,
            shutdown.clone(),
        ));
        in_force
    });

    let mut bound = Vec::with_capacity(config.consumers.len());
    for consumer in &config.consumers {
        let Some(one) = bind(&broker, &config.stream, consumer, &shutdown).await else {
            return finish(http).await;
        };
        bound.push(one);
    }
    state.bound.store(true, Ordering::Relaxed);
    // Nothing is delivered unvalidated: with a schema bound, the first record must be in force.
    let schema = match schema {
        None => None,
        Some(in_force) => {
            info!(key = config.schema_key, "waiting for the bound schema");
            tokio::select! {
                () = shutdown.triggered() => return finish(http).await,
                first = in_force => match first {
                    Ok(enforced) => Some(enforced),
                    Err(_) => return finish(http).await,
                },
            }
        }
    };
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
        hold_rejections = config.hold_rejections,
        schema_key = config.schema_key,
        "dispatching"
    );
    let lookahead = (config.concurrency * LOOKAHEAD_PER_SLOT).max(MIN_LOOKAHEAD);
    let key_order = type_tokens.map(|type_tokens| KeyLines {
        order: Default::default(),
        subject_prefix: config.layout.subject_prefix.clone(),
        type_tokens,
        lookahead: Arc::new(Semaphore::new(lookahead)),
        keep_alive: KeepAlive::within(redelivery.shortest_wait()),
    });
    let deliverer = Arc::new(Deliverer {
        handler,
        layout: config.layout.clone(),
        redelivery,
        max_deliveries,
        timeout,
        state: state.clone(),
        room: Arc::new(Semaphore::new(config.concurrency)),
        key_order,
        shutdown: shutdown.clone(),
        in_flight: Default::default(),
        refusals: if config.hold_rejections {
            Refusals::Hold(Box::new(broker.clone()))
        } else {
            Refusals::Terminate
        },
        first_deliveries: Default::default(),
        schema,
    });
    let keeping_alive = deliverer.key_order.is_some().then(|| {
        let deliverer = deliverer.clone();
        tokio::spawn(async move { deliverer.keep_lines_alive().await })
    });
    pull_all(&bound, deliverer.clone(), &shutdown).await;
    if let Some(task) = keeping_alive {
        task.abort();
    }
    deliverer.release_lines().await;
    for consumer in &bound {
        if let Some(group) = consumer.pinned_group()
            && let Err(e) = consumer.unpin(group).await
        {
            warn!(error = %e, "could not give up the pin; the next replica waits for it to expire");
        }
    }
    broker.flush().await;
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
async fn pull_all(bound: &[BoundConsumer], deliverer: Arc<Deliverer>, shutdown: &Shutdown) {
    // One request asks for an even share at most: a quiet consumer's open request must not
    // hold the room the busy ones need.
    let capacity = deliverer.capacity().available_permits();
    let most = capacity.div_ceil(bound.len()).max(1);
    futures::future::join_all(
        bound
            .iter()
            .map(|consumer| pull(consumer, deliverer.clone(), most, shutdown)),
    )
    .await;
    // Every delivery task holds a read guard: the write lock waits for them all.
    let _ = deliverer.in_flight.write().await;
}

/// One consumer's fetch loop. Room is reserved before asking (as much as is free, up to
/// `most`), and each event takes its share of the reservation, so no event ever waits for
/// room unseen.
async fn pull(bound: &BoundConsumer, deliverer: Arc<Deliverer>, most: usize, shutdown: &Shutdown) {
    let capacity = deliverer.capacity().clone();
    let pinned = bound.pinned_group();
    let timing = PinnedTiming::new(bound.pin_ttl(), deliverer.redelivery.shortest_wait());
    let mut delay = RETRY_FIRST;
    let handover = Arc::new(Handover::default());
    // When this client last found the pin free (a look is an API request: not before every
    // fetch), or `None` to look before the next.
    let mut found_free: Option<Instant> = None;
    'fetching: loop {
        if bound.holds_pin() {
            found_free = None;
        } else if let Some(group) = pinned
            && found_free.is_none_or(|at| at.elapsed() >= timing.standby_look)
        {
            match bound.pinned_elsewhere(group).await {
                Ok(false) => found_free = Some(Instant::now()),
                Ok(true) => {
                    // Standing by, without a request open (see `fetch_pinned` for why).
                    tokio::select! {
                        () = shutdown.triggered() => break,
                        () = tokio::time::sleep(timing.standby_look) => continue,
                    }
                }
                Err(e) => {
                    warn!(error = %e, retry_in = ?delay, "cannot read who holds the consumer's pin");
                    tokio::select! {
                        () = shutdown.triggered() => break,
                        () = tokio::time::sleep(delay) => {},
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                    continue;
                }
            }
        }
        // A pinned client that stops asking loses its pin, and its keys go to another replica
        // while it still holds some of their events: when no room frees up in time, it asks
        // for one event beyond it.
        let room = async {
            match pinned {
                Some(_) => tokio::time::timeout(timing.keep_pin, capacity.clone().acquire_owned())
                    .await
                    .ok(),
                None => Some(capacity.clone().acquire_owned().await),
            }
        };
        let (mut reserved, wanted) = if handover.under_way() {
            // None of the events handed over starts, so none frees a place, before all are in
            // line: ask regardless of room (they are as many as their last holder had).
            let free = capacity.available_permits().min(most) as u32;
            (capacity.clone().try_acquire_many_owned(free).ok(), most)
        } else {
            let mut reserved = tokio::select! {
                () = shutdown.triggered() => break,
                permit = room => permit.map(|p| p.expect("never closed")),
            };
            if let Some(reserved) = &mut reserved {
                let more = capacity.available_permits().min(most - 1);
                if let Ok(more) = capacity.clone().try_acquire_many_owned(more as u32) {
                    reserved.merge(more);
                }
            }
            let wanted = reserved.as_ref().map_or(1, |r| r.num_permits());
            (reserved, wanted)
        };
        let fetch_started = Instant::now();
        // Not cut short by shutdown: a request sent must be seen through (see below).
        let batch = match pinned {
            Some(group) => bound
                .fetch_pinned(group, wanted, timing.expires)
                .await
                .map(StreamExt::boxed),
            None => bound
                .fetch(wanted, FETCH_EXPIRES)
                .await
                .map(StreamExt::boxed),
        };
        let mut batch = match batch {
            Ok(batch) => batch,
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
        let mut received = 0;
        loop {
            let next = tokio::select! {
                () = shutdown.triggered() => {
                    // Events already on their way to us are not handled. A pinned request is
                    // read to its end (it expires soon): an event JetStream sent after it was
                    // dropped would come back only after its ack deadline, when the next
                    // replica (this one gives its pin up) may have gone past it.
                    let patience = match pinned {
                        Some(_) => timing.expires + Duration::from_secs(1),
                        None => Duration::from_millis(200),
                    };
                    set_aside_rest(&mut batch, &deliverer, patience).await;
                    break 'fetching;
                }
                next = batch.next() => next,
            };
            let delivered = match next {
                None => {
                    if received < wanted {
                        // JetStream had no more to give: no redelivery is left queued.
                        handover.end();
                    }
                    break;
                }
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
            received += 1;
            let info = delivered.info().ok();
            let first_delivery = info.is_some_and(|info| info.delivered == 1);
            let share = reserved.as_mut().and_then(|r| r.split(1));
            deliverer
                .clone()
                .dispatch(delivered, info, share, &handover)
                .await;
            if first_delivery {
                // JetStream hands out what it has queued for redelivery first.
                handover.end();
            }
        }
    }
}

/// The timing of a pinned consumer's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PinnedTiming {
    /// How long a request stays open: short, because a request that comes back short is how
    /// the end of a handover is seen ([`Handover`]) and shutdown waits for the request to
    /// end; within a quarter of the shortest ack deadline and of the pin's time to live.
    expires: Duration,
    /// How long the pinned client waits for room before asking anyway, to keep its pin.
    keep_pin: Duration,
    /// How often a standby looks whether the pin is free.
    standby_look: Duration,
}

impl PinnedTiming {
    fn new(ttl: Duration, shortest_wait: Duration) -> Self {
        let ttl = if ttl.is_zero() {
            PINNED_FETCH_EXPIRES * 4
        } else {
            ttl
        };
        Self {
            expires: (shortest_wait / 4)
                .min(ttl / 4)
                .clamp(Duration::from_millis(10), PINNED_FETCH_EXPIRES),
            keep_pin: (ttl / 4).min(PINNED_FETCH_EXPIRES),
            standby_look: (ttl / 8).clamp(Duration::from_millis(100), STANDBY_LOOK),
        }
    }
}

/// Sets aside the events of a fetch that arrive after shutdown began, for at most `patience`
/// (see [`Deliverer::set_aside`]).
async fn set_aside_rest(
    batch: &mut BoxStream<'static, Result<Delivered, BrokerError>>,
    deliverer: &Deliverer,
    patience: Duration,
) {
    let deadline = tokio::time::Instant::now() + patience;
    while let Ok(Some(Ok(delivered))) = tokio::time::timeout_at(deadline, batch.next()).await {
        deliverer.set_aside(delivered).await;
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
