//! Where Podium keeps the truth about rooms, so a room task (or, with a shared store, a whole hub) can fail and the
//! room goes on.
//!
//! The unit of storage is one room transition: a [`Changes`] record from `podium-room` names the room's sequence
//! number before and after, and carries only the participants and room fields that changed. A store applies it
//! atomically and only if the stored sequence number is still `base_seq` (optimistic concurrency), so two writers
//! can never both apply a transition on the same version: the loser gets [`StoreError::Conflict`] and must reload.
//! [`MemoryStore`] keeps rooms in this process; [`RedisStore`] keeps them in Redis (one Lua script per commit,
//! per-participant hash fields, and a `{room}` hash tag: see the `redis` module). Both pass the same conformance
//! tests.
//!
//! This crate does not know about connections, JSON, or rules: it stores `podium-room`'s plain state records.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

pub use podium_room::{Changes, RoomState};

pub use self::bus::{Announced, Announcement, BusMessage};
pub use self::redis::outbox::{CommitExtras, EndpointPeek, LaneAdvance, LanePeek};
pub use self::redis::{
    Lease, NodeInfo, NodeStatus, OP_LATENCY_BOUNDS, RedisOpStats, RedisOptions, RedisStore, Subscription, Watcher,
};
pub use self::summit::{CtlField, MemorySummits, StageCtl, SummitStore, Versioned};

pub mod bus;
mod codec;
pub mod redis;
pub mod summit;

/// Why a store operation failed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The stored room is at another version than the commit's base: someone else wrote first.
    #[error("version conflict: expected seq {expected}, store has {found:?}")]
    Conflict {
        /// The commit's base sequence number.
        expected: u64,
        /// What the store holds (`None`: no such room).
        found: Option<u64>,
    },
    /// The store cannot be reached. Nothing was written, except when the connection dropped after a commit was
    /// sent: then it may have been applied, which the next commit's conflict (or a load) tells.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store holds something this build cannot read.
    #[error("stored room unreadable: {0}")]
    Corrupt(String),
}

/// A place to keep rooms. Every method is atomic with respect to the others for the same room.
pub trait RoomStore: Send + Sync + 'static {
    /// The stored state of `room`, if any.
    fn load(&self, room: &str) -> impl Future<Output = Result<Option<RoomState>, StoreError>> + Send;

    /// Applies one transition if the stored version is `changes.base_seq`. A room not stored yet is created by the
    /// first commit of a new room (base 0, carrying the room's fields).
    fn commit(&self, room: &str, changes: &Changes) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets `room` (it ended).
    fn remove(&self, room: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Up to `limit` names of stored rooms, in byte order, after `after` (exclusive; `None`: from the first).
    fn rooms_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

/// The embedded store: rooms live in this process's memory. It lets a room task that failed be rebuilt, but does
/// not survive the process; use a shared store for that.
#[derive(Debug, Default)]
pub struct MemoryStore {
    // One short critical section per commit; the lock is never held across an await.
    rooms: Mutex<HashMap<String, RoomState>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored state of `room`, without waiting (the in-memory store never waits).
    pub fn load_now(&self, room: &str) -> Option<RoomState> {
        self.lock().get(room).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RoomState>> {
        // A panic while holding this lock can only come from `apply`, which leaves the map consistent (it replaces
        // a whole entry or nothing), so a poisoned lock is still safe to use.
        self.rooms.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn commit_now(&self, room: &str, changes: &Changes) -> Result<(), StoreError> {
        let mut rooms = self.lock();
        match rooms.get_mut(room) {
            Some(state) if state.seq == changes.base_seq => {
                state.apply(changes);
                Ok(())
            }
            Some(state) => Err(StoreError::Conflict { expected: changes.base_seq, found: Some(state.seq) }),
            None => match RoomState::created_by(changes) {
                Some(state) => {
                    rooms.insert(room.to_owned(), state);
                    Ok(())
                }
                None => Err(StoreError::Conflict { expected: changes.base_seq, found: None }),
            },
        }
    }
}

impl RoomStore for MemoryStore {
    async fn load(&self, room: &str) -> Result<Option<RoomState>, StoreError> {
        Ok(self.load_now(room))
    }

    async fn commit(&self, room: &str, changes: &Changes) -> Result<(), StoreError> {
        self.commit_now(room, changes)
    }

    async fn remove(&self, room: &str) -> Result<(), StoreError> {
        self.lock().remove(room);
        Ok(())
    }

    async fn rooms_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        let rooms = self.lock();
        let mut names: Vec<&String> = rooms.keys().filter(|n| after.is_none_or(|a| n.as_str() > a)).collect();
        names.sort_unstable();
        Ok(names.into_iter().take(limit).cloned().collect())
    }
}

#[cfg(any(test, feature = "test-support"))]
pub mod redis_server;
#[cfg(test)]
mod tests;
