//! Connector credentials sealed at rest: each token is encrypted with
//! ChaCha20-Poly1305 under the server's secret key (`EUCORA_SECRET_KEY` or
//! `--secret-key-file`: 32 random bytes, base64) and a fresh random nonce,
//! so the database never holds a token in clear and a row copied elsewhere
//! cannot be read or altered without the key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Marks a sealed value, and the scheme that sealed it.
const PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 12;

/// The key connector credentials are sealed with.
#[derive(Clone)]
pub struct SecretKey(Key);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

/// Why a key or a sealed value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the secret key must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)")]
    BadKey,
    #[error(
        "a sealed credential does not open with this server's secret key (another key sealed it, or it was altered)"
    )]
    WrongKey,
    #[error("connector credentials are stored sealed: configure a secret key (EUCORA_SECRET_KEY or --secret-key-file)")]
    NoKey,
}

impl SecretKey {
    /// A key from its base64 text (surrounding whitespace ignored).
    ///
    /// # Errors
    /// Not base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<SecretKey, SecretError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| SecretError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadKey)?;
        Ok(SecretKey(key.into()))
    }

    /// The documented key of `--dev-auth` set-ups: sealing with it hides
    /// nothing from someone who reads this source.
    pub fn development() -> SecretKey {
        SecretKey(<[u8; 32]>::from(Sha256::digest(b"eucora development key: not a secret")).into())
    }

    /// `plaintext` sealed under this key with a fresh nonce.
    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = ChaCha20Poly1305::new(&self.0)
            .encrypt(&Nonce::from(nonce), plaintext.as_bytes())
            .expect("sealing a short value cannot fail");
        format!("{PREFIX}{}", STANDARD.encode([nonce.as_slice(), &sealed].concat()))
    }

    /// The plaintext of a value [`SecretKey::seal`] produced.
    ///
    /// # Errors
    /// The value was sealed under another key, altered, or is not sealed.
    pub fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let bytes =
            sealed.strip_prefix(PREFIX).and_then(|b64| STANDARD.decode(b64).ok()).ok_or(SecretError::WrongKey)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretError::WrongKey);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::from(<[u8; NONCE_LEN]>::try_from(nonce).map_err(|_| SecretError::WrongKey)?);
        let plain = ChaCha20Poly1305::new(&self.0).decrypt(&nonce, sealed).map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| SecretError::WrongKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key() {
        let key = SecretKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let sealed = key.seal("s3cret-token");
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("s3cret"));
        assert_ne!(key.seal("s3cret-token"), sealed, "a fresh nonce every time");
        assert_eq!(key.open(&sealed).unwrap(), "s3cret-token");
        assert_eq!(SecretKey::development().open(&sealed), Err(SecretError::WrongKey));
        let mut altered = sealed.clone();
        altered.replace_range(sealed.len() - 4.., "AAAA");
        assert_eq!(key.open(&altered), Err(SecretError::WrongKey));
        assert_eq!(key.open("s3cret-token"), Err(SecretError::WrongKey), "clear text is not a sealed value");
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        assert!(SecretKey::from_base64(&STANDARD.encode([1u8; 32])).is_ok());
        assert_eq!(SecretKey::from_base64(&STANDARD.encode([1u8; 16])).unwrap_err(), SecretError::BadKey);
        assert_eq!(SecretKey::from_base64("not base64!").unwrap_err(), SecretError::BadKey);
        assert_eq!(format!("{:?}", SecretKey::development()), "SecretKey(…)", "never printed");
    }
}
