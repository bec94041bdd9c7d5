//! What the scheduler runner may do to rooms: the narrow handle it gets instead of the hub.

use std::sync::Arc;

use podium_proto::ErrorCode;
use podium_room::{self as room, ParticipantId};
use podium_store::{RoomState, StoreError};

use crate::admin::ask;
use crate::room_task::RoomMsg;

/// The scheduler's view of rooms: load one, give an administrator's command, create a persistent one, push a
/// schedule frame. Commands go through the room's task like the admin API's, as the administrator `scheduler`.
#[derive(Clone)]
pub(crate) struct StageRooms {
    shared: Arc<crate::hub::Shared>,
}

/// Someone in a room.
#[derive(Clone, Debug)]
pub(crate) struct Present {
    pub(crate) id: ParticipantId,
    /// Their token's ceiling: the highest role they may be given.
    pub(crate) ceiling: room::Role,
}

/// The administrator name scheduler actions carry (webhooks: `actor: "admin:scheduler"`).
pub(crate) const SCHEDULER: &str = "scheduler";

impl StageRooms {
    pub(crate) fn new(shared: Arc<crate::hub::Shared>) -> Self {
        Self { shared }
    }

    /// The stored room.
    pub(crate) async fn load(&self, room: &str) -> Result<Option<RoomState>, StoreError> {
        self.shared.store.load(room).await
    }

    /// Identities present in the room now (connected, or in their grace period), with their roles.
    pub(crate) async fn present(&self, room: &str) -> Result<Vec<(ParticipantId, room::Role)>, StoreError> {
        Ok(self
            .load(room)
            .await?
            .map(|state| state.participants.iter().map(|p| (p.id.clone(), p.role)).collect())
            .unwrap_or_default())
    }

    /// Which of `ids` are in the room (connected or in their grace period), with their roles and token ceilings:
    /// with Redis one read of just those records, so asking about a stage with thousands of listeners costs the
    /// same as an empty one.
    pub(crate) async fn present_among(&self, room: &str, ids: &[&str]) -> Result<Vec<Present>, StoreError> {
        let records: Vec<room::ParticipantState> = match &self.shared.store {
            crate::hub::Persistence::Redis(r) => r.participants_among(room, ids).await?.into_iter().flatten().collect(),
            crate::hub::Persistence::Memory(_) => self
                .load(room)
                .await?
                .map(|s| s.participants.into_iter().filter(|p| ids.contains(&p.id.as_str())).collect())
                .unwrap_or_default(),
        };
        Ok(records.into_iter().map(|p| Present { id: p.id, ceiling: p.ceiling }).collect())
    }

    /// Runs an administrator's command in the room.
    pub(crate) async fn command(&self, room: &str, command: room::Command) -> Result<room::Reply, String> {
        let admin = room::AdminId::new(SCHEDULER);
        ask(&self.shared, room, |reply| RoomMsg::Admin { admin, command, reason: None, reply })
            .await
            .map_err(|p| p.describe())
    }

    /// Creates the room, persistent, unless it is stored already.
    pub(crate) async fn ensure(&self, room: &str) -> Result<(), String> {
        if matches!(self.load(room).await, Ok(Some(s)) if !s.ended) {
            return Ok(());
        }
        let setup = room::RoomSetup { persistent: Some(true), ..room::RoomSetup::default() };
        let admin = room::AdminId::new(SCHEDULER);
        match ask(&self.shared, room, |reply| RoomMsg::Create { admin, setup, reply }).await {
            Ok(_) => Ok(()),
            Err(p) if p.describe().starts_with(ErrorCode::Conflict.as_str()) => Ok(()),
            Err(p) => Err(p.describe()),
        }
    }

    /// Sends the room's hubs its new `schedule` frame (through this hub's task of the room).
    pub(crate) fn schedule(&self, room: &str, frame: Arc<str>) {
        crate::bus::send(&self.shared.room(room), RoomMsg::Schedule { frame });
    }
}
