//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator replicas only
//! one writes at a time.
//!
//! The algorithm follows client-go's `leaderelection`: candidates read the Lease every retry
//! period; the holder renews it, everyone else waits until it has gone unrenewed for its lease
//! duration, then takes it over. Every write replaces the object at the `resourceVersion` read, so
//! when two candidates race the API server lets exactly one win (the other gets 409 Conflict).
//!
//! Why no two replicas ever write at once, without trusting anyone's wall clock:
//!
//! - The leader may write only until its deadline: the instant it sent its last successful
//!   renewal plus `renew_deadline`. [`Leadership::is_leader`] compares against the clock on every
//!   call, so a leader whose renewals fail, hang, or that was frozen (SIGSTOP, a stalled runtime)
//!   is refused as soon as the deadline has passed, before any network round trip.
//! - A candidate judges a foreign Lease expired only after `leaseDurationSeconds` (the holder's own
//!   promise) have passed on the candidate's own clock since it last saw the record change. It saw
//!   that change after the holder sent it, so the takeover comes at least
//!   `lease_duration - renew_deadline` after the old leader stopped. Wall-clock skew between
//!   nodes plays no part; the times written into the record are for people (`kubectl get lease`).
//!
//! Instants are [`std::time::Instant`], which on Linux is `CLOCK_MONOTONIC`: wall-clock changes do
//! not move it, and it keeps counting while the process is stopped, so a process continued after
//! SIGSTOP sees at once that its deadline has passed. It stands still while the machine itself is
//! suspended (unlike `CLOCK_BOOTTIME`), so the guarantee assumes nodes are not suspended.
//!
//! A write already on the wire when the deadline passes may still land; callers check
//! [`Leadership::ensure`] right before each write, as with any lease-based election.

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::{sync::watch, task::JoinHandle};
use tracing::{debug, info, warn};

/// Where and as whom to run for leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Name of the Lease object.
    pub name: String,
    pub namespace: String,
    /// This replica's name in `holderIdentity`; unique among the replicas (the pod name).
    pub identity: String,
    /// How long a Lease nobody renews stays taken; written as `leaseDurationSeconds`, so whole
    /// seconds. A dead leader is replaced after at most `lease_duration + retry_period`.
    pub lease_duration: Duration,
    /// How long after sending its last successful renewal the leader may still write.
    pub renew_deadline: Duration,
    /// How often the leader renews and candidates look at the Lease.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The defaults of client-go, minus 5 s: a dead leader is replaced within 12 s.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(10),
            renew_deadline: Duration::from_secs(7),
            retry_period: Duration::from_secs(2),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("Lease name", &self.name),
            ("Lease namespace", &self.namespace),
            ("identity", &self.identity),
        ] {
            if value.is_empty() {
                return Err(ConfigError::Empty(field));
            }
        }
        if self.lease_duration_seconds().is_none() {
            return Err(ConfigError::LeaseDuration(self.lease_duration));
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(ConfigError::RenewDeadline {
                renew_deadline: self.renew_deadline,
                lease_duration: self.lease_duration,
            });
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(ConfigError::RetryPeriod {
                retry_period: self.retry_period,
                renew_deadline: self.renew_deadline,
            });
        }
        Ok(())
    }

    /// `lease_duration` as `leaseDurationSeconds`, if it is a positive whole number of seconds.
    fn lease_duration_seconds(&self) -> Option<i32> {
        let d = self.lease_duration;
        (d.subsec_nanos() == 0)
            .then(|| i32::try_from(d.as_secs()).ok())
            .flatten()
            .filter(|s| *s > 0)
    }

    fn lease_label(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A [`LeaseConfig`] that cannot give the safety the election promises.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("leader election: {0} must not be empty")]
    Empty(&'static str),
    #[error(
        "leader election: lease duration must be a whole number of seconds, at least 1 s (got {0:?})"
    )]
    LeaseDuration(Duration),
    #[error(
        "leader election: renew deadline ({renew_deadline:?}) must be shorter than the lease duration ({lease_duration:?}), or a stalled leader could still write after a standby took over"
    )]
    RenewDeadline {
        renew_deadline: Duration,
        lease_duration: Duration,
    },
    #[error(
        "leader election: retry period ({retry_period:?}) must be non-zero and shorter than the renew deadline ({renew_deadline:?}), or the leader could not renew in time"
    )]
    RetryPeriod {
        retry_period: Duration,
        renew_deadline: Duration,
    },
}

/// Returned by [`Leadership::ensure`] when this replica must not write.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{identity} is not the leader of Lease {lease} (holder: {})",
    .holder.as_deref().unwrap_or("none")
)]
pub struct NotLeader {
    pub identity: String,
    pub lease: String,
    /// The holder this replica last saw.
    pub holder: Option<String>,
}

/// What the leadership handles and the elector task share.
struct Shared {
    identity: String,
    lease: String,
    /// Election disabled: always leading.
    always: bool,
    state: Mutex<State>,
    /// Kept here, not in the elector, so receivers never see the channel closed.
    tx: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// Until when this replica may write; `None` when it does not hold the Lease.
    valid_until: Option<Instant>,
    holder: Option<String>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // The lock is never held across code that can panic, so poisoning carries no meaning.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn valid_until(&self) -> Option<Instant> {
        self.state().valid_until
    }
}

/// A cloneable view of whether this replica may write.
#[derive(Clone)]
pub struct Leadership {
    shared: Arc<Shared>,
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("identity", &self.shared.identity)
            .field("lease", &self.shared.lease)
            .field("leading", &self.is_leader())
            .finish()
    }
}

impl Leadership {
    /// For a single replica with election disabled: always leading.
    pub fn always(identity: impl Into<String>) -> Self {
        let identity = identity.into();
        let (tx, _) = watch::channel(true);
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    valid_until: None,
                    holder: Some(identity.clone()),
                }),
                identity,
                lease: "<election disabled>".into(),
                always: true,
                tx,
            }),
        }
    }

    fn elected(config: &LeaseConfig) -> Self {
        let (tx, _) = watch::channel(false);
        Self {
            shared: Arc::new(Shared {
                identity: config.identity.clone(),
                lease: config.lease_label(),
                always: false,
                state: Mutex::default(),
                tx,
            }),
        }
    }

    pub fn identity(&self) -> &str {
        &self.shared.identity
    }

    /// The holder of the Lease as last seen, `None` if free or not read yet.
    pub fn holder(&self) -> Option<String> {
        self.shared.state().holder.clone()
    }

    /// Whether this replica may write now. Reads the clock on every call, so it turns false at
    /// the renew deadline even if the elector task is stuck.
    pub fn is_leader(&self) -> bool {
        self.shared.always
            || self
                .shared
                .valid_until()
                .is_some_and(|until| Instant::now() < until)
    }

    /// `Ok` while this replica may write; call it right before each write.
    pub fn ensure(&self) -> Result<(), NotLeader> {
        if self.is_leader() {
            return Ok(());
        }
        Err(NotLeader {
            identity: self.shared.identity.clone(),
            lease: self.shared.lease.clone(),
            holder: self.holder(),
        })
    }

    /// Changes of the leading state, for reacting to them; [`Self::is_leader`] is authoritative,
    /// as the elector publishes the flip at the deadline only once its task gets to run.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.shared.tx.subscribe()
    }

    /// Resolves once this replica leads; never if the election has stopped.
    pub async fn leading(&self) {
        let mut rx = self.watch();
        while !self.is_leader() {
            // The sender lives in `shared`, which `self` keeps alive: `changed` cannot fail.
            let _ = rx.changed().await;
        }
    }

    /// Resolves once this replica does not lead, at the latest at its renew deadline (by a local
    /// timer, whatever the elector task is doing); never with election disabled.
    pub async fn lost(&self) {
        if self.shared.always {
            return std::future::pending().await;
        }
        let mut rx = self.watch();
        while let Some(until) = self.shared.valid_until() {
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                _ = rx.changed() => {}
                () = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }
}

/// Starts the election in a task; it runs until `shutdown` resolves, then releases the Lease if
/// it holds it so a successor need not wait for it to expire.
pub fn spawn(
    client: Client,
    config: LeaseConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(Leadership, JoinHandle<()>), ConfigError> {
    config.validate()?;
    let leadership = Leadership::elected(&config);
    let elector = Elector {
        api: Api::namespaced(client, &config.namespace),
        config,
        shared: leadership.shared.clone(),
        observed: None,
    };
    Ok((leadership, tokio::spawn(elector.run(shutdown))))
}

/// The parts of the Lease record the decision needs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    /// `None` when free (absent or empty `holderIdentity`).
    holder: Option<String>,
    /// `leaseDurationSeconds`, if set and positive.
    lease_duration: Option<Duration>,
    /// When, on our clock, the record last changed.
    changed_at: Instant,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Decision {
    /// There is no Lease: create it, holding it.
    Create,
    /// The Lease is free: take it.
    Acquire,
    /// Another holder let it expire: take it over.
    TakeOver { from: String },
    /// We hold it: renew.
    Renew,
    /// Another holder's Lease is still valid.
    Wait { holder: String, expires_at: Instant },
}

/// The pure core of the election. `fallback_duration` is our own lease duration, used when the
/// record does not say how long its holder promised to keep it.
fn decide(
    seen: Option<&Seen>,
    identity: &str,
    fallback_duration: Duration,
    now: Instant,
) -> Decision {
    let Some(seen) = seen else {
        return Decision::Create;
    };
    match seen.holder.as_deref() {
        None => Decision::Acquire,
        Some(holder) if holder == identity => Decision::Renew,
        Some(holder) => {
            let expires_at = seen.changed_at + seen.lease_duration.unwrap_or(fallback_duration);
            if now >= expires_at {
                Decision::TakeOver {
                    from: holder.to_string(),
                }
            } else {
                Decision::Wait {
                    holder: holder.to_string(),
                    expires_at,
                }
            }
        }
    }
}

/// What tells one version of the record from the next.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    resource_version: Option<String>,
    holder: Option<String>,
    renew_time: Option<Timestamp>,
}

/// The Lease as last read or written, and since when it has looked like this.
#[derive(Clone, Debug)]
struct Observed {
    lease: Lease,
    fingerprint: Fingerprint,
    seen: Seen,
}

impl Observed {
    /// `now` must be taken after the response arrived: the record was written before that.
    fn new(lease: Lease, previous: Option<&Observed>, now: Instant) -> Self {
        let spec = lease.spec.as_ref();
        let holder = spec
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty());
        let fingerprint = Fingerprint {
            resource_version: lease.metadata.resource_version.clone(),
            holder: holder.clone(),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
        };
        let changed_at = match previous {
            Some(p) if p.fingerprint == fingerprint => p.seen.changed_at,
            _ => now,
        };
        let lease_duration = spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map(Duration::from_secs);
        Self {
            lease,
            fingerprint,
            seen: Seen {
                holder,
                lease_duration,
                changed_at,
            },
        }
    }
}

/// The record that makes `config.identity` the holder, built on the one read (`None` to create).
fn claim(existing: Option<&Lease>, config: &LeaseConfig, now: Timestamp) -> Lease {
    let mut lease = existing.cloned().unwrap_or_else(|| Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            ..ObjectMeta::default()
        },
        spec: None,
    });
    let old = lease.spec.take().unwrap_or_default();
    let renewal = old.holder_identity.as_deref() == Some(config.identity.as_str());
    let transitions = old.lease_transitions.unwrap_or(0);
    lease.spec = Some(LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: config.lease_duration_seconds(),
        acquire_time: if renewal {
            old.acquire_time.clone()
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if renewal || existing.is_none() {
            transitions
        } else {
            transitions.saturating_add(1)
        }),
        ..old
    });
    lease
}

/// The record that gives the Lease up: no holder, so candidates take it at once.
fn release_record(existing: &Lease, now: Timestamp) -> Lease {
    let mut lease = existing.clone();
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = None;
    spec.renew_time = Some(MicroTime(now));
    lease
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    shared: Arc<Shared>,
    observed: Option<Observed>,
}

impl Elector {
    async fn run(mut self, shutdown: impl Future<Output = ()>) {
        info!(
            identity = %self.config.identity,
            lease = %self.config.lease_label(),
            "starting leader election"
        );
        tokio::select! {
            () = shutdown => {}
            never = self.campaign() => match never {},
        }
        self.release().await;
    }

    /// One round every retry period. Every round and wait is cut short at the renew deadline while
    /// leading, so watchers hear of the loss on time even if the API server does not answer.
    async fn campaign(&mut self) -> Infallible {
        loop {
            let next_round = tokio::time::Instant::now() + self.config.retry_period;
            let valid_until = self.shared.valid_until();
            // A candidate gives up on an unanswered request too, and reads afresh.
            let limit = valid_until.map_or(
                tokio::time::Instant::now() + self.config.renew_deadline,
                tokio::time::Instant::from_std,
            );
            if tokio::time::timeout_at(limit, self.round()).await.is_err() {
                warn!(
                    identity = %self.config.identity,
                    leading = valid_until.is_some(),
                    "no answer from the API server before the renew deadline (or this process was stalled)"
                );
                self.expire();
            }
            if let Some(until) = self.shared.valid_until() {
                let until = tokio::time::Instant::from_std(until);
                if until < next_round {
                    tokio::time::sleep_until(until).await;
                    self.expire();
                }
            }
            tokio::time::sleep_until(next_round).await;
        }
    }

    /// Reads the Lease and acts on it.
    async fn round(&mut self) {
        let leading = self.shared.valid_until().is_some();
        let read = self.api.get_opt(&self.config.name).await;
        let now = Instant::now();
        self.expire();
        let lease = match read {
            Ok(lease) => lease,
            Err(e) => {
                warn!(identity = %self.config.identity, leading, error = %e, "cannot read the Lease");
                return;
            }
        };
        self.observe(lease, now);
        let decision = decide(
            self.observed.as_ref().map(|o| &o.seen),
            &self.config.identity,
            self.config.lease_duration,
            now,
        );
        match decision {
            Decision::Wait { holder, expires_at } => {
                debug!(
                    identity = %self.config.identity,
                    %holder,
                    expires_in = ?expires_at.saturating_duration_since(now),
                    "Lease held by another replica"
                );
            }
            Decision::TakeOver { from } => {
                info!(identity = %self.config.identity, holder = %from, "Lease expired, taking it over");
                self.write(leading).await;
            }
            Decision::Create | Decision::Acquire | Decision::Renew => self.write(leading).await,
        }
    }

    /// Creates or replaces the Lease with us as holder, at the `resourceVersion` read.
    async fn write(&mut self, leading: bool) {
        let existing = self.observed.as_ref().map(|o| &o.lease);
        let lease = claim(existing, &self.config, Timestamp::now());
        let sent = Instant::now();
        let result = match existing {
            None => self.api.create(&PostParams::default(), &lease).await,
            Some(_) => {
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(written) => {
                self.observe(Some(written), Instant::now());
                self.lead_until(sent + self.config.renew_deadline);
            }
            // Another replica wrote first; the next read shows who.
            Err(e) if is_conflict(&e) => {
                debug!(identity = %self.config.identity, "another replica updated the Lease first");
            }
            Err(e) if leading => {
                warn!(identity = %self.config.identity, error = %e, "cannot renew the Lease");
            }
            Err(e) => {
                warn!(identity = %self.config.identity, error = %e, "cannot acquire the Lease");
            }
        }
    }

    /// Records the Lease read or written; a different holder ends our leadership.
    fn observe(&mut self, lease: Option<Lease>, now: Instant) {
        let observed = lease.map(|l| Observed::new(l, self.observed.as_ref(), now));
        let holder = observed.as_ref().and_then(|o| o.seen.holder.clone());
        let before = std::mem::replace(&mut self.shared.state().holder, holder.clone());
        if before != holder {
            info!(
                identity = %self.config.identity,
                holder = holder.as_deref().unwrap_or("<none>"),
                previous = before.as_deref().unwrap_or("<none>"),
                "Lease holder changed"
            );
        }
        self.observed = observed;
        if holder.as_deref() != Some(self.config.identity.as_str()) {
            self.stop_leading("another replica holds the Lease or it was freed");
        }
    }

    fn lead_until(&self, until: Instant) {
        if Instant::now() >= until {
            // The answer came after the deadline: the renewal won nothing.
            self.stop_leading("renewal confirmed only after its deadline");
            return;
        }
        self.shared.state().valid_until = Some(until);
        if !self.shared.tx.send_replace(true) {
            info!(
                identity = %self.config.identity,
                lease = %self.config.lease_label(),
                "acquired leadership"
            );
        }
    }

    /// Drops leadership if the renew deadline has passed.
    fn expire(&self) {
        if self
            .shared
            .valid_until()
            .is_some_and(|until| Instant::now() >= until)
        {
            self.stop_leading("renew deadline passed without a successful renewal");
        }
    }

    fn stop_leading(&self, reason: &str) {
        self.shared.state().valid_until = None;
        if self.shared.tx.send_replace(false) {
            info!(
                identity = %self.config.identity,
                lease = %self.config.lease_label(),
                holder = self.shared.state().holder.as_deref().unwrap_or("<none>"),
                reason,
                "lost leadership"
            );
        }
    }

    /// Gives the Lease up if we hold it, after we have stopped writing.
    async fn release(&mut self) {
        self.stop_leading("shutting down");
        let Some(observed) = self
            .observed
            .take()
            .filter(|o| o.seen.holder.as_deref() == Some(self.config.identity.as_str()))
        else {
            return;
        };
        let lease = release_record(&observed.lease, Timestamp::now());
        let params = PostParams::default();
        let replace = self.api.replace(&self.config.name, &params, &lease);
        match tokio::time::timeout(self.config.renew_deadline, replace).await {
            Ok(Ok(_)) => {
                info!(identity = %self.config.identity, lease = %self.config.lease_label(), "released the Lease");
            }
            Ok(Err(e)) if is_conflict(&e) => {
                debug!(identity = %self.config.identity, "the Lease changed hands before release");
            }
            Ok(Err(e)) => {
                warn!(identity = %self.config.identity, error = %e, "cannot release the Lease; it expires on its own");
            }
            Err(_) => {
                warn!(identity = %self.config.identity, "releasing the Lease timed out; it expires on its own");
            }
        }
    }
}

impl Drop for Elector {
    /// A task that ends or is aborted renews nothing any more: stop writing at once.
    fn drop(&mut self) {
        self.shared.state().valid_until = None;
        self.shared.tx.send_replace(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "me";
    const SECOND: Duration = Duration::from_secs(1);

    fn config() -> LeaseConfig {
        LeaseConfig::new("switchyard-leader", "default", ME)
    }

    fn seen(holder: Option<&str>, duration: Option<u64>, changed_at: Instant) -> Seen {
        Seen {
            holder: holder.map(str::to_string),
            lease_duration: duration.map(Duration::from_secs),
            changed_at,
        }
    }

    fn lease(rv: &str, holder: Option<&str>, renew_second: i64) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("switchyard-leader".into()),
                namespace: Some("default".into()),
                resource_version: Some(rv.into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(10),
                acquire_time: Some(MicroTime(Timestamp::from_second(100).unwrap())),
                renew_time: Some(MicroTime(Timestamp::from_second(renew_second).unwrap())),
                lease_transitions: Some(4),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn defaults_are_valid_and_replace_a_dead_leader_within_15s() {
        let c = config();
        assert_eq!(c.validate(), Ok(()));
        assert!(c.lease_duration + c.retry_period <= Duration::from_secs(15));
    }

    #[test]
    fn validation_names_the_problem() {
        let mut c = config();
        c.identity.clear();
        assert_eq!(c.validate(), Err(ConfigError::Empty("identity")));

        let mut c = config();
        c.renew_deadline = c.lease_duration;
        let e = c.validate().unwrap_err();
        assert!(matches!(e, ConfigError::RenewDeadline { .. }));
        assert!(
            e.to_string()
                .contains("must be shorter than the lease duration")
        );

        let mut c = config();
        c.retry_period = Duration::ZERO;
        assert!(matches!(c.validate(), Err(ConfigError::RetryPeriod { .. })));
        c.retry_period = c.renew_deadline;
        assert!(matches!(c.validate(), Err(ConfigError::RetryPeriod { .. })));

        let mut c = config();
        c.lease_duration = Duration::from_millis(2500);
        assert_eq!(
            c.validate(),
            Err(ConfigError::LeaseDuration(Duration::from_millis(2500)))
        );
        c.lease_duration = Duration::ZERO;
        assert!(matches!(c.validate(), Err(ConfigError::LeaseDuration(_))));
    }

    #[test]
    fn no_lease_is_created_and_a_free_one_acquired() {
        let now = Instant::now();
        assert_eq!(decide(None, ME, 10 * SECOND, now), Decision::Create);
        let free = seen(None, Some(10), now);
        assert_eq!(decide(Some(&free), ME, 10 * SECOND, now), Decision::Acquire);
    }

    #[test]
    fn our_own_lease_is_renewed_even_after_it_expired() {
        let t0 = Instant::now();
        let ours = seen(Some(ME), Some(10), t0);
        assert_eq!(decide(Some(&ours), ME, 10 * SECOND, t0), Decision::Renew);
        assert_eq!(
            decide(Some(&ours), ME, 10 * SECOND, t0 + 60 * SECOND),
            Decision::Renew
        );
    }

    #[test]
    fn a_foreign_lease_expires_lease_duration_after_its_last_observed_change() {
        let t0 = Instant::now();
        let theirs = seen(Some("other"), Some(10), t0);
        assert_eq!(
            decide(Some(&theirs), ME, 3 * SECOND, t0 + 9 * SECOND),
            Decision::Wait {
                holder: "other".into(),
                expires_at: t0 + 10 * SECOND
            }
        );
        assert_eq!(
            decide(Some(&theirs), ME, 3 * SECOND, t0 + 10 * SECOND),
            Decision::TakeOver {
                from: "other".into()
            }
        );
    }

    #[test]
    fn without_lease_duration_in_the_record_our_own_applies() {
        let t0 = Instant::now();
        let theirs = seen(Some("other"), None, t0);
        assert!(matches!(
            decide(Some(&theirs), ME, 3 * SECOND, t0 + 2 * SECOND),
            Decision::Wait { .. }
        ));
        assert!(matches!(
            decide(Some(&theirs), ME, 3 * SECOND, t0 + 3 * SECOND),
            Decision::TakeOver { .. }
        ));
    }

    #[test]
    fn observation_time_moves_only_when_the_record_changes() {
        let t0 = Instant::now();
        let first = Observed::new(lease("1", Some("other"), 200), None, t0);
        assert_eq!(first.seen.changed_at, t0);

        // Same record read again later: the holder has not renewed, so the clock keeps running
        // from the first sighting; the record's own times (wall clock) do not matter.
        let same = Observed::new(
            lease("1", Some("other"), 200),
            Some(&first),
            t0 + 5 * SECOND,
        );
        assert_eq!(same.seen.changed_at, t0);
        assert_eq!(
            decide(Some(&same.seen), ME, 3 * SECOND, t0 + 10 * SECOND),
            Decision::TakeOver {
                from: "other".into()
            }
        );

        let renewed = Observed::new(lease("2", Some("other"), 202), Some(&same), t0 + 6 * SECOND);
        assert_eq!(renewed.seen.changed_at, t0 + 6 * SECOND);
        assert!(matches!(
            decide(Some(&renewed.seen), ME, 3 * SECOND, t0 + 10 * SECOND),
            Decision::Wait { .. }
        ));
    }

    #[test]
    fn an_empty_holder_is_free() {
        let observed = Observed::new(lease("1", Some(""), 200), None, Instant::now());
        assert_eq!(observed.seen.holder, None);
    }

    #[test]
    fn claiming_records_holder_times_and_transitions() {
        let c = config();
        let now = Timestamp::from_second(300).unwrap();

        let created = claim(None, &c, now);
        assert_eq!(created.metadata.name.as_deref(), Some("switchyard-leader"));
        let spec = created.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.lease_duration_seconds, Some(10));
        assert_eq!(spec.acquire_time, Some(MicroTime(now)));
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
        assert_eq!(spec.lease_transitions, Some(0));

        let taken = claim(Some(&lease("7", Some("other"), 200)), &c, now);
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("7"));
        let spec = taken.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.acquire_time, Some(MicroTime(now)));
        assert_eq!(spec.lease_transitions, Some(5));

        let renewed = claim(Some(&lease("8", Some(ME), 200)), &c, now);
        let spec = renewed.spec.unwrap();
        assert_eq!(
            spec.acquire_time,
            Some(MicroTime(Timestamp::from_second(100).unwrap()))
        );
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    #[test]
    fn release_clears_the_holder_and_keeps_the_version() {
        let now = Timestamp::from_second(300).unwrap();
        let released = release_record(&lease("9", Some(ME), 200), now);
        assert_eq!(released.metadata.resource_version.as_deref(), Some("9"));
        let spec = released.spec.unwrap();
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
        assert_eq!(spec.lease_transitions, Some(4));
    }

    /// An API server that creates the Lease and then never answers again, as when a network
    /// partition cuts the leader off.
    async fn server_that_goes_silent() -> Client {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answered = Arc::new(std::sync::atomic::AtomicU32::new(0));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answered = answered.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some((head, body)) = read_request(&mut stream, &mut buf).await else {
                            return;
                        };
                        let (code, json) =
                            match answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                                0 => (
                                    "404 Not Found",
                                    serde_json::json!({"kind": "Status", "apiVersion": "v1",
                                        "status": "Failure", "reason": "NotFound", "code": 404}),
                                ),
                                1 => {
                                    assert!(head.starts_with("POST "), "{head}");
                                    let mut lease: serde_json::Value =
                                        serde_json::from_slice(&body).unwrap();
                                    lease["metadata"]["resourceVersion"] = "1".into();
                                    ("201 Created", lease)
                                }
                                _ => std::future::pending().await,
                            };
                        let body = json.to_string();
                        let response = format!(
                            "HTTP/1.1 {code}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        stream.write_all(response.as_bytes()).await.unwrap();
                    }
                });
            }
        });

        /// One HTTP/1.1 request as (head, body); `None` when the client hung up.
        async fn read_request(
            stream: &mut tokio::net::TcpStream,
            buf: &mut Vec<u8>,
        ) -> Option<(String, Vec<u8>)> {
            let mut chunk = [0; 4096];
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        let body = buf[end + 4..end + 4 + length].to_vec();
                        buf.drain(..end + 4 + length);
                        return Some((head, body));
                    }
                }
                let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
        }

        let config = kube::Config::new(url.parse().unwrap());
        Client::try_from(config).unwrap()
    }

    #[tokio::test]
    async fn a_leader_whose_renewals_go_unanswered_stops_at_its_deadline() {
        let client = server_that_goes_silent().await;
        let mut c = config();
        c.lease_duration = SECOND;
        c.renew_deadline = Duration::from_millis(600);
        c.retry_period = Duration::from_millis(200);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (l, task) = spawn(client, c, async {
            let _ = stopped.await;
        })
        .unwrap();
        let mut watch = l.watch();
        tokio::time::timeout(5 * SECOND, l.leading())
            .await
            .expect("the Lease is created and held");
        let acquired = Instant::now();
        assert_eq!(l.holder().as_deref(), Some(ME));

        // The renewals hang; the timer alone wakes the watchers, at the deadline.
        tokio::time::timeout(5 * SECOND, watch.wait_for(|leading| !leading))
            .await
            .expect("watchers hear of the loss")
            .unwrap();
        let after = acquired.elapsed();
        assert!(!l.is_leader());
        assert!(
            after < Duration::from_millis(600) + Duration::from_millis(400),
            "loss announced {after:?} after acquiring, deadline 600 ms"
        );
        assert!(!task.is_finished(), "the elector keeps campaigning");

        // The release gets no answer either; shutdown still completes.
        stop.send(()).unwrap();
        tokio::time::timeout(5 * SECOND, task)
            .await
            .expect("the elector stops though the API server is silent")
            .unwrap();
    }

    fn leading_until(until: Instant) -> Leadership {
        let l = Leadership::elected(&config());
        {
            let mut state = l.shared.state();
            state.valid_until = Some(until);
            state.holder = Some(ME.into());
        }
        l.shared.tx.send_replace(true);
        l
    }

    #[test]
    fn leadership_ends_at_the_deadline_without_anyone_telling_it() {
        let l = leading_until(Instant::now() + 60 * SECOND);
        assert!(l.is_leader());
        assert_eq!(l.ensure(), Ok(()));

        let stale = leading_until(Instant::now());
        assert!(!stale.is_leader());
        // The watch still says true: nothing ran to flip it, the clock alone refuses.
        assert!(*stale.watch().borrow());
        let e = stale.ensure().unwrap_err();
        assert_eq!(
            e.to_string(),
            "me is not the leader of Lease default/switchyard-leader (holder: me)"
        );
    }

    #[test]
    fn not_leader_names_a_missing_holder() {
        let e = Leadership::elected(&config()).ensure().unwrap_err();
        assert!(e.to_string().ends_with("(holder: none)"), "{e}");
    }

    #[test]
    fn always_leads() {
        let l = Leadership::always("solo");
        assert!(l.is_leader());
        assert_eq!(l.ensure(), Ok(()));
        assert_eq!(l.identity(), "solo");
        assert_eq!(l.holder().as_deref(), Some("solo"));
        assert!(*l.watch().borrow());
    }

    #[tokio::test]
    async fn lost_resolves_at_the_deadline_by_a_timer() {
        let start = Instant::now();
        let l = leading_until(start + Duration::from_millis(100));
        tokio::time::timeout(5 * SECOND, l.lost())
            .await
            .expect("lost() resolves at the deadline");
        assert!(start.elapsed() >= Duration::from_millis(100));
        assert!(!l.is_leader());
    }

    #[tokio::test]
    async fn leading_resolves_when_leadership_is_announced() {
        let l = Leadership::elected(&config());
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.leading().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        l.shared.state().valid_until = Some(Instant::now() + 60 * SECOND);
        l.shared.tx.send_replace(true);
        tokio::time::timeout(5 * SECOND, waiter)
            .await
            .expect("leading() resolves")
            .unwrap();
        tokio::time::timeout(SECOND, Leadership::always("solo").leading())
            .await
            .expect("always leading");
    }
}
