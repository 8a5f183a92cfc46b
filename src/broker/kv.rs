//! Key-value buckets with compare-and-set writes, for state that must not be lost to a race (the
//! schema registry). Hides the client library's bucket API and its error kinds.
//!
//! A refused write is `BrokerError::Rejected` with [`codes::WRONG_LAST_SEQUENCE`], the code the
//! server itself answers with: for [`Kv::create`] the key exists, for [`Kv::update`] the key's
//! latest revision is not the expected one. Both mean "read again, then decide".

use async_nats::jetstream::kv::{self, Operation, Store};
use futures::TryStreamExt;

use super::{Broker, BrokerError, Bytes, codes};

/// A key-value bucket.
#[derive(Clone)]
pub struct Kv {
    store: Store,
    broker: Broker,
}

impl std::fmt::Debug for Kv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kv")
            .field("bucket", &self.store.name)
            .finish()
    }
}

/// The current value of a key and its revision (the stream sequence that wrote it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub value: Bytes,
    pub revision: u64,
}

impl Broker {
    /// The bucket `config.bucket`, created if absent. Asking again with the same configuration
    /// is harmless; a bucket that exists with another configuration is refused with
    /// [`codes::STREAM_NAME_EXISTS`].
    pub async fn kv_bucket(&self, config: kv::Config) -> Result<Kv, BrokerError> {
        use async_nats::jetstream::context::CreateKeyValueErrorKind as Kind;
        self.ensure_connected()?;
        let bucket = config.bucket.clone();
        let store = self
            .jetstream
            .create_key_value(config)
            .await
            .map_err(|e| match e.kind() {
                Kind::InvalidStoreName => {
                    BrokerError::Config(format!("invalid key-value bucket name {bucket:?}"))
                }
                Kind::TimedOut => BrokerError::from_client(&e, true),
                _ => BrokerError::from_client(&e, false),
            })?;
        Ok(Kv {
            store,
            broker: self.clone(),
        })
    }

    /// The bucket `bucket` if it exists, `None` if not. Never creates it, so read-only tools
    /// (`switchyard validate`) leave no bucket behind and need no permission to create one.
    pub async fn existing_kv(&self, bucket: &str) -> Result<Option<Kv>, BrokerError> {
        if self.stream_info(&format!("KV_{bucket}")).await?.is_none() {
            return Ok(None);
        }
        let store = self
            .jetstream
            .get_key_value(bucket)
            .await
            .map_err(|e| BrokerError::from_client(&e, false))?;
        Ok(Some(Kv {
            store,
            broker: self.clone(),
        }))
    }
}

impl Kv {
    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.store.name
    }

    /// The key's current value, or `None` if it was never written or was deleted.
    pub async fn get(&self, key: &str) -> Result<Option<Entry>, BrokerError> {
        use async_nats::jetstream::kv::EntryErrorKind as Kind;
        self.broker.ensure_connected()?;
        let entry = self.store.entry(key).await.map_err(|e| match e.kind() {
            Kind::InvalidKey => invalid_key(key),
            Kind::TimedOut => BrokerError::from_client(&e, true),
            Kind::Other => BrokerError::from_client(&e, false),
        })?;
        Ok(entry
            .filter(|e| e.operation == Operation::Put)
            .map(|e| Entry {
                value: e.value,
                revision: e.revision,
            }))
    }

    /// Writes a key that has no value yet (never written, or deleted); returns its revision.
    pub async fn create(&self, key: &str, value: Bytes) -> Result<u64, BrokerError> {
        let refused = match self.update(key, value.clone(), 0).await {
            Err(e) if e.code() == Some(codes::WRONG_LAST_SEQUENCE) => e,
            other => return other,
        };
        // A deleted key keeps a tombstone as its latest revision: writing over it is a create.
        match self.store.entry(key).await {
            Ok(Some(tombstone)) if tombstone.operation != Operation::Put => {
                self.update(key, value, tombstone.revision).await
            }
            _ => Err(refused),
        }
    }

    /// Writes a key whose latest revision is `expected_revision` (compare-and-set); returns the
    /// new revision.
    pub async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_revision: u64,
    ) -> Result<u64, BrokerError> {
        use async_nats::jetstream::kv::UpdateErrorKind as Kind;
        self.broker.ensure_connected()?;
        self.store
            .update(key, value, expected_revision)
            .await
            .map_err(|e| match e.kind() {
                Kind::InvalidKey => invalid_key(key),
                Kind::TimedOut => BrokerError::from_client(&e, true),
                Kind::WrongLastRevision | Kind::Other => BrokerError::from_client(&e, false),
            })
    }

    /// The key's value now (if it has one) and every later value, as they are written; `None`
    /// for a deletion. The stream ends when the connection to the bucket is lost for good;
    /// reconnections in between are the client library's.
    pub async fn watch(
        &self,
        key: &str,
    ) -> Result<impl futures::Stream<Item = Result<Option<Entry>, BrokerError>> + use<>, BrokerError>
    {
        use futures::StreamExt;
        self.broker.ensure_connected()?;
        let watch = self
            .store
            .watch_with_history(key)
            .await
            .map_err(|e| BrokerError::from_client(&e, false))?;
        Ok(watch.map(|entry| {
            let entry = entry.map_err(|e| BrokerError::from_client(&e, true))?;
            Ok((entry.operation == Operation::Put).then_some(Entry {
                value: entry.value,
                revision: entry.revision,
            }))
        }))
    }

    /// How many revisions of the key the bucket holds (at most its history setting), deletions
    /// included.
    pub async fn history_len(&self, key: &str) -> Result<usize, BrokerError> {
        self.broker.ensure_connected()?;
        let history = self
            .store
            .history(key)
            .await
            .map_err(|e| BrokerError::from_client(&e, false))?;
        history
            .try_fold(0, |n, _| async move { Ok(n + 1) })
            .await
            .map_err(|e| BrokerError::from_client(&e, false))
    }

    /// The keys that currently have a value.
    pub async fn keys(&self) -> Result<Vec<String>, BrokerError> {
        self.broker.ensure_connected()?;
        let keys = self
            .store
            .keys()
            .await
            .map_err(|e| BrokerError::from_client(&e, false))?;
        keys.try_collect()
            .await
            .map_err(|e| BrokerError::from_client(&e, false))
    }
}

fn invalid_key(key: &str) -> BrokerError {
    BrokerError::Config(format!(
        "invalid key {key:?}: use letters, digits and -/_=."
    ))
}
