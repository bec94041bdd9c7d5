//! Health for orchestrators (Kubernetes probes, load balancers): they read the status code only.
//!
//! - `GET /healthz`: the process answers (liveness): always `200` while the hub runs.
//! - `GET /readyz`: the hub should get traffic: `200` when the store is reachable (Redis not known to be down),
//!   every SFU worker thread runs, and the hub is not draining or shutting down; else `503` with a problem naming
//!   what is wrong (`unavailable`).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use podium_proto::ErrorCode;
use serde_json::json;

use super::AppState;
use super::problem::Problem;
use crate::hub::Persistence;

pub(crate) async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let shared = &state.shared;
    let mut problems = Vec::new();
    if let Persistence::Redis(store) = &shared.store
        && store.is_degraded()
    {
        problems.push("the store (redis) is unreachable".to_owned());
    }
    if let Some(media) = &shared.media {
        let alive = media.workers_alive();
        if alive < media.workers() {
            problems.push(format!("{} of {} media workers stopped", media.workers() - alive, media.workers()));
        }
    }
    if shared.is_draining() || shared.is_shutting_down() {
        problems.push("draining".to_owned());
    }
    if problems.is_empty() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        Problem::new(ErrorCode::Unavailable, problems.join("; ")).into_response()
    }
}
