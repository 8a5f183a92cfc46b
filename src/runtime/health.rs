//! What `/readyz` reports: whether this instance leads, whether each controller's watch has
//! synced, and whether NATS is connected.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

#[derive(Debug, Default)]
pub struct Health {
    leading: AtomicBool,
    broker_connected: AtomicBool,
    /// Per watch (a kind, and its namespace when several are watched): whether it has listed
    /// everything once since this instance started leading.
    synced: Mutex<BTreeMap<String, bool>>,
}

impl Health {
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Relaxed);
        if !leading {
            self.synced
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values_mut()
                .for_each(|synced| *synced = false);
        }
    }

    pub fn set_broker_connected(&self, connected: bool) {
        self.broker_connected.store(connected, Ordering::Relaxed);
    }

    pub fn set_synced(&self, watch: impl Into<String>, synced: bool) {
        self.synced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(watch.into(), synced);
    }

    /// Ready, and a text saying why (or why not). A standby is ready: it is healthy and can take
    /// over. A leader is ready once every watch has synced. NATS being away does not make the
    /// operator unready (restarting it would not bring NATS back); it is reported, and every
    /// object says so in its status.
    pub fn readiness(&self) -> (bool, String) {
        let leading = self.leading.load(Ordering::Relaxed);
        let synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        let _ = writeln!(
            text,
            "leader: {}",
            if leading { "yes" } else { "no (standby)" }
        );
        let mut ready = true;
        for (kind, done) in synced.iter() {
            let _ = writeln!(
                text,
                "watch {kind}: {}",
                if *done { "synced" } else { "syncing" }
            );
            ready &= *done || !leading;
        }
        let broker = if self.broker_connected.load(Ordering::Relaxed) {
            "connected"
        } else {
            "disconnected"
        };
        let _ = writeln!(text, "nats: {broker}");
        (ready, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_is_ready_once_every_watch_synced_and_a_standby_always() {
        let health = Health::default();
        health.set_synced("Topic", false);
        assert!(health.readiness().0, "standby");
        health.set_leading(true);
        let (ready, text) = health.readiness();
        assert!(!ready, "{text}");
        assert!(text.contains("watch Topic: syncing"), "{text}");
        health.set_synced("Topic", true);
        assert!(health.readiness().0);
        health.set_leading(false);
        health.set_leading(true);
        assert!(!health.readiness().0, "a new term syncs again");
    }

    #[test]
    fn nats_state_is_reported_without_failing_readiness() {
        let health = Health::default();
        let (ready, text) = health.readiness();
        assert!(ready);
        assert!(text.contains("nats: disconnected"), "{text}");
        health.set_broker_connected(true);
        assert!(health.readiness().1.contains("nats: connected"));
    }
}
