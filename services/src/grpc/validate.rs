//! Request validation that collects every violation of a request, so one
//! INVALID_ARGUMENT names all bad fields with their dotted paths.

use std::time::Duration;

use chrono::{DateTime, Utc};

use uuid::Uuid;

use crate::app::{AppError, FieldViolation};

/// Longest free-text reason accepted.
pub const MAX_REASON_LEN: usize = 2000;
/// Longest client-chosen idempotency key.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// Longer than any etag the server hands out.
pub const MAX_ETAG_LEN: usize = 64;

/// Collects field violations; [`Violations::finish`] turns them into an error.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Violations {
        Violations::default()
    }

    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// A required single-line string of 1..=`max` characters, trimmed of nothing.
    pub fn required_text(&mut self, field: &str, value: &str, max: usize) -> String {
        if value.trim().is_empty() {
            self.add(field, "is required");
        } else {
            self.optional_text(field, value, max);
        }
        value.to_owned()
    }

    /// An optional string of at most `max` characters with no control
    /// characters: no NUL (PostgreSQL refuses it in text), no terminal
    /// escape sequences or line breaks reaching logs and audit trails.
    pub fn optional_text(&mut self, field: &str, value: &str, max: usize) -> Option<String> {
        let length = value.chars().count();
        if length > max {
            self.add(field, format!("must be at most {max} characters (got {length})"));
        } else if let Some(bad) = value.chars().find(|c| c.is_control()) {
            self.add(field, format!("must not contain control characters (found U+{:04X})", u32::from(bad)));
        }
        (!value.is_empty()).then(|| value.to_owned())
    }

    /// A required UUID.
    pub fn uuid(&mut self, field: &str, value: &str) -> Uuid {
        if value.is_empty() {
            self.add(field, "is required");
            return Uuid::nil();
        }
        match Uuid::parse_str(value) {
            Ok(id) if id.is_nil() => {
                self.add(field, "must not be the nil UUID");
                id
            }
            Ok(id) => id,
            Err(_) => {
                self.add(field, format!("must be a UUID (got {:?})", truncate(value)));
                Uuid::nil()
            }
        }
    }

    /// An optional non-negative `google.protobuf.Duration` in its canonical
    /// form: nanos within ±999,999,999 and of the same sign as seconds
    /// (anything else is refused rather than silently normalised).
    pub fn duration(&mut self, field: &str, value: Option<&prost_types::Duration>) -> Option<Duration> {
        let d = value?;
        if !(-999_999_999..=999_999_999).contains(&d.nanos) {
            self.add(field, format!("nanos must be within ±999,999,999 (got {})", d.nanos));
            return None;
        }
        if (d.seconds > 0 && d.nanos < 0) || (d.seconds < 0 && d.nanos > 0) {
            self.add(field, "seconds and nanos must have the same sign");
            return None;
        }
        // Checked here: prost-types' own conversion negates the seconds, which overflows at i64::MIN.
        if d.seconds < 0 || d.nanos < 0 {
            self.add(field, "must not be negative");
            return None;
        }
        Some(Duration::new(d.seconds.unsigned_abs(), d.nanos.unsigned_abs()))
    }

    /// A required `google.protobuf.Timestamp` in range (nanos 0..=999,999,999).
    pub fn timestamp(&mut self, field: &str, value: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
        let Some(t) = value else {
            self.add(field, "is required");
            return None;
        };
        let at = u32::try_from(t.nanos).ok().and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos));
        if at.is_none() {
            self.add(field, format!("is not a valid time (seconds {}, nanos {})", t.seconds, t.nanos));
        }
        at
    }

    /// An optional etag: empty or the decimal revision a previous response returned.
    pub fn etag(&mut self, field: &str, value: &str) -> Option<i64> {
        if value.is_empty() {
            return None;
        }
        match value.parse::<i64>() {
            Ok(revision) if revision >= 0 => Some(revision),
            _ => {
                self.add(field, format!("malformed etag {:?}; pass the etag of a previous response", truncate(value)));
                None
            }
        }
    }

    /// A proto enum field: known, and not `*_UNSPECIFIED` when `required`.
    pub fn enumeration<E: TryFrom<i32>>(&mut self, field: &str, value: i32, required: bool) -> Option<E> {
        if value == 0 {
            if required {
                self.add(field, "is required");
            }
            return None;
        }
        match E::try_from(value) {
            Ok(known) => Some(known),
            Err(_) => {
                self.add(field, format!("unknown enum value {value}"));
                None
            }
        }
    }

    /// Why a change is made, when the caller says.
    pub fn reason(&mut self, reason: &str) -> Option<String> {
        self.optional_text("reason", reason, MAX_REASON_LEN)
    }

    /// A position in the event log: 0 (the start) or a sequence a previous answer carried.
    pub fn sequence(&mut self, field: &str, value: i64) -> i64 {
        if value < 0 {
            self.add(field, format!("must not be negative (got {value})"));
            return 0;
        }
        value
    }

    /// A page size in 0..; 0 means `default`, larger than `max` is capped.
    pub fn page_size(&mut self, field: &str, value: i32, default: u64, max: u64) -> u64 {
        match u64::try_from(value) {
            Ok(0) => default,
            Ok(size) => size.min(max),
            Err(_) => {
                self.add(field, format!("must not be negative (got {value})"));
                default
            }
        }
    }

    /// # Errors
    /// INVALID_ARGUMENT listing every violation, when there is one.
    pub fn finish(self) -> Result<(), AppError> {
        if self.0.is_empty() { Ok(()) } else { Err(AppError::InvalidArgument(self.0)) }
    }
}

/// Keeps echoed bad input short in error messages.
pub fn truncate(value: &str) -> String {
    const SHOWN: usize = 64;
    if value.chars().count() <= SHOWN {
        value.to_owned()
    } else {
        format!("{}…", value.chars().take(SHOWN).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_violation() {
        let mut v = Violations::new();
        v.required_text("app_name", "", 10);
        v.required_text("version", &"x".repeat(11), 10);
        v.required_text("submitter", "bob\u{7}", 10);
        v.uuid("evidence_pack_id", "nope");
        v.etag("etag", "abc");
        v.page_size("page_size", -1, 50, 500);
        let Err(AppError::InvalidArgument(violations)) = v.finish() else { panic!("expected violations") };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["app_name", "version", "submitter", "evidence_pack_id", "etag", "page_size"]);
    }

    #[test]
    fn refuses_control_characters_nil_ids_and_odd_durations() {
        let mut v = Violations::new();
        v.optional_text("reason", "ok\u{0}", 100);
        v.optional_text("actor_reason", "\u{1b}[31mred", 100);
        v.uuid("id", "00000000-0000-0000-0000-000000000000");
        let odd = prost_types::Duration { seconds: 1, nanos: 1_000_000_000 };
        assert_eq!(v.duration("timeout", Some(&odd)), None);
        let mixed = prost_types::Duration { seconds: 1, nanos: -5 };
        assert_eq!(v.duration("latency", Some(&mixed)), None);
        let negative = prost_types::Duration { seconds: -1, nanos: 0 };
        assert_eq!(v.duration("reset", Some(&negative)), None);
        let most_negative = prost_types::Duration { seconds: i64::MIN, nanos: 0 };
        assert_eq!(v.duration("bake", Some(&most_negative)), None, "refused, not a panic");
        let Err(AppError::InvalidArgument(violations)) = v.finish() else { panic!("expected violations") };
        let fields: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["reason", "actor_reason", "id", "timeout", "latency", "reset", "bake"]);
        assert_eq!(violations[0].description, "must not contain control characters (found U+0000)");
    }

    #[test]
    fn accepts_good_input() {
        let mut v = Violations::new();
        assert_eq!(v.required_text("app_name", "firefox", 10), "firefox");
        assert_eq!(v.etag("etag", "7"), Some(7));
        assert_eq!(v.etag("etag", ""), None);
        assert_eq!(v.page_size("page_size", 0, 50, 500), 50);
        assert_eq!(v.page_size("page_size", 9999, 50, 500), 500);
        let half = prost_types::Duration { seconds: 0, nanos: 500_000_000 };
        assert_eq!(v.duration("d", Some(&half)), Some(Duration::from_millis(500)));
        assert_eq!(v.duration("d", None), None);
        let longest = prost_types::Duration { seconds: i64::MAX, nanos: 999_999_999 };
        assert_eq!(v.duration("d", Some(&longest)), Some(Duration::new(i64::MAX.unsigned_abs(), 999_999_999)));
        assert!(v.finish().is_ok());
    }
}
