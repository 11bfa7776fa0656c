//! The auth file (`--auth-file`): TOML with one `[[identity]]` per caller —
//! its roles, and how it proves who it is: the SHA-256 of a bearer token, a
//! name its client certificate carries (mTLS), or both — and optionally an
//! `[oidc]` section accepting JWTs from an identity provider. Read at start,
//! on SIGHUP and whenever the file changes.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Identity;
use super::oidc::OidcSettings;
use super::roles::{Role, Roles};
use super::tokens::{TokenTable, parse_hex};

/// One `[[identity]]` of the auth file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityEntry {
    pub name: String,
    pub roles: Vec<Role>,
    /// Lower-case hex SHA-256 of the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// A name the caller's client certificate carries: a DNS, e-mail or URI
    /// subject alternative name, or the subject's common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    identity: Vec<IdentityEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oidc: Option<OidcSettings>,
}

/// Why an auth file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Whom an auth file (and `--dev-auth`) lets in.
#[derive(Debug, Clone, Default)]
pub struct Identities {
    pub tokens: TokenTable,
    /// Identities by a name their client certificate carries.
    certificates: HashMap<String, Identity>,
    /// JWTs accepted from an identity provider.
    pub oidc: Option<OidcSettings>,
}

impl Identities {
    /// The identities of `--dev-auth`.
    pub fn development() -> Identities {
        Identities { tokens: TokenTable::development(), ..Identities::default() }
    }

    /// The identities of an auth file's text; `path` names it in errors.
    ///
    /// # Errors
    /// Not TOML of the expected shape, an identity or certificate name
    /// twice, a malformed hash, no role, unusable OIDC settings.
    pub fn parse(text: &str, path: &str) -> Result<Identities, AuthFileError> {
        let invalid = |message: String| AuthFileError::Invalid { path: path.to_owned(), message };
        let file: AuthFile = toml::from_str(text).map_err(|err| invalid(err.to_string()))?;
        let mut identities = Identities::default();
        let mut names = std::collections::HashSet::new();
        for entry in file.identity {
            if entry.name.is_empty() || !entry.name.chars().all(|c| c.is_ascii_graphic()) {
                return Err(invalid(format!("identity name {:?} must be printable ASCII", entry.name)));
            }
            if !names.insert(entry.name.clone()) {
                return Err(invalid(format!("identity {:?} appears twice", entry.name)));
            }
            if entry.roles.is_empty() {
                return Err(invalid(format!("identity {:?} has no role", entry.name)));
            }
            let identity = Identity { name: entry.name.clone(), roles: Roles::of(&entry.roles) };
            if let Some(hash) = &entry.token_sha256 {
                let hash = parse_hex(&hash.to_ascii_lowercase())
                    .ok_or_else(|| invalid(format!("identity {:?}: token_sha256 must be 64 hex digits", entry.name)))?;
                identities.tokens.insert(hash, identity.clone());
            }
            if let Some(certificate) = entry.client_certificate {
                if certificate.is_empty() {
                    return Err(invalid(format!("identity {:?}: client_certificate is empty", entry.name)));
                }
                if identities.certificates.insert(certificate.clone(), identity).is_some() {
                    return Err(invalid(format!("client_certificate {certificate:?} names two identities")));
                }
            }
        }
        if let Some(oidc) = &file.oidc {
            oidc.check().map_err(|message| invalid(format!("[oidc]: {message}")))?;
        }
        identities.oidc = file.oidc;
        Ok(identities)
    }

    /// The identities of the auth file at `path`.
    ///
    /// # Errors
    /// As [`Identities::parse`], or the file cannot be read.
    pub fn load(path: &Path) -> Result<Identities, AuthFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| AuthFileError::Read { path: path.display().to_string(), source })?;
        Identities::parse(&text, &path.display().to_string())
    }

    /// Both sets of identities (a token in both belongs to the first's).
    #[must_use]
    pub fn with(mut self, other: Identities) -> Identities {
        self.tokens = self.tokens.with(other.tokens);
        for (name, identity) in other.certificates {
            self.certificates.entry(name).or_insert(identity);
        }
        self.oidc = self.oidc.or(other.oidc);
        self
    }

    /// The identity of a client certificate (DER, already verified by the
    /// TLS handshake against `--tls-client-ca`).
    pub fn by_certificate(&self, der: &[u8]) -> Option<Identity> {
        self.by_certificate_names(&certificate_names(der))
    }

    /// The identity of a client certificate carrying `names`: none when no
    /// name is known, or when its names point at different identities.
    fn by_certificate_names(&self, names: &[String]) -> Option<Identity> {
        let mut found: Option<&Identity> = None;
        for identity in names.iter().filter_map(|name| self.certificates.get(name)) {
            match found {
                Some(seen) if seen.name != identity.name => return None,
                _ => found = Some(identity),
            }
        }
        found.cloned()
    }
}

/// The names a certificate carries: its DNS, e-mail and URI subject
/// alternative names and its subject's common names.
fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let mut names: Vec<String> = match certificate.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(name) | GeneralName::RFC822Name(name) | GeneralName::URI(name) => {
                    Some((*name).to_owned())
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let common_names = certificate.subject().iter_common_name().filter_map(|cn| cn.as_str().ok());
    names.extend(common_names.map(str::to_owned));
    names
}

/// Appends `entry` to the auth file at `path` (created when missing),
/// refusing a name already there.
///
/// # Errors
/// The file cannot be read or written, is not a valid auth file, or names the identity already.
pub fn append(path: &Path, entry: &IdentityEntry) -> Result<(), AuthFileError> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(AuthFileError::Read { path: path.display().to_string(), source }),
    };
    let file: AuthFile = toml::from_str(&existing)
        .map_err(|err| AuthFileError::Invalid { path: path.display().to_string(), message: err.to_string() })?;
    if file.identity.iter().any(|known| known.name == entry.name) {
        return Err(AuthFileError::Invalid {
            path: path.display().to_string(),
            message: format!("identity {:?} exists already", entry.name),
        });
    }
    let appended = AuthFile { identity: vec![entry.clone()], oidc: None };
    let text = toml::to_string(&appended).expect("an auth file serializes");
    let separator = if existing.is_empty() || existing.ends_with('\n') { "" } else { "\n" };
    let write = std::fs::write(path, format!("{existing}{separator}{text}"));
    write.map_err(|source| AuthFileError::Read { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tokens::generate;

    #[test]
    fn bad_auth_files_are_refused_with_a_reason() {
        let cases = [
            ("[[identity]]\nname = \"a\"\nroles = []\ntoken_sha256 = \"00\"", "has no role"),
            ("[[identity]]\nname = \"a\"\nroles = [\"operator\"]\ntoken_sha256 = \"xyz\"", "64 hex digits"),
            ("[[identity]]\nname = \"a\"\nroles = [\"root\"]", "unknown variant"),
            (
                "[[identity]]\nname = \"a\"\nroles = [\"viewer\"]\n[[identity]]\nname = \"a\"\nroles = [\"viewer\"]",
                "twice",
            ),
            ("[[identity]]\nname = \"a\"\nroles = [\"viewer\"]\ntoken = \"plain\"", "unknown field"),
            (
                "[[identity]]\nname = \"a\"\nroles = [\"viewer\"]\nclient_certificate = \"x\"\n\
                 [[identity]]\nname = \"b\"\nroles = [\"viewer\"]\nclient_certificate = \"x\"",
                "names two identities",
            ),
            ("[oidc]\nissuer = \"https://idp\"\naudience = \"eucora\"", "jwks_url or jwks_file"),
        ];
        for (text, reason) in cases {
            let err = Identities::parse(text, "auth.toml").unwrap_err().to_string();
            assert!(err.contains(reason) && err.starts_with("auth.toml"), "{text}: {err}");
        }
    }

    #[test]
    fn entries_are_appended_once_and_keep_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        std::fs::write(
            &path,
            "[oidc]\nissuer = \"https://idp\"\naudience = \"eucora\"\njwks_file = \"keys.json\"\n\n\
             [oidc.roles_map]\nops = [\"operator\"]\n",
        )
        .unwrap();
        let (alice_token, alice) = generate("alice", &[Role::Operator]);
        append(&path, &alice).unwrap();
        let (bob_token, bob) = generate("bob", &[Role::Approver]);
        append(&path, &bob).unwrap();
        assert!(append(&path, &alice).unwrap_err().to_string().contains("exists already"));
        let identities = Identities::load(&path).unwrap();
        assert_eq!(identities.tokens.identify(&alice_token).unwrap().name, "alice");
        assert_eq!(identities.tokens.identify(&bob_token).unwrap().name, "bob");
        assert_eq!(identities.oidc.unwrap().roles_map["ops"], [Role::Operator]);
    }

    #[test]
    fn certificates_identify_by_one_of_their_names() {
        let text = "[[identity]]\nname = \"agent\"\nroles = [\"reporter\"]\nclient_certificate = \"agent-1.example\"\n\
                    [[identity]]\nname = \"ops\"\nroles = [\"operator\"]\nclient_certificate = \"ops@example\"";
        let identities = Identities::parse(text, "auth.toml").unwrap();
        let names = |list: &[&str]| list.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let agent = identities.by_certificate_names(&names(&["CN=x", "agent-1.example"])).unwrap();
        assert_eq!(agent.name, "agent");
        assert!(identities.by_certificate_names(&names(&["agent-2.example"])).is_none());
        // A certificate naming two identities is nobody.
        assert!(identities.by_certificate_names(&names(&["agent-1.example", "ops@example"])).is_none());
    }

    #[test]
    fn a_certificate_is_known_by_its_alternative_names_and_common_name() {
        let mut params = rcgen::CertificateParams::new(vec!["agent-1.example".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name("ops@example".try_into().unwrap()));
        params.distinguished_name.push(rcgen::DnType::CommonName, "Agent One");
        let certificate = params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
        let names = certificate_names(certificate.der());
        assert_eq!(names, ["agent-1.example", "ops@example", "Agent One"]);
        assert!(certificate_names(b"not a certificate").is_empty());
    }
}
