//! Roles and the role each RPC needs: least privilege, one table. A role
//! may be held with others; `admin` may do everything.

use std::fmt;

/// What an identity may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
    serde::Deserialize,
    serde::Serialize,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads: Get, List, Watch, EvaluatePromotionGate, breaker and health reads.
    Viewer,
    /// Create, start, pause, resume, promote, roll back, complete, fail, correct outcomes.
    Operator,
    /// CAB decisions: approve and reject (never one's own submissions).
    Approver,
    /// ReportRingOutcome only (adapters and agents).
    Reporter,
    /// Connectors, ring policies, risk models, breaker resets, the change calendar, and everything above.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(<&'static str>::from(*self))
    }
}

/// The roles an identity holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Roles(u8);

impl Roles {
    pub const ALL: Roles = Roles(0b1_1111);

    pub fn of(roles: &[Role]) -> Roles {
        Roles(roles.iter().fold(0, |bits, role| bits | Self::bit(*role)))
    }

    fn bit(role: Role) -> u8 {
        1 << role as u8
    }

    /// Whether these roles allow what `role` allows (admin allows everything).
    pub fn allow(self, role: Role) -> bool {
        self.0 & (Self::bit(role) | Self::bit(Role::Admin)) != 0
    }

    /// Reads are allowed to every role but `reporter`, which only reports.
    fn allow_reads(self) -> bool {
        self.0 & !Self::bit(Role::Reporter) != 0
    }

    /// Whether these roles may call a method needing `needed`.
    pub fn permit(self, needed: Role) -> bool {
        match needed {
            Role::Viewer => self.allow_reads(),
            role => self.allow(role),
        }
    }
}

/// Who may call a method: `None` for the public ones (grpc.health.v1 and
/// server reflection), else the role needed. Unknown methods need `admin`
/// (tonic answers UNIMPLEMENTED to those who hold it).
pub fn required_role(path: &str) -> Option<Role> {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    if service == "grpc.health.v1.Health" || service.starts_with("grpc.reflection.") {
        return None;
    }
    Some(match (service, method) {
        ("eucora.v1.DeploymentService", "ReportRingOutcome") => Role::Reporter,
        ("eucora.v1.DeploymentService", "ApproveDeployment" | "RejectDeployment") => Role::Approver,
        (
            "eucora.v1.DeploymentService",
            "CreateDeployment" | "StartDeployment" | "CorrectRingOutcome" | "CompleteDeployment" | "FailDeployment"
            | "PauseDeployment" | "ResumeDeployment",
        ) => Role::Operator,
        ("eucora.v1.RingPromotionService", "PromoteDeployment" | "RollbackDeployment") => Role::Operator,
        ("eucora.v1.RingPromotionService", "UpdateRingPolicy") => Role::Admin,
        (
            "eucora.v1.ConnectorService",
            "CreateConnector" | "UpdateConnector" | "DeleteConnector" | "ResetCircuitBreaker",
        ) => Role::Admin,
        ("eucora.v1.RiskModelService", "CreateRiskModel" | "ActivateRiskModel") => Role::Admin,
        ("eucora.v1.ControlChangeService", "ApproveControlChange" | "RejectControlChange") => Role::Admin,
        // Break-glass: an operator asks; another identity, an admin, approves.
        ("eucora.v1.ControlChangeService", "RequestBreakGlass") => Role::Operator,
        (
            "eucora.v1.ChangeCalendarService",
            "CreateChangeWindow" | "UpdateChangeWindow" | "DeleteChangeWindow" | "SetChangeFreeze" | "LiftChangeFreeze",
        ) => Role::Admin,
        (
            "eucora.v1.DeploymentService"
            | "eucora.v1.RingPromotionService"
            | "eucora.v1.ConnectorService"
            | "eucora.v1.RiskModelService"
            | "eucora.v1.ControlChangeService"
            | "eucora.v1.ChangeCalendarService",
            method,
        ) if is_read(method) => Role::Viewer,
        _ => Role::Admin,
    })
}

fn is_read(method: &str) -> bool {
    ["Get", "List", "Watch", "Evaluate"].iter().any(|prefix| method.starts_with(prefix))
        || method == "CheckConnectorHealth"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_method_has_its_role() {
        let expected = [
            ("eucora.v1.DeploymentService/CreateDeployment", Some(Role::Operator)),
            ("eucora.v1.DeploymentService/GetDeployment", Some(Role::Viewer)),
            ("eucora.v1.DeploymentService/ListEvents", Some(Role::Viewer)),
            ("eucora.v1.DeploymentService/WatchDeployments", Some(Role::Viewer)),
            ("eucora.v1.DeploymentService/ApproveDeployment", Some(Role::Approver)),
            ("eucora.v1.DeploymentService/ReportRingOutcome", Some(Role::Reporter)),
            ("eucora.v1.DeploymentService/CorrectRingOutcome", Some(Role::Operator)),
            ("eucora.v1.RingPromotionService/EvaluatePromotionGate", Some(Role::Viewer)),
            ("eucora.v1.RingPromotionService/UpdateRingPolicy", Some(Role::Admin)),
            ("eucora.v1.RingPromotionService/RollbackDeployment", Some(Role::Operator)),
            ("eucora.v1.ConnectorService/CheckConnectorHealth", Some(Role::Viewer)),
            ("eucora.v1.ConnectorService/ResetCircuitBreaker", Some(Role::Admin)),
            ("eucora.v1.RiskModelService/ActivateRiskModel", Some(Role::Admin)),
            ("eucora.v1.ControlChangeService/ListControlChanges", Some(Role::Viewer)),
            ("eucora.v1.ControlChangeService/ApproveControlChange", Some(Role::Admin)),
            ("eucora.v1.ChangeCalendarService/ListChangeWindows", Some(Role::Viewer)),
            ("eucora.v1.ChangeCalendarService/SetChangeFreeze", Some(Role::Admin)),
            ("eucora.v1.ChangeCalendarService/LiftChangeFreeze", Some(Role::Admin)),
            ("grpc.health.v1.Health/Check", None),
            ("grpc.reflection.v1.ServerReflection/ServerReflectionInfo", None),
            ("eucora.v1.DeploymentService/Unknown", Some(Role::Admin)),
        ];
        for (path, role) in expected {
            assert_eq!(required_role(&format!("/{path}")), role, "{path}");
        }
        // No served method falls through to the default.
        for method in crate::server::served_methods() {
            let role = required_role(&format!("/{method}"));
            let mutation = !is_read(method.rsplit('/').next().unwrap());
            assert!(role.is_none() || role != Some(Role::Admin) || mutation, "{method}: {role:?}");
        }
    }

    #[test]
    fn roles_allow_least_privilege() {
        let viewer = Roles::of(&[Role::Viewer]);
        let reporter = Roles::of(&[Role::Reporter]);
        let operator_and_approver = Roles::of(&[Role::Operator, Role::Approver]);
        assert!(viewer.permit(Role::Viewer) && !viewer.permit(Role::Operator));
        assert!(reporter.permit(Role::Reporter) && !reporter.permit(Role::Viewer), "a reporter only reports");
        assert!(operator_and_approver.permit(Role::Viewer), "every other role reads");
        assert!(operator_and_approver.permit(Role::Approver) && !operator_and_approver.permit(Role::Admin));
        let admin = Roles::of(&[Role::Admin]);
        assert!(<Role as strum::VariantArray>::VARIANTS.iter().all(|&role| admin.permit(role)));
        assert!(!Roles::default().permit(Role::Viewer));
    }
}
