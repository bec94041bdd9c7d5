//! The summit part of the admin API: schedules (import, edit as a whole, release, roll back), status, runtime
//! actions, people's tokens, and the iCalendar and JSON feeds. Registered with the other admin routes (same
//! credentials, scopes, rate limit, idempotency keys and problem documents); see `proto/ADMIN.md`.
//!
//! Writes to a schedule are compare-and-set on the summit's `schedule` document (two organisers releasing at once
//! cannot lose a release: the second gets `409 conflict` and retries). Runtime actions go through the summit's
//! inbox to the hub that runs it, and the request waits up to [`ACTION_WAIT`] for the answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use podium_proto::ErrorCode;
use podium_store::{StoreError, SummitStore as _};
use podium_summit::{
    Filter, IcalOptions, ImportOptions, PersonId, Release, Releases, Schedule, SlotGuid, StageId, export_ical,
    export_podium_json, import_frab, import_podium_json, last_modified,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Command, CommandKind, CommandResult, DETAILS_DOC, SCHEDULE_DOC, SUBSCRIPTIONS_DOC, backstage_room};
use crate::admin::ApiResult;
use crate::admin::Caller;
use crate::auth::{self, Scope};
use crate::http::AppState;
use crate::http::problem::Problem;

/// Query strings (their own module: utoipa's parameter expansion names them by path).
mod params {
    use serde::Deserialize;
    use utoipa::IntoParams;

    /// Query of a schedule write.
    #[derive(Deserialize, IntoParams)]
    pub(crate) struct WriteQuery {
        /// Write only if the schedule document is at this version (from a read); `0`: only if the summit is new.
        pub(crate) expect_version: Option<u64>,
    }

    /// Query of an import.
    #[derive(Deserialize, IntoParams)]
    pub(crate) struct ImportQuery {
        /// The zone when the file has none (default `UTC`).
        pub(crate) time_zone: Option<String>,
        /// Prefix of the imported people's identities (default `pretalx-`).
        pub(crate) person_prefix: Option<String>,
        /// As for a schedule write.
        pub(crate) expect_version: Option<u64>,
    }

    /// Which slots a calendar has.
    #[derive(Deserialize, IntoParams)]
    pub(crate) struct CalendarQuery {
        /// One stage's slots.
        pub(crate) stage: Option<String>,
        /// The slots of sessions naming this person.
        pub(crate) person: Option<String>,
        /// The slots this subscriber follows.
        pub(crate) subscriber: Option<String>,
    }

    /// Which slots a public calendar has.
    #[derive(Deserialize, IntoParams)]
    pub(crate) struct PublicCalendarQuery {
        /// One stage's slots.
        pub(crate) stage: Option<String>,
        /// The slots of sessions naming this person (needs `sig`).
        pub(crate) person: Option<String>,
        /// The slots this subscriber follows (needs `sig`).
        pub(crate) subscriber: Option<String>,
        /// The signature from the link the admin API gave.
        pub(crate) sig: Option<String>,
    }

    /// Whose signed feed links to make.
    #[derive(Deserialize, IntoParams)]
    pub(crate) struct FeedQuery {
        /// A person of the schedule.
        pub(crate) person: Option<String>,
        /// A subscriber.
        pub(crate) subscriber: Option<String>,
    }
}

use params::{CalendarQuery, FeedQuery, ImportQuery, PublicCalendarQuery, WriteQuery};

/// How long a runtime action waits for the runner's answer.
pub(crate) const ACTION_WAIT: Duration = Duration::from_secs(5);
/// The largest schedule body accepted (an import or a schedule write), in bytes; larger ones get `413 too_large`.
/// Other admin API bodies keep the hub's 64 KiB limit.
pub(crate) const MAX_SCHEDULE_BYTES: usize = 4 << 20;

fn store_problem(e: &StoreError) -> Problem {
    match e {
        StoreError::Conflict { .. } => {
            Problem::new(ErrorCode::Conflict, "the schedule changed meanwhile; read it again and retry")
        }
        e => Problem::new(ErrorCode::Unavailable, format!("the summit store: {e}")).retry_after(1),
    }
}

fn check_summit_id(id: &str) -> ApiResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Problem::new(ErrorCode::BadRequest, "summit ids are 1-64 characters of A-Z a-z 0-9 . _ -"))
    }
}

/// The summit's schedule history, or `not_found`.
async fn load_releases(state: &AppState, summit: &str) -> ApiResult<(u64, Releases)> {
    check_summit_id(summit)?;
    let doc = state.shared.summits.doc_get(summit, SCHEDULE_DOC).await.map_err(|e| store_problem(&e))?;
    let doc = doc.ok_or_else(|| Problem::new(ErrorCode::NotFound, format!("no summit {summit:?}")))?;
    let releases = serde_json::from_str::<Releases>(&doc.body)
        .map_err(|e| Problem::new(ErrorCode::Internal, format!("the stored schedule is unreadable: {e}")))?;
    Ok((doc.version, releases))
}

async fn save(state: &AppState, summit: &str, releases: &Releases, expect: Option<u64>) -> ApiResult<u64> {
    let body = serde_json::to_string(releases).map_err(|e| Problem::new(ErrorCode::Internal, e.to_string()))?;
    let version =
        state.shared.summits.doc_put(summit, SCHEDULE_DOC, &body, expect).await.map_err(|e| store_problem(&e))?;
    state.shared.summit_wake.notify_one();
    Ok(version)
}

fn latest(releases: &Releases) -> ApiResult<&Release> {
    releases.latest().ok_or_else(|| Problem::new(ErrorCode::NotFound, "nothing released yet"))
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// A summit in the list.
#[derive(Serialize, ToSchema)]
pub(crate) struct SummitInfo {
    /// Id.
    id: String,
    /// Title.
    title: String,
    /// IANA time zone.
    time_zone: String,
    /// The latest release's number (absent before the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    release: Option<u64>,
    /// The hub running it now (its lease holder).
    #[serde(skip_serializing_if = "Option::is_none")]
    runner: Option<String>,
    /// The schedule document's version (send it back as `expect_version` to write safely).
    version: u64,
}

/// Every summit (scope `read`).
#[utoipa::path(get, path = "/v1/admin/summits", tag = "summits",
    responses((status = 200, description = "OK", body = Vec<SummitInfo>)))]
async fn list_summits(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<SummitInfo>>> {
    caller.require(Scope::Read)?;
    let ids = state.shared.summits.summit_ids().await.map_err(|e| store_problem(&e))?;
    let mut out = Vec::new();
    for id in ids {
        let Ok((version, releases)) = load_releases(&state, &id).await else { continue };
        let runner = state.shared.summits.lease_holder(&id).await.ok().flatten();
        let summit = &releases.wip().summit;
        out.push(SummitInfo {
            id: id.clone(),
            title: summit.title.clone(),
            time_zone: summit.tz.clone(),
            release: releases.latest().map(|r| r.seq),
            runner,
            version,
        });
    }
    Ok(Json(out))
}

/// The result of a schedule write.
#[derive(Serialize, ToSchema)]
pub(crate) struct Written {
    /// The schedule document's new version.
    version: u64,
    /// Stages, sessions, slots, people and shifts in the work in progress.
    counts: BTreeMap<String, usize>,
    /// What a release of it now would warn about (`kind`: `stage_overlap` is fatal, the others are not).
    #[schema(value_type = Vec<Object>)]
    warnings: Vec<serde_json::Value>,
}

fn written(version: u64, releases: &Releases) -> Written {
    let wip = releases.wip();
    let counts = BTreeMap::from([
        ("stages".to_owned(), wip.stages().len()),
        ("sessions".to_owned(), wip.sessions().len()),
        ("slots".to_owned(), wip.slots().len()),
        ("people".to_owned(), wip.people().len()),
        ("shifts".to_owned(), wip.shifts().len()),
    ]);
    let warnings = releases.warnings().map(|w| w.iter().map(to_value).collect()).unwrap_or_default();
    Written { version, counts, warnings }
}

/// Replaces the work-in-progress schedule with a Podium JSON schedule (scope `admin`); creates the summit.
#[utoipa::path(put, path = "/v1/admin/summits/{summit}/schedule", tag = "summits",
    params(("summit" = String, Path), WriteQuery), request_body(content = Object, description = "A schedule in Podium's JSON (see proto/ADMIN.md)"),
    responses((status = 200, description = "Written", body = Written),
        (status = 409, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn put_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(summit): Path<String>,
    Query(q): Query<WriteQuery>,
    body: String,
) -> ApiResult<Json<Written>> {
    caller.require(Scope::Admin)?;
    check_summit_id(&summit)?;
    let schedule = import_podium_json(&body).map_err(|e| Problem::new(ErrorCode::BadRequest, e.to_string()))?;
    write_wip(&state, &summit, schedule, q.expect_version).await.map(Json)
}

async fn write_wip(state: &AppState, summit: &str, schedule: Schedule, expect: Option<u64>) -> ApiResult<Written> {
    if schedule.summit.id != summit {
        return Err(Problem::new(
            ErrorCode::BadRequest,
            format!("the schedule is summit {:?}, not {summit:?}", schedule.summit.id),
        ));
    }
    let (version, mut releases) = match load_releases(state, summit).await {
        Ok(found) => found,
        Err(p) if p.status() == StatusCode::NOT_FOUND => (0, Releases::new(schedule.clone())),
        Err(p) => return Err(p),
    };
    if expect.is_some_and(|e| e != version) {
        return Err(Problem::new(ErrorCode::Conflict, format!("the schedule is at version {version}")));
    }
    *releases.wip_mut() = schedule;
    let version = save(state, summit, &releases, Some(version)).await?;
    Ok(written(version, &releases))
}

/// The work-in-progress schedule in Podium's JSON (scope `read`).
#[utoipa::path(get, path = "/v1/admin/summits/{summit}/schedule", tag = "summits", params(("summit" = String, Path)),
    responses((status = 200, description = "OK", body = Object),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn get_schedule(
    State(state): State<AppState>,
    caller: Caller,
    Path(summit): Path<String>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    let (version, releases) = load_releases(&state, &summit).await?;
    let text = export_podium_json(releases.wip());
    Ok(([(header::CONTENT_TYPE, "application/json".to_owned()), (header::ETAG, format!("\"{version}\""))], text)
        .into_response())
}

/// Imports a pretalx/frab `schedule.json` as the work in progress (scope `admin`); creates the summit.
#[utoipa::path(post, path = "/v1/admin/summits/{summit}/import", tag = "summits",
    params(("summit" = String, Path), ImportQuery), request_body(content = Object, description = "A pretalx or frab schedule.json"),
    responses((status = 200, description = "Imported", body = Written),
        (status = 409, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Path(summit): Path<String>,
    Query(q): Query<ImportQuery>,
    body: String,
) -> ApiResult<Json<Written>> {
    caller.require(Scope::Admin)?;
    check_summit_id(&summit)?;
    let defaults = ImportOptions::default();
    let options = ImportOptions {
        summit_id: Some(summit.clone()),
        default_tz: q.time_zone.unwrap_or(defaults.default_tz),
        person_prefix: q.person_prefix.unwrap_or(defaults.person_prefix),
    };
    let imported = import_frab(&body, &options).map_err(|e| Problem::new(ErrorCode::BadRequest, e.to_string()))?;
    let out = write_wip(&state, &summit, imported.schedule, q.expect_version).await?;
    let details = serde_json::to_string(&imported.details).unwrap_or_default();
    state.shared.summits.doc_put(&summit, DETAILS_DOC, &details, None).await.map_err(|e| store_problem(&e))?;
    Ok(Json(out))
}

/// Removes a summit (scope `admin`): its schedule, releases and run state. Its rooms stay.
#[utoipa::path(delete, path = "/v1/admin/summits/{summit}", tag = "summits", params(("summit" = String, Path)),
    responses((status = 204, description = "Removed"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn delete_summit(
    State(state): State<AppState>,
    caller: Caller,
    Path(summit): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    load_releases(&state, &summit).await?;
    state.shared.summits.summit_delete(&summit).await.map_err(|e| store_problem(&e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A release.
#[derive(Serialize, ToSchema)]
pub(crate) struct ReleaseInfo {
    /// Number.
    seq: u64,
    /// Name.
    name: String,
    /// Changelog comment.
    comment: String,
    /// When (ms since the Unix epoch).
    published_at_ms: i64,
    /// Slots in it (live and canceled).
    slots: usize,
    /// What changed from the previous release: `new`, `canceled`, `changed` (slot GUIDs) and `moved`.
    #[schema(value_type = Object)]
    diff: serde_json::Value,
    /// Warnings at release time (under-moderated slots, double-booked people, gaps on an always-on stage).
    #[schema(value_type = Vec<Object>)]
    warnings: Vec<serde_json::Value>,
}

fn release_info(r: &Release) -> ReleaseInfo {
    ReleaseInfo {
        seq: r.seq,
        name: r.name.clone(),
        comment: r.comment.clone(),
        published_at_ms: r.published_at,
        slots: r.slots.len(),
        diff: to_value(&r.diff),
        warnings: r.warnings.iter().map(to_value).collect(),
    }
}

/// A release's name and comment.
#[derive(Deserialize, ToSchema, Default)]
pub(crate) struct NewRelease {
    /// Name (e.g. `v3`); default: the number.
    #[serde(default)]
    name: Option<String>,
    /// Public changelog comment.
    #[serde(default)]
    comment: Option<String>,
}

fn release_problem(e: &podium_summit::ReleaseError) -> Problem {
    match e {
        podium_summit::ReleaseError::NotFound(seq) => Problem::new(ErrorCode::NotFound, format!("no release {seq}")),
        podium_summit::ReleaseError::Overlap(_) => Problem::new(ErrorCode::Conflict, e.to_string()),
        e => Problem::new(ErrorCode::BadRequest, e.to_string()),
    }
}

/// Releases the work in progress (scope `admin`): a new numbered release with its diff; the runner installs it.
/// Refused (`409 conflict`) when live slots overlap on a stage.
#[utoipa::path(post, path = "/v1/admin/summits/{summit}/releases", tag = "summits", params(("summit" = String, Path)),
    request_body = NewRelease,
    responses((status = 201, description = "Released", body = ReleaseInfo),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Path(summit): Path<String>,
    Json(body): Json<NewRelease>,
) -> ApiResult<Response> {
    caller.require(Scope::Admin)?;
    let (version, mut releases) = load_releases(&state, &summit).await?;
    let next = releases.latest().map_or(1, |r| r.seq + 1);
    let name = body.name.unwrap_or_else(|| format!("v{next}"));
    let info = releases
        .release(&name, body.comment.as_deref().unwrap_or(""), state.shared.summit_clock.now())
        .map(release_info)
        .map_err(|e| release_problem(&e))?;
    save(&state, &summit, &releases, Some(version)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// Every release, oldest first (scope `read`).
#[utoipa::path(get, path = "/v1/admin/summits/{summit}/releases", tag = "summits", params(("summit" = String, Path)),
    responses((status = 200, description = "OK", body = Vec<ReleaseInfo>),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn list_releases(
    State(state): State<AppState>,
    caller: Caller,
    Path(summit): Path<String>,
) -> ApiResult<Json<Vec<ReleaseInfo>>> {
    caller.require(Scope::Read)?;
    let (_, releases) = load_releases(&state, &summit).await?;
    Ok(Json(releases.all().iter().map(release_info).collect()))
}

/// One slot of a released programme.
#[derive(Serialize, ToSchema)]
pub(crate) struct ProgrammeSlot {
    /// GUID (stable across releases; the iCalendar `UID` is `{guid}@{host}`).
    guid: String,
    /// Stage id.
    stage: String,
    /// The stage's room.
    room: String,
    /// Title.
    title: String,
    /// A break.
    is_break: bool,
    /// Start, ms since the Unix epoch.
    start_ms: i64,
    /// End.
    end_ms: i64,
    /// Canceled (kept in every later release).
    canceled: bool,
    /// iCalendar `SEQUENCE`: releases after its first that moved or canceled it.
    sequence: u32,
    /// People: `{id, name, role}`.
    #[schema(value_type = Vec<Object>)]
    people: Vec<serde_json::Value>,
}

/// A released programme: the feed's JSON twin.
#[derive(Serialize, ToSchema)]
pub(crate) struct Programme {
    /// The release.
    release: ReleaseInfo,
    /// Its slots, by start.
    slots: Vec<ProgrammeSlot>,
}

/// Release `seq` as JSON (scope `read`): every slot, live or canceled, with its GUID, times, people and
/// `sequence` (`latest` for the newest release).
#[utoipa::path(get, path = "/v1/admin/summits/{summit}/releases/{seq}", tag = "summits",
    params(("summit" = String, Path), ("seq" = String, Path, description = "A release number, or `latest`")),
    responses((status = 200, description = "OK", body = Programme),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn get_release(
    State(state): State<AppState>,
    caller: Caller,
    Path((summit, seq)): Path<(String, String)>,
) -> ApiResult<Json<Programme>> {
    caller.require(Scope::Read)?;
    let (_, releases) = load_releases(&state, &summit).await?;
    let release = match seq.as_str() {
        "latest" => latest(&releases)?,
        n => {
            let n: u64 = n.parse().map_err(|_| Problem::new(ErrorCode::BadRequest, "seq: a number or `latest`"))?;
            releases.get(n).ok_or_else(|| Problem::new(ErrorCode::NotFound, format!("no release {n}")))?
        }
    };
    let people = release.schedule.people();
    let mut slots: Vec<ProgrammeSlot> = release
        .slots
        .values()
        .map(|r| {
            ProgrammeSlot {
            guid: r.slot.guid.to_string(),
            stage: r.slot.stage.as_str().to_owned(),
            room: release.stages.get(&r.slot.stage).map(|s| s.room.clone()).unwrap_or_default(),
            title: r.title.clone(),
            is_break: matches!(r.slot.kind, podium_summit::SlotKind::Break { .. }),
            start_ms: r.slot.start,
            end_ms: r.slot.end,
            canceled: r.canceled,
            sequence: r.sequence,
            people: r
                .people
                .iter()
                .map(|(p, role)| {
                    serde_json::json!({"id": p.as_str(), "name": people.get(p).map(|x| x.name.clone()), "role": role})
                })
                .collect(),
        }
        })
        .collect();
    slots.sort_by(|a, b| (a.start_ms, &a.guid).cmp(&(b.start_ms, &b.guid)));
    Ok(Json(Programme { release: release_info(release), slots }))
}

/// Rolls back to release `seq` (scope `admin`): its schedule is released again as a new number.
#[utoipa::path(post, path = "/v1/admin/summits/{summit}/releases/{seq}/rollback", tag = "summits",
    params(("summit" = String, Path), ("seq" = u64, Path)), request_body = NewRelease,
    responses((status = 201, description = "Released", body = ReleaseInfo),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path((summit, seq)): Path<(String, u64)>,
    Json(body): Json<NewRelease>,
) -> ApiResult<Response> {
    caller.require(Scope::Admin)?;
    let (version, mut releases) = load_releases(&state, &summit).await?;
    let name = body.name.unwrap_or_else(|| format!("rollback to {seq}"));
    let info = releases
        .rollback(seq, &name, body.comment.as_deref().unwrap_or(""), state.shared.summit_clock.now())
        .map(release_info)
        .map_err(|e| release_problem(&e))?;
    save(&state, &summit, &releases, Some(version)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// A stage as it runs.
#[derive(Serialize, ToSchema)]
pub(crate) struct StageStatus {
    /// Id.
    id: String,
    /// Its room.
    room: String,
    /// Its backstage room.
    backstage: String,
    /// The release it runs.
    release: u64,
    /// The running slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    active: Option<String>,
    /// Every slot's run record (status, times, check-ins, no-shows, substitute).
    #[schema(value_type = Vec<Object>)]
    slots: Vec<serde_json::Value>,
    /// Every shift's run record.
    #[schema(value_type = Vec<Object>)]
    shifts: Vec<serde_json::Value>,
    /// Scheduler outputs committed and not done yet.
    pending: usize,
}

/// A summit's status.
#[derive(Serialize, ToSchema)]
pub(crate) struct SummitStatus {
    /// The summit.
    summit: SummitInfo,
    /// Its stages as the runner last recorded them.
    stages: Vec<StageStatus>,
}

/// A summit's status (scope `read`): every stage's run as last recorded by the hub running it.
#[utoipa::path(get, path = "/v1/admin/summits/{summit}", tag = "summits", params(("summit" = String, Path)),
    responses((status = 200, description = "OK", body = SummitStatus),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn summit_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(summit): Path<String>,
) -> ApiResult<Json<SummitStatus>> {
    caller.require(Scope::Read)?;
    let (version, releases) = load_releases(&state, &summit).await?;
    let runner = state.shared.summits.lease_holder(&summit).await.map_err(|e| store_problem(&e))?;
    let records = state.shared.summits.runs_get(&summit).await.map_err(|e| store_problem(&e))?;
    let mut stages = Vec::new();
    for (id, text) in records {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
        let st = &v["state"];
        let room = st["stage"]["room"].as_str().unwrap_or_default().to_owned();
        stages.push(StageStatus {
            id,
            backstage: backstage_room(&room),
            room,
            release: st["release_seq"].as_u64().unwrap_or(0),
            active: st["active"].as_str().map(str::to_owned),
            slots: st["slots"].as_array().cloned().unwrap_or_default(),
            shifts: st["shifts"].as_array().cloned().unwrap_or_default(),
            pending: v["pending"].as_array().map_or(0, Vec::len),
        });
    }
    let s = &releases.wip().summit;
    let info = SummitInfo {
        id: summit.clone(),
        title: s.title.clone(),
        time_zone: s.tz.clone(),
        release: releases.latest().map(|r| r.seq),
        runner,
        version,
    };
    Ok(Json(SummitStatus { summit: info, stages }))
}

/// A runtime action on a stage.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub(crate) enum StageAction {
    /// Start the next slot now (ending the running one).
    Start,
    /// End the running slot now.
    End,
    /// Extend the running slot by `minutes` (overrun policy applies).
    Extend {
        /// 1 to 1440.
        minutes: u32,
    },
    /// Cancel a slot (waiting or running).
    Cancel {
        /// The slot's GUID.
        slot: String,
    },
    /// Check a person in for their slot or shift (as joining the backstage does).
    CheckIn {
        /// The person's identity.
        person: String,
    },
}

/// Does a runtime action on a stage (scope `moderate`); answered by the hub running the summit.
#[utoipa::path(post, path = "/v1/admin/summits/{summit}/stages/{stage}/actions", tag = "summits",
    params(("summit" = String, Path), ("stage" = String, Path)), request_body = StageAction,
    responses((status = 200, description = "Done: `slot` acted on, `end_ms` the running slot's end after `extend`", body = Object),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn stage_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((summit, stage)): Path<(String, String)>,
    Json(body): Json<StageAction>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Scope::Moderate)?;
    let (_, releases) = load_releases(&state, &summit).await?;
    let release = latest(&releases)?;
    if !release.stages.keys().any(|s| s.as_str() == stage) {
        return Err(Problem::new(ErrorCode::NotFound, format!("no stage {stage:?} in the running release")));
    }
    let kind = match body {
        StageAction::Start => CommandKind::Start { stage },
        StageAction::End => CommandKind::End { stage },
        StageAction::Extend { minutes } if (1..=1440).contains(&minutes) => {
            CommandKind::Extend { stage, ms: i64::from(minutes) * 60_000 }
        }
        StageAction::Extend { .. } => return Err(Problem::new(ErrorCode::BadRequest, "minutes is 1-1440")),
        StageAction::Cancel { slot } => {
            slot.parse::<SlotGuid>().map_err(|_| Problem::new(ErrorCode::BadRequest, "slot: not a slot GUID"))?;
            CommandKind::Cancel { stage, slot }
        }
        StageAction::CheckIn { person } => {
            PersonId::new(person.as_str()).map_err(|e| Problem::new(ErrorCode::BadRequest, e.to_string()))?;
            CommandKind::CheckIn { stage, person }
        }
    };
    let id = format!("{:032x}", rand::random::<u128>());
    let command = Command { id: id.clone(), kind };
    let text = serde_json::to_string(&command).map_err(|e| Problem::new(ErrorCode::Internal, e.to_string()))?;
    state.shared.summits.inbox_push(&summit, &text).await.map_err(|e| match e {
        StoreError::Conflict { .. } => {
            Problem::new(ErrorCode::RateLimited, "the summit's inbox is full").retry_after(1)
        }
        e => store_problem(&e),
    })?;
    state.shared.summit_wake.notify_one();
    let deadline = tokio::time::Instant::now() + ACTION_WAIT;
    loop {
        if let Some(answer) = state.shared.summits.result_take(&summit, &id).await.map_err(|e| store_problem(&e))? {
            let result: CommandResult = serde_json::from_str(&answer).unwrap_or_default();
            return match result.error.as_deref() {
                None => Ok(Json(serde_json::json!({"slot": result.slot, "end_ms": result.end_ms}))),
                Some(code) => {
                    let code = match code {
                        "not_found" => ErrorCode::NotFound,
                        "bad_request" => ErrorCode::BadRequest,
                        _ => ErrorCode::Conflict,
                    };
                    Err(Problem::new(code, result.detail.unwrap_or_default()))
                }
            };
        }
        if tokio::time::Instant::now() >= deadline {
            // It may still be applied: the inbox keeps it.
            return Err(Problem::new(ErrorCode::Unavailable, "no hub answered for the summit in time").retry_after(1));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which stage a person's tokens are for.
#[derive(Deserialize, ToSchema)]
pub(crate) struct PersonTokens {
    /// The stage id.
    stage: String,
    /// Lifetime, 60-86400 seconds (default 3600).
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// A room and a token for it.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomToken {
    /// The room.
    room: String,
    /// The token.
    token: String,
}

/// A scheduled person's tokens.
#[derive(Serialize, ToSchema)]
pub(crate) struct PersonTokensOut {
    /// For the stage room (join as `audience`: the handover puts them on stage).
    stage: RoomToken,
    /// For the backstage room.
    backstage: RoomToken,
    /// The tokens' ceiling: `moderator` for hosts, co-hosts, session moderators and shift moderators of the
    /// stage, else `speaker`.
    role: String,
}

/// Mints a scheduled person's stage and backstage tokens (scope `admin`).
#[utoipa::path(post, path = "/v1/admin/summits/{summit}/people/{person}/tokens", tag = "summits",
    params(("summit" = String, Path), ("person" = String, Path)), request_body = PersonTokens,
    responses((status = 201, description = "Created", body = PersonTokensOut),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn person_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Path((summit, person)): Path<(String, String)>,
    Json(body): Json<PersonTokens>,
) -> ApiResult<Response> {
    caller.require(Scope::Admin)?;
    let (_, releases) = load_releases(&state, &summit).await?;
    let release = latest(&releases)?;
    let stage_id = StageId::new(body.stage.as_str()).map_err(|e| Problem::new(ErrorCode::BadRequest, e.to_string()))?;
    let stage = release
        .stages
        .get(&stage_id)
        .ok_or_else(|| Problem::new(ErrorCode::NotFound, format!("no stage {:?}", body.stage)))?;
    let person_id = PersonId::new(person.as_str()).map_err(|e| Problem::new(ErrorCode::BadRequest, e.to_string()))?;
    let known = release.schedule.people().get(&person_id);
    let Some(known) = known else {
        return Err(Problem::new(ErrorCode::NotFound, format!("no person {person:?} in the release")));
    };
    let ttl = body.ttl_seconds.unwrap_or(3_600);
    if !(60..=86_400).contains(&ttl) {
        return Err(Problem::new(ErrorCode::BadRequest, "ttl_seconds is 60-86400"));
    }
    let moderates = release.slots.values().any(|s| {
        s.slot.stage == stage_id
            && s.people.iter().any(|(p, role)| *p == person_id && (role.leads() || role.moderates()))
    }) || release.shifts.iter().any(|s| s.stage == stage_id && s.person == person_id)
        || stage.standby_hosts.contains(&person_id);
    let role = if moderates { podium_proto::Role::Moderator } else { podium_proto::Role::Speaker };
    let mint = |room: &str| -> ApiResult<RoomToken> {
        let mut claims = auth::claims_for(&person, Some(&known.name), room, role, Duration::from_secs(ttl));
        claims.jti = Some(format!("{:032x}", rand::random::<u128>()));
        let token = state.shared.keys.mint(&claims).map_err(|e| Problem::new(ErrorCode::Internal, e.to_string()))?;
        Ok(RoomToken { room: room.to_owned(), token })
    };
    let out = PersonTokensOut {
        stage: mint(&stage.room)?,
        backstage: mint(&backstage_room(&stage.room))?,
        role: role.as_str().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// The latest release as iCalendar (RFC 5545; scope `read`): one VEVENT per slot, `UID` from the slot GUID,
/// `SEQUENCE` bumped when a release moves it, canceled slots kept as `STATUS:CANCELLED`.
#[utoipa::path(get, path = "/v1/admin/summits/{summit}/calendar.ics", tag = "summits",
    params(("summit" = String, Path), CalendarQuery),
    responses((status = 200, description = "The calendar", body = String, content_type = "text/calendar"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn calendar(
    State(state): State<AppState>,
    caller: Caller,
    Path(summit): Path<String>,
    Query(q): Query<CalendarQuery>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    let (_, releases) = load_releases(&state, &summit).await?;
    let release = latest(&releases)?;
    let bad = |e: String| Problem::new(ErrorCode::BadRequest, e);
    let filter = match (q.stage, q.person, q.subscriber) {
        (None, None, None) => Filter::Summit,
        (Some(s), None, None) => Filter::Stage(StageId::new(s.as_str()).map_err(|e| bad(e.to_string()))?),
        (None, Some(p), None) => Filter::Person(PersonId::new(p.as_str()).map_err(|e| bad(e.to_string()))?),
        (None, None, Some(sub)) => Filter::Slots(subscribed(&state, &summit, &sub).await?),
        _ => return Err(bad("give at most one of stage, person, subscriber".into())),
    };
    feed(&state, &summit, release, &releases, &filter).await
}

/// The iCalendar text of `release` for `filter`, as a `text/calendar` response.
async fn feed(
    state: &AppState,
    summit: &str,
    release: &Release,
    releases: &Releases,
    filter: &Filter,
) -> ApiResult<Response> {
    let details = match state.shared.summits.doc_get(summit, DETAILS_DOC).await {
        Ok(Some(d)) => serde_json::from_str(&d.body).ok(),
        _ => None,
    };
    let modified = last_modified(releases.all());
    let host = state
        .shared
        .config
        .server
        .public_url
        .as_deref()
        .and_then(|u| u.split("://").nth(1))
        .and_then(|rest| rest.split(['/', ':']).next())
        .filter(|h| !h.is_empty())
        .unwrap_or("podium.invalid")
        .to_owned();
    let mut options = IcalOptions::new(&host, state.shared.summit_clock.now());
    options.details = details.as_ref();
    options.last_modified = Some(&modified);
    let text = export_ical(release, filter, &options).map_err(|e| match e {
        podium_summit::IcalError::NoStage(_) | podium_summit::IcalError::NoPerson(_) => {
            Problem::new(ErrorCode::NotFound, e.to_string())
        }
        e => Problem::new(ErrorCode::Internal, e.to_string()),
    })?;
    Ok(([(header::CONTENT_TYPE, "text/calendar; charset=utf-8")], text).into_response())
}

fn feed_mac(secret: &str, summit: &str, kind: &str, id: &str) -> Option<hmac::Hmac<sha2::Sha256>> {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(format!("podium-calendar\n{summit}\n{kind}\n{id}").as_bytes());
    Some(mac)
}

/// Whether `sig` (hex) is the feed's signature; compared in constant time.
pub(crate) fn feed_signature_ok(secret: &str, summit: &str, kind: &str, id: &str, sig: &str) -> bool {
    use hmac::Mac as _;
    if sig.len() != 32 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let bytes: Vec<u8> = (0..16).filter_map(|i| u8::from_str_radix(&sig[2 * i..2 * i + 2], 16).ok()).collect();
    feed_mac(secret, summit, kind, id).is_some_and(|mac| mac.verify_truncated_left(&bytes).is_ok())
}

/// A personal feed's signature: the first 16 bytes of HMAC-SHA256 under the hub's token secret of
/// `podium-calendar\n{summit}\n{kind}\n{id}`, in hex. Links stay valid until the secret changes.
pub(crate) fn feed_signature(secret: &str, summit: &str, kind: &str, id: &str) -> String {
    use hmac::Mac as _;
    feed_mac(secret, summit, kind, id)
        .map(|mac| mac.finalize().into_bytes()[..16].iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

/// The public feed's path and query for a person or subscriber (with its signature), or for the summit or a stage.
fn feed_link(state: &AppState, summit: &str, kind: Option<(&str, &str)>) -> String {
    let base = format!("/v1/summits/{summit}/calendar.ics");
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    match kind {
        None => base,
        Some(("stage", id)) => format!("{base}?stage={}", enc(id)),
        Some((kind, id)) => {
            let sig = feed_signature(state.shared.config.auth.secret(), summit, kind, id);
            format!("{base}?{kind}={}&sig={sig}", enc(id))
        }
    }
}

/// The public iCalendar feed (no credential: what calendar apps subscribe to). The whole summit and each stage are
/// public, like a conference's published programme; a person's or a subscriber's feed needs the `sig` the admin API
/// hands out (`GET /v1/admin/summits/{summit}/feeds`). Limited per client address like the admin API.
#[utoipa::path(get, path = "/v1/summits/{summit}/calendar.ics", tag = "summits", security(()),
    params(("summit" = String, Path), PublicCalendarQuery),
    responses((status = 200, description = "The calendar", body = String, content_type = "text/calendar"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn public_calendar(
    State(state): State<AppState>,
    info: Option<axum::Extension<std::sync::Arc<crate::http::ConnInfo>>>,
    Path(summit): Path<String>,
    Query(q): Query<PublicCalendarQuery>,
) -> ApiResult<Response> {
    let source = info.map_or_else(|| "unknown".to_owned(), |i| i.peer.ip().to_string());
    state.shared.admin_rate.check(&format!("feed:{source}"))?;
    let (_, releases) = load_releases(&state, &summit).await?;
    let release = latest(&releases)?;
    let bad = |e: String| Problem::new(ErrorCode::BadRequest, e);
    let signed = |kind: &str, id: &str| -> ApiResult<()> {
        let ok = q
            .sig
            .as_deref()
            .is_some_and(|sig| feed_signature_ok(state.shared.config.auth.secret(), &summit, kind, id, sig));
        if ok { Ok(()) } else { Err(Problem::new(ErrorCode::Unauthorized, "this feed needs its signed link")) }
    };
    let filter = match (q.stage, q.person, q.subscriber) {
        (None, None, None) => Filter::Summit,
        (Some(s), None, None) => Filter::Stage(StageId::new(s.as_str()).map_err(|e| bad(e.to_string()))?),
        (None, Some(p), None) => {
            signed("person", &p)?;
            Filter::Person(PersonId::new(p.as_str()).map_err(|e| bad(e.to_string()))?)
        }
        (None, None, Some(sub)) => {
            signed("subscriber", &sub)?;
            Filter::Slots(subscribed(&state, &summit, &sub).await?)
        }
        _ => return Err(bad("give at most one of stage, person, subscriber".into())),
    };
    feed(&state, &summit, release, &releases, &filter).await
}

/// Query of `GET /v1/admin/summits/{summit}/feeds`.
#[derive(Serialize, ToSchema)]
pub(crate) struct FeedLinks {
    /// The whole summit's public feed (a path on this hub; prefix your public origin).
    summit: String,
    /// Each stage's public feed, by stage id.
    stages: BTreeMap<String, String>,
    /// The person's signed feed, when `person` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    person: Option<String>,
    /// The subscriber's signed feed, when `subscriber` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriber: Option<String>,
}

/// The public calendar feeds' links (scope `read`), signed for a person or a subscriber: what an app hands its
/// users to subscribe to in their calendar.
#[utoipa::path(get, path = "/v1/admin/summits/{summit}/feeds", tag = "summits",
    params(("summit" = String, Path), FeedQuery),
    responses((status = 200, description = "OK", body = FeedLinks),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn feed_links(
    State(state): State<AppState>,
    caller: Caller,
    Path(summit): Path<String>,
    Query(q): Query<FeedQuery>,
) -> ApiResult<Json<FeedLinks>> {
    caller.require(Scope::Read)?;
    let (_, releases) = load_releases(&state, &summit).await?;
    let stages = releases
        .wip()
        .stages()
        .keys()
        .map(|s| (s.as_str().to_owned(), feed_link(&state, &summit, Some(("stage", s.as_str())))))
        .collect();
    let check = |id: &str| -> ApiResult<()> {
        if id.is_empty() || id.len() > auth::MAX_IDENTITY_BYTES || id.chars().any(char::is_control) {
            return Err(Problem::new(ErrorCode::BadRequest, "identities are 1-128 bytes without control characters"));
        }
        Ok(())
    };
    if let Some(p) = &q.person {
        check(p)?;
    }
    if let Some(s) = &q.subscriber {
        check(s)?;
    }
    Ok(Json(FeedLinks {
        summit: feed_link(&state, &summit, None),
        stages,
        person: q.person.as_deref().map(|p| feed_link(&state, &summit, Some(("person", p)))),
        subscriber: q.subscriber.as_deref().map(|s| feed_link(&state, &summit, Some(("subscriber", s)))),
    }))
}

async fn subscribed(state: &AppState, summit: &str, subscriber: &str) -> ApiResult<BTreeSet<SlotGuid>> {
    let subs = subscriptions(state, summit).await?.1;
    Ok(subs.get(subscriber).cloned().unwrap_or_default())
}

/// Subscriptions: identity → slots.
pub(crate) type Subscriptions = BTreeMap<String, BTreeSet<SlotGuid>>;

async fn subscriptions(state: &AppState, summit: &str) -> ApiResult<(u64, Subscriptions)> {
    match state.shared.summits.doc_get(summit, SUBSCRIPTIONS_DOC).await.map_err(|e| store_problem(&e))? {
        Some(d) => Ok((d.version, serde_json::from_str(&d.body).unwrap_or_default())),
        None => Ok((0, Subscriptions::new())),
    }
}

/// The slots a subscriber follows.
#[derive(Deserialize, Serialize, ToSchema)]
pub(crate) struct Subscription {
    /// Slot GUIDs (at most 1000).
    slots: Vec<String>,
}

/// Sets the slots a subscriber follows (scope `admin`): their calendar (`?subscriber=`) and `slot.reminder`
/// webhooks at the stage's reminder offsets. An empty list removes the subscriber.
#[utoipa::path(put, path = "/v1/admin/summits/{summit}/subscribers/{subscriber}", tag = "summits",
    params(("summit" = String, Path), ("subscriber" = String, Path)), request_body = Subscription,
    responses((status = 204, description = "Set"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A problem (RFC 9457); `code` is the protocol error code", body = crate::admin::ProblemDoc, content_type = "application/problem+json")))]
async fn subscribe(
    State(state): State<AppState>,
    caller: Caller,
    Path((summit, subscriber)): Path<(String, String)>,
    Json(body): Json<Subscription>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    load_releases(&state, &summit).await?;
    if subscriber.is_empty() || subscriber.len() > auth::MAX_IDENTITY_BYTES || subscriber.chars().any(char::is_control)
    {
        return Err(Problem::new(
            ErrorCode::BadRequest,
            "subscribers are identities: 1-128 bytes, no control characters",
        ));
    }
    if body.slots.len() > 1000 {
        return Err(Problem::new(ErrorCode::BadRequest, "at most 1000 slots"));
    }
    let mut slots = BTreeSet::new();
    for s in &body.slots {
        slots.insert(
            s.parse::<SlotGuid>()
                .map_err(|_| Problem::new(ErrorCode::BadRequest, format!("{s:?}: not a slot GUID")))?,
        );
    }
    let (version, mut subs) = subscriptions(&state, &summit).await?;
    if slots.is_empty() {
        subs.remove(&subscriber);
    } else {
        subs.insert(subscriber, slots);
    }
    let text = serde_json::to_string(&subs).unwrap_or_default();
    state
        .shared
        .summits
        .doc_put(&summit, SUBSCRIPTIONS_DOC, &text, Some(version))
        .await
        .map_err(|e| store_problem(&e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The summit's routes.
pub(crate) fn routes(
    router: utoipa_axum::router::OpenApiRouter<AppState>,
) -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    // Schedules are larger than the admin API's other bodies: these two routes take up to MAX_SCHEDULE_BYTES.
    let uploads = utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(get_schedule, put_schedule))
        .routes(routes!(import))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_SCHEDULE_BYTES));
    router
        .merge(uploads)
        .routes(routes!(list_summits))
        .routes(routes!(summit_status, delete_summit))
        .routes(routes!(list_releases, release))
        .routes(routes!(get_release))
        .routes(routes!(rollback))
        .routes(routes!(stage_action))
        .routes(routes!(person_tokens))
        .routes(routes!(calendar))
        .routes(routes!(feed_links))
        .routes(routes!(public_calendar))
        .routes(routes!(subscribe))
}

/// True for the paths that take schedule bodies (up to [`MAX_SCHEDULE_BYTES`]): the idempotency layer buffers
/// their bodies up to that, other admin writes up to the hub's usual limit.
pub(crate) fn is_schedule_upload(path: &str) -> bool {
    path.strip_prefix("/v1/admin/summits/").is_some_and(|rest| rest.ends_with("/schedule") || rest.ends_with("/import"))
}
