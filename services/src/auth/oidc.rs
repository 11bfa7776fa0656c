//! OIDC / JWT bearer tokens from an identity provider (Entra ID, Okta,
//! Keycloak): the `[oidc]` section of the auth file names the issuer, the
//! audience, where the signing keys are (a JWKS URL or file) and which claim
//! gives the roles. A token is accepted only when signed by one of those
//! keys with an asymmetric algorithm of the key's family (never `none`, never
//! HMAC), from the issuer, for the audience, and within its validity.
//!
//! Keys are cached: fetched at start, again in the background once older
//! than `keys_max_age` (10 min), and at once when a token names a key not
//! seen yet — at most every `unknown_key_refetch` (30 s), so a flood of
//! made-up key ids cannot turn into a flood of fetches; each fetch is
//! bounded by [`FETCH_TIMEOUT`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Identity;
use super::roles::{Role, Roles};

/// The longest a key fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 60;
/// Longest identity name taken from a claim.
const MAX_NAME_LEN: usize = 256;

/// The `[oidc]` section of the auth file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (one of).
    pub audience: String,
    /// Where the provider publishes its signing keys (JWKS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Or a JWKS file (read again with the auth file and on refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// The claim naming the caller (`sub` by default; e.g. `preferred_username`).
    #[serde(default = "default_name_claim")]
    pub name_claim: String,
    /// The claim holding the roles: a string or a list of strings.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Claim values → roles (e.g. group ids). Without it, claim values are
    /// role names; with it, only mapped values grant anything.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles_map: BTreeMap<String, Vec<Role>>,
    /// Keys older than this are fetched again in the background.
    #[serde(default = "default_keys_max_age", with = "human_duration")]
    pub keys_max_age: Duration,
    /// A token naming an unknown key fetches the keys at most this often.
    #[serde(default = "default_unknown_key_refetch", with = "human_duration")]
    pub unknown_key_refetch: Duration,
}

fn default_keys_max_age() -> Duration {
    Duration::from_secs(600)
}

fn default_unknown_key_refetch() -> Duration {
    Duration::from_secs(30)
}

/// Durations written as people do (`10m`, `30s`).
mod human_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*duration).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

fn default_name_claim() -> String {
    "sub".to_owned()
}

fn default_roles_claim() -> String {
    "roles".to_owned()
}

impl OidcSettings {
    /// Whether the settings can be used.
    ///
    /// # Errors
    /// What is wrong, in words.
    pub fn check(&self) -> Result<(), String> {
        match (&self.jwks_url, &self.jwks_file) {
            (None, None) => return Err("one of jwks_url or jwks_file is needed".to_owned()),
            (Some(_), Some(_)) => return Err("jwks_url and jwks_file exclude each other".to_owned()),
            (Some(url), None) => {
                let parsed = url::Url::parse(url).map_err(|err| format!("jwks_url {url:?}: {err}"))?;
                if !matches!(parsed.scheme(), "https" | "http") {
                    return Err(format!("jwks_url {url:?} is not http(s)"));
                }
            }
            (None, Some(_)) => {}
        }
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err("issuer and audience are needed".to_owned());
        }
        Ok(())
    }

    /// The roles a token's claims grant.
    fn roles(&self, claims: &serde_json::Map<String, Value>) -> Roles {
        let values: Vec<&str> = match claims.get(&self.roles_claim) {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let roles: Vec<Role> = if self.roles_map.is_empty() {
            values.iter().filter_map(|value| value.parse().ok()).collect()
        } else {
            values.iter().filter_map(|value| self.roles_map.get(*value)).flatten().copied().collect()
        };
        Roles::of(&roles)
    }
}

/// Why a JWT was not accepted (the `reason` of `auth_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtFailure {
    /// Past `exp`, or before `nbf`.
    Expired,
    /// The signing keys could not be fetched.
    KeysUnavailable,
    /// Anything else: bad signature, issuer, audience, algorithm, shape.
    Invalid,
}

/// Verifies JWTs under one set of [`OidcSettings`], with the keys cached.
#[derive(Debug)]
pub struct OidcVerifier {
    settings: OidcSettings,
    http: reqwest::Client,
    keys: RwLock<Option<CachedKeys>>,
    /// One fetch at a time; callers waiting for it share its result.
    fetching: tokio::sync::Mutex<()>,
    /// When the last fetch started, successful or not.
    last_attempt: std::sync::Mutex<Option<Instant>>,
    refreshing: AtomicBool,
}

#[derive(Debug, Clone)]
struct CachedKeys {
    set: Arc<JwkSet>,
    fetched: Instant,
}

impl OidcVerifier {
    pub fn new(settings: OidcSettings) -> OidcVerifier {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .expect("an HTTP client");
        OidcVerifier {
            settings,
            http,
            keys: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
            last_attempt: std::sync::Mutex::new(None),
            refreshing: AtomicBool::new(false),
        }
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Whether `token` has the shape of a JWT (three base64url parts).
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3 && token.starts_with("eyJ")
    }

    /// The identity `token` proves.
    ///
    /// # Errors
    /// Why it proves none.
    pub async fn verify(self: &Arc<Self>, token: &str) -> Result<Identity, JwtFailure> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtFailure::Invalid)?;
        let keys = self.keys_for(header.kid.as_deref()).await?;
        let jwk = Self::find(&keys.set, header.kid.as_deref()).ok_or(JwtFailure::Invalid)?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| JwtFailure::Invalid)?;
        // The algorithm must be the key's (when it names one) and of the
        // key's family, and never a shared-secret one: a public key used
        // as an HMAC secret would let anyone sign.
        let alg = header.alg;
        let named = jwk.common.key_algorithm;
        if alg.family() != key.family() || named.is_some_and(|named| named != alg.into()) || is_hmac(alg) {
            return Err(JwtFailure::Invalid);
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation).map_err(
                |err| match err.kind() {
                    ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => JwtFailure::Expired,
                    _ => JwtFailure::Invalid,
                },
            )?;
        let name = match data.claims.get(&self.settings.name_claim) {
            Some(Value::String(name))
                if !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.chars().any(char::is_control) =>
            {
                name.clone()
            }
            _ => return Err(JwtFailure::Invalid),
        };
        Ok(Identity { name, roles: self.settings.roles(&data.claims) })
    }

    /// Keys holding `kid`: the cached ones, or freshly fetched when there
    /// are none yet, or when `kid` is not among them and no fetch was tried
    /// within `unknown_key_refetch`.
    async fn keys_for(self: &Arc<Self>, kid: Option<&str>) -> Result<CachedKeys, JwtFailure> {
        let cached = self.cached();
        if let Some(keys) = cached.as_ref().filter(|keys| Self::find(&keys.set, kid).is_some()) {
            if keys.fetched.elapsed() > self.settings.keys_max_age {
                self.refresh_in_background();
            }
            return Ok(keys.clone());
        }
        let last = *self.last_attempt.lock().expect("last fetch");
        // With no keys yet every caller waits for a fetch (one at a time,
        // shared); with keys, an unknown one is looked for now and then.
        match cached {
            Some(keys) if last.is_some_and(|at| at.elapsed() <= self.settings.unknown_key_refetch) => Ok(keys),
            _ => self.fetch().await,
        }
    }

    fn cached(&self) -> Option<CachedKeys> {
        self.keys.read().expect("jwks cache").clone()
    }

    /// The key `kid` names; without a `kid`, the set's only signing key.
    fn find<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a Jwk> {
        match kid {
            Some(kid) => set.find(kid),
            None => match set.keys.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
    }

    /// Fetches the keys now (one fetch at a time: a caller that waited for
    /// another's fetch takes its result rather than fetching again).
    async fn fetch(&self) -> Result<CachedKeys, JwtFailure> {
        let asked = Instant::now();
        let _one_at_a_time = self.fetching.lock().await;
        let last = *self.last_attempt.lock().expect("last fetch");
        if last.is_some_and(|at| at >= asked) {
            return self.cached().filter(|keys| keys.fetched >= asked).ok_or(JwtFailure::KeysUnavailable);
        }
        *self.last_attempt.lock().expect("last fetch") = Some(Instant::now());
        match self.load().await {
            Ok(set) => {
                let keys = CachedKeys { set: Arc::new(set), fetched: Instant::now() };
                *self.keys.write().expect("jwks cache") = Some(keys.clone());
                tracing::info!(keys = keys.set.keys.len(), "OIDC signing keys fetched");
                Ok(keys)
            }
            Err(err) => {
                tracing::warn!(error = %err, "OIDC signing keys not fetched: JWTs signed by keys not cached are refused");
                Err(JwtFailure::KeysUnavailable)
            }
        }
    }

    async fn load(&self) -> Result<JwkSet, String> {
        let text = match (&self.settings.jwks_url, &self.settings.jwks_file) {
            (Some(url), _) => {
                let response = self.http.get(url).send().await.map_err(|err| format!("{url}: {err}"))?;
                let response = response.error_for_status().map_err(|err| format!("{url}: {err}"))?;
                response.text().await.map_err(|err| format!("{url}: {err}"))?
            }
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?,
            (None, None) => return Err("no key source".to_owned()),
        };
        serde_json::from_str(&text).map_err(|err| format!("not a JWKS: {err}"))
    }

    /// Fetches the keys in the background, unless a refresh is under way.
    pub fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let verifier = self.clone();
        tokio::spawn(async move {
            let _ = verifier.fetch().await;
            verifier.refreshing.store(false, Ordering::Release);
        });
    }
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(roles_map: &[(&str, &[Role])]) -> OidcSettings {
        OidcSettings {
            issuer: "https://idp.example".into(),
            audience: "eucora".into(),
            jwks_url: Some("https://idp.example/keys".into()),
            jwks_file: None,
            name_claim: default_name_claim(),
            roles_claim: "groups".into(),
            roles_map: roles_map.iter().map(|(k, v)| ((*k).to_owned(), v.to_vec())).collect(),
            keys_max_age: default_keys_max_age(),
            unknown_key_refetch: default_unknown_key_refetch(),
        }
    }

    fn claims(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn roles_come_from_the_claim_mapped_or_by_name() {
        let by_name = settings(&[]);
        let granted = by_name.roles(&claims(serde_json::json!({"groups": ["operator", "approver", "root", 7]})));
        assert_eq!(granted, Roles::of(&[Role::Operator, Role::Approver]));
        assert_eq!(by_name.roles(&claims(serde_json::json!({"groups": "viewer"}))), Roles::of(&[Role::Viewer]));
        assert_eq!(by_name.roles(&claims(serde_json::json!({"roles": "admin"}))), Roles::of(&[]));

        let mapped = settings(&[("0b5e-ops", &[Role::Operator]), ("0b5e-cab", &[Role::Approver, Role::Viewer])]);
        let granted = mapped.roles(&claims(serde_json::json!({"groups": ["0b5e-cab", "admin"]})));
        assert_eq!(granted, Roles::of(&[Role::Approver, Role::Viewer]), "a mapping grants only what it maps");
    }

    #[test]
    fn settings_need_one_key_source_and_the_token_constraints() {
        assert!(settings(&[]).check().is_ok());
        let none = OidcSettings { jwks_url: None, ..settings(&[]) };
        assert!(none.check().unwrap_err().contains("jwks_url or jwks_file"));
        let both = OidcSettings { jwks_file: Some("keys.json".into()), ..settings(&[]) };
        assert!(both.check().unwrap_err().contains("exclude"));
        let ftp = OidcSettings { jwks_url: Some("ftp://idp/keys".into()), ..settings(&[]) };
        assert!(ftp.check().unwrap_err().contains("not http(s)"));
        let no_audience = OidcSettings { audience: String::new(), ..settings(&[]) };
        assert!(no_audience.check().is_err());
    }

    #[test]
    fn only_jwt_shaped_tokens_take_the_jwt_path() {
        assert!(OidcVerifier::looks_like_jwt("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"));
        assert!(!OidcVerifier::looks_like_jwt("dev-alice"));
        assert!(!OidcVerifier::looks_like_jwt("eucora_abc.def"));
    }
}
