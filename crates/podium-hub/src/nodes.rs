//! The node registry (Redis only): every hub heartbeats into `podium:nodes` and reads everyone's entries back, so it
//! knows which hubs are alive. A hub that stops heartbeating for [`NODE_TTL`] is gone: the rooms whose lease this
//! hub holds start the grace period of that hub's participants (their connections died with it), and a draining hub
//! hands its rooms to a hub that is alive and not draining.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use podium_store::RedisStore;
use tracing::{debug, info, warn};

use crate::hub::{Registry, Shared};
use crate::room_task::RoomMsg;

/// How often a hub heartbeats and reads the registry.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(1000);

/// A hub silent for this long is gone.
pub const NODE_TTL: Duration = Duration::from_millis(3000);

/// Heartbeats until the hub has stopped: a draining hub goes on heartbeating (marked `draining`) while its clients
/// are still connected to it, so that no other hub takes it for gone and starts their grace periods.
pub(crate) async fn heartbeat(shared: Arc<Shared>, store: RedisStore) {
    let mut stopped = shared.stopped_rx();
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The hubs alive at the last successful reading; `None` after a failure, so hubs that have not heartbeat
    // again yet after a Redis outage are not taken for gone.
    let mut alive_before: Option<HashSet<String>> = None;
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tick.tick() => {}
        }
        let nodes = match store.heartbeat_and_nodes(&shared.node_info(), NODE_TTL).await {
            Ok(nodes) => nodes,
            Err(e) => {
                debug!(error = %e, "heartbeat failed");
                alive_before = None;
                continue;
            }
        };
        let alive: HashSet<String> = nodes.iter().filter(|n| n.alive).map(|n| n.info.id.clone()).collect();
        *shared.lock_registry() = Registry { read_at: Some(tokio::time::Instant::now()), nodes };
        if let Some(before) = &alive_before {
            for node in alive.difference(before) {
                info!(node = %node, "a hub joined");
            }
            let gone: HashSet<String> = before.difference(&alive).cloned().collect();
            if !gone.is_empty() {
                warn!(nodes = ?gone, "hubs stopped heartbeating; their participants' grace periods start");
                if !shared.is_draining() {
                    tokio::spawn(adopt(Arc::clone(&shared), store.clone(), gone.clone()));
                }
                let gone = Arc::new(gone);
                for room in shared.running_rooms() {
                    let _ = room.inbox.try_send(RoomMsg::NodesGone(Arc::clone(&gone)));
                }
            }
        }
        alive_before = Some(alive);
    }
}

/// Starts a task here for every room whose lease one of the `gone` hubs held ([`podium_store::redis::leases`]),
/// so that some hub takes each of them over even when no live hub has a connection in it (and so no task): the task
/// claims the lease (every live hub tries; one wins, the others' tasks see it held and stop), and the winner starts
/// the grace periods of the participants who were connected to the gone hub. Rooms already running here need
/// nothing: their task claims the lease anyway.
async fn adopt(shared: Arc<Shared>, store: RedisStore, gone: HashSet<String>) {
    for node in gone {
        match store.held_rooms(&node).await {
            Ok(rooms) => {
                let new: Vec<String> = rooms.into_iter().filter(|room| shared.running_room(room).is_none()).collect();
                if !new.is_empty() {
                    info!(node = %node, rooms = new.len(), "taking over the rooms a gone hub held");
                }
                for room in new {
                    // A fresh task asks for the lease as it starts, then keeps claiming it with the others.
                    let _ = shared.room(&room);
                }
            }
            Err(e) => warn!(node = %node, error = %e, "reading the rooms a gone hub held failed"),
        }
    }
}

/// Drains this hub: marks it draining in the registry, asks the live hubs, in turn, to take over its running rooms
/// (which moves each room's media there), and waits up to `timeout` until every room's lease is held elsewhere. The caller
/// then closes the connections (4007), and clients reconnect to another hub and resume. Returns false when no other
/// hub is alive (nothing was handed over).
pub(crate) async fn drain(shared: &Arc<Shared>, store: &RedisStore, timeout: Duration) -> bool {
    shared.draining.store(true, std::sync::atomic::Ordering::Release);
    shared.hooks.node_drained().await;
    if let Err(e) = store.heartbeat(&shared.node_info()).await {
        warn!(error = %e, "draining: the registry is unreachable; shutting down without handing rooms over");
        return false;
    }
    let targets: Vec<String> = match store.nodes(NODE_TTL).await {
        Ok(nodes) => nodes
            .into_iter()
            .filter(|n| n.alive && !n.info.draining && n.info.id != shared.node_id)
            .map(|n| n.info.id)
            .collect(),
        Err(e) => {
            warn!(error = %e, "draining: the registry is unreachable; shutting down without handing rooms over");
            return false;
        }
    };
    if targets.is_empty() {
        warn!("draining: no other hub is alive; shutting down without handing rooms over");
        return false;
    }
    let mut rooms = shared.running_room_names();
    rooms.sort_by(|a, b| a.0.cmp(&b.0));
    info!(hubs = ?targets, rooms = rooms.len(), "draining: handing rooms over");
    // Spread over every live hub, so one drain does not pile every room (and its media) onto one of them.
    for (i, (_, handle)) in rooms.iter().enumerate() {
        let target = targets[i % targets.len()].clone();
        let _ = handle.inbox.send(RoomMsg::Drain { target }).await;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut waiting: Vec<String> = rooms.into_iter().map(|(name, _)| name).collect();
    while !waiting.is_empty() && tokio::time::Instant::now() < deadline {
        let mut still = Vec::new();
        for room in waiting {
            match store.media_holder(&room, &shared.node_id).await {
                Ok(lease) if lease.holder.as_deref().is_some_and(|h| h != shared.node_id) => {}
                _ => still.push(room),
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    if waiting.is_empty() {
        info!("draining: every room is held by another hub");
    } else {
        warn!(rooms = ?waiting, "draining: these rooms were not taken over in time");
    }
    // Clients renegotiate media with the new media hub through this one; give them a moment before their
    // websockets move too (this hub keeps forwarding their old peer connections meanwhile).
    let settle = Duration::from_millis(1000).min(deadline.saturating_duration_since(tokio::time::Instant::now()));
    tokio::time::sleep(settle).await;
    true
}
