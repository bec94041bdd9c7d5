//! Summits on the hub: the scheduler runner (`runner`), its admin API (`api`), and the rooms it drives (`rooms`).
//!
//! The rules are `podium_summit`'s (pure: time in, actions out); this module keeps them in the store, runs them on
//! one hub per summit, and turns their actions into room commands, filler requests and webhooks. See `runner` for
//! the run loop and its invariants, and `podium_store::summit` for what is stored.
//!
//! - **Documents**: a summit's `schedule` document is its [`podium_summit::Releases`] (the work in progress and
//!   every release) as JSON; `details` holds what an import brought that the model does not (room names,
//!   abstracts, URLs); `subscriptions` maps subscriber identities to the slots they follow.
//! - **Commands** to running stages (start, end, extend, cancel, check in) go through the summit's inbox to the
//!   hub that runs it, which answers under the command's id; the admin API waits for the answer.
//! - **Backstage**: every stage room `R` has a companion room `R.backstage`. Joining it is checking in; the
//!   runner puts checked-in people on its stage so they hear each other, and the slot's handover promotes them in
//!   `R` (where they must be present, as audience; the SDK joins both).

pub(crate) mod api;
mod rooms;
pub(crate) mod runner;
mod store;

use std::sync::Arc;

use podium_summit::RunError;
use serde::{Deserialize, Serialize};

pub(crate) use rooms::StageRooms;
pub(crate) use store::Summits;

/// The document holding a summit's [`podium_summit::Releases`].
pub(crate) const SCHEDULE_DOC: &str = "schedule";
/// The document holding an import's display data ([`podium_summit::Details`]).
pub(crate) const DETAILS_DOC: &str = "details";
/// The document holding subscriptions (identity → slot GUIDs).
pub(crate) const SUBSCRIPTIONS_DOC: &str = "subscriptions";

/// Real milliseconds since the Unix epoch.
pub(crate) fn real_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The scheduler's clock: real time, or (tests and benchmarks, `[summit] time_scale`) real time sped up from an
/// origin, so a week of schedule runs in minutes against real rooms.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: i64,
    scale: i64,
}

impl Clock {
    pub(crate) fn new(config: &crate::config::SummitConfig) -> Self {
        let origin = if config.clock_origin_ms == 0 {
            real_ms()
        } else {
            i64::try_from(config.clock_origin_ms).unwrap_or(i64::MAX)
        };
        Self { origin, scale: i64::from(config.time_scale.max(1)) }
    }

    /// The scheduler's now (ms since the Unix epoch on its clock).
    pub(crate) fn now(&self) -> i64 {
        let real = real_ms();
        self.origin.saturating_add(real.saturating_sub(self.origin).saturating_mul(self.scale))
    }
}

/// The backstage room of a stage room.
pub(crate) fn backstage_room(stage_room: &str) -> String {
    format!("{stage_room}.backstage")
}

/// A command for a running stage, through the summit's inbox.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Command {
    /// Its answer's key.
    pub(crate) id: String,
    #[serde(flatten)]
    pub(crate) kind: CommandKind,
}

/// What a [`Command`] asks.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(tag = "command", rename_all = "snake_case")]
pub(crate) enum CommandKind {
    /// Start the next slot now.
    Start { stage: String },
    /// End the running slot now.
    End { stage: String },
    /// Extend the running slot.
    Extend { stage: String, ms: i64 },
    /// Cancel a slot.
    Cancel { stage: String, slot: String },
    /// Check a person in (a slot or a shift).
    CheckIn { stage: String, person: String },
}

impl CommandKind {
    pub(crate) fn stage(&self) -> &str {
        match self {
            Self::Start { stage }
            | Self::End { stage }
            | Self::Extend { stage, .. }
            | Self::Cancel { stage, .. }
            | Self::CheckIn { stage, .. } => stage,
        }
    }
}

/// The answer to a [`Command`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CommandResult {
    /// A protocol error code when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
    /// The slot acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) slot: Option<String>,
    /// The running slot's new end (`extend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) end_ms: Option<i64>,
}

impl CommandResult {
    pub(crate) fn ok() -> Self {
        Self::default()
    }
    pub(crate) fn error(code: &str, detail: &str) -> Self {
        Self { error: Some(code.to_owned()), detail: Some(detail.to_owned()), ..Self::default() }
    }
    pub(crate) fn slot(guid: podium_summit::SlotGuid, end_ms: Option<i64>) -> Self {
        Self { slot: Some(guid.to_string()), end_ms, ..Self::default() }
    }
    pub(crate) fn end(end_ms: i64) -> Self {
        Self { end_ms: Some(end_ms), ..Self::default() }
    }
    pub(crate) fn from_run_error(e: &RunError) -> Self {
        let code = match e {
            RunError::Invalid(_) | RunError::BadExtension => "bad_request",
            RunError::NoSlot(_) | RunError::WrongStage => "not_found",
            _ => "conflict",
        };
        Self::error(code, &e.to_string())
    }
}

/// Starts the runner of this hub; it stops with `stop`.
pub(crate) fn spawn_runner(
    shared: &Arc<crate::hub::Shared>,
    wake: Arc<tokio::sync::Notify>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    if !shared.config.summit.enabled {
        return;
    }
    let runner = runner::Runner::new(
        shared.summits.clone(),
        StageRooms::new(Arc::clone(shared)),
        Arc::clone(&shared.hooks),
        shared.node_id.clone(),
        shared.summit_clock,
        &shared.config.summit,
        shared.metrics.summit(),
    );
    tokio::spawn(runner.run(wake, stop));
}
