//! Leader election against the real API server: one leader at a time, takeover after a crash,
//! quick handover on graceful shutdown, and a frozen leader that stops before it can be replaced.

mod common;

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use common::{PATIENCE, kube_client, wait_until};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client, api::DeleteParams};
use switchyard::runtime::lease::{self, Leadership, LeaseConfig};
use tokio::{sync::oneshot, task::JoinHandle};

const NAMESPACE: &str = "default";
const DURATION: Duration = Duration::from_secs(3);
const DEADLINE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(500);
/// Room for two busy cores running the tests in parallel.
const SLACK: Duration = Duration::from_secs(4);

/// A Lease name used by one test only, deleted when the test ends, passed or failed.
struct LeaseGuard {
    name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl LeaseGuard {
    fn new(test: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Self {
            name: format!("switchyard-test-{test}-{}-{n}", std::process::id()),
        }
    }

    fn config(&self, identity: &str) -> LeaseConfig {
        let mut config = LeaseConfig::new(&self.name, NAMESPACE, identity);
        config.lease_duration = DURATION;
        config.renew_deadline = DEADLINE;
        config.retry_period = RETRY;
        config
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A runtime and client of its own: after a panic the test's runtime may be going away.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = Client::try_default().await.ok()?;
                let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
                api.delete(&name, &DeleteParams::default()).await.ok()
            })
        })
        .join();
    }
}

/// An elector in the test's runtime; dropping it aborts its task so it cannot recreate the Lease.
struct Candidate {
    leadership: Leadership,
    task: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

impl Candidate {
    fn start(client: &Client, config: LeaseConfig) -> Self {
        switchyard::telemetry::init(switchyard::telemetry::LogFormat::Pretty);
        let (stop, stopped) = oneshot::channel();
        let (leadership, task) = lease::spawn(client.clone(), config, async {
            let _ = stopped.await;
        })
        .expect("valid config");
        Self {
            leadership,
            task,
            stop: Some(stop),
        }
    }

    /// Graceful shutdown: the elector releases the Lease and its task ends.
    async fn shut_down(&mut self) {
        let _ = self.stop.take().expect("not stopped yet").send(());
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("elector stops after shutdown")
            .expect("elector task ends without panic");
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn wait_leading(who: &Leadership) {
    tokio::time::timeout(PATIENCE, who.leading())
        .await
        .unwrap_or_else(|_| panic!("{} did not become leader", who.identity()));
}

async fn holder_in_api(client: &Client, name: &str) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    api.get(name).await.ok()?.spec?.holder_identity
}

/// Starts `b` once `a` leads, as a standby that has seen `a` hold the Lease.
async fn standby_for(client: &Client, guard: &LeaseGuard, a: &Leadership) -> Candidate {
    wait_leading(a).await;
    let b = Candidate::start(client, guard.config("b"));
    wait_until("b sees a as holder", || async {
        (b.leadership.holder().as_deref() == Some("a")).then_some(())
    })
    .await;
    assert!(!b.leadership.is_leader(), "b leads while a holds the Lease");
    b
}

#[tokio::test]
async fn exactly_one_of_two_candidates_leads() {
    let client = kube_client().await;
    let guard = LeaseGuard::new("one");
    let a = Candidate::start(&client, guard.config("a"));
    let b = Candidate::start(&client, guard.config("b"));
    tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            () = a.leadership.leading() => {}
            () = b.leadership.leading() => {}
        }
    })
    .await
    .expect("one candidate leads");

    // Several renewals long: never both, always one.
    let end = Instant::now() + DURATION * 2;
    while Instant::now() < end {
        let (la, lb) = (a.leadership.is_leader(), b.leadership.is_leader());
        assert!(la != lb, "a leads: {la}, b leads: {lb}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let leader = if a.leadership.is_leader() { "a" } else { "b" };
    let api: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let spec = api
        .get(&guard.name)
        .await
        .expect("Lease exists")
        .spec
        .unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(leader));
    assert_eq!(spec.lease_duration_seconds, Some(3));
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
    for c in [&a, &b] {
        assert_eq!(c.leadership.holder().as_deref(), Some(leader));
    }
    let follower = if leader == "a" { &b } else { &a };
    let e = follower.leadership.ensure().unwrap_err();
    assert!(e.to_string().contains(&format!("holder: {leader}")), "{e}");
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_after_its_lease_expires() {
    let client = kube_client().await;
    let guard = LeaseGuard::new("crash");
    let crashed = Candidate::start(&client, guard.config("a"));
    let a = crashed.leadership.clone();
    let b = standby_for(&client, &guard, &a).await;

    // Like kill -9: no release, no further renewals.
    assert!(a.is_leader());
    crashed.task.abort();
    let killed_at = Instant::now();
    tokio::time::timeout(DEADLINE + SLACK, a.lost())
        .await
        .expect("a stops leading by its deadline");
    assert!(!a.is_leader());

    wait_leading(&b.leadership).await;
    let took = killed_at.elapsed();
    assert!(
        took <= DURATION + RETRY + SLACK,
        "takeover took {took:?}, more than lease duration + retry period (+ slack)"
    );
    // a led when killed, so its last renewal was sent less than the renew deadline before;
    // b can only judge the Lease expired a lease duration after that renewal.
    assert!(
        took >= DURATION - DEADLINE,
        "takeover after {took:?}: before a's lease could have expired"
    );
    assert_eq!(
        holder_in_api(&client, &guard.name).await.as_deref(),
        Some("b")
    );
    assert!(!a.is_leader());
}

#[tokio::test]
async fn graceful_shutdown_hands_over_at_once() {
    let client = kube_client().await;
    let guard = LeaseGuard::new("handover");
    // A long lease: a handover much faster than it can only come from the release.
    let long = |identity: &str| {
        let mut config = guard.config(identity);
        config.lease_duration = Duration::from_secs(20);
        config.renew_deadline = Duration::from_secs(14);
        config
    };
    let mut a = Candidate::start(&client, long("a"));
    wait_leading(&a.leadership).await;
    let b = Candidate::start(&client, long("b"));
    wait_until("b sees a as holder", || async {
        (b.leadership.holder().as_deref() == Some("a")).then_some(())
    })
    .await;
    assert!(!b.leadership.is_leader());

    let stopping = Instant::now();
    a.shut_down().await;
    assert!(!a.leadership.is_leader());
    assert!(!*a.leadership.watch().borrow());
    wait_leading(&b.leadership).await;
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "handover took {took:?}; the 20 s Lease was not released"
    );
    let api: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let spec = api.get(&guard.name).await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert!(spec.lease_transitions >= Some(1));
}

/// What the frozen elector's thread hands back to the test.
struct Frozen {
    leadership: Leadership,
    runtime: tokio::runtime::Handle,
    stop: oneshot::Sender<()>,
}

#[tokio::test]
async fn a_frozen_leader_stops_before_the_standby_can_take_over() {
    let client = kube_client().await;
    let guard = LeaseGuard::new("frozen");

    // The leader gets a single-threaded runtime of its own: blocking that thread stops every task
    // of the elector at once, as SIGSTOP would, while the test keeps running.
    let (handed, receive) = std::sync::mpsc::channel();
    let config = guard.config("a");
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = Client::try_default().await.expect("kube client");
            let (stop, stopped) = oneshot::channel::<()>();
            let (leadership, task) = lease::spawn(client, config, async {
                let _ = stopped.await;
            })
            .expect("valid config");
            let runtime = tokio::runtime::Handle::current();
            handed
                .send(Frozen {
                    leadership,
                    runtime,
                    stop,
                })
                .unwrap();
            let _ = task.await;
        });
    });
    let frozen = receive.recv().expect("leader thread started");
    let a = frozen.leadership.clone();
    let b = standby_for(&client, &guard, &a).await;

    let freeze = DURATION + RETRY + SLACK * 2;
    let (froze, frozen_at) = oneshot::channel();
    frozen.runtime.spawn(async move {
        // Taken on the frozen thread itself: no renewal of a can have been sent after this.
        let _ = froze.send(Instant::now());
        std::thread::sleep(freeze);
    });
    let frozen_at = frozen_at.await.expect("freeze started");
    let deadline = frozen_at + DEADLINE;

    // The handle answers from the clock alone; its elector cannot run.
    let lost = tokio::spawn({
        let a = a.clone();
        async move {
            a.lost().await;
            Instant::now()
        }
    });
    let mut last_a_leading = None;
    let b_leading = loop {
        let before = Instant::now();
        if a.is_leader() {
            assert!(
                before < deadline,
                "a still leads {:?} after its deadline",
                before - deadline
            );
            last_a_leading = Some(before);
        }
        if b.leadership.is_leader() {
            break before;
        }
        assert!(
            before < frozen_at + freeze,
            "b did not take over while a was frozen"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        last_a_leading.is_none_or(|t| t < b_leading),
        "a and b led at the same time"
    );
    assert!(!a.is_leader());
    let lost_at = tokio::time::timeout(SLACK, lost)
        .await
        .expect("a's lost() resolves while its elector is frozen")
        .unwrap();
    assert!(
        lost_at < deadline + SLACK,
        "lost() resolved {:?} after the deadline",
        lost_at - deadline
    );

    // Thawed, a sees b's Lease and stays a follower.
    wait_until("a sees b as holder after the freeze", || async {
        (a.holder().as_deref() == Some("b")).then_some(())
    })
    .await;
    assert!(!a.is_leader());
    assert!(!*a.watch().borrow());
    assert!(b.leadership.is_leader());

    let _ = frozen.stop.send(());
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .unwrap()
        .expect("leader thread ends without panic");
}
