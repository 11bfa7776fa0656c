//! ChangeCalendarService adapter: windows (create, read, list, replace,
//! delete), the global freeze (read, set, lift) and the calendar's audit log.

use chrono::{DateTime, NaiveDateTime, Utc};
use eucora::v1 as pb;
use eucora::v1::change_calendar_service_server::ChangeCalendarService;
use tonic::{Request, Response, Status};

use super::change_context;
use super::convert::{Wire, duration_to_proto, etag, timestamp};
use super::page_token::Scope;
use super::validate::{MAX_REASON_LEN, Violations, truncate};
use crate::app::ChangeCalendar;
use crate::clock::{Clock, stored_time};
use crate::domain::calendar::{CalendarChange, CalendarEntry, FREEZE_SUBJECT, Freeze, WindowRecord};
use crate::domain::connector::{NAME_RULE, is_valid_name};
use crate::domain::window::{ChangeWindow, WindowKind, WindowScope};
use crate::domain::{ConnectorType, Ring, SiteClass};

const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 500;
/// Longest recurrence rule and description accepted.
const MAX_RULE_LEN: usize = 512;
const MAX_DESCRIPTION_LEN: usize = 2000;

pub struct CalendarApi {
    app: ChangeCalendar,
    clock: Clock,
}

impl CalendarApi {
    pub fn new(app: ChangeCalendar, clock: Clock) -> CalendarApi {
        CalendarApi { app, clock }
    }

    fn now(&self) -> DateTime<Utc> {
        stored_time(self.clock.now())
    }
}

fn window_to_proto(record: &WindowRecord, now: DateTime<Utc>) -> pb::ChangeWindow {
    let w = &record.window;
    let opening = w.opening_at(now);
    let next_change = match opening {
        Some((_, end)) => Some(end),
        None => w.next_opening(now),
    };
    pb::ChangeWindow {
        name: w.name.clone(),
        kind: w.kind.to_proto().into(),
        recurrence_rule: w.rule.clone(),
        first_start: w.first_start.format("%Y-%m-%dT%H:%M:%S").to_string(),
        time_zone: w.time_zone.name().to_owned(),
        duration: Some(duration_to_proto(w.duration)),
        rings: w.scope.rings.iter().map(|r| r.to_proto().into()).collect(),
        site_classes: w.scope.site_classes.iter().map(|s| s.to_proto().into()).collect(),
        connector_types: w.scope.connector_types.iter().map(|c| c.to_proto().into()).collect(),
        forbid_rollback: w.forbids_rollback,
        description: w.description.clone(),
        etag: etag(record.revision),
        create_time: Some(timestamp(record.created_at)),
        update_time: Some(timestamp(record.updated_at)),
        open: opening.is_some(),
        next_change_time: next_change.map(timestamp),
    }
}

fn freeze_to_proto(freeze: &Freeze) -> pb::ChangeFreeze {
    pb::ChangeFreeze {
        reason: freeze.reason.clone(),
        set_by: freeze.set_by.clone(),
        set_time: Some(timestamp(freeze.set_at)),
        expire_time: Some(timestamp(freeze.expires_at)),
    }
}

fn change_to_proto(change: &CalendarChange, now: DateTime<Utc>) -> pb::CalendarChange {
    let mut out = pb::CalendarChange {
        sequence: change.seq,
        kind: change.kind.to_proto().into(),
        subject: change.subject.clone(),
        actor: change.actor.clone(),
        reason: change.reason.clone(),
        correlation_id: change.correlation_id.clone(),
        create_time: Some(timestamp(change.at)),
        ..pb::CalendarChange::default()
    };
    for (entry, before) in [(&change.before, true), (&change.after, false)] {
        match (entry, before) {
            (Some(CalendarEntry::Window(record)), true) => out.window_before = Some(window_to_proto(record, now)),
            (Some(CalendarEntry::Window(record)), false) => out.window_after = Some(window_to_proto(record, now)),
            (Some(CalendarEntry::Freeze(freeze)), true) => out.freeze_before = Some(freeze_to_proto(freeze)),
            (Some(CalendarEntry::Freeze(freeze)), false) => out.freeze_after = Some(freeze_to_proto(freeze)),
            (None, _) => {}
        }
    }
    out
}

/// A window's name in `field`.
fn check_name(v: &mut Violations, field: &str, name: &str) {
    if name.is_empty() {
        v.add(field, "is required");
    } else if !is_valid_name(name) {
        v.add(field, NAME_RULE);
    }
}

/// Every value of a repeated enum field, each known and specified.
fn enum_list<D: Wire>(v: &mut Violations, field: &str, values: &[i32]) -> Vec<D> {
    let mut out = Vec::with_capacity(values.len());
    for (i, &value) in values.iter().enumerate() {
        let item = format!("{field}[{i}]");
        match v.enumeration::<D::Proto>(&item, value, true).and_then(D::from_proto) {
            Some(known) if !out.iter().any(|seen: &D| Into::<i32>::into(seen.to_proto()) == value) => out.push(known),
            Some(_) => v.add(&item, "is listed twice"),
            None => {}
        }
    }
    out
}

/// The window a request describes, every field checked.
fn window_from_proto(v: &mut Violations, input: Option<&pb::ChangeWindow>) -> Option<(ChangeWindow, Option<i64>)> {
    let Some(w) = input else {
        v.add("window", "is required");
        return None;
    };
    check_name(v, "window.name", &w.name);
    if w.name == FREEZE_SUBJECT {
        v.add("window.name", "\"freeze\" names the global freeze in the calendar's audit log; choose another name");
    }
    let kind = v.enumeration::<pb::ChangeWindowKind>("window.kind", w.kind, true).and_then(WindowKind::from_proto);
    let rule = v.required_text("window.recurrence_rule", &w.recurrence_rule, MAX_RULE_LEN);
    let first_start = match NaiveDateTime::parse_from_str(&w.first_start, "%Y-%m-%dT%H:%M:%S") {
        Ok(start) => Some(start),
        Err(_) if w.first_start.is_empty() => {
            v.add("window.first_start", "is required");
            None
        }
        Err(_) => {
            let got = truncate(&w.first_start);
            v.add(
                "window.first_start",
                format!("must be a local date and time like 2026-12-07T22:00:00 (got {got:?})"),
            );
            None
        }
    };
    let zone = v.required_text("window.time_zone", &w.time_zone, 64);
    let duration = v.duration("window.duration", w.duration.as_ref());
    if w.duration.is_none() {
        v.add("window.duration", "is required");
    }
    let scope = WindowScope {
        rings: enum_list::<Ring>(v, "window.rings", &w.rings),
        site_classes: enum_list::<SiteClass>(v, "window.site_classes", &w.site_classes),
        connector_types: enum_list::<ConnectorType>(v, "window.connector_types", &w.connector_types),
    };
    let description = v.optional_text("window.description", &w.description, MAX_DESCRIPTION_LEN).unwrap_or_default();
    let etag = v.etag("window.etag", &w.etag);
    if kind == Some(WindowKind::Allow) && w.forbid_rollback {
        v.add("window.forbid_rollback", "applies to deny windows only (allow windows never hold a rollback)");
    }
    let (Some(kind), Some(first_start), Some(duration)) = (kind, first_start, duration) else { return None };
    if zone.trim().is_empty() || rule.trim().is_empty() {
        return None;
    }
    // Rule, zone and duration are checked by building the window.
    match ChangeWindow::new(&w.name, kind, &rule, first_start, &zone, duration) {
        Ok(mut window) => {
            window.scope = scope;
            window.forbids_rollback = w.forbid_rollback;
            window.description = description;
            Some((window, etag))
        }
        Err(err) => {
            use crate::domain::window::WindowError;
            let field = match err {
                WindowError::UnknownTimeZone(_) => "window.time_zone",
                WindowError::NoSuchLocalTime(..) => "window.first_start",
                WindowError::Rule(_) => "window.recurrence_rule",
                WindowError::Duration => "window.duration",
            };
            v.add(field, err.to_string());
            None
        }
    }
}

#[tonic::async_trait]
impl ChangeCalendarService for CalendarApi {
    async fn create_change_window(
        &self,
        request: Request<pb::CreateChangeWindowRequest>,
    ) -> Result<Response<pb::CreateChangeWindowResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let window = window_from_proto(&mut v, req.window.as_ref());
        let reason = v.reason(&req.reason);
        v.finish()?;
        let (window, _) = window.expect("valid when no violation");
        let ctx = change_context(&self.clock, &request, reason);
        let record = self.app.create_window(&window, &ctx).await?;
        Ok(Response::new(pb::CreateChangeWindowResponse { window: Some(window_to_proto(&record, self.now())) }))
    }

    async fn get_change_window(
        &self,
        request: Request<pb::GetChangeWindowRequest>,
    ) -> Result<Response<pb::GetChangeWindowResponse>, Status> {
        let mut v = Violations::new();
        check_name(&mut v, "name", &request.get_ref().name);
        v.finish()?;
        let record = self.app.window(&request.get_ref().name).await?;
        Ok(Response::new(pb::GetChangeWindowResponse { window: Some(window_to_proto(&record, self.now())) }))
    }

    async fn list_change_windows(
        &self,
        _request: Request<pb::ListChangeWindowsRequest>,
    ) -> Result<Response<pb::ListChangeWindowsResponse>, Status> {
        let now = self.now();
        let windows = self.app.windows().await?.iter().map(|record| window_to_proto(record, now)).collect();
        Ok(Response::new(pb::ListChangeWindowsResponse { windows }))
    }

    async fn update_change_window(
        &self,
        request: Request<pb::UpdateChangeWindowRequest>,
    ) -> Result<Response<pb::UpdateChangeWindowResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let window = window_from_proto(&mut v, req.window.as_ref());
        let reason = v.reason(&req.reason);
        v.finish()?;
        let (window, etag) = window.expect("valid when no violation");
        let ctx = change_context(&self.clock, &request, reason);
        let record = self.app.update_window(&window, etag, &ctx).await?;
        Ok(Response::new(pb::UpdateChangeWindowResponse { window: Some(window_to_proto(&record, self.now())) }))
    }

    async fn delete_change_window(
        &self,
        request: Request<pb::DeleteChangeWindowRequest>,
    ) -> Result<Response<pb::DeleteChangeWindowResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        check_name(&mut v, "name", &req.name);
        let etag = v.etag("etag", &req.etag);
        let reason = v.reason(&req.reason);
        v.finish()?;
        let ctx = change_context(&self.clock, &request, reason);
        self.app.delete_window(&req.name, etag, &ctx).await?;
        Ok(Response::new(pb::DeleteChangeWindowResponse {}))
    }

    async fn get_change_freeze(
        &self,
        _request: Request<pb::GetChangeFreezeRequest>,
    ) -> Result<Response<pb::GetChangeFreezeResponse>, Status> {
        let freeze = self.app.freeze(self.now()).await?;
        Ok(Response::new(pb::GetChangeFreezeResponse { freeze: freeze.as_ref().map(freeze_to_proto) }))
    }

    async fn set_change_freeze(
        &self,
        request: Request<pb::SetChangeFreezeRequest>,
    ) -> Result<Response<pb::SetChangeFreezeResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let reason = v.required_text("reason", &req.reason, MAX_REASON_LEN);
        let expires_at = v.timestamp("expire_time", req.expire_time.as_ref());
        v.finish()?;
        let ctx = change_context(&self.clock, &request, Some(reason));
        let freeze = self.app.set_freeze(stored_time(expires_at.expect("valid")), &ctx).await?;
        Ok(Response::new(pb::SetChangeFreezeResponse { freeze: Some(freeze_to_proto(&freeze)) }))
    }

    async fn lift_change_freeze(
        &self,
        request: Request<pb::LiftChangeFreezeRequest>,
    ) -> Result<Response<pb::LiftChangeFreezeResponse>, Status> {
        let mut v = Violations::new();
        let reason = v.reason(&request.get_ref().reason);
        v.finish()?;
        let ctx = change_context(&self.clock, &request, reason);
        let freeze = self.app.lift_freeze(&ctx).await?;
        Ok(Response::new(pb::LiftChangeFreezeResponse { freeze: Some(freeze_to_proto(&freeze)) }))
    }

    async fn list_calendar_changes(
        &self,
        request: Request<pb::ListCalendarChangesRequest>,
    ) -> Result<Response<pb::ListCalendarChangesResponse>, Status> {
        let req = request.get_ref();
        let mut v = Violations::new();
        let subject = (!req.subject.is_empty()).then_some(req.subject.as_str());
        if let Some(subject) = subject {
            check_name(&mut v, "subject", subject);
        }
        let limit = v.page_size("page_size", req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        v.finish()?;
        let scope = Scope::new("calendar_changes").with("subject", subject);
        let page = self.app.changes(subject, scope.key(&req.page_token)?, limit).await?;
        let now = self.now();
        Ok(Response::new(pb::ListCalendarChangesResponse {
            changes: page.items.iter().map(|change| change_to_proto(change, now)).collect(),
            next_page_token: scope.token(page.next_after),
        }))
    }
}
