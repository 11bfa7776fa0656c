//! Audited changes to configuration (ring policies, connectors): what was
//! done, by whom, when, why, and the object before and after. Deployments
//! keep their own, richer event log.

use chrono::{DateTime, Utc};

/// What a configuration change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
    /// An operator closed a connector's circuit breaker.
    BreakerReset,
}

/// One entry of a configuration change log.
#[derive(Debug, Clone, PartialEq)]
pub struct Change<T> {
    /// Position in the log; strictly increasing.
    pub seq: i64,
    pub kind: ChangeKind,
    /// None for a creation.
    pub before: Option<T>,
    /// None for a deletion.
    pub after: Option<T>,
    pub actor: String,
    pub reason: String,
    pub correlation_id: String,
    pub at: DateTime<Utc>,
    /// The second admin who approved a change that weakened a control
    /// (`actor` proposed it).
    pub approved_by: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Label;

    #[test]
    fn labels_round_trip() {
        for kind in [ChangeKind::Created, ChangeKind::Updated, ChangeKind::Deleted, ChangeKind::BreakerReset] {
            assert_eq!(ChangeKind::from_label(kind.as_label()), Some(kind));
        }
        assert_eq!(ChangeKind::from_label("renamed"), None);
    }
}
