//! Two (then three) operator processes with leader election against the same cluster: only the
//! leader writes, a standby takes over when the leader dies, and a leader that was frozen past
//! its Lease writes nothing when it wakes up. Real processes, real kube-apiserver, real NATS.

mod common;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use kube::Api;
use switchyard::api::Topic;

/// An operator process, killed when dropped (continued first if it was stopped).
struct OperatorProcess {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl OperatorProcess {
    fn start(name: &'static str, namespace: &str) -> Self {
        let addr = free_addr();
        let log = std::env::temp_dir().join(format!("switchyard-{namespace}-{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["run", "--namespace", namespace, "--nats-url", &nats_url()])
            // The account-wide advisory stream is not this test's to create.
            .args(["--dead-letter-relay", "false"])
            .args(["--leader-election", "on", "--lease-namespace", namespace])
            .args(["--lease-name", "switchyard-test"])
            .args(["--lease-duration", "4s", "--lease-renew-deadline", "3s"])
            .args(["--lease-retry-period", "500ms", "--resync-interval", "2s"])
            .args(["--http-addr", &addr.to_string(), "--instance", name])
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("start the switchyard binary");
        Self {
            name,
            child,
            addr,
            log,
        }
    }

    async fn metrics(&self) -> String {
        let (_, text) = wait_until(&format!("metrics of {}", self.name), || {
            http_get(self.addr, "/metrics")
        })
        .await;
        text
    }

    /// Kubernetes writes this process made (status, finalizers, Events).
    async fn writes(&self) -> f64 {
        metric(&self.metrics().await, "switchyard_kube_writes_total", &[])
    }

    async fn leads(&self) -> bool {
        metric(&self.metrics().await, "switchyard_leader", &[]) == 1.0
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {}", self.name);
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        self.kill();
        if std::thread::panicking() {
            eprintln!("log of operator {}: {}", self.name, self.log.display());
        }
    }
}

/// Waits until exactly one of `processes` reports leading; returns its index.
async fn single_leader(processes: &[&OperatorProcess]) -> usize {
    wait_until("exactly one leader", || async {
        let mut leaders = Vec::new();
        for (i, p) in processes.iter().enumerate() {
            if p.leads().await {
                leaders.push(i);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_writes_and_a_standby_takes_over_when_it_dies_or_freezes() {
    let client = kube_client().await;
    install_crds(&client).await;
    let ns = TestNamespace::new(&client, "election").await;
    let topics: Api<Topic> = Api::namespaced(client.clone(), &ns.name);
    let ready = |name: &'static str| {
        let topics = topics.clone();
        async move { wait_for_ready(&topics, name, "True", "StreamReady").await }
    };

    let mut pair = [
        Some(OperatorProcess::start("a", &ns.name)),
        Some(OperatorProcess::start("b", &ns.name)),
    ];
    let leader = single_leader(&[pair[0].as_ref().unwrap(), pair[1].as_ref().unwrap()]).await;
    for name in ["one", "two", "three"] {
        apply_topic(&topics, &topic_yaml(&ns.name, name, "  maxAge: 1h\n"))
            .await
            .unwrap();
    }
    for name in ["one", "two", "three"] {
        ready(name).await;
    }
    let mut leading = pair[leader].take().unwrap();
    let mut survivor = pair[1 - leader].take().unwrap();
    assert!(
        leading.writes().await >= 3.0,
        "the leader wrote the statuses"
    );
    assert_eq!(survivor.writes().await, 0.0, "the standby wrote nothing");

    // kill -9 the leader: the standby reconciles a new Topic within 15 s.
    leading.kill();
    let killed_at = Instant::now();
    apply_topic(&topics, &topic_yaml(&ns.name, "four", "  maxAge: 1h\n"))
        .await
        .unwrap();
    ready("four").await;
    let takeover = killed_at.elapsed();
    eprintln!(
        "{} took over {takeover:?} after the leader was killed",
        survivor.name
    );
    assert!(
        takeover < Duration::from_secs(15),
        "{} took {takeover:?} to take over",
        survivor.name
    );
    assert!(survivor.leads().await);
    assert!(survivor.writes().await > 0.0);

    // A third process stands by; the leader freezes (SIGSTOP) past its Lease.
    let standby = OperatorProcess::start("c", &ns.name);
    wait_until("the new process to stand by", || async {
        (!standby.leads().await).then_some(())
    })
    .await;
    let frozen_writes = survivor.writes().await;
    survivor.signal("-STOP");
    wait_until("the standby to lead", || async {
        standby.leads().await.then_some(())
    })
    .await;
    apply_topic(&topics, &topic_yaml(&ns.name, "five", "  maxAge: 1h\n"))
        .await
        .unwrap();
    ready("five").await;

    // Woken up, the old leader writes nothing and stays a follower, while the new one works.
    survivor.signal("-CONT");
    tokio::time::sleep(Duration::from_secs(3)).await;
    apply_topic(&topics, &topic_yaml(&ns.name, "six", "  maxAge: 1h\n"))
        .await
        .unwrap();
    ready("six").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        survivor.writes().await,
        frozen_writes,
        "the frozen leader wrote after its Lease lapsed"
    );
    assert!(
        !survivor.leads().await,
        "the old leader came back as follower"
    );
    assert!(standby.leads().await);
    survivor.kill();
}
