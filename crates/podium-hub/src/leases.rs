//! The hub's lease keeper (Redis only): every [`LEASE_RENEW`] it claims or renews, in one batch, the lease of every
//! room this hub runs a task for (a draining hub only reads them), and hands each room task its answer
//! ([`RoomMsg::Lease`]). A room task asks for its lease on its own only when it starts, when another hub hands the
//! room over, and when an announcement says the room's media moved; every other renewal is the keeper's. So a hub
//! sends one lease round trip per [`LEASE_RENEW`] whatever its number of rooms.
//!
//! Invariants:
//! - A batch is sent only after the previous one was answered (or timed out: the store bounds every call), so
//!   renewals never pile up behind a slow Redis.
//! - `asked_at` is taken before the batch is sent, so a room's trust in its lease (`LEASE - LEASE_RENEW / 2` from
//!   then) never outlasts the lease in Redis, however long the answer takes.
//! - A room task whose inbox is full still gets its answer (on a task of its own), so a busy room is not starved
//!   of renewals; an answer that arrives late only shortens what the room trusts.
//! - A failed batch delivers nothing: each room keeps what it had, and its trust lapses by itself.

use std::sync::Arc;
use std::time::Duration;

use podium_store::RedisStore;
use podium_store::redis::leases::WATCH_EVERY;
use tracing::debug;

use crate::hub::Shared;
use crate::room_task::RoomMsg;

/// How long a room's lease (timers and media) lasts, and how often it is renewed (others try to take it as often).
/// When its hub dies, another takes the room over within `LEASE + LEASE_RENEW`.
pub(crate) const LEASE: Duration = Duration::from_millis(1500);
pub(crate) const LEASE_RENEW: Duration = Duration::from_millis(500);

/// Runs until the hub has stopped (a draining hub keeps watching its rooms move).
pub(crate) async fn keep(shared: Arc<Shared>, store: RedisStore) {
    let mut stopped = shared.stopped_rx();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + LEASE_RENEW, LEASE_RENEW);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batches: u64 = 0;
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tick.tick() => {}
        }
        let rooms = shared.running_room_names();
        if rooms.is_empty() {
            continue;
        }
        let names: Vec<&str> = rooms.iter().map(|(name, _)| name.as_str()).collect();
        let asked_at = tokio::time::Instant::now();
        let leases = if shared.is_draining() {
            store.media_holders(&names, &shared.node_id).await
        } else {
            // A holder's renewal only extends its lease, except every `WATCH_EVERY` batches, when it also records
            // this hub's watch (which others compare with once a lease has lapsed).
            batches += 1;
            let watch = batches.is_multiple_of(WATCH_EVERY);
            store.claim_media_many(&names, &shared.node_id, LEASE, watch).await
        };
        let mut failed = 0usize;
        for ((_, handle), lease) in rooms.iter().zip(leases) {
            if lease.is_err() {
                failed += 1;
                continue;
            }
            crate::bus::send(handle, RoomMsg::Lease { lease, asked_at });
        }
        if failed > 0 {
            debug!(rooms = rooms.len(), failed, "renewing room leases failed");
        }
    }
}
