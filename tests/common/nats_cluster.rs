//! A JetStream cluster owned by one test: nodes on free loopback ports with stores of their own,
//! routed to each other under one cluster name, any of which the test can kill (SIGKILL, as a
//! crash would) and start again with its store. Dropping it kills every node and removes the
//! stores, also when the test fails, so no stream outlives the test.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::free_port;

/// One nats-server of the cluster.
struct Node {
    name: String,
    port: u16,
    cluster_port: u16,
    monitor_port: u16,
    store: PathBuf,
    child: Option<Child>,
}

pub struct NatsCluster {
    name: String,
    nodes: Vec<Node>,
}

impl NatsCluster {
    /// Starts `size` nodes and waits until JetStream is healthy on each.
    pub async fn start(size: usize) -> Self {
        let name = format!("test-{}-{}", std::process::id(), free_port());
        let nodes = (1..=size)
            .map(|i| {
                let port = free_port();
                Node {
                    name: format!("{name}-{i}"),
                    port,
                    cluster_port: free_port(),
                    monitor_port: free_port(),
                    store: std::env::temp_dir().join(format!("switchyard-{name}-{i}")),
                    child: None,
                }
            })
            .collect();
        let mut cluster = Self { name, nodes };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_healthy(i).await;
        }
        cluster
    }

    /// The cluster name, as stream infos report it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every node's client URL, comma-separated, as `NATS_URL` lists a cluster.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The server names, in node order.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The index of the node with this server name.
    pub fn index_of(&self, server_name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == server_name)
            .unwrap_or_else(|| panic!("no node is named {server_name}"))
    }

    /// Kills node `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again with its store and waits until it is healthy.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_healthy(i).await;
    }

    fn spawn(&mut self, i: usize) {
        let routes = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "{} is already running", node.name);
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &node.port.to_string()])
            .args(["-m", &node.monitor_port.to_string()])
            .args(["--server_name", &node.name, "--cluster_name", &self.name])
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.cluster_port),
                "--routes",
                &routes,
            ])
            .args(["-js", "-sd"])
            .arg(&node.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server on PATH (make test puts it there)");
        node.child = Some(child);
    }

    /// Waits until node `i` says JetStream is healthy: it is part of the cluster's meta group
    /// and its streams are current.
    async fn wait_healthy(&self, i: usize) {
        let node = &self.nodes[i];
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], node.monitor_port));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((200, _)) = super::http_get(addr, "/healthz").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not become healthy within 60 s",
                node.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
            let _ = std::fs::remove_dir_all(&self.nodes[i].store);
        }
    }
}
