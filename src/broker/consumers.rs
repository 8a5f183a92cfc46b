//! Durable consumers of a stream: read, create (never silently replacing another configuration),
//! update, delete, list. Hides the `CONSUMER.*` API subjects, payloads and create actions.

use async_nats::jetstream::consumer::{Config, Info, IntoConsumerConfig};
use serde::{Deserialize, Serialize};

use super::{Broker, BrokerError, Empty, Success, codes};

/// What `CONSUMER.CREATE` may do: the server refuses a create when the consumer exists with
/// another configuration, and an update when it does not exist.
#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Create,
    Update,
}

#[derive(Serialize)]
struct CreateRequest<'a> {
    stream_name: &'a str,
    config: &'a Config,
    action: Action,
}

#[derive(Deserialize)]
struct ConsumerNames {
    #[serde(default)]
    consumers: Option<Vec<String>>,
    #[serde(default)]
    total: usize,
}

impl Broker {
    /// The consumer's configuration and state, or `None` if the stream has no such consumer.
    pub async fn consumer_info(
        &self,
        stream: &str,
        name: &str,
    ) -> Result<Option<Info>, BrokerError> {
        match self
            .request(format!("CONSUMER.INFO.{stream}.{name}"), &Empty {})
            .await
        {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.code() == Some(codes::CONSUMER_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a durable consumer. Creating it again with the same configuration succeeds; with
    /// another one it fails with [`codes::CONSUMER_ALREADY_EXISTS`].
    pub async fn create_consumer(
        &self,
        stream: &str,
        config: impl IntoConsumerConfig,
    ) -> Result<Info, BrokerError> {
        self.write_consumer(stream, config.into_consumer_config(), Action::Create)
            .await
    }

    /// Changes an existing consumer; fails with [`codes::CONSUMER_DOES_NOT_EXIST`] if it is
    /// missing, and with [`codes::CONSUMER_CREATE_FAILED`] for a change JetStream refuses.
    pub async fn update_consumer(
        &self,
        stream: &str,
        config: impl IntoConsumerConfig,
    ) -> Result<Info, BrokerError> {
        self.write_consumer(stream, config.into_consumer_config(), Action::Update)
            .await
    }

    async fn write_consumer(
        &self,
        stream: &str,
        config: Config,
        action: Action,
    ) -> Result<Info, BrokerError> {
        let name = config
            .durable_name
            .as_deref()
            .or(config.name.as_deref())
            .ok_or_else(|| BrokerError::Config("a durable consumer needs a name".into()))?;
        self.request(
            format!("CONSUMER.CREATE.{stream}.{name}"),
            &CreateRequest {
                stream_name: stream,
                config: &config,
                action,
            },
        )
        .await
    }

    /// Deletes a consumer; `false` if the stream had no such consumer.
    pub async fn delete_consumer(&self, stream: &str, name: &str) -> Result<bool, BrokerError> {
        match self
            .request::<_, Success>(format!("CONSUMER.DELETE.{stream}.{name}"), &Empty {})
            .await
        {
            Ok(answer) => Ok(answer.success),
            Err(e) if e.code() == Some(codes::CONSUMER_NOT_FOUND) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Names of all consumers of a stream.
    pub async fn consumer_names(&self, stream: &str) -> Result<Vec<String>, BrokerError> {
        self.names(
            format!("CONSUMER.NAMES.{stream}"),
            None,
            |page: ConsumerNames| (page.consumers, page.total),
        )
        .await
    }
}
