//! Static bearer tokens: the table of token hashes an auth file declares
//! (the token itself is never stored), the fixed development tokens of
//! `--dev-auth`, and the generation of new tokens (`eucora auth token`).
//! Presented tokens are hashed and compared with every entry in constant
//! time.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Identity;
use super::file::IdentityEntry;
use super::roles::{Role, Roles};

/// The development identities of `--dev-auth`: (token, identity, role).
/// Documented, so never accepted beyond loopback.
pub const DEV_TOKENS: [(&str, &str, Role); 6] = [
    ("dev-alice", "alice", Role::Operator),
    ("dev-bob", "bob", Role::Approver),
    ("dev-carol", "carol", Role::Admin),
    // A second admin, for changes that weaken a control (dual control).
    ("dev-dave", "dave", Role::Admin),
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

pub(super) fn parse_hex(text: &str) -> Option<[u8; 32]> {
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

    /// Accepts the token whose SHA-256 is `hash` as `identity`.
    pub fn insert(&mut self, hash: [u8; 32], identity: Identity) {
        self.0.push((hash, identity));
    }

    /// The identity `token` belongs to. Every entry is compared, in constant
    /// time, whatever matches: timing tells nothing about which is close.
    pub fn identify(&self, token: &str) -> Option<Identity> {
        let presented = sha256(token);
        let mut found = None;
        for (hash, identity) in &self.0 {
            if bool::from(hash.ct_eq(&presented)) && found.is_none() {
                found = Some(identity.clone());
            }
        }
        found
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
    let entry = IdentityEntry {
        name: name.to_owned(),
        roles: roles.to_vec(),
        token_sha256: Some(hex(&sha256(&token))),
        client_certificate: None,
    };
    (token, entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_identify_by_hash_only() {
        let (token, entry) = generate("alice", &[Role::Operator, Role::Approver]);
        assert!(token.len() > 40 && token.starts_with("eucora_"));
        assert!(!toml::to_string(&entry).unwrap().contains(&token), "the token is never stored");
        let mut table = TokenTable::default();
        let hash = parse_hex(entry.token_sha256.as_deref().unwrap()).unwrap();
        table.insert(hash, Identity { name: entry.name, roles: Roles::of(&entry.roles) });
        let alice = table.identify(&token).expect("known token");
        assert_eq!(alice.name, "alice");
        assert!(alice.roles.permit(Role::Approver) && !alice.roles.permit(Role::Admin));
        assert!(table.identify("eucora_guess").is_none());
        assert!(table.identify("").is_none());
    }

    #[test]
    fn development_tokens_name_their_identity() {
        let table = TokenTable::development();
        assert_eq!(table.identify("dev-bob").unwrap().name, "bob");
        assert!(table.identify("dev-carol").unwrap().roles.permit(Role::Admin));
        assert!(table.identify("dev-mallory").is_none());
    }
}
