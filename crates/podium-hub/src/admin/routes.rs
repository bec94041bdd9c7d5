//! The admin API's handlers, registered once for both the router and the OpenAPI document.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use podium_proto::ErrorCode;
use podium_room::{self as room, ParticipantId, Room};
use podium_store::RoomState;
use tokio::sync::oneshot;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::model::{
    Action, ActionBody, ApiRole, ChatPageView, ChatQuery, CreateRoom, MintToken, MintedToken, NodeList, NodeView,
    PageQuery, ParticipantInfo, ParticipantPage, ParticipantQuery, ProblemDoc, RecordingPage, RecordingQuery,
    RecordingStarted, RevokeBody, RoomInfo, RoomPage, SetInfo, UpdateRoom, WhoAmI,
};
use super::{Caller, Shared};
use crate::auth::{self, Scope};
use crate::http::AppState;
use crate::http::problem::Problem;
use crate::room_task::RoomMsg;

/// Default and largest page size.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 100;
/// How long a request waits for room in a busy room's inbox.
const INBOX_WAIT: Duration = Duration::from_secs(5);
/// How long a request waits for the room's answer (its commit included) before it gets `unavailable`.
const ANSWER_WAIT: Duration = Duration::from_secs(15);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Podium admin API",
        description = "Rooms, participants, moderation, tokens and hubs. See proto/ADMIN.md.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ProblemDoc, Action)),
    tags((name = "admin", description = "The admin API"), (name = "summits", description = "Summit schedules, their runs and feeds"))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An admin API key from `[admin] keys`, or an admin-grant token"))
                    .build(),
            ),
        );
    }
}

/// Documents on every operation the problems any request may get: a malformed request (400), no or a wrong
/// credential (401), too small a scope (403), a body too large (413), of the wrong type (415) or that does not
/// deserialize (422), a source over its limits (429), and the store or the room being unavailable (503).
struct CommonProblems;

impl utoipa::Modify for CommonProblems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = || {
            ResponseBuilder::new()
                .description("A problem (RFC 9457); `code` is the protocol error code")
                .content(
                    "application/problem+json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ProblemDoc"))).build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            for op in
                [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
            {
                let with_body = op.request_body.is_some();
                for status in ["400", "401", "403", "413", "415", "422", "429", "503"] {
                    if !with_body && matches!(status, "413" | "415" | "422") {
                        continue;
                    }
                    op.responses.responses.entry(status.to_owned()).or_insert_with(|| problem().into());
                }
            }
        }
    }
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(whoami))
        .routes(routes!(list_rooms, create_room))
        .routes(routes!(get_room, update_room, end_room))
        .routes(routes!(set_info))
        .routes(routes!(clear_hands))
        .routes(routes!(chat_history))
        .routes(routes!(delete_chat))
        .routes(routes!(start_recording, stop_recording))
        .routes(routes!(list_recordings))
        .routes(routes!(get_recording))
        .routes(routes!(get_replay))
        .routes(routes!(list_participants))
        .routes(routes!(get_participant))
        .routes(routes!(act_on_participant))
        .routes(routes!(ban, unban))
        .routes(routes!(add_guest, remove_guest))
        .routes(routes!(revoke))
        .routes(routes!(audit))
        .routes(routes!(mint_token))
        .routes(routes!(list_nodes))
        .routes(routes!(drain_node))
        .routes(routes!(webhooks))
        .pipe(crate::summit::api::routes)
}

/// `x.pipe(f)` is `f(x)`: keeps the route list one chain.
trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}

impl<S> Pipe for OpenApiRouter<S> {}

/// The admin API's routes.
pub(crate) fn router(state: AppState) -> axum::Router<AppState> {
    let (router, mut openapi) = api().split_for_parts();
    let router = router.layer(axum::middleware::from_fn_with_state(state, super::idempotency::layer));
    utoipa::Modify::modify(&CommonProblems, &mut openapi);
    let document = openapi.to_pretty_json().unwrap_or_default();
    router.route(
        "/v1/admin/openapi.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], document) }
        }),
    )
}

/// The OpenAPI document (committed as `proto/openapi.json`).
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    let mut openapi = api().split_for_parts().1;
    // After the routes are in: `ApiDoc`'s own modifiers run before `OpenApiRouter` adds the paths.
    utoipa::Modify::modify(&CommonProblems, &mut openapi);
    openapi
}

pub(crate) type ApiResult<T> = Result<T, Problem>;

fn check_room_name(room: &str) -> ApiResult<()> {
    auth::validate_room_name(room).map_err(|e| Problem::new(ErrorCode::BadRequest, e.to_string()))
}

fn check_identity(identity: &str) -> ApiResult<()> {
    if identity.is_empty() || identity.len() > auth::MAX_IDENTITY_BYTES || identity.chars().any(char::is_control) {
        return Err(Problem::new(ErrorCode::BadRequest, "identities are 1-128 bytes without control characters"));
    }
    if identity.starts_with(auth::RESERVED_IDENTITY_PREFIX) {
        return Err(Problem::new(
            ErrorCode::BadRequest,
            "identities starting with `~` are reserved for virtual speakers",
        ));
    }
    Ok(())
}

fn store_problem(e: &podium_store::StoreError) -> Problem {
    Problem::new(ErrorCode::Unavailable, format!("the room store: {e}")).retry_after(1)
}

/// The stored room, or `not_found`.
async fn stored(shared: &Shared, room: &str) -> ApiResult<RoomState> {
    check_room_name(room)?;
    match shared.store.load(room).await {
        Ok(Some(state)) if !state.ended => Ok(state),
        Ok(_) => Err(Problem::new(ErrorCode::NotFound, format!("no room {room:?}"))),
        Err(e) => Err(store_problem(&e)),
    }
}

fn page_size(limit: Option<u32>) -> ApiResult<usize> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n as usize),
        _ => Err(Problem::new(ErrorCode::BadRequest, format!("limit is 1-{MAX_PAGE}"))),
    }
}

/// Hands a message to the room's task (started if needed) and waits for its answer.
pub(crate) async fn ask<T>(
    shared: &Shared,
    room: &str,
    message: impl FnOnce(oneshot::Sender<Result<T, (ErrorCode, String)>>) -> RoomMsg,
) -> ApiResult<T> {
    if shared.is_shutting_down() {
        return Err(Problem::new(ErrorCode::Unavailable, "this hub is shutting down; use another").retry_after(1));
    }
    let (tx, rx) = oneshot::channel();
    let mut msg = message(tx);
    for attempt in 0..2 {
        let handle = shared.room(room);
        match handle.inbox.send_timeout(msg, INBOX_WAIT).await {
            Ok(()) => break,
            // The task stopped between lookup and send (an idle persistent room): once more, with a new one.
            Err(tokio::sync::mpsc::error::SendTimeoutError::Closed(back)) if attempt == 0 => msg = back,
            Err(_) => return Err(Problem::new(ErrorCode::Unavailable, "the room is busy; retry").retry_after(1)),
        }
    }
    match tokio::time::timeout(ANSWER_WAIT, rx).await {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err((code, message)))) => Err(Problem::new(code, message)),
        Ok(Err(_)) => Err(Problem::new(ErrorCode::Unavailable, "the room's task stopped; retry").retry_after(1)),
        // The command may still take effect: a retry with the same Idempotency-Key is safe.
        Err(_) => Err(Problem::new(ErrorCode::Unavailable, "the room did not answer in time").retry_after(1)),
    }
}

/// Runs an administrator's command on a stored room.
async fn command(
    shared: &Shared,
    caller: &Caller,
    room: &str,
    command: room::Command,
    reason: Option<String>,
) -> ApiResult<room::Reply> {
    stored(shared, room).await?;
    let admin = caller.admin_id();
    ask(shared, room, |reply| RoomMsg::Admin { admin, command, reason, reply }).await
}

/// Runs a command on one identity of a stored room (scope `moderate`).
async fn on_identity(
    state: &AppState,
    caller: &Caller,
    (room, identity): (String, String),
    command_for: impl FnOnce(ParticipantId) -> room::Command,
    reason: Option<String>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Moderate)?;
    check_identity(&identity)?;
    command(&state.shared, caller, &room, command_for(ParticipantId::new(identity.as_str())), reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn room_info(shared: &Shared, state: RoomState) -> RoomInfo {
    let room = Room::from_state(state.clone(), shared.config.room_config());
    RoomInfo::of(&room, &state)
}

/// Who is calling, with which scope.
#[utoipa::path(get, path = "/v1/admin/whoami", tag = "admin",
    responses((status = 200, description = "OK", body = WhoAmI), (status = 401, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(WhoAmI { name: caller.name, scope: caller.scope.into() })
}

/// Rooms by name, a page at a time (scope `read`).
#[utoipa::path(get, path = "/v1/admin/rooms", tag = "admin", params(PageQuery),
    responses((status = 200, description = "OK", body = RoomPage),
        (status = 400, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn list_rooms(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<RoomPage>> {
    caller.require(Scope::Read)?;
    let limit = page_size(q.limit)?;
    let shared = &state.shared;
    let names = shared
        .store
        .rooms_after(q.cursor.as_deref().filter(|c| !c.is_empty()), limit)
        .await
        .map_err(|e| store_problem(&e))?;
    let next = (names.len() == limit).then(|| names.last().cloned()).flatten();
    let mut rooms = Vec::with_capacity(names.len());
    for name in names {
        match shared.store.load(&name).await {
            Ok(Some(s)) if !s.ended => rooms.push(room_info(shared, s)),
            Ok(_) => {}
            Err(e) => return Err(store_problem(&e)),
        }
    }
    Ok(Json(RoomPage { rooms, next }))
}

/// Creates a room (scope `admin`); persistent unless `persistent: false`.
#[utoipa::path(post, path = "/v1/admin/rooms", tag = "admin", request_body = CreateRoom,
    responses((status = 201, description = "Created", body = RoomInfo),
        (status = 400, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn create_room(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<CreateRoom>,
) -> ApiResult<Response> {
    caller.require(Scope::Admin)?;
    check_room_name(&body.name)?;
    for guest in &body.guests {
        check_identity(guest)?;
    }
    let setup = room::RoomSetup {
        open_mic: body.open_mic,
        closed: body.closed,
        stage_capacity: body.stage_capacity,
        persistent: Some(body.persistent.unwrap_or(true)),
        guests: body.guests.iter().map(|g| ParticipantId::new(g.as_str())).collect(),
        record: body.record,
    };
    let shared = &state.shared;
    if matches!(shared.store.load(&body.name).await, Ok(Some(s)) if !s.ended) {
        return Err(Problem::new(ErrorCode::Conflict, format!("room {:?} already exists", body.name)));
    }
    let admin = caller.admin_id();
    ask(shared, &body.name, |reply| RoomMsg::Create { admin, setup, reply }).await?;
    let stored = stored(shared, &body.name).await?;
    Ok((StatusCode::CREATED, Json(room_info(shared, stored))).into_response())
}

/// One room (scope `read`).
#[utoipa::path(get, path = "/v1/admin/rooms/{room}", tag = "admin", params(("room" = String, Path)),
    responses((status = 200, description = "OK", body = RoomInfo),
        (status = 401, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn get_room(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
) -> ApiResult<Json<RoomInfo>> {
    caller.require(Scope::Read)?;
    let stored = stored(&state.shared, &room).await?;
    Ok(Json(room_info(&state.shared, stored)))
}

/// Changes a room's settings (scope `admin`).
#[utoipa::path(patch, path = "/v1/admin/rooms/{room}", tag = "admin", params(("room" = String, Path)),
    request_body = UpdateRoom,
    responses((status = 200, description = "OK", body = RoomInfo),
        (status = 400, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn update_room(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    Json(body): Json<UpdateRoom>,
) -> ApiResult<Json<RoomInfo>> {
    caller.require(Scope::Admin)?;
    let shared = &state.shared;
    if body.open_mic.is_some()
        || body.closed.is_some()
        || body.stage_capacity.is_some()
        || body.chat.is_some()
        || body.chat_slow_mode_ms.is_some()
    {
        let update = room::Command::UpdateSettings {
            open_mic: body.open_mic,
            closed: body.closed,
            stage_capacity: body.stage_capacity,
            chat: body.chat,
            chat_slow_mode_ms: body.chat_slow_mode_ms,
        };
        command(shared, &caller, &room, update, body.reason.clone()).await?;
    }
    if let Some(persistent) = body.persistent {
        command(shared, &caller, &room, room::Command::SetPersistent { persistent }, body.reason).await?;
    }
    let stored = stored(shared, &room).await?;
    Ok(Json(room_info(shared, stored)))
}

/// Sets or clears a room's description and pinned link (scope `moderate`), with the same rules as a moderator's
/// `set_room_info`: everyone in the room gets a `room_info` event.
#[utoipa::path(patch, path = "/v1/admin/rooms/{room}/info", tag = "admin", params(("room" = String, Path)),
    request_body = SetInfo,
    responses((status = 200, description = "OK", body = RoomInfo),
        (status = 400, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn set_info(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    Json(body): Json<SetInfo>,
) -> ApiResult<Json<RoomInfo>> {
    caller.require(Scope::Moderate)?;
    let shared = &state.shared;
    let link = |l: super::model::LinkView| room::PinnedLink { url: l.url, title: l.title };
    let cmd = room::Command::SetRoomInfo {
        description: body.description,
        pinned_link: body.pinned_link.map(|l| l.map(link)),
    };
    command(shared, &caller, &room, cmd, body.reason).await?;
    let stored = stored(shared, &room).await?;
    Ok(Json(room_info(shared, stored)))
}

/// Lowers every raised hand (scope `moderate`), like a moderator's `clear_hands`: each raiser gets `hand_lowered`.
#[utoipa::path(delete, path = "/v1/admin/rooms/{room}/hands", tag = "admin", params(("room" = String, Path)),
    request_body(content = ActionBody, description = "Optional"),
    responses((status = 204, description = "Done"),
        (status = 400, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn clear_hands(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    body: Option<Json<ActionBody>>,
) -> ApiResult<StatusCode> {
    room_action(&state, &caller, &room, room::Command::ClearHands, body).await
}

/// Runs a moderation command on a stored room (scope `moderate`) with the optional reason of `body`: 204.
async fn room_action(
    state: &AppState,
    caller: &Caller,
    room: &str,
    cmd: room::Command,
    body: Option<Json<ActionBody>>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Moderate)?;
    let reason = body.and_then(|Json(b)| b.reason);
    command(&state.shared, caller, room, cmd, reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A page of a room's chat history, oldest first (scope `read`), as the websocket's `chat_history` returns it.
#[utoipa::path(get, path = "/v1/admin/rooms/{room}/chat", tag = "admin", params(("room" = String, Path), ChatQuery),
    responses((status = 200, description = "OK", body = ChatPageView),
        (status = 400, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn chat_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    Query(query): Query<ChatQuery>,
) -> ApiResult<Json<ChatPageView>> {
    caller.require(Scope::Read)?;
    let shared = &state.shared;
    // Read from the store (no room task is started for it); the room's rules answer, as for a participant.
    let mut live = Room::from_state(stored(shared, &room).await?, shared.config.room_config());
    let now = crate::room_task::wall_ms();
    let cmd = room::Command::ChatHistory { before: query.before, limit: query.limit.map(|l| l as usize) };
    match live.handle_admin(now, &caller.admin_id(), cmd, None) {
        Ok(room::Reply::Chat(page)) => Ok(Json(ChatPageView::of(&page))),
        Ok(_) => Err(Problem::new(ErrorCode::Internal, "unexpected reply to a chat history request")),
        Err(e) => Err(Problem::new(crate::convert::error_code(&e), e.to_string())),
    }
}

/// Deletes a chat message (scope `moderate`), like a moderator's `delete_chat`: everyone in the room gets
/// `chat_deleted` with `by_admin`; audited, and a `chat.message_deleted` webhook.
#[utoipa::path(delete, path = "/v1/admin/rooms/{room}/chat/{message_id}", tag = "admin",
    params(("room" = String, Path), ("message_id" = u64, Path)),
    request_body(content = ActionBody, description = "Optional"),
    responses((status = 204, description = "Done"),
        (status = 400, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn delete_chat(
    State(state): State<AppState>,
    caller: Caller,
    Path((room, message_id)): Path<(String, u64)>,
    body: Option<Json<ActionBody>>,
) -> ApiResult<StatusCode> {
    room_action(&state, &caller, &room, room::Command::DeleteChat { message_id }, body).await
}

/// Starts recording a room (scope `moderate`), like a moderator's `start_recording`: everyone in the room gets a
/// `recording` event. `forbidden` when this hub does not record (`[recording] enabled`) or the room must not be
/// recorded; `conflict` when it records already.
#[utoipa::path(post, path = "/v1/admin/rooms/{room}/recording", tag = "admin", params(("room" = String, Path)),
    request_body(content = ActionBody, description = "Optional"),
    responses((status = 201, description = "Started", body = RecordingStarted),
        (status = 403, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn start_recording(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    body: Option<Json<ActionBody>>,
) -> ApiResult<Response> {
    let id = crate::convert::new_recording_id();
    room_action(&state, &caller, &room, room::Command::StartRecording { id: id.clone() }, body).await?;
    Ok((StatusCode::CREATED, Json(RecordingStarted { id })).into_response())
}

/// Stops recording a room (scope `moderate`), like a moderator's `stop_recording`; the replay is mixed afterwards
/// (`recording.ready`). `conflict` when the room does not record.
#[utoipa::path(delete, path = "/v1/admin/rooms/{room}/recording", tag = "admin", params(("room" = String, Path)),
    request_body(content = ActionBody, description = "Optional"),
    responses((status = 204, description = "Stopped"),
        (status = 403, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn stop_recording(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    body: Option<Json<ActionBody>>,
) -> ApiResult<StatusCode> {
    room_action(&state, &caller, &room, room::Command::StopRecording, body).await
}

/// This hub's replays (scope `read`), by start time: those in its `[recording] dir` (hubs sharing the directory
/// list each other's).
#[utoipa::path(get, path = "/v1/admin/recordings", tag = "admin", params(RecordingQuery),
    responses((status = 200, description = "A page of replays", body = RecordingPage),
        (status = 400, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn list_recordings(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<RecordingQuery>,
) -> ApiResult<Json<RecordingPage>> {
    caller.require(Scope::Read)?;
    let limit = page_size(q.limit)?;
    if let Some(room) = &q.room {
        check_room_name(room)?;
    }
    if q.after.as_deref().is_some_and(|a| !crate::recording::valid_id(a)) {
        return Err(Problem::new(ErrorCode::BadRequest, "malformed cursor"));
    }
    let dir = state.shared.config.recording.dir.clone();
    let (room, after) = (q.room.clone(), q.after.clone());
    let (recordings, more) =
        tokio::task::spawn_blocking(move || crate::recording::list(&dir, room.as_deref(), after.as_deref(), limit))
            .await
            .map_err(|_| Problem::new(ErrorCode::Internal, "listing the replays failed"))?;
    let next = if more { recordings.last().map(|r| r.id.clone()) } else { None };
    Ok(Json(RecordingPage { recordings, next }))
}

/// Describes one replay (scope `read`): `state` is `mixing`, `ready` or `failed`.
#[utoipa::path(get, path = "/v1/admin/recordings/{id}", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, description = "The replay", body = crate::recording::Replay),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn get_recording(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::recording::Replay>> {
    caller.require(Scope::Read)?;
    let dir = state.shared.config.recording.dir.clone();
    replay_of(dir, id).await.map(Json)
}

async fn replay_of(dir: std::path::PathBuf, id: String) -> ApiResult<crate::recording::Replay> {
    if !crate::recording::valid_id(&id) {
        return Err(Problem::new(ErrorCode::NotFound, "no such recording"));
    }
    tokio::task::spawn_blocking(move || crate::recording::describe(&dir, &id))
        .await
        .ok()
        .flatten()
        .ok_or_else(|| Problem::new(ErrorCode::NotFound, "no such recording"))
}

/// The replay file (scope `read`): Opus in Ogg (`audio/ogg`) with chapters, served with HTTP Range
/// (`Accept-Ranges: bytes`, `206 Partial Content`). `not_found` until it is ready.
#[utoipa::path(get, path = "/v1/admin/recordings/{id}/replay", tag = "admin", params(("id" = String, Path)),
    responses((status = 200, description = "The replay (audio/ogg)", content_type = "audio/ogg"),
        (status = 206, description = "A range of it", content_type = "audio/ogg"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn get_replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    let dir = state.shared.config.recording.dir.clone();
    let replay = replay_of(dir.clone(), id).await?;
    if replay.state != "ready" {
        return Err(Problem::new(ErrorCode::NotFound, format!("the replay is not ready ({})", replay.state)));
    }
    let path = crate::recording::replay_path(&dir, &replay.id);
    // `.ogg`: served as `audio/ogg`.
    let serve = tower_http::services::ServeFile::new(path);
    match tower::ServiceExt::oneshot(serve, request).await {
        Ok(response) => Ok(response.map(axum::body::Body::new)),
        Err(e) => Err(Problem::new(ErrorCode::Internal, format!("serving the replay failed: {e}"))),
    }
}

/// Ends a room for everyone (scope `admin`); a persistent room is gone with its bans and guest list.
#[utoipa::path(delete, path = "/v1/admin/rooms/{room}", tag = "admin", params(("room" = String, Path)),
    responses((status = 204, description = "Done"),
        (status = 403, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn end_room(State(state): State<AppState>, caller: Caller, Path(room): Path<String>) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    command(&state.shared, &caller, &room, room::Command::EndRoom, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Participants in join order, optionally of one role (scope `read`).
#[utoipa::path(get, path = "/v1/admin/rooms/{room}/participants", tag = "admin",
    params(("room" = String, Path), ParticipantQuery),
    responses((status = 200, description = "OK", body = ParticipantPage),
        (status = 400, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn list_participants(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    Query(q): Query<ParticipantQuery>,
) -> ApiResult<Json<ParticipantPage>> {
    caller.require(Scope::Read)?;
    let limit = page_size(q.limit)?;
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(c.parse::<u64>().map_err(|_| Problem::new(ErrorCode::BadRequest, "malformed cursor"))?),
    };
    let state_ = stored(&state.shared, &room).await?;
    let live = Room::from_state(state_.clone(), state.shared.config.room_config());
    let role = q.role.map(room::Role::from);
    let mut participants = Vec::with_capacity(limit);
    let mut next = None;
    let mut last_order = None;
    for p in state_.participants.iter().filter(|p| after.is_none_or(|a| p.join_order > a)) {
        if role.is_some_and(|r| r != p.role) {
            continue;
        }
        if participants.len() == limit {
            // More follow: the cursor is the join order of the page's last participant.
            next = last_order.map(|order: u64| order.to_string());
            break;
        }
        if let Some(view) = live.participant(&p.id) {
            participants.push(view.into());
            last_order = Some(p.join_order);
        }
    }
    Ok(Json(ParticipantPage { participants, next }))
}

/// One participant (scope `read`).
#[utoipa::path(get, path = "/v1/admin/rooms/{room}/participants/{identity}", tag = "admin",
    params(("room" = String, Path), ("identity" = String, Path)),
    responses((status = 200, description = "OK", body = ParticipantInfo),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn get_participant(
    State(state): State<AppState>,
    caller: Caller,
    Path((room, identity)): Path<(String, String)>,
) -> ApiResult<Json<ParticipantInfo>> {
    caller.require(Scope::Read)?;
    let stored = stored(&state.shared, &room).await?;
    let live = Room::from_state(stored, state.shared.config.room_config());
    live.participant(&ParticipantId::new(identity.as_str()))
        .map(|p| Json(p.into()))
        .ok_or_else(|| Problem::new(ErrorCode::NotFound, format!("{identity:?} is not in the room")))
}

/// A moderation action on a participant (scope `moderate`), with the same rules as a moderator's request.
#[utoipa::path(post, path = "/v1/admin/rooms/{room}/participants/{identity}/{action}", tag = "admin",
    params(("room" = String, Path), ("identity" = String, Path), ("action" = Action, Path)),
    request_body(content = ActionBody, description = "Optional"),
    responses((status = 204, description = "Done"),
        (status = 400, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn act_on_participant(
    State(state): State<AppState>,
    caller: Caller,
    Path((room, identity, action)): Path<(String, String, Action)>,
    body: Option<Json<ActionBody>>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Moderate)?;
    check_identity(&identity)?;
    let target = ParticipantId::new(identity.as_str());
    let cmd = match action {
        Action::Mute => room::Command::Mute { target },
        Action::MoveToAudience => room::Command::MoveToAudience { target },
        Action::InviteToStage => room::Command::InviteToStage { target },
        Action::CancelInvite => room::Command::CancelInvite { target },
        Action::ApproveHand => room::Command::ApproveHand { target },
        Action::MakeModerator => room::Command::MakeModerator { target },
        Action::RevokeModerator => room::Command::RevokeModerator { target },
        Action::Kick => room::Command::Kick { target },
    };
    let reason = body.and_then(|Json(b)| b.reason);
    command(&state.shared, &caller, &room, cmd, reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Bans an identity, present or not (scope `moderate`).
#[utoipa::path(put, path = "/v1/admin/rooms/{room}/bans/{identity}", tag = "admin",
    params(("room" = String, Path), ("identity" = String, Path)),
    request_body(content = ActionBody, description = "Optional"),
    responses((status = 204, description = "Done"), (status = 403, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn ban(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String)>,
    body: Option<Json<ActionBody>>,
) -> ApiResult<StatusCode> {
    on_identity(&state, &caller, path, |target| room::Command::Ban { target }, body.and_then(|Json(b)| b.reason)).await
}

/// Lifts a ban (scope `moderate`).
#[utoipa::path(delete, path = "/v1/admin/rooms/{room}/bans/{identity}", tag = "admin",
    params(("room" = String, Path), ("identity" = String, Path)),
    responses((status = 204, description = "Done"), (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn unban(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    on_identity(&state, &caller, path, |target| room::Command::Unban { target }, None).await
}

/// Puts an identity on the closed-room guest list (scope `moderate`).
#[utoipa::path(put, path = "/v1/admin/rooms/{room}/guests/{identity}", tag = "admin",
    params(("room" = String, Path), ("identity" = String, Path)),
    responses((status = 204, description = "Done"), (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn add_guest(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    on_identity(&state, &caller, path, |identity| room::Command::InviteToRoom { identity }, None).await
}

/// Takes an identity off the guest list (scope `moderate`).
#[utoipa::path(delete, path = "/v1/admin/rooms/{room}/guests/{identity}", tag = "admin",
    params(("room" = String, Path), ("identity" = String, Path)),
    responses((status = 204, description = "Done"), (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn remove_guest(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    on_identity(&state, &caller, path, |identity| room::Command::UninviteFromRoom { identity }, None).await
}

/// Revokes an identity's tokens issued until now, or one token id, in the room (scope `moderate`): matching
/// participants are removed at once on every hub (close 4012), and the tokens cannot join again.
#[utoipa::path(post, path = "/v1/admin/rooms/{room}/revocations", tag = "admin",
    params(("room" = String, Path)), request_body = RevokeBody,
    responses((status = 204, description = "Done"), (status = 400, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    Json(body): Json<RevokeBody>,
) -> ApiResult<StatusCode> {
    caller.require(Scope::Moderate)?;
    // What a revocation may name is the room's rule (podium-room's `revoke`).
    let cmd =
        room::Command::Revoke { identity: body.identity.as_deref().map(ParticipantId::new), token_id: body.token_id };
    command(&state.shared, &caller, &room, cmd, body.reason).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The room's audit log, oldest first (scope `read`).
#[utoipa::path(get, path = "/v1/admin/rooms/{room}/audit", tag = "admin",
    params(("room" = String, Path), PageQuery),
    responses((status = 200, description = "An audit page (`entries`, `next`); see proto/ADMIN.md", body = Object),
        (status = 400, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    check_room_name(&room)?;
    let limit = page_size(q.limit)?;
    let hooks = crate::webhooks::Webhooks(std::sync::Arc::clone(&state.shared.hooks));
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    // Cursors are audit entry ids: `<ms>-<n>` (Redis stream ids) or `<n>` (the in-memory log).
    let well_formed = |c: &str| {
        let (a, b) = c.split_once('-').unwrap_or((c, "0"));
        a.len() <= 20 && b.len() <= 20 && a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok()
    };
    if cursor.is_some_and(|c| !well_formed(c)) {
        return Err(Problem::new(ErrorCode::BadRequest, "malformed cursor"));
    }
    match hooks.audit(&room, cursor, limit).await {
        Ok(page) => Ok(Json(page).into_response()),
        Err(e) if e.contains("cursor") => Err(Problem::new(ErrorCode::BadRequest, "malformed cursor")),
        Err(e) => Err(Problem::new(ErrorCode::Unavailable, e).retry_after(1)),
    }
}

/// Mints a participant token (scope `admin`).
#[utoipa::path(post, path = "/v1/admin/tokens", tag = "admin", request_body = MintToken,
    responses((status = 201, description = "Created", body = MintedToken),
        (status = 400, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn mint_token(State(state): State<AppState>, caller: Caller, Json(body): Json<MintToken>) -> ApiResult<Response> {
    caller.require(Scope::Admin)?;
    check_identity(&body.identity)?;
    if body.room != auth::ANY_ROOM {
        check_room_name(&body.room)?;
    }
    if body.name.as_ref().is_some_and(|n| n.chars().count() > auth::MAX_NAME_CHARS || n.chars().any(char::is_control)) {
        return Err(Problem::new(ErrorCode::BadRequest, "name: at most 64 characters, no control characters"));
    }
    let ttl = body.ttl_seconds.unwrap_or(3_600);
    if !(60..=86_400).contains(&ttl) {
        return Err(Problem::new(ErrorCode::BadRequest, "ttl_seconds is 60-86400"));
    }
    let role = match body.role.unwrap_or(ApiRole::Speaker) {
        ApiRole::Audience => podium_proto::Role::Audience,
        ApiRole::Speaker => podium_proto::Role::Speaker,
        ApiRole::Moderator => podium_proto::Role::Moderator,
    };
    let mut claims = auth::claims_for(&body.identity, body.name.as_deref(), &body.room, role, Duration::from_secs(ttl));
    let token_id = format!("{:032x}", rand::random::<u128>());
    claims.jti = Some(token_id.clone());
    let token = state.shared.keys.mint(&claims).map_err(|e| Problem::new(ErrorCode::Internal, e.to_string()))?;
    Ok((StatusCode::CREATED, Json(MintedToken { token, token_id, expires_at: claims.exp })).into_response())
}

/// The hubs sharing the store (scope `read`); with the in-memory store, this hub alone.
#[utoipa::path(get, path = "/v1/admin/nodes", tag = "admin",
    responses((status = 200, description = "OK", body = NodeList), (status = 503, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn list_nodes(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<NodeList>> {
    caller.require(Scope::Read)?;
    let shared = &state.shared;
    let nodes = match &shared.store {
        crate::hub::Persistence::Redis(store) => {
            let nodes = store.nodes(crate::NODE_TTL).await.map_err(|e| store_problem(&e))?;
            let mut views = Vec::with_capacity(nodes.len());
            for n in nodes {
                let leases = store.held_count(&n.info.id).await.map_err(|e| store_problem(&e))?;
                views.push(NodeView {
                    this: n.info.id == shared.node_id,
                    id: n.info.id,
                    url: n.info.url,
                    draining: n.info.draining,
                    alive: n.alive,
                    heartbeat_age_ms: u64::try_from(n.age.as_millis()).unwrap_or(u64::MAX),
                    leases,
                });
            }
            views
        }
        crate::hub::Persistence::Memory(_) => {
            let me = shared.node_info();
            let leases = u64::try_from(shared.running_room_count()).unwrap_or(u64::MAX);
            vec![NodeView {
                id: me.id,
                url: me.url,
                draining: me.draining,
                alive: true,
                heartbeat_age_ms: 0,
                leases,
                this: true,
            }]
        }
    };
    Ok(Json(NodeList { nodes }))
}

/// Drains a hub (scope `admin`): what SIGTERM does; its rooms and clients move to the other hubs, then it stops.
#[utoipa::path(post, path = "/v1/admin/nodes/{node}/drain", tag = "admin", params(("node" = String, Path)),
    responses((status = 202, description = "Accepted: the hub drains"), (status = 403, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "A problem (RFC 9457); `code` is the protocol error code", body = ProblemDoc, content_type = "application/problem+json")))]
async fn drain_node(State(state): State<AppState>, caller: Caller, Path(node): Path<String>) -> ApiResult<StatusCode> {
    caller.require(Scope::Admin)?;
    let shared = &state.shared;
    if node == shared.node_id {
        shared.request_drain();
        return Ok(StatusCode::ACCEPTED);
    }
    let message = crate::relay::NodeMessage::Drain { by: format!("admin:{}", caller.name) };
    match shared.store.send_to_node(&node, &message.encode()).await {
        Ok(0) => Err(Problem::new(ErrorCode::NotFound, format!("no live hub {node:?}"))),
        Ok(_) => Ok(StatusCode::ACCEPTED),
        Err(e) => Err(store_problem(&e)),
    }
}

/// Webhook delivery, per endpoint: queue depth, oldest event, failures (scope `read`).
#[utoipa::path(get, path = "/v1/admin/webhooks", tag = "admin",
    responses((status = 200, description = "Delivery status; see proto/WEBHOOKS.md", body = Object)))]
async fn webhooks(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Scope::Read)?;
    let hooks = crate::webhooks::Webhooks(std::sync::Arc::clone(&state.shared.hooks));
    Ok(Json(hooks.status().await).into_response())
}
