//! Connection settings (server URLs, one kind of credentials, TLS) and the connection's life:
//! hides the client options and turns the client's connection events into log lines (first
//! failure at once, repeats at most every 30 s with a count, never credentials) and into a watch
//! of the connection state.

use std::{
    fmt,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::{ClientError, ConnectOptions, Event};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{
    BrokerError,
    throttle::{LOG_INTERVAL, Throttle},
};

/// How Switchyard authenticates to NATS. Secrets stay out of `Debug` output.
#[derive(Clone, Default)]
pub enum BrokerAuth {
    #[default]
    None,
    CredsFile(PathBuf),
    NkeySeed(String),
    Token(String),
    UserPassword {
        user: String,
        password: String,
    },
}

impl fmt::Debug for BrokerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::CredsFile(path) => write!(f, "CredsFile({})", path.display()),
            Self::NkeySeed(_) => f.write_str("NkeySeed(<redacted>)"),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::UserPassword { user, .. } => write!(f, "UserPassword({user}, <redacted>)"),
        }
    }
}

/// TLS settings; any of them turns TLS on.
#[derive(Clone, Debug, Default)]
pub struct BrokerTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// Everything needed to reach NATS.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    /// One or more server URLs, comma-separated.
    pub url: String,
    pub auth: BrokerAuth,
    pub tls: BrokerTls,
    /// How long a JetStream API request may take before the broker counts as unavailable.
    pub request_timeout: Duration,
    /// Client name shown in the server's connection list.
    pub name: String,
}

impl BrokerOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            auth: BrokerAuth::None,
            tls: BrokerTls::default(),
            request_timeout: Duration::from_secs(5),
            name: "switchyard".into(),
        }
    }

    /// The client, connecting in the background, and a watch that is `true` while connected.
    pub(super) async fn connect(
        &self,
    ) -> Result<(async_nats::Client, watch::Receiver<bool>), BrokerError> {
        let mut options = match &self.auth {
            BrokerAuth::CredsFile(path) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| {
                    BrokerError::Config(format!(
                        "cannot read NATS credentials file {}: {e}",
                        path.display()
                    ))
                })?,
            BrokerAuth::NkeySeed(seed) => ConnectOptions::new().nkey(seed.clone()),
            BrokerAuth::Token(token) => ConnectOptions::new().token(token.clone()),
            BrokerAuth::UserPassword { user, password } => {
                ConnectOptions::new().user_and_password(user.clone(), password.clone())
            }
            BrokerAuth::None => ConnectOptions::new(),
        };
        let tls = &self.tls;
        if let Some(ca) = &tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                options = options.add_client_certificate(cert.clone(), key.clone())
            }
            (None, None) => {}
            _ => {
                return Err(BrokerError::Config(
                    "a NATS client certificate needs both a cert file and a key file".into(),
                ));
            }
        }
        if tls.ca_file.is_some() || tls.cert_file.is_some() {
            options = options.require_tls(true);
        }
        let shown = without_credentials(&self.url);
        let urls: Vec<async_nats::ServerAddr> = self
            .url
            .split(',')
            .map(|u| u.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| BrokerError::Config(format!("invalid NATS URL {shown}: {e}")))?;
        let (state, connected) = watch::channel(false);
        let events = Arc::new(ConnectionEvents::new(shown.clone(), state));
        info!(url = %shown, "connecting to NATS");
        let client = options
            .event_callback(move |event| {
                let events = events.clone();
                async move { events.record(event) }
            })
            .name(&self.name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(3))
            .request_timeout(Some(self.request_timeout))
            .connect(urls)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        Ok((client, connected))
    }
}

/// Logs connection events and publishes the connection state. Each kind of repeating trouble
/// has its own throttle so that one cannot hide another.
struct ConnectionEvents {
    url: String,
    state: watch::Sender<bool>,
    trouble: Mutex<Trouble>,
}

struct Trouble {
    failed_attempts: u64,
    connect: Throttle,
    server: Throttle,
    slow: Throttle,
}

impl ConnectionEvents {
    fn new(url: String, state: watch::Sender<bool>) -> Self {
        Self {
            url,
            state,
            trouble: Mutex::new(Trouble {
                failed_attempts: 0,
                connect: Throttle::new(LOG_INTERVAL),
                server: Throttle::new(LOG_INTERVAL),
                slow: Throttle::new(LOG_INTERVAL),
            }),
        }
    }

    fn record(&self, event: Event) {
        let url = &self.url;
        let now = Instant::now();
        let mut trouble = self.trouble.lock().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Connected => {
                let failed_attempts = std::mem::take(&mut trouble.failed_attempts);
                trouble.connect.reset();
                self.state.send_replace(true);
                info!(%url, failed_attempts, "connected to NATS");
            }
            Event::Disconnected => {
                self.state.send_replace(false);
                warn!(%url, "disconnected from NATS; reconnecting");
            }
            Event::ClientError(error) => {
                trouble.failed_attempts += 1;
                let failed_attempts = trouble.failed_attempts;
                if trouble.connect.hit(now).is_some() {
                    match error {
                        ClientError::Other(_) if failed_attempts == 1 => {
                            warn!(%url, %error, "cannot connect to NATS; retrying")
                        }
                        _ => warn!(%url, %error, failed_attempts, "still cannot connect to NATS"),
                    }
                }
            }
            Event::ServerError(error) => {
                if let Some(suppressed) = trouble.server.hit(now) {
                    warn!(%url, %error, suppressed, "NATS server reported an error");
                }
            }
            Event::SlowConsumer(sid) => {
                if let Some(suppressed) = trouble.slow.hit(now) {
                    warn!(%url, sid, suppressed, "NATS dropped messages for a slow subscription");
                }
            }
            Event::LameDuckMode => {
                warn!(%url, "NATS server is shutting down (lame duck mode); will reconnect")
            }
            Event::Draining | Event::Closed => {
                self.state.send_replace(false);
                info!(%url, %event, "NATS connection closing");
            }
        }
    }
}

/// The server URLs without any user or password they embed, for logs and errors.
fn without_credentials(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            let (scheme, rest) = match url.find("://") {
                Some(i) => url.split_at(i + 3),
                None => ("", url),
            };
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}<redacted>@{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            without_credentials("nats://alice:s3cret@nats-1:4222, tls://tok@nats-2:4222"),
            "nats://<redacted>@nats-1:4222,tls://<redacted>@nats-2:4222"
        );
        assert_eq!(
            without_credentials("user:p@ss@localhost:4222"),
            "<redacted>@localhost:4222"
        );
        assert_eq!(
            without_credentials("nats://127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
    }

    #[tokio::test]
    async fn configuration_mistakes_are_config_errors() {
        let mut options = BrokerOptions::new("nats://127.0.0.1:1");
        options.auth = BrokerAuth::CredsFile("/nonexistent/switchyard.creds".into());
        assert_eq!(
            options.connect().await.err().map(|e| e.category()),
            Some("config")
        );

        let mut options = BrokerOptions::new("nats://127.0.0.1:1");
        options.tls.cert_file = Some("/tmp/cert.pem".into());
        assert_eq!(
            options.connect().await.err().map(|e| e.category()),
            Some("config")
        );

        let options = BrokerOptions::new("nats://user:secret@[::1");
        let error = options.connect().await.expect_err("invalid URL refused");
        assert_eq!(error.category(), "config");
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
