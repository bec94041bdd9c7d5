//! TURN credentials for the room's connections on this hub (see `crate::turn`): every welcome carries fresh ones,
//! and each connection gets fresh ones again (`ice_servers`) whenever half the lifetime of its last ones has
//! passed, so a connected client always holds credentials valid for at least half the lifetime, whenever it
//! gathers (an ICE restart, a new peer connection after a media move). Each hub refreshes its own connections.
//!
//! Every credential has the same lifetime, so refreshes fall due in the order they were scheduled: a queue, with
//! the due time of each participant's current schedule beside it; a queued entry whose time is not the current
//! one belongs to an earlier connection of the participant (it reconnected) and is dropped when it comes up.

use std::collections::VecDeque;

use super::*;

/// How long a refresh waits when the connection is behind on its queue (it would be dropped there).
const LAGGED_RETRY: Duration = Duration::from_secs(1);

/// How many more queued refreshes than twice the connections before the queue is cleared of stale ones.
const COMPACT_SLACK: usize = 1_024;

/// The refreshes due on this hub's connections of the room.
#[derive(Default)]
pub(super) struct IceRefresh {
    /// When each refresh falls due, in order.
    queue: VecDeque<(tokio::time::Instant, ParticipantId)>,
    /// Each connected participant's current due time.
    due: HashMap<ParticipantId, tokio::time::Instant>,
}

impl IceRefresh {
    /// When the next refresh falls due, if any.
    pub(super) fn next_due(&self) -> Option<tokio::time::Instant> {
        self.queue.front().map(|(at, _)| *at)
    }

    fn schedule(&mut self, who: ParticipantId, at: tokio::time::Instant) {
        // A retry may come before refreshes queued earlier: keep the queue ordered.
        let place = self.queue.partition_point(|(t, _)| *t <= at);
        self.queue.insert(place, (at, who.clone()));
        self.due.insert(who, at);
    }

    /// Drops the schedules of participants no longer connected here, and the stale entries.
    fn compact(&mut self, connected: impl Fn(&ParticipantId) -> bool) {
        self.due.retain(|who, _| connected(who));
        let due = &self.due;
        self.queue.retain(|(at, who)| due.get(who) == Some(at));
    }
}

impl RoomTask {
    /// Fresh ICE servers for `who` (`None` without TURN), and the next refresh scheduled at half their lifetime.
    pub(super) fn mint_ice(&mut self, who: &ParticipantId) -> Option<proto::IceServers> {
        let turn = &self.shared.config.turn;
        let servers = crate::turn::ice_servers(turn, who.as_str(), wall_ms())?;
        let half = Duration::from_secs(turn.credential_ttl_s) / 2;
        // Entries of connections gone meanwhile wait for their turn; under churn, clear them out now and then.
        if self.ice.queue.len() > 2 * self.conns.len() + COMPACT_SLACK {
            let conns = &self.conns;
            self.ice.compact(|who| conns.contains_key(who));
        }
        self.ice.schedule(who.clone(), tokio::time::Instant::now() + half);
        Some(servers)
    }

    /// Sends every refresh that fell due (see the module documentation).
    pub(super) fn refresh_ice(&mut self) {
        let now = tokio::time::Instant::now();
        while let Some((at, _)) = self.ice.queue.front()
            && *at <= now
        {
            let Some((at, who)) = self.ice.queue.pop_front() else { break };
            if self.ice.due.get(&who) != Some(&at) {
                continue;
            }
            let Some(entry) = self.conns.get(&who) else {
                self.ice.due.remove(&who);
                continue;
            };
            if entry.lagged_since.is_some() {
                self.ice.schedule(who, now + LAGGED_RETRY);
                continue;
            }
            let Some(servers) = self.mint_ice(&who) else { continue };
            trace!(identity = %who, expires_at_ms = servers.expires_at_ms, "fresh TURN credentials");
            let frame = proto::ServerMessage::IceServers(servers).to_json();
            self.deliver(&room::Recipients::One(who), frame.into());
        }
    }
}
