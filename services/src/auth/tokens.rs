//! Static bearer tokens from an auth file (TOML, one `[[identity]]` per
//! caller with its roles and the SHA-256 of its token — the token itself is
//! never stored), the fixed development tokens of `--dev-auth`, and the
//! generation of new tokens (`eucora auth token`). Presented tokens are
//! hashed and compared with every entry in constant time.

use std::path::Path;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Identity;
use super::roles::{Role, Roles};

/// One `[[identity]]` of the auth file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityEntry {
    pub name: String,
    pub roles: Vec<Role>,
    /// Lower-case hex SHA-256 of the bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    #[serde(default)]
    identity: Vec<IdentityEntry>,
}

/// Why an auth file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The development identities of `--dev-auth`: (token, identity, role).
/// Documented, so never accepted beyond loopback.
pub const DEV_TOKENS: [(&str, &str, Role); 5] = [
    ("dev-alice", "alice", Role::Operator),
    ("dev-bob", "bob", Role::Approver),
    ("dev-carol", "carol", Role::Admin),
    ("dev-victor", "victor", Role::Viewer),
    ("dev-agent", "agent", Role::Reporter),
];

/// Known tokens, by the SHA-256 of each.
#[derive(Debug, Clone, Default)]
pub struct TokenTable(Vec<([u8; 32], Identity)>);

pub fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl TokenTable {
    /// The identities of `--dev-auth`.
    pub fn development() -> TokenTable {
        TokenTable(
            DEV_TOKENS
                .iter()
                .map(|&(token, name, role)| {
                    (sha256(token), Identity { name: name.to_owned(), roles: Roles::of(&[role]) })
                })
                .collect(),
        )
    }

    /// The identities of an auth file's text; `path` names it in errors.
    ///
    /// # Errors
    /// Not TOML of the expected shape, an identity named twice, a malformed hash, no role.
    pub fn parse(text: &str, path: &str) -> Result<TokenTable, AuthFileError> {
        let invalid = |message: String| AuthFileError::Invalid { path: path.to_owned(), message };
        let file: AuthFile = toml::from_str(text).map_err(|err| invalid(err.to_string()))?;
        let mut table = Vec::new();
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
            if let Some(hash) = &entry.token_sha256 {
                let hash = parse_hex(&hash.to_ascii_lowercase())
                    .ok_or_else(|| invalid(format!("identity {:?}: token_sha256 must be 64 hex digits", entry.name)))?;
                table.push((hash, Identity { name: entry.name, roles: Roles::of(&entry.roles) }));
            }
        }
        Ok(TokenTable(table))
    }

    /// The identities of the auth file at `path`.
    ///
    /// # Errors
    /// As [`TokenTable::parse`], or the file cannot be read.
    pub fn load(path: &Path) -> Result<TokenTable, AuthFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| AuthFileError::Read { path: path.display().to_string(), source })?;
        TokenTable::parse(&text, &path.display().to_string())
    }

    /// The identity `token` belongs to. Every entry is compared, in constant
    /// time, whatever matches: timing tells nothing about which is close.
    pub fn identify(&self, token: &str) -> Option<Identity> {
        let presented = sha256(token);
        let mut found = None;
        for (hash, identity) in &self.0 {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(identity.clone());
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Both tables' identities (a token in both belongs to the first's).
    #[must_use]
    pub fn with(mut self, other: TokenTable) -> TokenTable {
        self.0.extend(other.0);
        self
    }
}

/// A new random token (256 bits, URL-safe) and the auth-file entry naming
/// `name` with `roles` that accepts it.
pub fn generate(name: &str, roles: &[Role]) -> (String, IdentityEntry) {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("eucora_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
    let entry =
        IdentityEntry { name: name.to_owned(), roles: roles.to_vec(), token_sha256: Some(hex(&sha256(&token))) };
    (token, entry)
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
    let appended = AuthFile { identity: vec![entry.clone()] };
    let text = toml::to_string(&appended).expect("an auth file serializes");
    let separator = if existing.is_empty() || existing.ends_with('\n') { "" } else { "\n" };
    let write = std::fs::write(path, format!("{existing}{separator}{text}"));
    write.map_err(|source| AuthFileError::Read { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_identify_by_hash_only() {
        let (token, entry) = generate("alice", &[Role::Operator, Role::Approver]);
        assert!(token.len() > 40 && token.starts_with("eucora_"));
        assert!(!toml::to_string(&entry).unwrap().contains(&token), "the token is never stored");
        let text = toml::to_string(&AuthFile { identity: vec![entry] }).unwrap();
        let table = TokenTable::parse(&text, "auth.toml").unwrap();
        let alice = table.identify(&token).expect("known token");
        assert_eq!(alice.name, "alice");
        assert!(alice.roles.permit(Role::Approver) && !alice.roles.permit(Role::Admin));
        assert!(table.identify("eucora_guess").is_none());
        assert!(table.identify("").is_none());
    }

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
        ];
        for (text, reason) in cases {
            let err = TokenTable::parse(text, "auth.toml").unwrap_err().to_string();
            assert!(err.contains(reason) && err.starts_with("auth.toml"), "{text}: {err}");
        }
    }

    #[test]
    fn entries_are_appended_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        let (alice_token, alice) = generate("alice", &[Role::Operator]);
        append(&path, &alice).unwrap();
        let (bob_token, bob) = generate("bob", &[Role::Approver]);
        append(&path, &bob).unwrap();
        assert!(append(&path, &alice).unwrap_err().to_string().contains("exists already"));
        let table = TokenTable::load(&path).unwrap();
        assert_eq!(table.identify(&alice_token).unwrap().name, "alice");
        assert_eq!(table.identify(&bob_token).unwrap().name, "bob");
    }

    #[test]
    fn development_tokens_name_their_identity() {
        let table = TokenTable::development();
        assert_eq!(table.identify("dev-bob").unwrap().name, "bob");
        assert!(table.identify("dev-carol").unwrap().roles.permit(Role::Admin));
        assert!(table.identify("dev-mallory").is_none());
    }
}
