//! Connection settings: server URLs, one kind of credentials, TLS.

use std::{fmt, path::PathBuf, time::Duration};

use async_nats::ConnectOptions;

use super::BrokerError;

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

    pub(super) async fn connect(&self) -> Result<async_nats::Client, BrokerError> {
        let mut options = match &self.auth {
            BrokerAuth::CredsFile(path) => ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| {
                    BrokerError::Protocol(format!(
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
                return Err(BrokerError::Protocol(
                    "a NATS client certificate needs both a cert file and a key file".into(),
                ));
            }
        }
        if tls.ca_file.is_some() || tls.cert_file.is_some() {
            options = options.require_tls(true);
        }
        let urls: Vec<async_nats::ServerAddr> = self
            .url
            .split(',')
            .map(|u| u.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| BrokerError::Protocol(format!("invalid NATS URL {:?}: {e}", self.url)))?;
        options
            .name(&self.name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(3))
            .request_timeout(Some(self.request_timeout))
            .connect(urls)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }
}
