//! The registry's broker side: reading what is registered for an event type, registering a
//! version by compare-and-set, and following one key for the dispatchers.
//!
//! Registering writes two keys. The `latest` pointer moves first, by compare-and-set on its
//! revision: that is the commit, and of two writers racing for it one fails and decides again.
//! The version's own key is written after it, create-only, from the committed record; a writer
//! that finds the latest version's key missing (its registrar stopped in between) writes it
//! before moving the pointer on. So a version key always holds what was committed, and no
//! version is lost or written twice with different content.

use async_nats::jetstream::{kv, stream::StorageType};
use futures::{Stream, StreamExt};

use super::{
    decide::{Candidate, Holding, versions_after},
    keys::{latest_key, version_key},
    record::{Latest, SchemaRecord},
};
use crate::{
    broker::{Broker, BrokerError, Bytes, Kv, codes},
    naming::SCHEMA_BUCKET,
};

/// The schema registry in its key-value bucket.
#[derive(Clone, Debug)]
pub struct Registry {
    kv: Kv,
}

/// The outcome of a registration attempt.
#[derive(Clone, Debug)]
pub enum Registration {
    /// The candidate is the latest now; this is the new pointer and its revision.
    Committed(Box<Latest>, u64),
    /// Someone moved the pointer since it was read: read again and decide again.
    Raced,
}

impl Registry {
    /// The registry's bucket, created on first use. Values are small and written rarely; a few
    /// revisions per key are kept for forensics (the design needs none).
    pub async fn open(broker: &Broker) -> Result<Registry, BrokerError> {
        let kv = broker
            .kv_bucket(kv::Config {
                bucket: SCHEMA_BUCKET.into(),
                description: "Switchyard schema registry: every registered EventSchema version"
                    .into(),
                history: 5,
                storage: StorageType::File,
                ..Default::default()
            })
            .await?;
        Ok(Registry { kv })
    }

    /// The registry if its bucket exists, without creating it: for readers that must leave the
    /// broker as they found it (and may hold credentials that can only read).
    pub async fn open_existing(broker: &Broker) -> Result<Option<Registry>, BrokerError> {
        Ok(broker
            .existing_kv(SCHEMA_BUCKET)
            .await?
            .map(|kv| Registry { kv }))
    }

    /// What is registered for `event_type` in `namespace`; earlier versions' records only
    /// `with_earlier` (transitive checks need them, nothing else does).
    pub async fn holding(
        &self,
        namespace: &str,
        event_type: &str,
        with_earlier: bool,
    ) -> Result<Holding, BrokerError> {
        let Some(entry) = self.kv.get(&latest_key(namespace, event_type)).await? else {
            return Ok(Holding::default());
        };
        let latest: Latest = decode(&latest_key(namespace, event_type), &entry.value)?;
        let mut earlier = Vec::new();
        if with_earlier {
            for &version in latest
                .versions
                .iter()
                .filter(|v| **v < latest.record.version)
            {
                match self.version(namespace, event_type, version).await? {
                    Some(record) => earlier.push(record),
                    None => {
                        return Err(BrokerError::Protocol(format!(
                            "the schema registry lists {event_type} v{version} in {namespace} but holds no record of it"
                        )));
                    }
                }
            }
        }
        Ok(Holding {
            latest: Some((latest, entry.revision)),
            earlier,
        })
    }

    /// The record of one registered version.
    pub async fn version(
        &self,
        namespace: &str,
        event_type: &str,
        version: i64,
    ) -> Result<Option<SchemaRecord>, BrokerError> {
        let key = version_key(namespace, event_type, version);
        match self.kv.get(&key).await? {
            Some(entry) => decode(&key, &entry.value).map(Some),
            None => Ok(None),
        }
    }

    /// Registers `candidate` over `holding` (what [`Self::holding`] read and
    /// [`super::decide`] judged registrable).
    pub async fn register(
        &self,
        candidate: &Candidate,
        holding: &Holding,
    ) -> Result<Registration, BrokerError> {
        let (namespace, event_type) = (&candidate.namespace, &candidate.event_type);
        if let Some((latest, _)) = &holding.latest {
            self.store_version(namespace, event_type, &latest.record)
                .await?;
        }
        let latest = Latest {
            record: candidate.record.clone(),
            versions: versions_after(holding, candidate),
        };
        let value = encode(&latest);
        let key = latest_key(namespace, event_type);
        let written = match &holding.latest {
            None => self.kv.create(&key, value).await,
            Some((_, revision)) => self.kv.update(&key, value, *revision).await,
        };
        let revision = match written {
            Ok(revision) => revision,
            Err(e) if e.code() == Some(codes::WRONG_LAST_SEQUENCE) => {
                return Ok(Registration::Raced);
            }
            Err(e) => return Err(e),
        };
        self.store_version(namespace, event_type, &latest.record)
            .await?;
        Ok(Registration::Committed(Box::new(latest), revision))
    }

    /// Writes a committed version's own key unless it is there. It is only ever written from
    /// a committed record, so one that is there holds the same content.
    async fn store_version(
        &self,
        namespace: &str,
        event_type: &str,
        record: &SchemaRecord,
    ) -> Result<(), BrokerError> {
        let key = version_key(namespace, event_type, record.version);
        match self.kv.create(&key, encode(record)).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(codes::WRONG_LAST_SEQUENCE) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The record under `key` now and after every change: the latest version of an event type
    /// (its `latest` key) or one pinned version (its version key). `None` while the key holds
    /// nothing. A value that is not a record ends nothing: it is reported and the next one read.
    pub async fn follow(
        &self,
        key: &str,
    ) -> Result<impl Stream<Item = Result<Option<SchemaRecord>, BrokerError>> + use<>, BrokerError>
    {
        let owned = key.to_owned();
        Ok(self.kv.watch(key).await?.map(move |entry| {
            entry.and_then(|entry| match entry {
                Some(entry) => decode(&owned, &entry.value).map(Some),
                None => Ok(None),
            })
        }))
    }

    /// The bucket's handle, for tests and tools that look underneath.
    pub fn kv(&self) -> &Kv {
        &self.kv
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Bytes {
    // Records are plain data: serializing them cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, BrokerError> {
    serde_json::from_slice(value).map_err(|e| {
        BrokerError::Protocol(format!(
            "schema registry key {key} holds no readable record: {e}"
        ))
    })
}
