//! Placeholder until leader election lands: always leading.

use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
#[error("this instance does not hold the leader Lease")]
pub struct NotLeader;

#[derive(Clone, Debug)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
}

impl Leadership {
    pub fn always() -> Self {
        let (sender, leading) = watch::channel(true);
        std::mem::forget(sender);
        Self { leading }
    }
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }
    pub fn ensure(&self) -> Result<(), NotLeader> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(NotLeader)
        }
    }
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }
}

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
}

pub fn spawn(
    _client: kube::Client,
    _config: LeaseConfig,
    _shutdown: super::shutdown::Shutdown,
) -> Result<Leadership, NotLeader> {
    Ok(Leadership::always())
}
