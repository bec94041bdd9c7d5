//! Following the rooms other hubs share (Redis only). Each hub has one pub/sub connection: it subscribes to the
//! hub's own channel (messages addressed to it, `relay`) and to the announcement channel of each room it runs a
//! task for, no pattern: a `PUBLISH` reaches only the hubs running the room, and a hub never sees the platform's
//! other rooms. Announcements are routed to this hub's running task for the room (one that has ended meanwhile:
//! skipped). Both kinds arrive on one connection, so a participant's join announced on a room channel is seen before
//! a media request for that participant relayed afterwards.
//!
//! Room tasks ask through [`Watches`] (in `Shared`): a task watches its room before loading it from the store, so
//! every announcement published after its load reaches it, and unwatches when it ends ([`Watched`] is dropped).
//! Invariants:
//!
//! - One place, [`follow`], issues every `SUBSCRIBE`/`UNSUBSCRIBE` of the connection, in the order the requests came.
//! - Redis keeps one subscription per channel, so [`follow`] counts each room's watchers (tasks whose watch was
//!   answered `Ok`, or is being answered): the room's channel is subscribed while the count is above zero. A task of
//!   an older generation ending while a newer one runs only lowers the count: it never unsubscribes the newer one.
//! - While connected, every room with watchers is subscribed and confirmed by Redis; a watch is answered `Ok` only
//!   then. A room without watchers may still be subscribed for a while (a command that timed out and ran late); its
//!   announcements are skipped.
//! - The connection can drop, losing what was published meanwhile and every subscription. After every
//!   (re)subscription, every room with watchers is subscribed again, and only then does each running room check
//!   the store and resync if behind (relayed requests lost meanwhile time out on the sending hub). A watch asked
//!   while not connected waits for the next connection (bounded, [`WATCH_WAIT`]), or fails at once while the store
//!   is known to be down.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use podium_store::{Announcement, BusMessage, RedisStore, StoreError, Subscription, Watcher};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::hub::Shared;
use crate::relay::NodeMessage;
use crate::room_task::{RoomHandle, RoomMsg};

/// How long to wait before subscribing again after the subscription failed or dropped.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

/// The longest a room task waits for its watch: a reconnection (a connection and a reply), the pause before it,
/// and the confirmation.
const WATCH_WAIT: Duration = Duration::from_secs(3);

/// Where a watch is answered.
type Reply = oneshot::Sender<Result<(), StoreError>>;

/// A request to [`follow`].
enum Command {
    /// Count one more watcher of the room, subscribing to its channel if it had none; answer once confirmed.
    Watch { room: String, reply: Reply },
    /// Count one watcher less, unsubscribing when none is left.
    Unwatch { room: String },
}

/// The narrow handle room tasks use to follow their room's announcements (in `Shared`, with Redis only).
#[derive(Clone)]
pub(crate) struct Watches {
    commands: mpsc::UnboundedSender<Command>,
}

/// What [`follow`] reads the room tasks' requests from.
pub(crate) struct WatchRequests(mpsc::UnboundedReceiver<Command>);

/// A room task's watch of its room: dropping it unwatches the room (whichever way the task ends).
pub(crate) struct Watched {
    room: String,
    commands: mpsc::UnboundedSender<Command>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        // Fails only once `follow` has returned (the hub has stopped): nothing is left to unsubscribe then.
        let _ = self.commands.send(Command::Unwatch { room: std::mem::take(&mut self.room) });
    }
}

impl Watches {
    /// The handle, and the requests for [`follow`]. Requests made before `follow` runs wait for it.
    pub(crate) fn new() -> (Self, WatchRequests) {
        let (commands, requests) = mpsc::unbounded_channel();
        (Self { commands }, WatchRequests(requests))
    }

    /// Subscribes this hub to `room`'s announcements; returns once Redis confirmed it (so every announcement
    /// published afterwards reaches this hub's task for the room, unless the connection drops, which every running
    /// room learns by a `Recheck`). Within [`WATCH_WAIT`]; `Unavailable` when Redis cannot confirm.
    pub(crate) async fn watch(&self, room: &str) -> Result<Watched, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the hub's subscription has stopped".into());
        self.commands.send(Command::Watch { room: room.to_owned(), reply }).map_err(|_| stopped())?;
        // On a timeout the answer is dropped: `follow` sees it and counts the watcher out again.
        match tokio::time::timeout(WATCH_WAIT, answer).await {
            Ok(Ok(Ok(()))) => Ok(Watched { room: room.to_owned(), commands: self.commands.clone() }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(StoreError::Unavailable(format!("no subscription to the room within {WATCH_WAIT:?}"))),
        }
    }
}

/// Watchers per room (only rooms with at least one).
#[derive(Default)]
struct Counts(HashMap<String, usize>);

impl Counts {
    fn add(&mut self, room: &str) {
        *self.0.entry(room.to_owned()).or_insert(0) += 1;
    }

    /// Counts one watcher out; true when the room has none left.
    fn remove(&mut self, room: &str) -> bool {
        match self.0.get_mut(room) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.0.remove(room);
                true
            }
            // Not counted (cannot happen: each watcher is counted out once): nothing to unsubscribe.
            None => false,
        }
    }

    fn has(&self, room: &str) -> bool {
        self.0.contains_key(room)
    }

    fn rooms(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// The channel changes a batch of requests needs, once they are all counted.
#[derive(Debug, Default, PartialEq, Eq)]
struct Changes {
    subscribe: Vec<String>,
    unsubscribe: Vec<String>,
}

/// Counts a batch of requests in order and returns the changes to make (a room watched and unwatched within the
/// batch may need none), and the watches to answer.
fn count(counts: &mut Counts, batch: Vec<Command>) -> (Changes, Vec<(String, Reply)>) {
    // Whether each room of the batch had watchers before it.
    let mut before: HashMap<String, bool> = HashMap::new();
    let mut replies = Vec::new();
    for command in batch {
        let room = match &command {
            Command::Watch { room, .. } | Command::Unwatch { room } => room,
        };
        if !before.contains_key(room) {
            before.insert(room.clone(), counts.has(room));
        }
        match command {
            Command::Watch { room, reply } => {
                counts.add(&room);
                replies.push((room, reply));
            }
            Command::Unwatch { room } => {
                counts.remove(&room);
            }
        }
    }
    let mut changes = Changes::default();
    for (room, was) in before {
        match (was, counts.has(&room)) {
            (false, true) => changes.subscribe.push(room),
            (true, false) => changes.unsubscribe.push(room),
            _ => {}
        }
    }
    (changes, replies)
}

/// Runs until the hub has stopped: through a drain too, whose rooms still need other hubs' announcements
/// (`media_moved`) and the answers to the media requests they relay. `first` is the subscription made when the hub
/// started (before any room); `requests` are the room tasks' [`Watches`].
pub(crate) async fn follow(
    shared: Arc<Shared>,
    store: RedisStore,
    mut first: Option<Subscription>,
    requests: WatchRequests,
) {
    let WatchRequests(mut requests) = requests;
    let mut stopped = shared.stopped_rx();
    let mut counts = Counts::default();
    // Watches asked while not connected: counted, answered once the next connection has subscribed.
    let mut waiting: Vec<(String, Reply)> = Vec::new();
    // Failed attempts in a row: only the first is worth a warning while Redis stays down.
    let mut failures = 0u32;
    loop {
        let subscribed = match first.take() {
            Some(subscription) => Ok(subscription),
            None => {
                let connect = store.subscribe(&shared.node_id);
                tokio::pin!(connect);
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return,
                        subscribed = &mut connect => break subscribed,
                        Some(command) = requests.recv() => offline(&store, &mut counts, &mut waiting, command),
                    }
                }
            }
        };
        let resubscribed = match subscribed {
            Ok(subscription) => {
                let watcher = subscription.watcher();
                // Every room with watchers, before anything else on this connection.
                match watcher.watch_rooms(counts.rooms()).await {
                    Ok(()) => Ok((subscription, watcher)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match resubscribed {
            Ok((mut subscription, watcher)) => {
                failures = 0;
                info!(rooms = counts.0.len(), "following other hubs' announcements");
                let mut later = answer(&mut counts, std::mem::take(&mut waiting), Ok(()));
                // Whatever was announced while not subscribed is lost: every room compares itself with the store.
                for handle in shared.running_rooms() {
                    send(&handle, RoomMsg::Recheck);
                }
                loop {
                    // Watchers that went away before their answer are counted out first.
                    while !later.is_empty() {
                        later = apply(&watcher, &mut counts, later).await;
                    }
                    tokio::select! {
                        _ = stopped.changed() => return,
                        message = subscription.next_message() => match message {
                            Some(BusMessage::Room { room, text }) => route(&shared, &room, &text),
                            Some(BusMessage::Node { text }) => to_node(&shared, &text),
                            None => break,
                        },
                        Some(command) = requests.recv() => {
                            let mut batch = vec![command];
                            while let Ok(command) = requests.try_recv() {
                                batch.push(command);
                            }
                            later = apply(&watcher, &mut counts, batch).await;
                        }
                    }
                }
                warn!("the announcement subscription dropped; subscribing again");
            }
            Err(e) => {
                // The watches waiting for this connection fail and are counted out (failed answers leave nothing
                // for later); the rooms of running tasks stay counted: the next connection subscribes them.
                let _ = answer(&mut counts, std::mem::take(&mut waiting), Err(e.clone()));
                if failures == 0 {
                    warn!(error = %e, "subscribing to announcements failed; retrying");
                } else {
                    debug!(error = %e, failures, "subscribing to announcements failed again");
                }
                failures = failures.saturating_add(1);
            }
        }
        let pause = tokio::time::sleep(RESUBSCRIBE);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                () = &mut pause => break,
                Some(command) = requests.recv() => offline(&store, &mut counts, &mut waiting, command),
            }
        }
    }
}

/// A request while not connected: a watch waits for the next connection (or fails at once while the store is known
/// to be down: the room could not load anyway); an unwatch is only counted (the connection's subscriptions are gone).
fn offline(store: &RedisStore, counts: &mut Counts, waiting: &mut Vec<(String, Reply)>, command: Command) {
    match command {
        Command::Watch { reply, .. } if store.is_degraded() => {
            let _ = reply.send(Err(StoreError::Unavailable("redis is unreachable; not subscribed".into())));
        }
        Command::Watch { room, reply } => {
            counts.add(&room);
            waiting.push((room, reply));
        }
        Command::Unwatch { room } => {
            counts.remove(&room);
        }
    }
}

/// Answers counted watches. A failed one is counted out at once; one whose task no longer waits (it timed out) is
/// returned as an unwatch to apply.
fn answer(counts: &mut Counts, replies: Vec<(String, Reply)>, result: Result<(), StoreError>) -> Vec<Command> {
    let mut later = Vec::new();
    for (room, reply) in replies {
        if result.is_err() {
            counts.remove(&room);
            let _ = reply.send(result.clone());
        } else if reply.send(Ok(())).is_err() {
            later.push(Command::Unwatch { room });
        }
    }
    later
}

/// Counts a batch of requests, makes the connection's subscriptions follow (one command each way) and answers the
/// watches; returns the unwatches of watchers that went away meanwhile. A failed `UNSUBSCRIBE` leaves the rooms
/// subscribed without watchers (their announcements are skipped; the next watch subscribes again, which Redis
/// accepts). A failed `SUBSCRIBE` fails the watches of the rooms it named, counted out again.
async fn apply(watcher: &Watcher, counts: &mut Counts, batch: Vec<Command>) -> Vec<Command> {
    let (changes, replies) = count(counts, batch);
    if let Err(e) = watcher.unwatch_rooms(changes.unsubscribe.iter().map(String::as_str)).await {
        debug!(error = %e, rooms = changes.unsubscribe.len(), "unsubscribing from rooms failed (their announcements are skipped)");
    }
    let subscribed = watcher.watch_rooms(changes.subscribe.iter().map(String::as_str)).await;
    if let Err(e) = &subscribed {
        warn!(error = %e, rooms = changes.subscribe.len(), "subscribing to rooms failed; they answer `unavailable`");
    }
    let named: HashSet<&str> = changes.subscribe.iter().map(String::as_str).collect();
    let (new, old): (Vec<_>, Vec<_>) = replies.into_iter().partition(|(room, _)| named.contains(room.as_str()));
    let mut later = answer(counts, old, Ok(()));
    later.extend(answer(counts, new, subscribed));
    later
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
pub(crate) fn send(handle: &RoomHandle, msg: RoomMsg) {
    if let Err(mpsc::error::TrySendError::Full(msg)) = handle.inbox.try_send(msg) {
        let inbox = handle.inbox.clone();
        tokio::spawn(async move {
            let _ = inbox.send(msg).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(room: &str) -> (Command, oneshot::Receiver<Result<(), StoreError>>) {
        let (reply, answer) = oneshot::channel();
        (Command::Watch { room: room.into(), reply }, answer)
    }

    fn unwatch(room: &str) -> Command {
        Command::Unwatch { room: room.into() }
    }

    fn changes(subscribe: &[&str], unsubscribe: &[&str]) -> Changes {
        let list = |l: &[&str]| l.iter().map(|r| (*r).to_owned()).collect();
        Changes { subscribe: list(subscribe), unsubscribe: list(unsubscribe) }
    }

    #[test]
    fn an_older_task_ending_never_unsubscribes_a_newer_one() {
        let mut counts = Counts::default();
        // The first task of room R subscribes.
        let (first, _a) = watch("r");
        assert_eq!(count(&mut counts, vec![first]).0, changes(&["r"], &[]));
        // A newer task of R starts while the old one is ending, in either order within one batch: nothing to send.
        let (second, _b) = watch("r");
        let (c, replies) = count(&mut counts, vec![second, unwatch("r")]);
        assert_eq!((c, replies.len()), (changes(&[], &[]), 1));
        let (third, _c) = watch("r");
        assert_eq!(count(&mut counts, vec![unwatch("r"), third]).0, changes(&[], &[]));
        // Across batches: the old one's unwatch leaves the newer one's subscription alone.
        let (fourth, _d) = watch("r");
        assert_eq!(count(&mut counts, vec![fourth]).0, changes(&[], &[]));
        assert_eq!(count(&mut counts, vec![unwatch("r")]).0, changes(&[], &[]));
        // The last watcher's end unsubscribes; a later task subscribes again.
        assert_eq!(count(&mut counts, vec![unwatch("r")]).0, changes(&[], &["r"]));
        assert!(!counts.has("r"));
        let (fifth, _e) = watch("r");
        let (other, _f) = watch("s");
        assert_eq!(count(&mut counts, vec![fifth, other]).0.sorted(), changes(&["r", "s"], &[]));
        // A stray unwatch (never counted) changes nothing.
        assert_eq!(count(&mut counts, vec![unwatch("t")]).0, changes(&[], &[]));
        assert_eq!(counts.0.len(), 2);
    }

    impl Changes {
        fn sorted(mut self) -> Self {
            self.subscribe.sort();
            self.unsubscribe.sort();
            self
        }
    }

    #[test]
    fn answers_count_out_failed_and_abandoned_watches() {
        let mut counts = Counts::default();
        let (w1, a1) = watch("r");
        let (w2, a2) = watch("r");
        let (_, replies) = count(&mut counts, vec![w1, w2]);
        // The second task gave up waiting: its watch comes back as an unwatch, the first one's stands.
        drop(a2);
        let later = answer(&mut counts, replies, Ok(()));
        assert!(matches!(later.as_slice(), [Command::Unwatch { room }] if room == "r"));
        assert_eq!(a1.blocking_recv().ok(), Some(Ok(())));
        // A failed watch is counted out at once.
        let (w3, a3) = watch("s");
        let (_, replies) = count(&mut counts, vec![w3]);
        let failed = StoreError::Unavailable("down".into());
        assert!(answer(&mut counts, replies, Err(failed.clone())).is_empty());
        assert_eq!(a3.blocking_recv().ok(), Some(Err(failed)));
        assert!(!counts.has("s") && counts.has("r"));
    }
}
