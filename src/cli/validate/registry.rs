//! The schema registry, read only. [`crate::registry::Registry::open`] creates the bucket when it
//! is missing; a validation must leave the broker as it found it (and may run with credentials
//! that can only read), so this opens the bucket only if it exists and reads the same keys
//! [`crate::registry::Registry::holding`] reads.

use std::time::Duration;

use crate::{
    broker::{Broker, BrokerError, BrokerOptions, Kv},
    naming::SCHEMA_BUCKET,
    registry::{Holding, Latest, SchemaRecord, keys},
};

/// How long the first connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The registry's bucket, or its absence (nothing registered anywhere yet).
pub struct RegistryReader {
    kv: Option<Kv>,
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
        let kv = broker
            .existing_kv(SCHEMA_BUCKET)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { kv })
    }

    /// Whether the bucket exists.
    pub fn has_bucket(&self) -> bool {
        self.kv.is_some()
    }

    /// What is registered for `event_type` in `namespace`; earlier versions' records only
    /// `with_earlier`.
    pub async fn holding(
        &self,
        namespace: &str,
        event_type: &str,
        with_earlier: bool,
    ) -> Result<Holding, BrokerError> {
        let Some(kv) = &self.kv else {
            return Ok(Holding::default());
        };
        let key = keys::latest_key(namespace, event_type);
        let Some(entry) = kv.get(&key).await? else {
            return Ok(Holding::default());
        };
        let latest: Latest = decode(&key, &entry.value)?;
        let mut earlier = Vec::new();
        if with_earlier {
            for &version in latest
                .versions
                .iter()
                .filter(|v| **v < latest.record.version)
            {
                let key = keys::version_key(namespace, event_type, version);
                let Some(entry) = kv.get(&key).await? else {
                    return Err(BrokerError::Protocol(format!(
                        "the schema registry lists {event_type} v{version} in {namespace} but holds no record of it"
                    )));
                };
                earlier.push(decode::<SchemaRecord>(&key, &entry.value)?);
            }
        }
        Ok(Holding {
            latest: Some((latest, entry.revision)),
            earlier,
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, BrokerError> {
    serde_json::from_slice(value).map_err(|e| {
        BrokerError::Protocol(format!(
            "schema registry key {key} holds no readable record: {e}"
        ))
    })
}
