//! Where the NATS credentials and TLS files come from: the explicit settings (`--nats-creds`,
//! `--nats-tls-ca`, …) and a credentials directory, typically a mounted Secret whose keys have
//! well-known names ([`files`]). The dispatcher in worker pods gets its credentials this way, so
//! one Secret serves every worker without per-key flags.
//!
//! Deciding which file is used for what ([`resolve`]) is pure and sees only which files exist;
//! reading secrets ([`load`]) happens afterwards, at the edge. Errors and the [`Display`] of
//! the sources name files, never their content.
//!
//! [`Display`]: fmt::Display

use std::{
    fmt,
    path::{Path, PathBuf},
};

use super::{BrokerAuth, BrokerTls};

/// The environment variable naming the credentials directory (also `--nats-credentials-dir`).
pub const CREDENTIALS_DIR_ENV: &str = "NATS_CREDENTIALS_DIR";

/// File names looked for in a credentials directory. The TLS names are those of a
/// `kubernetes.io/tls` Secret (as cert-manager writes it), so such a Secret works as it is.
pub mod files {
    /// A JWT credentials file (JWT and nkey seed), as `nsc` writes it.
    pub const CREDS: &str = "creds";
    /// An nkey seed.
    pub const NKEY: &str = "nkey";
    pub const TOKEN: &str = "token";
    /// The user name; goes with [`PASSWORD`].
    pub const USER: &str = "user";
    pub const PASSWORD: &str = "password";
    /// CA bundle to verify the server with.
    pub const TLS_CA: &str = "ca.crt";
    /// Client certificate and key for mutual TLS; go together.
    pub const TLS_CERT: &str = "tls.crt";
    pub const TLS_KEY: &str = "tls.key";

    /// Every name, in the order they are checked.
    pub const ALL: [&str; 8] = [
        CREDS, NKEY, TOKEN, USER, PASSWORD, TLS_CA, TLS_CERT, TLS_KEY,
    ];
}

/// The name of the user to authenticate as: given as a setting, or read from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserName {
    Given(String),
    File(PathBuf),
}

/// How to authenticate, as paths: nothing is read yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AuthSource {
    #[default]
    None,
    CredsFile(PathBuf),
    NkeyFile(PathBuf),
    TokenFile(PathBuf),
    UserPassword {
        user: UserName,
        password_file: PathBuf,
    },
}

/// The credential and TLS files to use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CredentialSources {
    pub auth: AuthSource,
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key, always both.
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

/// A credentials directory and which of the [`files`] it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialsDir {
    pub path: PathBuf,
    pub present: Vec<&'static str>,
}

impl CredentialsDir {
    /// Looks at the directory: which well-known files exist (following symlinks, as a mounted
    /// Secret's keys are). Other files are left alone: the Secret may hold keys for others.
    pub fn scan(path: &Path) -> Result<Self, CredentialsError> {
        if !path.is_dir() {
            return Err(CredentialsError::NotADirectory(path.to_path_buf()));
        }
        let present = files::ALL
            .into_iter()
            .filter(|name| path.join(name).is_file())
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            present,
        })
    }

    fn file(&self, name: &'static str) -> Option<PathBuf> {
        self.present.contains(&name).then(|| self.path.join(name))
    }
}

/// A credentials setting that cannot be used; names files, never what they hold.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("NATS credentials directory {} does not exist or is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error(
        "NATS credentials directory {} holds more than one way to authenticate ({}); keep exactly one of creds, nkey, token or user + password",
        dir.display(),
        files.join(", ")
    )]
    ConflictingAuth {
        dir: PathBuf,
        files: Vec<&'static str>,
    },
    #[error(
        "NATS credentials directory {} has {present} but no {missing}; they go together",
        dir.display()
    )]
    Incomplete {
        dir: PathBuf,
        present: &'static str,
        missing: &'static str,
    },
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is empty", .0.display())]
    Empty(PathBuf),
}

/// Decides which files to use. Explicit settings win, each part on its own (authentication,
/// CA, client certificate); the directory fills in what they leave open. The directory may hold
/// one way to authenticate at most: two would make the choice a guess.
pub fn resolve(
    explicit: CredentialSources,
    dir: Option<&CredentialsDir>,
) -> Result<CredentialSources, CredentialsError> {
    let Some(dir) = dir else {
        return Ok(explicit);
    };
    let auth = match explicit.auth {
        AuthSource::None => auth_from(dir)?,
        given => given,
    };
    let tls_ca = explicit.tls_ca.or_else(|| dir.file(files::TLS_CA));
    let tls_client = match explicit.tls_client {
        Some(pair) => Some(pair),
        None => pair(dir, files::TLS_CERT, files::TLS_KEY)?,
    };
    Ok(CredentialSources {
        auth,
        tls_ca,
        tls_client,
    })
}

fn auth_from(dir: &CredentialsDir) -> Result<AuthSource, CredentialsError> {
    let user_password = pair(dir, files::USER, files::PASSWORD)?;
    let mut found: Vec<(&'static str, AuthSource)> = Vec::new();
    if let Some(path) = dir.file(files::CREDS) {
        found.push((files::CREDS, AuthSource::CredsFile(path)));
    }
    if let Some(path) = dir.file(files::NKEY) {
        found.push((files::NKEY, AuthSource::NkeyFile(path)));
    }
    if let Some(path) = dir.file(files::TOKEN) {
        found.push((files::TOKEN, AuthSource::TokenFile(path)));
    }
    if let Some((user, password_file)) = user_password {
        found.push((
            "user + password",
            AuthSource::UserPassword {
                user: UserName::File(user),
                password_file,
            },
        ));
    }
    if found.len() > 1 {
        return Err(CredentialsError::ConflictingAuth {
            dir: dir.path.clone(),
            files: found.into_iter().map(|(name, _)| name).collect(),
        });
    }
    Ok(found.pop().map_or(AuthSource::None, |(_, auth)| auth))
}

/// Two files that only work together: both, neither, or an error naming the missing one.
fn pair(
    dir: &CredentialsDir,
    first: &'static str,
    second: &'static str,
) -> Result<Option<(PathBuf, PathBuf)>, CredentialsError> {
    let incomplete = |present, missing| CredentialsError::Incomplete {
        dir: dir.path.clone(),
        present,
        missing,
    };
    match (dir.file(first), dir.file(second)) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(incomplete(first, second)),
        (None, Some(_)) => Err(incomplete(second, first)),
    }
}

/// Reads the secrets the sources point to. A creds file is left to the NATS client, which
/// reads it itself; TLS files are paths too.
pub fn load(sources: &CredentialSources) -> Result<(BrokerAuth, BrokerTls), CredentialsError> {
    let auth = match &sources.auth {
        AuthSource::None => BrokerAuth::None,
        AuthSource::CredsFile(path) => BrokerAuth::CredsFile(path.clone()),
        AuthSource::NkeyFile(path) => BrokerAuth::NkeySeed(read_secret(path)?),
        AuthSource::TokenFile(path) => BrokerAuth::Token(read_secret(path)?),
        AuthSource::UserPassword {
            user,
            password_file,
        } => BrokerAuth::UserPassword {
            user: match user {
                UserName::Given(name) => name.clone(),
                UserName::File(path) => read_secret(path)?,
            },
            password: read_secret(password_file)?,
        },
    };
    let (cert_file, key_file) = sources.tls_client.clone().unzip();
    let tls = BrokerTls {
        ca_file: sources.tls_ca.clone(),
        cert_file,
        key_file,
    };
    Ok((auth, tls))
}

/// A secret file's content without surrounding whitespace (Secrets written with `echo` end in
/// a newline). Empty is refused: it is a mistake, and NATS would only say "authorization
/// violation".
fn read_secret(path: &Path) -> Result<String, CredentialsError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(CredentialsError::Empty(path.to_path_buf()));
    }
    Ok(text.to_string())
}

/// What is used, by file, for the startup log.
impl fmt::Display for CredentialSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.auth {
            AuthSource::None => f.write_str("no authentication")?,
            AuthSource::CredsFile(path) => write!(f, "creds file {}", path.display())?,
            AuthSource::NkeyFile(path) => write!(f, "nkey seed from {}", path.display())?,
            AuthSource::TokenFile(path) => write!(f, "token from {}", path.display())?,
            AuthSource::UserPassword {
                user,
                password_file,
            } => {
                match user {
                    UserName::Given(name) => write!(f, "user {name}")?,
                    UserName::File(path) => write!(f, "user from {}", path.display())?,
                }
                write!(f, " with password from {}", password_file.display())?;
            }
        }
        if let Some(ca) = &self.tls_ca {
            write!(f, ", TLS CA {}", ca.display())?;
        }
        if let Some((cert, key)) = &self.tls_client {
            write!(
                f,
                ", client certificate {} and key {}",
                cert.display(),
                key.display()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(present: &[&'static str]) -> CredentialsDir {
        CredentialsDir {
            path: "/etc/switchyard/nats".into(),
            present: present.to_vec(),
        }
    }

    fn at(name: &str) -> PathBuf {
        Path::new("/etc/switchyard/nats").join(name)
    }

    #[test]
    fn without_a_directory_the_explicit_settings_stand() {
        let explicit = CredentialSources {
            auth: AuthSource::TokenFile("/run/token".into()),
            tls_ca: Some("/run/ca.pem".into()),
            tls_client: None,
        };
        assert_eq!(resolve(explicit.clone(), None).unwrap(), explicit);
    }

    #[test]
    fn each_way_to_authenticate_is_found_in_the_directory() {
        let cases = [
            (vec![files::CREDS], AuthSource::CredsFile(at("creds"))),
            (vec![files::NKEY], AuthSource::NkeyFile(at("nkey"))),
            (vec![files::TOKEN], AuthSource::TokenFile(at("token"))),
            (
                vec![files::USER, files::PASSWORD],
                AuthSource::UserPassword {
                    user: UserName::File(at("user")),
                    password_file: at("password"),
                },
            ),
            (vec![files::TLS_CA], AuthSource::None),
        ];
        for (present, expected) in cases {
            let resolved = resolve(CredentialSources::default(), Some(&dir(&present))).unwrap();
            assert_eq!(resolved.auth, expected, "{present:?}");
        }
    }

    #[test]
    fn tls_files_are_found_in_the_directory() {
        let resolved = resolve(
            CredentialSources::default(),
            Some(&dir(&[files::TLS_CA, files::TLS_CERT, files::TLS_KEY])),
        )
        .unwrap();
        assert_eq!(resolved.tls_ca, Some(at("ca.crt")));
        assert_eq!(resolved.tls_client, Some((at("tls.crt"), at("tls.key"))));
    }

    #[test]
    fn explicit_settings_win_over_the_directory_part_by_part() {
        let explicit = CredentialSources {
            auth: AuthSource::UserPassword {
                user: UserName::Given("alice".into()),
                password_file: "/run/password".into(),
            },
            tls_ca: Some("/run/ca.pem".into()),
            tls_client: None,
        };
        // The directory's two ways to authenticate do not matter: neither is used.
        let all = dir(&[
            files::CREDS,
            files::TOKEN,
            files::TLS_CA,
            files::TLS_CERT,
            files::TLS_KEY,
        ]);
        let resolved = resolve(explicit.clone(), Some(&all)).unwrap();
        assert_eq!(resolved.auth, explicit.auth);
        assert_eq!(resolved.tls_ca, explicit.tls_ca);
        assert_eq!(
            resolved.tls_client,
            Some((at("tls.crt"), at("tls.key"))),
            "the client certificate was not given explicitly"
        );

        let explicit_pair = CredentialSources {
            tls_client: Some(("/run/c.pem".into(), "/run/k.pem".into())),
            ..Default::default()
        };
        let half = dir(&[files::TLS_CERT]);
        assert_eq!(
            resolve(explicit_pair.clone(), Some(&half))
                .unwrap()
                .tls_client,
            explicit_pair.tls_client
        );
    }

    #[test]
    fn two_ways_to_authenticate_in_the_directory_are_refused_naming_the_files() {
        let error = resolve(
            CredentialSources::default(),
            Some(&dir(&[files::CREDS, files::TOKEN])),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "NATS credentials directory /etc/switchyard/nats holds more than one way to authenticate (creds, token); keep exactly one of creds, nkey, token or user + password"
        );
        let error = resolve(
            CredentialSources::default(),
            Some(&dir(&[files::NKEY, files::USER, files::PASSWORD])),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("(nkey, user + password)"),
            "{error}"
        );
    }

    #[test]
    fn half_a_pair_is_refused_naming_the_missing_file() {
        let cases = [
            (files::USER, "has user but no password"),
            (files::PASSWORD, "has password but no user"),
            (files::TLS_CERT, "has tls.crt but no tls.key"),
            (files::TLS_KEY, "has tls.key but no tls.crt"),
        ];
        for (present, message) in cases {
            let error = resolve(CredentialSources::default(), Some(&dir(&[present]))).unwrap_err();
            assert!(error.to_string().contains(message), "{error}");
        }
    }

    #[test]
    fn the_description_names_files_only() {
        let sources = CredentialSources {
            auth: AuthSource::UserPassword {
                user: UserName::File(at("user")),
                password_file: at("password"),
            },
            tls_ca: Some(at("ca.crt")),
            tls_client: None,
        };
        assert_eq!(
            sources.to_string(),
            "user from /etc/switchyard/nats/user with password from /etc/switchyard/nats/password, TLS CA /etc/switchyard/nats/ca.crt"
        );
    }

    /// A scratch directory removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str, files: &[(&str, &str)]) -> Self {
            let path = std::env::temp_dir().join(format!(
                "switchyard-credentials-{test}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            for (name, content) in files {
                std::fs::write(path.join(name), content).unwrap();
            }
            Self(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_mounted_secret_is_scanned_and_read_without_its_trailing_newlines() {
        let scratch = Scratch::new(
            "read",
            &[
                ("user", "dispatcher\n"),
                ("password", "s3cret\n"),
                ("ca.crt", "-----BEGIN CERTIFICATE-----\n"),
                ("unrelated", "other keys of the Secret are ignored"),
            ],
        );
        let dir = CredentialsDir::scan(&scratch.0).unwrap();
        assert_eq!(dir.present, [files::USER, files::PASSWORD, files::TLS_CA]);
        let sources = resolve(CredentialSources::default(), Some(&dir)).unwrap();
        let (auth, tls) = load(&sources).unwrap();
        match auth {
            BrokerAuth::UserPassword { user, password } => {
                assert_eq!((user.as_str(), password.as_str()), ("dispatcher", "s3cret"));
            }
            other => panic!("expected user and password, got {other:?}"),
        }
        assert_eq!(tls.ca_file, Some(scratch.0.join("ca.crt")));
        assert!(tls.cert_file.is_none() && tls.key_file.is_none());
    }

    #[test]
    fn reading_problems_name_the_file_and_never_its_content() {
        let scratch = Scratch::new("problems", &[("token", "tok3n"), ("creds", "jwt")]);
        let dir = CredentialsDir::scan(&scratch.0).unwrap();
        let error = resolve(CredentialSources::default(), Some(&dir)).unwrap_err();
        assert!(!error.to_string().contains("tok3n"), "{error}");

        let empty = Scratch::new("empty", &[("token", "\n")]);
        let dir = CredentialsDir::scan(&empty.0).unwrap();
        let sources = resolve(CredentialSources::default(), Some(&dir)).unwrap();
        let error = load(&sources).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{} is empty", empty.0.join("token").display())
        );

        let missing = scratch.0.join("absent");
        let error = CredentialsDir::scan(&missing).unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }
}
