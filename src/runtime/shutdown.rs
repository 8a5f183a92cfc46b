//! One shutdown signal for everything the operator runs: controllers, the HTTP server, the
//! leader elector. Cloneable; any clone can trigger it and every clone sees it.

use std::future::Future;

use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            sender: watch::channel(false).0,
        }
    }
}

impl Shutdown {
    /// Starts the shutdown; calling it again does nothing.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }

    /// Resolves once the shutdown has been triggered (at once if it already was).
    pub fn triggered(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut receiver = self.sender.subscribe();
        async move {
            // The sender lives in `self`'s clones; if all are gone nobody can trigger any more,
            // which ends the wait as a shutdown too.
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }
    }

    /// Triggers the shutdown when `signal` resolves.
    pub fn trigger_on(&self, signal: impl Future<Output = ()> + Send + 'static) {
        let this = self.clone();
        tokio::spawn(async move {
            signal.await;
            this.trigger();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger_even_when_waiting_started_later() {
        let shutdown = Shutdown::default();
        let early = shutdown.triggered();
        assert!(!shutdown.is_triggered());
        shutdown.clone().trigger();
        early.await;
        shutdown.triggered().await;
        assert!(shutdown.is_triggered());
    }
}
