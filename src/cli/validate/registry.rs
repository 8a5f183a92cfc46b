//! The schema registry, read only. [`Registry::open`] creates the bucket when it is missing; a
//! validation must leave the broker as it found it (and may run with credentials that can only
//! read), so this opens the bucket only if it exists.

use std::time::Duration;

use crate::{
    broker::{Broker, BrokerError, BrokerOptions},
    registry::{Holding, Registry},
};

/// How long the first connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The registry's bucket, or its absence (nothing registered anywhere yet).
pub struct RegistryReader {
    registry: Option<Registry>,
}

impl RegistryReader {
    /// Connects and opens the bucket without creating it.
    pub async fn connect(options: &BrokerOptions) -> Result<Self, String> {
        let broker = Broker::connect(options).await.map_err(|e| e.to_string())?;
        let mut connected = broker.connection_state();
        if !matches!(
            tokio::time::timeout(CONNECT_TIMEOUT, connected.wait_for(|up| *up)).await,
            Ok(Ok(_))
        ) {
            return Err(format!("cannot reach NATS within {CONNECT_TIMEOUT:?}"));
        }
        let registry = Registry::open_existing(&broker)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { registry })
    }

    /// Whether the bucket exists.
    pub fn has_bucket(&self) -> bool {
        self.registry.is_some()
    }

    /// What is registered for `event_type` in `namespace`; earlier versions' records only
    /// `with_earlier`.
    pub async fn holding(
        &self,
        namespace: &str,
        event_type: &str,
        with_earlier: bool,
    ) -> Result<Holding, BrokerError> {
        match &self.registry {
            Some(registry) => registry.holding(namespace, event_type, with_earlier).await,
            None => Ok(Holding::default()),
        }
    }
}
