//! Opaque, stable page tokens for keyset pagination. A token carries the key
//! of the last item of the previous page and a digest of the list and filters
//! it was issued for, so reusing it with other filters is refused instead of
//! returning a wrong page. Filters are written as `name=value` pairs from
//! their stable labels, never from `Debug` output, so a token survives a
//! server upgrade that keeps the labels.

use std::fmt::Display;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::app::AppError;

const VERSION: &str = "v1";

/// The list and filters a token is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope(String);

impl Scope {
    /// The scope of list `list` (e.g. `"deployments"`) with no filter yet.
    pub fn new(list: &str) -> Scope {
        Scope(list.to_owned())
    }

    /// Adds filter `name`, unset or with its stable label.
    #[must_use]
    pub fn with(mut self, name: &str, value: Option<impl Display>) -> Scope {
        self.0.push('&');
        self.0.push_str(name);
        if let Some(value) = value {
            // Escaped so that no value can impersonate another filter.
            self.0.push('=');
            self.0.push_str(&value.to_string().replace('%', "%25").replace('&', "%26"));
        }
        self
    }

    fn digest(&self) -> String {
        Sha256::digest(self.0.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The token for the page after `key` (empty when there is no next page).
    pub fn token(&self, key: Option<impl Display>) -> String {
        key.map(|key| URL_SAFE_NO_PAD.encode(format!("{VERSION}.{}.{key}", self.digest()))).unwrap_or_default()
    }

    /// The key a token names; `None` for an empty token (the first page).
    ///
    /// # Errors
    /// INVALID_ARGUMENT on `page_token` when malformed or issued for another scope.
    pub fn key<K: FromStr>(&self, token: &str) -> Result<Option<K>, AppError> {
        if token.is_empty() {
            return Ok(None);
        }
        let malformed =
            || AppError::invalid("page_token", "malformed page token; pass the next_page_token of a previous response");
        let text =
            URL_SAFE_NO_PAD.decode(token).ok().and_then(|bytes| String::from_utf8(bytes).ok()).ok_or_else(malformed)?;
        let mut parts = text.splitn(3, '.');
        let (Some(VERSION), Some(digest), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed());
        };
        if digest != self.digest() {
            return Err(AppError::invalid(
                "page_token",
                "page token was issued for different filters; start again without it",
            ));
        }
        key.parse().map(Some).map_err(|_| malformed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(status: Option<&str>) -> Scope {
        Scope::new("deployments").with("status", status).with("ring", None::<&str>)
    }

    #[test]
    fn sequence_keys_round_trip_and_bind_to_filters() {
        let token = scope(Some("approved")).token(Some(42));
        assert_eq!(scope(Some("approved")).key::<i64>(&token).unwrap(), Some(42));
        assert!(scope(Some("failed")).key::<i64>(&token).is_err());
        assert!(scope(None).key::<i64>(&token).is_err(), "unset differs from any value");
        assert_eq!(scope(None).key::<i64>("").unwrap(), None);
        assert_eq!(scope(None).token(None::<i64>), "");
    }

    #[test]
    fn text_keys_round_trip() {
        let connectors = Scope::new("connectors").with("type", None::<&str>);
        let token = connectors.token(Some("intune-prod.eu"));
        assert_eq!(connectors.key::<String>(&token).unwrap().as_deref(), Some("intune-prod.eu"));
        assert!(Scope::new("connectors").with("type", Some("jamf")).key::<String>(&token).is_err());
    }

    #[test]
    fn a_value_cannot_impersonate_another_filter() {
        let one = Scope::new("deployments").with("app", Some("a&ring=lab"));
        let two = Scope::new("deployments").with("app", Some("a")).with("ring", Some("lab"));
        assert_ne!(one, two);
    }

    #[test]
    fn garbage_is_invalid_argument() {
        let scope = Scope::new("events");
        for token in ["!!!", "djE", &URL_SAFE_NO_PAD.encode("v1.x"), &URL_SAFE_NO_PAD.encode("v2.abc.1")] {
            assert!(matches!(scope.key::<i64>(token), Err(AppError::InvalidArgument(_))), "{token}");
        }
        let wrong_key = scope.token(Some("not-a-number"));
        assert!(matches!(scope.key::<i64>(&wrong_key), Err(AppError::InvalidArgument(_))));
    }
}
