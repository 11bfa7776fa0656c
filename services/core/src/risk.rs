//! Risk scoring: evidence packs, versioned risk models and the explainable,
//! pure scoring function. Score = ⌊100 × Σ weight × factor⌋, clamped to
//! 0..=100, where each factor is read off a rubric from the evidence, the
//! target ring and the app's recent history.

use crate::Label;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ring::Ring;

/// What a factor measures.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum FactorKind {
    PrivilegeElevation,
    BlastRadius,
    RollbackComplexity,
    VulnerabilitySeverity,
    ComplianceImpact,
    DeploymentFrequency,
    EvidenceCompleteness,
    HistoricalSuccessRate,
}

impl FactorKind {
    /// "Vulnerability Severity".
    pub fn title(self) -> String {
        self.as_label()
            .split('_')
            .map(|word| {
                let mut chars = word.chars();
                chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The rubric's parameter names with the default model's values.
    pub fn default_rubric(self) -> &'static [(&'static str, f64)] {
        match self {
            FactorKind::PrivilegeElevation => &[("admin", 1.0), ("elevation", 0.5), ("none", 0.0)],
            FactorKind::BlastRadius => {
                &[("lab", 0.0), ("canary", 0.2), ("pilot", 0.4), ("department", 0.7), ("global", 1.0)]
            }
            FactorKind::RollbackComplexity => &[("tested", 0.0), ("planned", 0.5), ("none", 1.0)],
            FactorKind::VulnerabilitySeverity => &[("critical", 1.0), ("high", 0.7), ("medium", 0.3), ("none", 0.0)],
            FactorKind::ComplianceImpact => &[("sox_or_hipaa", 1.0), ("pci", 0.7), ("other", 0.3), ("none", 0.0)],
            FactorKind::DeploymentFrequency => {
                &[("none", 1.0), ("one_to_two", 0.7), ("three_to_five", 0.4), ("six_to_ten", 0.2), ("more", 0.0)]
            }
            FactorKind::EvidenceCompleteness => &[],
            FactorKind::HistoricalSuccessRate => &[
                ("no_history", 0.5),
                ("at_least_99", 0.0),
                ("at_least_90", 0.1),
                ("at_least_75", 0.3),
                ("at_least_50", 0.6),
                ("below_50", 1.0),
            ],
        }
    }

    /// The default model's weight.
    pub fn default_weight(self) -> f64 {
        match self {
            FactorKind::PrivilegeElevation => 0.15,
            FactorKind::BlastRadius => 0.20,
            FactorKind::RollbackComplexity => 0.15,
            FactorKind::VulnerabilitySeverity => 0.20,
            FactorKind::ComplianceImpact => 0.10,
            FactorKind::DeploymentFrequency => 0.05,
            FactorKind::EvidenceCompleteness => 0.10,
            FactorKind::HistoricalSuccessRate => 0.05,
        }
    }
}

/// One factor of a model: its weight and rubric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    pub kind: FactorKind,
    pub weight: f64,
    /// Rubric values by parameter name (see [`FactorKind::default_rubric`]).
    pub rubric: BTreeMap<String, f64>,
}

impl Factor {
    fn value(&self, key: &str) -> f64 {
        self.rubric.get(key).copied().unwrap_or(0.0)
    }
}

/// A versioned risk model. Models are never changed once created.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskModel {
    pub version: i32,
    pub name: String,
    pub factors: Vec<Factor>,
    /// Scores above this need a CAB approval.
    pub threshold: u8,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
}

impl RiskModel {
    /// Opaque version of the model's state: only activation changes a model.
    pub fn etag(&self) -> String {
        let activated = self.activated_at.map_or(0, |at| at.timestamp_millis());
        format!("{}.{}.{activated}", self.version, if self.active { "active" } else { "inactive" })
    }

    /// What a create request says of the model: the fields the server does not set.
    pub fn requested_content(&self) -> impl Serialize + '_ {
        (&self.name, &self.factors, self.threshold)
    }

    /// The model the first migration installs: DESIGN's eight factors, threshold 50.
    pub fn default_model(now: DateTime<Utc>) -> RiskModel {
        RiskModel {
            version: 1,
            name: "default".into(),
            factors: FactorKind::ALL
                .iter()
                .map(|&kind| Factor {
                    kind,
                    weight: kind.default_weight(),
                    rubric: kind.default_rubric().iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
                })
                .collect(),
            threshold: 50,
            active: true,
            created_at: now,
            activated_at: Some(now),
        }
    }

    /// Every problem with a proposed model, as (field, description).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() || self.name.chars().count() > 100 {
            problems.push(("model.name".to_owned(), "must be 1..=100 characters".to_owned()));
        }
        if self.threshold > 100 {
            problems.push(("model.threshold".to_owned(), "must be in 0..=100".to_owned()));
        }
        if self.factors.is_empty() {
            problems.push(("model.factors".to_owned(), "at least one factor is required".to_owned()));
        }
        let mut seen = Vec::new();
        for (i, factor) in self.factors.iter().enumerate() {
            let field = format!("model.factors[{i}]");
            if seen.contains(&factor.kind) {
                problems.push((format!("{field}.kind"), format!("{} appears twice", factor.kind.as_label())));
            }
            seen.push(factor.kind);
            if !(0.0..=1.0).contains(&factor.weight) || factor.weight.is_nan() {
                problems.push((format!("{field}.weight"), format!("must be in 0..=1 (got {})", factor.weight)));
            }
            let expected: Vec<&str> = factor.kind.default_rubric().iter().map(|(k, _)| *k).collect();
            for key in factor.rubric.keys() {
                if !expected.contains(&key.as_str()) {
                    problems
                        .push((format!("{field}.rubric"), format!("unknown parameter {key:?}; expected {expected:?}")));
                }
            }
            for key in &expected {
                match factor.rubric.get(*key) {
                    None => problems.push((format!("{field}.rubric"), format!("parameter {key:?} is missing"))),
                    Some(v) if !(0.0..=1.0).contains(v) || v.is_nan() => {
                        problems.push((format!("{field}.rubric.{key}"), format!("must be in 0..=1 (got {v})")));
                    }
                    Some(_) => {}
                }
            }
        }
        let total: f64 = self.factors.iter().map(|f| f.weight).sum();
        if (total - 1.0).abs() > 1e-6 {
            problems.push(("model.factors".to_owned(), format!("weights must sum to 1 (they sum to {total:.4})")));
        }
        problems
    }
}

/// Vulnerability scan counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ScanCounts {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
}

/// A software bill of materials summary.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SbomSummary {
    pub format: String,
    pub component_count: u32,
}

/// The evidence pack that comes with a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// Lower-case hex SHA-256 of the artifact.
    pub artifact_sha256: Option<String>,
    pub sbom: Option<SbomSummary>,
    pub scan: Option<ScanCounts>,
    pub requires_admin: bool,
    pub requests_elevation: bool,
    pub rollback_plan: bool,
    pub rollback_tested: bool,
    /// Lower-case tags such as `sox`, `hipaa`, `pci`.
    pub compliance_tags: Vec<String>,
    pub notes: String,
}

/// The app's recent record, from indexed counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct History {
    /// Deployments of the same app created in the last 30 days.
    pub deployments_last_30_days: u64,
    /// Deployments of the same app that completed / failed in the last 90 days.
    pub completed_last_90_days: u64,
    pub failed_last_90_days: u64,
}

/// One factor's contribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactorScore {
    pub kind: FactorKind,
    pub weight: f64,
    /// 0..=1 from the rubric.
    pub value: f64,
    /// "Vulnerability Severity 0.7 × 0.20: 2 high findings".
    pub explanation: String,
}

/// The score of a deployment and how it came about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    pub model_version: i32,
    pub threshold: u8,
    pub score: u8,
    pub factors: Vec<FactorScore>,
}

impl Assessment {
    pub fn requires_cab(&self) -> bool {
        self.score > self.threshold
    }
}

fn plural(n: u64, one: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {one}s") }
}

/// Scores a deployment targeting `target_ring` with `evidence` and `history` under `model`.
pub fn assess(model: &RiskModel, evidence: &Evidence, target_ring: Ring, history: History) -> Assessment {
    let factors: Vec<FactorScore> = model
        .factors
        .iter()
        .map(|factor| {
            let (value, why) = rate(factor, evidence, target_ring, history);
            FactorScore {
                kind: factor.kind,
                weight: factor.weight,
                value,
                explanation: format!("{} {value} × {:.2}: {why}", factor.kind.title(), factor.weight),
            }
        })
        .collect();
    let total: f64 = factors.iter().map(|f| f.weight * f.value).sum();
    // A hair of tolerance so 0.6 stays 60 despite binary fractions.
    let score = (100.0 * total + 1e-9).floor().clamp(0.0, 100.0) as u8;
    Assessment { model_version: model.version, threshold: model.threshold, score, factors }
}

fn rate(factor: &Factor, e: &Evidence, target_ring: Ring, h: History) -> (f64, String) {
    let v = |key: &str| factor.value(key);
    match factor.kind {
        FactorKind::PrivilegeElevation => match (e.requires_admin, e.requests_elevation) {
            (true, _) => (v("admin"), "requires admin rights".into()),
            (false, true) => (v("elevation"), "requests elevation".into()),
            _ => (v("none"), "no elevated privileges".into()),
        },
        FactorKind::BlastRadius => (v(target_ring.as_label()), format!("targets {target_ring}")),
        FactorKind::RollbackComplexity => match (e.rollback_plan, e.rollback_tested) {
            (true, true) => (v("tested"), "rollback planned and tested".into()),
            (true, false) => (v("planned"), "rollback planned, not tested".into()),
            _ => (v("none"), "no rollback plan".into()),
        },
        FactorKind::VulnerabilitySeverity => {
            let scan = e.scan.unwrap_or_default();
            let findings = |n: u32, severity: &str| format!("{n} {severity} finding{}", if n == 1 { "" } else { "s" });
            if scan.critical > 0 {
                (v("critical"), findings(scan.critical, "critical"))
            } else if scan.high > 0 {
                (v("high"), findings(scan.high, "high"))
            } else if scan.medium > 0 {
                (v("medium"), findings(scan.medium, "medium"))
            } else if e.scan.is_some() {
                (v("none"), "no medium or worse findings".into())
            } else {
                (v("none"), "no scan attached (see evidence completeness)".into())
            }
        }
        FactorKind::ComplianceImpact => {
            let tags = &e.compliance_tags;
            if tags.iter().any(|t| t == "sox" || t == "hipaa") {
                (v("sox_or_hipaa"), format!("tagged {}", tags.join(", ")))
            } else if tags.iter().any(|t| t == "pci") {
                (v("pci"), format!("tagged {}", tags.join(", ")))
            } else if !tags.is_empty() {
                (v("other"), format!("tagged {}", tags.join(", ")))
            } else {
                (v("none"), "no compliance tags".into())
            }
        }
        FactorKind::DeploymentFrequency => {
            let n = h.deployments_last_30_days;
            let key = match n {
                0 => "none",
                1..=2 => "one_to_two",
                3..=5 => "three_to_five",
                6..=10 => "six_to_ten",
                _ => "more",
            };
            (v(key), format!("{} of this app in 30 days", plural(n, "deployment")))
        }
        FactorKind::EvidenceCompleteness => {
            let missing: Vec<&str> = [
                (e.artifact_sha256.is_none(), "artifact hash"),
                (e.sbom.is_none(), "SBOM"),
                (e.scan.is_none(), "vulnerability scan"),
                (!e.rollback_plan, "rollback plan"),
            ]
            .into_iter()
            .filter_map(|(absent, what)| absent.then_some(what))
            .collect();
            let share = missing.len() as f64 / 4.0;
            let why =
                if missing.is_empty() { "complete".to_owned() } else { format!("missing {}", missing.join(", ")) };
            (share, why)
        }
        FactorKind::HistoricalSuccessRate => {
            let (done, failed) = (h.completed_last_90_days, h.failed_last_90_days);
            let total = done + failed;
            if total == 0 {
                return (v("no_history"), "no completed or failed deployments in 90 days".into());
            }
            let rate = done as f64 / total as f64;
            let key = match rate {
                r if r >= 0.99 => "at_least_99",
                r if r >= 0.90 => "at_least_90",
                r if r >= 0.75 => "at_least_75",
                r if r >= 0.50 => "at_least_50",
                _ => "below_50",
            };
            (v(key), format!("{done} of {total} completed in 90 days ({:.0} %)", rate * 100.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn model() -> RiskModel {
        RiskModel::default_model(DateTime::UNIX_EPOCH)
    }

    fn complete() -> Evidence {
        Evidence {
            artifact_sha256: Some("ab".repeat(32)),
            sbom: Some(SbomSummary { format: "cyclonedx".into(), component_count: 120 }),
            scan: Some(ScanCounts::default()),
            rollback_plan: true,
            rollback_tested: true,
            ..Evidence::default()
        }
    }

    fn value(a: &Assessment, kind: FactorKind) -> f64 {
        a.factors.iter().find(|f| f.kind == kind).unwrap().value
    }

    #[test]
    fn the_default_model_is_valid_and_explains_itself() {
        let m = model();
        assert!(m.problems().is_empty(), "{:?}", m.problems());
        let evidence = Evidence { scan: Some(ScanCounts { high: 2, ..ScanCounts::default() }), ..complete() };
        let a = assess(&m, &evidence, Ring::Global, History::default());
        let vuln = a.factors.iter().find(|f| f.kind == FactorKind::VulnerabilitySeverity).unwrap();
        assert_eq!(vuln.explanation, "Vulnerability Severity 0.7 × 0.20: 2 high findings");
        // 0.20 × 1 (global) + 0.20 × 0.7 + 0.05 × 1 (first deployment) + 0.05 × 0.5 (no history) = 0.415
        assert_eq!(a.score, 41);
        assert!(!a.requires_cab());
    }

    #[test]
    fn a_critical_finding_on_a_global_target_needs_cab() {
        let evidence = Evidence {
            scan: Some(ScanCounts { critical: 1, ..ScanCounts::default() }),
            requires_admin: true,
            ..complete()
        };
        let a = assess(&model(), &evidence, Ring::Global, History::default());
        // 0.15 + 0.20 + 0.20 + 0.05 + 0.025 = 0.625
        assert_eq!(a.score, 62);
        assert!(a.requires_cab());
    }

    #[test]
    fn every_rubric_boundary() {
        let m = model();
        let score = |e: &Evidence, ring: Ring, h: History, kind| value(&assess(&m, e, ring, h), kind);
        let h = History::default();
        use FactorKind::*;
        assert_eq!(score(&Evidence { requires_admin: true, ..complete() }, Ring::Lab, h, PrivilegeElevation), 1.0);
        assert_eq!(score(&Evidence { requests_elevation: true, ..complete() }, Ring::Lab, h, PrivilegeElevation), 0.5);
        assert_eq!(score(&complete(), Ring::Lab, h, PrivilegeElevation), 0.0);
        for (ring, expected) in
            [(Ring::Lab, 0.0), (Ring::Canary, 0.2), (Ring::Pilot, 0.4), (Ring::Department, 0.7), (Ring::Global, 1.0)]
        {
            assert_eq!(score(&complete(), ring, h, BlastRadius), expected);
        }
        assert_eq!(score(&complete(), Ring::Lab, h, RollbackComplexity), 0.0);
        assert_eq!(score(&Evidence { rollback_tested: false, ..complete() }, Ring::Lab, h, RollbackComplexity), 0.5);
        assert_eq!(
            score(
                &Evidence { rollback_plan: false, rollback_tested: false, ..complete() },
                Ring::Lab,
                h,
                RollbackComplexity
            ),
            1.0
        );
        let scan = |critical, high, medium, low| Evidence {
            scan: Some(ScanCounts { critical, high, medium, low }),
            ..complete()
        };
        assert_eq!(score(&scan(1, 0, 0, 0), Ring::Lab, h, VulnerabilitySeverity), 1.0);
        assert_eq!(score(&scan(0, 1, 9, 9), Ring::Lab, h, VulnerabilitySeverity), 0.7);
        assert_eq!(score(&scan(0, 0, 1, 9), Ring::Lab, h, VulnerabilitySeverity), 0.3);
        assert_eq!(score(&scan(0, 0, 0, 9), Ring::Lab, h, VulnerabilitySeverity), 0.0);
        let tags = |t: &[&str]| Evidence { compliance_tags: t.iter().map(|s| s.to_string()).collect(), ..complete() };
        assert_eq!(score(&tags(&["hipaa"]), Ring::Lab, h, ComplianceImpact), 1.0);
        assert_eq!(score(&tags(&["sox", "pci"]), Ring::Lab, h, ComplianceImpact), 1.0);
        assert_eq!(score(&tags(&["pci"]), Ring::Lab, h, ComplianceImpact), 0.7);
        assert_eq!(score(&tags(&["gdpr"]), Ring::Lab, h, ComplianceImpact), 0.3);
        assert_eq!(score(&tags(&[]), Ring::Lab, h, ComplianceImpact), 0.0);
        for (n, expected) in [(0, 1.0), (1, 0.7), (2, 0.7), (3, 0.4), (5, 0.4), (6, 0.2), (10, 0.2), (11, 0.0)] {
            let h = History { deployments_last_30_days: n, ..History::default() };
            assert_eq!(score(&complete(), Ring::Lab, h, DeploymentFrequency), expected, "{n} deployments");
        }
        assert_eq!(score(&complete(), Ring::Lab, h, EvidenceCompleteness), 0.0);
        assert_eq!(score(&Evidence::default(), Ring::Lab, h, EvidenceCompleteness), 1.0);
        assert_eq!(score(&Evidence { sbom: None, ..complete() }, Ring::Lab, h, EvidenceCompleteness), 0.25);
        for (done, failed, expected) in [
            (0, 0, 0.5),
            (99, 1, 0.0),
            (98, 2, 0.1),
            (90, 10, 0.1),
            (89, 11, 0.3),
            (75, 25, 0.3),
            (74, 26, 0.6),
            (50, 50, 0.6),
            (49, 51, 1.0),
        ] {
            let h = History { completed_last_90_days: done, failed_last_90_days: failed, ..History::default() };
            assert_eq!(score(&complete(), Ring::Lab, h, HistoricalSuccessRate), expected, "{done}/{failed}");
        }
    }

    #[test]
    fn invalid_models_name_each_problem() {
        let mut m = model();
        m.factors[0].weight = 0.5;
        m.factors[1].rubric.insert("moon".into(), 0.1);
        m.factors[2].rubric.remove("tested");
        m.factors[3].kind = FactorKind::BlastRadius;
        let fields: Vec<_> = m.problems().into_iter().map(|(f, _)| f).collect();
        assert!(fields.contains(&"model.factors".to_owned()), "{fields:?}");
        assert!(fields.contains(&"model.factors[1].rubric".to_owned()));
        assert!(fields.contains(&"model.factors[2].rubric".to_owned()));
        assert!(fields.contains(&"model.factors[3].kind".to_owned()));
    }

    fn evidence() -> impl Strategy<Value = Evidence> {
        (any::<[bool; 8]>(), 0u32..3, 0u32..3, 0u32..3, 0usize..4).prop_map(|(b, critical, high, medium, tag)| {
            Evidence {
                artifact_sha256: b[0].then(|| "cd".repeat(32)),
                sbom: b[1].then(SbomSummary::default),
                scan: b[2].then_some(ScanCounts { critical, high, medium, low: 0 }),
                requires_admin: b[3],
                requests_elevation: b[4],
                rollback_plan: b[5],
                rollback_tested: b[5] && b[6],
                compliance_tags: [vec![], vec!["sox".to_owned()], vec!["pci".to_owned()], vec!["iso".to_owned()]][tag]
                    .clone(),
                notes: String::new(),
            }
        })
    }

    fn history() -> impl Strategy<Value = History> {
        (0u64..20, 0u64..50, 0u64..50).prop_map(|(n, done, failed)| History {
            deployments_last_30_days: n,
            completed_last_90_days: done,
            failed_last_90_days: failed,
        })
    }

    fn ring() -> impl Strategy<Value = Ring> {
        proptest::sample::select(Ring::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn scores_stay_in_range_and_equal_the_weighted_sum(e in evidence(), h in history(), r in ring()) {
            let a = assess(&model(), &e, r, h);
            prop_assert!(a.score <= 100);
            let sum: f64 = a.factors.iter().map(|f| f.weight * f.value).sum();
            prop_assert_eq!(u32::from(a.score), (100.0 * sum + 1e-9).floor() as u32);
            prop_assert!(a.factors.iter().all(|f| (0.0..=1.0).contains(&f.value)));
        }

        /// Raising any one factor's rubric values never lowers a score.
        #[test]
        fn monotone_in_each_factor(e in evidence(), h in history(), r in ring(), k in 0usize..8, bump in 0.0f64..1.0) {
            let base = model();
            let mut raised = base.clone();
            for value in raised.factors[k].rubric.values_mut() {
                *value = (*value + bump).min(1.0);
            }
            prop_assert!(assess(&raised, &e, r, h).score >= assess(&base, &e, r, h).score);
        }

        /// A ring further out never scores lower.
        #[test]
        fn wider_targets_never_score_lower(e in evidence(), h in history()) {
            let scores: Vec<u8> = Ring::ALL.iter().map(|r| assess(&model(), &e, *r, h).score).collect();
            prop_assert!(scores.windows(2).all(|w| w[0] <= w[1]), "{:?}", scores);
        }
    }
}
