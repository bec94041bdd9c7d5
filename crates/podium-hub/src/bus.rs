//! Following the rooms other hubs share (Redis only): one subscription per hub to every room's announcement
//! channel, routed to this hub's running room task for that room (rooms without a task here are skipped: a task
//! that starts later loads the room from the store), and to this hub's own channel for messages addressed to it
//! (`relay`). Both arrive on one connection, so a participant's join announced on a room channel is seen before a
//! media request for that participant relayed afterwards. The subscription's connection can drop, losing what was
//! published meanwhile; after every (re)subscription each running room checks the store and resyncs if behind
//! (relayed requests lost meanwhile time out on the sending hub).

use std::sync::Arc;
use std::time::Duration;

use podium_store::{Announcement, BusMessage, RedisStore, Subscription};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::hub::Shared;
use crate::relay::NodeMessage;
use crate::room_task::{RoomHandle, RoomMsg};

/// How long to wait before subscribing again after the subscription failed or dropped.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

/// Runs until the hub has stopped: through a drain too, whose rooms still need other hubs' announcements
/// (`media_moved`) and the answers to the media requests they relay. `first` is the subscription made when the hub
/// started (before any room).
pub(crate) async fn follow(shared: Arc<Shared>, store: RedisStore, mut first: Option<Subscription>) {
    let mut stopped = shared.stopped_rx();
    // Failed attempts in a row: only the first is worth a warning while Redis stays down.
    let mut failures = 0u32;
    loop {
        let subscribed = match first.take() {
            Some(subscription) => Ok(subscription),
            None => store.subscribe(&shared.node_id).await,
        };
        match subscribed {
            Ok(mut subscription) => {
                failures = 0;
                info!("following other hubs' announcements");
                // Whatever was announced while not subscribed is lost: every room compares itself with the store.
                for handle in shared.running_rooms() {
                    send(&handle, RoomMsg::Recheck);
                }
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return,
                        message = subscription.next_message() => match message {
                            Some(BusMessage::Room { room, text }) => route(&shared, &room, &text),
                            Some(BusMessage::Node { text }) => to_node(&shared, &text),
                            None => break,
                        },
                    }
                }
                warn!("the announcement subscription dropped; subscribing again");
            }
            Err(e) => {
                if failures == 0 {
                    warn!(error = %e, "subscribing to announcements failed; retrying");
                } else {
                    debug!(error = %e, failures, "subscribing to announcements failed again");
                }
                failures = failures.saturating_add(1);
            }
        }
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(RESUBSCRIBE) => {}
        }
    }
}

fn route(shared: &Shared, room: &str, text: &str) {
    let Some(handle) = shared.running_room(room) else { return };
    let announcement = match Announcement::decode(text) {
        Ok(a) => a,
        Err(e) => {
            warn!(room, error = %e, "skipping an unreadable announcement");
            return;
        }
    };
    if announcement.node == shared.node_id {
        return;
    }
    debug!(room, seq = announcement.seq, node = %announcement.node, "announcement");
    send(&handle, RoomMsg::Remote(Box::new(announcement)));
}

/// A message addressed to this hub.
fn to_node(shared: &Arc<Shared>, text: &str) {
    let message = match NodeMessage::decode(text) {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, "skipping an unreadable hub-to-hub message");
            return;
        }
    };
    match message {
        NodeMessage::MediaRequest { from, req, room, who, request } => {
            let msg = RoomMsg::Relayed { from: from.clone(), req, who: podium_room::ParticipantId::new(who), request };
            match shared.running_room(&room) {
                Some(handle) => send(&handle, msg),
                None => {
                    // Only a hub running the room can hold its media: the sender learns it moved.
                    let shared = Arc::clone(shared);
                    tokio::spawn(async move {
                        let reply = crate::room_task::media_moved_reply(req);
                        let _ = shared.store.send_to_node(&from, &reply.encode()).await;
                    });
                }
            }
        }
        NodeMessage::MediaReply { req, sdp, error } => {
            shared.relayed.complete(req, error.map_or(Ok(sdp), Err));
        }
        NodeMessage::Adopt { room } => {
            if shared.is_draining() {
                return;
            }
            info!(room, "adopting a room from a draining hub");
            send(&shared.room(&room), RoomMsg::ClaimLease);
        }
        NodeMessage::Drain { by } => {
            info!(by, "draining, as an administrator asked");
            shared.request_drain();
        }
    }
}

/// Hands `msg` to the room without holding up the other rooms: when its inbox is full the message waits on a task
/// of its own. That may reorder it after later announcements, which the room's sequence check absorbs (an early
/// later one looks like a gap and reloads; the late one is then stale and skipped).
fn send(handle: &RoomHandle, msg: RoomMsg) {
    if let Err(mpsc::error::TrySendError::Full(msg)) = handle.inbox.try_send(msg) {
        let inbox = handle.inbox.clone();
        tokio::spawn(async move {
            let _ = inbox.send(msg).await;
        });
    }
}
