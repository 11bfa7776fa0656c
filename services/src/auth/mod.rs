//! Who is calling and what they may do. Every RPC but grpc.health.v1 and
//! server reflection needs an authenticated caller holding the role the RPC
//! needs ([`roles`]). A caller proves who it is with a bearer token — one of
//! the auth file's (`--auth-file`), a JWT from the identity provider its
//! `[oidc]` section names, or on loopback only a development token
//! (`--dev-auth`) — or, sending no token, with a client certificate (mTLS)
//! whose name the auth file maps to an identity. The identity reaches the
//! handlers in the request's extensions and becomes the actor of everything
//! the call changes; nothing a request says can claim another one.
//!
//! Without any identity source the server runs insecure — every caller is
//! `anonymous` with every role — which it allows on loopback only, or
//! anywhere with `--insecure-no-auth`, and says so loudly.

pub mod file;
pub mod layer;
pub mod oidc;
pub mod roles;
pub mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

pub use file::Identities;
pub use layer::AuthLayer;
use oidc::{JwtFailure, OidcVerifier};
pub use roles::{Role, Roles};
pub use tokens::TokenTable;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub roles: Roles,
}

impl Identity {
    /// The caller of an insecure server: anyone, with every role.
    pub fn anonymous() -> Identity {
        Identity { name: "anonymous".to_owned(), roles: Roles::ALL }
    }
}

/// Where identities come from.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// The auth file (re-read on SIGHUP and when it changes).
    pub auth_file: Option<PathBuf>,
    /// Accept the documented development tokens (loopback only).
    pub dev_auth: bool,
    /// Serve with no authentication beyond loopback.
    pub insecure_no_auth: bool,
}

/// Why the server refuses to start with a configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error(
        "refusing to serve {addr} without authentication: configure --auth-file (or bind a loopback address), \
         or pass --insecure-no-auth to accept anyone who can reach the port"
    )]
    UnauthenticatedBeyondLoopback { addr: SocketAddr },
    #[error("--dev-auth accepts documented tokens: it is refused on {addr}, which is not a loopback address")]
    DevAuthBeyondLoopback { addr: SocketAddr },
    #[error(transparent)]
    AuthFile(#[from] file::AuthFileError),
}

/// Why a call has no identity (the `reason` of `auth_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No credentials at all.
    Missing,
    /// An `authorization` header that is not `Bearer <token>`.
    Malformed,
    /// A token or certificate nobody is known by, or a JWT that fails a check.
    Invalid,
    /// A JWT past its `exp` or before its `nbf`.
    Expired,
    /// A JWT whose signing keys could not be fetched from the identity provider.
    KeysUnavailable,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::Invalid => "invalid",
            Failure::Expired => "expired",
            Failure::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// The identities the server accepts now; the auth file's part is replaced
/// when the file is read again.
#[derive(Debug)]
pub struct Authenticator {
    config: AuthConfig,
    identities: RwLock<Arc<Identities>>,
    /// JWT verification with its cached keys, kept across reloads while the
    /// `[oidc]` settings stay the same.
    oidc: RwLock<Option<Arc<OidcVerifier>>>,
}

impl Authenticator {
    /// Checks `config` against the addresses served, and loads the auth file.
    ///
    /// # Errors
    /// A rule of the safe defaults is broken, or the auth file is unusable.
    pub fn new(config: AuthConfig, served: &[SocketAddr]) -> Result<Authenticator, AuthSetupError> {
        let exposed = served.iter().find(|addr| !addr.ip().is_loopback());
        if let (true, Some(&addr)) = (config.dev_auth, exposed) {
            return Err(AuthSetupError::DevAuthBeyondLoopback { addr });
        }
        let secured = config.dev_auth || config.auth_file.is_some();
        if let (false, false, Some(&addr)) = (secured, config.insecure_no_auth, exposed) {
            return Err(AuthSetupError::UnauthenticatedBeyondLoopback { addr });
        }
        let identities = Self::read(&config)?;
        if !secured {
            tracing::warn!(
                "NO AUTHENTICATION: every caller is `anonymous` with every role. Configure --auth-file, or \
                 --dev-auth for a local trial; separation of duties cannot be met by one anonymous caller"
            );
        }
        let authenticator = Authenticator { config, identities: RwLock::new(Arc::default()), oidc: RwLock::new(None) };
        authenticator.install(identities);
        Ok(authenticator)
    }

    fn read(config: &AuthConfig) -> Result<Identities, file::AuthFileError> {
        let file = match &config.auth_file {
            Some(path) => Identities::load(path)?,
            None => Identities::default(),
        };
        Ok(if config.dev_auth { file.with(Identities::development()) } else { file })
    }

    /// Puts `identities` in force, with a new JWT verifier only when the
    /// OIDC settings changed.
    fn install(&self, identities: Identities) {
        let mut oidc = self.oidc.write().expect("oidc verifier");
        let unchanged = oidc.as_ref().map(|verifier| verifier.settings()) == identities.oidc.as_ref();
        if !unchanged {
            *oidc = identities.oidc.clone().map(|settings| Arc::new(OidcVerifier::new(settings)));
        }
        *self.identities.write().expect("identities") = Arc::new(identities);
    }

    /// Whether callers must authenticate (an identity source is configured).
    pub fn required(&self) -> bool {
        self.config.dev_auth || self.config.auth_file.is_some()
    }

    /// The identity of a bearer token: a JWT when it has the shape of one
    /// and OIDC is configured, else a static token.
    ///
    /// # Errors
    /// Why the token proves nobody.
    pub async fn identify(&self, token: &str) -> Result<Identity, Failure> {
        let verifier = self.oidc.read().expect("oidc verifier").clone();
        match verifier {
            Some(verifier) if OidcVerifier::looks_like_jwt(token) => {
                verifier.verify(token).await.map_err(|failure| match failure {
                    JwtFailure::Expired => Failure::Expired,
                    JwtFailure::KeysUnavailable => Failure::KeysUnavailable,
                    JwtFailure::Invalid => Failure::Invalid,
                })
            }
            _ => self.identities.read().expect("identities").tokens.identify(token).ok_or(Failure::Invalid),
        }
    }

    /// The identity of a verified client certificate (DER).
    pub fn identify_certificate(&self, der: &[u8]) -> Option<Identity> {
        self.identities.read().expect("identities").by_certificate(der)
    }

    /// Reads the auth file again; on failure the identities known so far stay.
    pub fn reload(&self) {
        match Self::read(&self.config) {
            Ok(identities) => {
                self.install(identities);
                self.refresh_keys();
                tracing::info!(file = ?self.config.auth_file, "auth file read");
            }
            Err(err) => tracing::error!(error = %err, "auth file not reloaded; the identities read before stay"),
        }
    }

    /// Fetches the identity provider's signing keys in the background.
    fn refresh_keys(&self) {
        if let Some(verifier) = self.oidc.read().expect("oidc verifier").as_ref() {
            verifier.refresh_in_background();
        }
    }

    /// Reloads on SIGHUP and whenever the auth file's modification time
    /// changes (checked every `period`), until `stop`.
    /// The identity provider's keys are fetched at once.
    pub async fn watch(self: Arc<Self>, period: std::time::Duration, stop: tokio_util::sync::CancellationToken) {
        self.refresh_keys();
        let Some(path) = self.config.auth_file.clone() else { return };
        let modified = |path: &PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let mut seen = modified(&path);
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(err) => {
                tracing::warn!(error = %err, "no SIGHUP handler: the auth file is re-read when it changes only");
                None
            }
        };
        let mut interval = tokio::time::interval(period);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                Some(()) = async { match hangup.as_mut() { Some(signal) => signal.recv().await, None => None } } => {
                    self.reload();
                }
                _ = interval.tick() => {
                    let now = modified(&path);
                    if now != seen {
                        seen = now;
                        self.reload();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn safe_defaults_refuse_to_expose_an_unauthenticated_server() {
        let loopback = [addr("127.0.0.1:50051"), addr("[::1]:9464")];
        let exposed = [addr("0.0.0.0:50051"), addr("127.0.0.1:9464")];
        // No identity source: loopback only, unless told otherwise.
        let none = AuthConfig::default();
        let insecure = Authenticator::new(none.clone(), &loopback).expect("loopback without auth");
        assert!(!insecure.required());
        let refused = Authenticator::new(none, &exposed).unwrap_err();
        assert!(matches!(refused, AuthSetupError::UnauthenticatedBeyondLoopback { .. }), "{refused}");
        assert!(refused.to_string().contains("--insecure-no-auth"));
        let forced = AuthConfig { insecure_no_auth: true, ..AuthConfig::default() };
        assert!(Authenticator::new(forced, &exposed).is_ok());
        // The documented development tokens never leave loopback, insecure flag or not.
        let dev = AuthConfig { dev_auth: true, insecure_no_auth: true, ..AuthConfig::default() };
        assert!(matches!(Authenticator::new(dev.clone(), &exposed), Err(AuthSetupError::DevAuthBeyondLoopback { .. })));
        let dev = Authenticator::new(dev, &loopback).unwrap();
        assert!(dev.required());
        assert_eq!(dev.identities.read().unwrap().tokens.identify("dev-bob").unwrap().name, "bob");
    }

    #[test]
    fn an_auth_file_secures_any_address_and_must_be_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        let (token, entry) = tokens::generate("ops", &[Role::Operator]);
        file::append(&path, &entry).unwrap();
        let config = AuthConfig { auth_file: Some(path.clone()), ..AuthConfig::default() };
        let auth = Authenticator::new(config, &[addr("0.0.0.0:50051")]).expect("authenticated beyond loopback");
        let known = |token: &str| auth.identities.read().unwrap().tokens.identify(token).map(|identity| identity.name);
        assert_eq!(known(&token).unwrap(), "ops");
        assert!(known("dev-alice").is_none(), "development tokens only with --dev-auth");
        // A broken file on reload keeps the identities read before.
        std::fs::write(&path, "not toml [").unwrap();
        auth.reload();
        assert_eq!(known(&token).unwrap(), "ops");
        let missing = AuthConfig { auth_file: Some(dir.path().join("absent.toml")), ..AuthConfig::default() };
        assert!(matches!(Authenticator::new(missing, &[addr("127.0.0.1:1")]), Err(AuthSetupError::AuthFile(_))));
    }
}
