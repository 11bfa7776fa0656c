//! Deployment rings and their order (LAB → CANARY → PILOT → DEPARTMENT → GLOBAL).

use crate::Label;
use std::fmt;

/// A deployment ring. The derived order is the rollout order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
    serde::Serialize,
    serde::Deserialize,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Ring {
    Lab,
    Canary,
    Pilot,
    Department,
    Global,
}

impl Ring {
    /// Ring number as DESIGN counts it: LAB is 0, GLOBAL is 4.
    pub fn number(self) -> u8 {
        self as u8
    }

    pub fn from_number(number: u8) -> Option<Ring> {
        Ring::ALL.get(usize::from(number)).copied()
    }

    /// The ring a deployment enters when it is promoted out of this one.
    pub fn next(self) -> Option<Ring> {
        Ring::from_number(self.number() + 1)
    }
}

impl fmt::Display for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_label().to_ascii_uppercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_advance_one_at_a_time_and_stop_after_global() {
        assert_eq!(Ring::Lab.next(), Some(Ring::Canary));
        assert_eq!(Ring::Canary.next(), Some(Ring::Pilot));
        assert_eq!(Ring::Pilot.next(), Some(Ring::Department));
        assert_eq!(Ring::Department.next(), Some(Ring::Global));
        assert_eq!(Ring::Global.next(), None);
    }

    #[test]
    fn labels_round_trip() {
        for &ring in Ring::ALL {
            assert_eq!(Ring::from_label(ring.as_label()), Some(ring));
            assert_eq!(Ring::from_number(ring.number()), Some(ring));
        }
        assert_eq!(Ring::from_label("LAB"), None);
        assert_eq!(Ring::from_number(5), None);
    }
}
