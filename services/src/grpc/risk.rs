//! RiskModelService adapter, and the conversions of evidence packs, risk
//! models and assessments between `eucora.v1` and the domain.

use eucora::v1 as pb;
use eucora::v1::risk_model_service_server::RiskModelService;
use tonic::{Request, Response, Status};

use super::change_context;
use super::convert::Wire;
use super::convert::timestamp;
use super::validate::{MAX_ETAG_LEN, MAX_REQUEST_ID_LEN, Violations};
use crate::app::{AppError, AppResult, Guarded, RiskModels};
use crate::clock::Clock;
use crate::domain::ChangeContext;
use crate::domain::risk::{Assessment, Evidence, Factor, FactorKind, RiskModel, SbomSummary, ScanCounts};

const MAX_TAGS: usize = 20;
const MAX_TAG_LEN: usize = 40;
const MAX_NOTES_LEN: usize = 4000;

/// Validates an evidence pack (absent means an empty one: every part missing).
pub fn evidence_from_proto(v: &mut Violations, evidence: Option<&pb::EvidencePack>) -> Evidence {
    let Some(e) = evidence else { return Evidence::default() };
    let artifact_sha256 = (!e.artifact_sha256.is_empty()).then(|| e.artifact_sha256.clone());
    if let Some(hash) = &artifact_sha256
        && !(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        v.add("evidence.artifact_sha256", "must be 64 lower-case hex characters (a SHA-256)");
    }
    let mut count = |field: &str, value: i32| {
        u32::try_from(value).unwrap_or_else(|_| {
            v.add(field, format!("must not be negative (got {value})"));
            0
        })
    };
    let scan = e.vulnerabilities.as_ref().map(|c| ScanCounts {
        critical: count("evidence.vulnerabilities.critical", c.critical),
        high: count("evidence.vulnerabilities.high", c.high),
        medium: count("evidence.vulnerabilities.medium", c.medium),
        low: count("evidence.vulnerabilities.low", c.low),
    });
    let sbom = e.sbom.as_ref().map(|s| SbomSummary {
        format: s.format.clone(),
        component_count: count("evidence.sbom.component_count", s.component_count),
    });
    if let Some(s) = &sbom {
        v.optional_text("evidence.sbom.format", &s.format, 50);
    }
    if e.compliance_tags.len() > MAX_TAGS {
        v.add("evidence.compliance_tags", format!("at most {MAX_TAGS} tags (got {})", e.compliance_tags.len()));
    }
    for (i, tag) in e.compliance_tags.iter().enumerate() {
        let ok = !tag.is_empty()
            && tag.len() <= MAX_TAG_LEN
            && tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            v.add(
                &format!("evidence.compliance_tags[{i}]"),
                format!("must be 1..={MAX_TAG_LEN} of a-z, 0-9, '-', '_'"),
            );
        }
    }
    v.optional_text("evidence.notes", &e.notes, MAX_NOTES_LEN);
    Evidence {
        artifact_sha256,
        sbom,
        scan,
        requires_admin: e.requires_admin,
        requests_elevation: e.requests_elevation,
        rollback_plan: e.rollback_plan_present,
        rollback_tested: e.rollback_tested,
        compliance_tags: e.compliance_tags.clone(),
        notes: e.notes.clone(),
    }
}

fn count_to_proto(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub fn evidence_to_proto(e: &Evidence) -> pb::EvidencePack {
    pb::EvidencePack {
        artifact_sha256: e.artifact_sha256.clone().unwrap_or_default(),
        sbom: e
            .sbom
            .as_ref()
            .map(|s| pb::SbomSummary { format: s.format.clone(), component_count: count_to_proto(s.component_count) }),
        vulnerabilities: e.scan.map(|c| pb::VulnerabilityCounts {
            critical: count_to_proto(c.critical),
            high: count_to_proto(c.high),
            medium: count_to_proto(c.medium),
            low: count_to_proto(c.low),
        }),
        requires_admin: e.requires_admin,
        requests_elevation: e.requests_elevation,
        rollback_plan_present: e.rollback_plan,
        rollback_tested: e.rollback_tested,
        compliance_tags: e.compliance_tags.clone(),
        notes: e.notes.clone(),
    }
}

pub fn assessment_to_proto(a: &Assessment) -> pb::RiskAssessment {
    pb::RiskAssessment {
        model_version: a.model_version,
        threshold: i32::from(a.threshold),
        score: i32::from(a.score),
        factors: a
            .factors
            .iter()
            .map(|f| pb::FactorScore {
                kind: f.kind.to_proto().into(),
                weight: f.weight,
                value: f.value,
                explanation: f.explanation.clone(),
            })
            .collect(),
    }
}

fn model_to_proto(m: &RiskModel) -> pb::RiskModel {
    pb::RiskModel {
        version: m.version,
        name: m.name.clone(),
        factors: m
            .factors
            .iter()
            .map(|f| pb::RiskFactor {
                kind: f.kind.to_proto().into(),
                weight: f.weight,
                rubric: f.rubric.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            })
            .collect(),
        threshold: i32::from(m.threshold),
        active: m.active,
        create_time: Some(timestamp(m.created_at)),
        activate_time: m.activated_at.map(timestamp),
        etag: m.etag(),
    }
}

fn model_from_proto(m: &pb::RiskModel, now: chrono::DateTime<chrono::Utc>) -> AppResult<RiskModel> {
    let mut v = Violations::new();
    let factors = m
        .factors
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let kind = v.enumeration::<pb::RiskFactorKind>(&format!("model.factors[{i}].kind"), f.kind, true)?;
            Some(Factor {
                kind: FactorKind::from_proto(kind)?,
                weight: f.weight,
                rubric: f.rubric.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            })
        })
        .collect();
    let threshold = u8::try_from(m.threshold).unwrap_or_else(|_| {
        v.add("model.threshold", format!("must be in 0..=100 (got {})", m.threshold));
        0
    });
    let model = RiskModel {
        version: 0,
        name: m.name.clone(),
        factors,
        threshold,
        active: false,
        created_at: now,
        activated_at: None,
    };
    for (field, problem) in model.problems() {
        v.add(&field, problem);
    }
    v.finish()?;
    Ok(model)
}

/// The RiskModelService implementation.
#[derive(Clone)]
pub struct RiskApi {
    app: RiskModels,
    clock: Clock,
}

impl RiskApi {
    pub fn new(app: RiskModels, clock: Clock) -> RiskApi {
        RiskApi { app, clock }
    }

    fn model_change<T>(&self, request: &Request<T>, reason: &str) -> AppResult<ChangeContext> {
        let mut v = Violations::new();
        let reason = v.reason(reason);
        v.finish()?;
        Ok(change_context(&self.clock, request, reason))
    }
}

#[tonic::async_trait]
impl RiskModelService for RiskApi {
    async fn list_risk_models(
        &self,
        _request: Request<pb::ListRiskModelsRequest>,
    ) -> Result<Response<pb::ListRiskModelsResponse>, Status> {
        let models = self.app.list().await?;
        Ok(Response::new(pb::ListRiskModelsResponse { models: models.iter().map(model_to_proto).collect() }))
    }

    async fn get_risk_model(
        &self,
        request: Request<pb::GetRiskModelRequest>,
    ) -> Result<Response<pb::GetRiskModelResponse>, Status> {
        let model = self.app.get(request.get_ref().version).await?;
        Ok(Response::new(pb::GetRiskModelResponse { model: Some(model_to_proto(&model)) }))
    }

    async fn create_risk_model(
        &self,
        request: Request<pb::CreateRiskModelRequest>,
    ) -> Result<Response<pb::CreateRiskModelResponse>, Status> {
        let req = request.get_ref();
        let Some(input) = req.model.as_ref() else {
            return Err(AppError::invalid("model", "is required").into());
        };
        let mut v = Violations::new();
        let request_id = v.optional_text("request_id", &req.request_id, MAX_REQUEST_ID_LEN);
        v.finish()?;
        let model = model_from_proto(input, self.clock.now())?;
        let ctx = self.model_change(&request, &req.reason)?;
        let created = self.app.create(&model, request_id.as_deref(), &ctx).await?;
        Ok(Response::new(pb::CreateRiskModelResponse { model: Some(model_to_proto(&created)) }))
    }

    async fn activate_risk_model(
        &self,
        request: Request<pb::ActivateRiskModelRequest>,
    ) -> Result<Response<pb::ActivateRiskModelResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let etag = v.optional_text("etag", &req.etag, MAX_ETAG_LEN);
        v.finish()?;
        let ctx = self.model_change(&request, &req.reason)?;
        let answer = match self.app.activate(req.version, etag.as_deref(), &ctx).await? {
            Guarded::Applied(model) => {
                pb::ActivateRiskModelResponse { model: Some(model_to_proto(&model)), ..Default::default() }
            }
            Guarded::Proposed { current, change } => pb::ActivateRiskModelResponse {
                model: Some(model_to_proto(&current)),
                pending_change_id: change.id.to_string(),
                weakenings: change.weakenings,
            },
        };
        Ok(Response::new(answer))
    }
}
