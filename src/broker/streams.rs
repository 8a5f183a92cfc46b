//! Streams: read, create, update, delete, and find the streams whose subjects overlap a subject.
//! Hides the `STREAM.*` API subjects and payloads.

use async_nats::jetstream::stream::{Config as StreamConfig, Info as StreamInfo};
use serde::Deserialize;

use super::{Broker, BrokerError, Empty, Success, codes};

#[derive(Deserialize)]
struct StreamNames {
    #[serde(default)]
    streams: Option<Vec<String>>,
    #[serde(default)]
    total: usize,
}

impl Broker {
    /// The stream's configuration and state, or `None` if it does not exist.
    pub async fn stream_info(&self, name: &str) -> Result<Option<StreamInfo>, BrokerError> {
        match self.request(format!("STREAM.INFO.{name}"), &()).await {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.code() == Some(codes::STREAM_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a stream; fails if one with that name exists with another configuration.
    pub async fn create_stream(&self, config: &StreamConfig) -> Result<StreamInfo, BrokerError> {
        self.request(format!("STREAM.CREATE.{}", config.name), config)
            .await
    }

    /// Replaces the configuration of an existing stream.
    pub async fn update_stream(&self, config: &StreamConfig) -> Result<StreamInfo, BrokerError> {
        self.request(format!("STREAM.UPDATE.{}", config.name), config)
            .await
    }

    /// Deletes a stream and its messages; `false` if it did not exist.
    pub async fn delete_stream(&self, name: &str) -> Result<bool, BrokerError> {
        match self
            .request::<_, Success>(format!("STREAM.DELETE.{name}"), &Empty {})
            .await
        {
            Ok(answer) => Ok(answer.success),
            Err(e) if e.code() == Some(codes::STREAM_NOT_FOUND) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Names of every stream of the account.
    pub async fn stream_names(&self) -> Result<Vec<String>, BrokerError> {
        self.names("STREAM.NAMES".into(), None, |page: StreamNames| {
            (page.streams, page.total)
        })
        .await
    }

    /// Names of the streams whose subjects overlap `subject`.
    pub async fn streams_overlapping(&self, subject: &str) -> Result<Vec<String>, BrokerError> {
        self.names("STREAM.NAMES".into(), Some(subject), |page: StreamNames| {
            (page.streams, page.total)
        })
        .await
    }
}
