//! Opaque, stable page tokens for keyset pagination. A token names the last
//! row of the previous page and a hash of the filters it was issued for, so
//! reusing it with other filters is refused instead of returning a wrong page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::app::AppError;

const VERSION: &str = "v1";

/// Hash of the filters a token belongs to; any stable text of them will do.
pub fn filter_digest(filters: &str) -> String {
    let digest = Sha256::digest(filters.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn encode(after: i64, filters: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{VERSION}.{after}.{}", filter_digest(filters)))
}

/// `None` for an empty token (first page).
///
/// # Errors
/// INVALID_ARGUMENT on `page_token` when malformed or issued for other filters.
pub fn decode(token: &str, filters: &str) -> Result<Option<i64>, AppError> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed =
        || AppError::invalid("page_token", "malformed page token; pass the next_page_token of a previous response");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
    let text = String::from_utf8(bytes).map_err(|_| malformed())?;
    let mut parts = text.splitn(3, '.');
    let (Some(VERSION), Some(after), Some(digest)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed());
    };
    let after: i64 = after.parse().map_err(|_| malformed())?;
    if digest != filter_digest(filters) {
        return Err(AppError::invalid(
            "page_token",
            "page token was issued for different filters; start again without it",
        ));
    }
    Ok(Some(after))
}

/// A token naming a text key (e.g. a connector name) instead of a sequence.
pub fn encode_text(after: &str, filters: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{VERSION}.{}.{after}", filter_digest(filters)))
}

/// `None` for an empty token.
///
/// # Errors
/// INVALID_ARGUMENT on `page_token` when malformed or issued for other filters.
pub fn decode_text(token: &str, filters: &str) -> Result<Option<String>, AppError> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed =
        || AppError::invalid("page_token", "malformed page token; pass the next_page_token of a previous response");
    let text =
        URL_SAFE_NO_PAD.decode(token).ok().and_then(|bytes| String::from_utf8(bytes).ok()).ok_or_else(malformed)?;
    let mut parts = text.splitn(3, '.');
    let (Some(VERSION), Some(digest), Some(after)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed());
    };
    if digest != filter_digest(filters) {
        return Err(AppError::invalid(
            "page_token",
            "page token was issued for different filters; start again without it",
        ));
    }
    Ok(Some(after.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_binds_to_filters() {
        let token = encode(42, "status=approved");
        assert_eq!(decode(&token, "status=approved").unwrap(), Some(42));
        assert!(decode(&token, "status=failed").is_err());
        assert_eq!(decode("", "anything").unwrap(), None);
    }

    #[test]
    fn text_keys_round_trip() {
        let token = encode_text("intune-prod.eu", "type=None");
        assert_eq!(decode_text(&token, "type=None").unwrap().as_deref(), Some("intune-prod.eu"));
        assert!(decode_text(&token, "type=Some(\"jamf\")").is_err());
        assert!(decode_text("%%%", "").is_err());
    }

    #[test]
    fn garbage_is_invalid_argument() {
        for token in ["!!!", "djE", &URL_SAFE_NO_PAD.encode("v1.x.y"), &URL_SAFE_NO_PAD.encode("v2.1.abc")] {
            assert!(matches!(decode(token, ""), Err(AppError::InvalidArgument(_))), "{token}");
        }
    }
}
