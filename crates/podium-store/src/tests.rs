//! Conformance tests every store must pass, run against the in-memory store and against a real `redis-server`
//! started by the test (see `redis_server.rs`); and the Redis store's durability and concurrency tests.

use podium_room::{Command, Join, ParticipantId, PinnedLink, Role, Room, RoomConfig, RoomInfo};

use super::*;
use crate::redis_server::RedisServer;

fn block_on<F: Future>(f: F) -> F::Output {
    // The in-memory store never suspends, so polling once with a no-op waker completes it.
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("the in-memory store never suspends"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn join(room: &mut Room, now: u64, id: &str, ceiling: Role) {
    room.handle_join(now, Join::new(ParticipantId::new(id), id, ceiling, None)).expect("join");
}

fn command(room: &mut Room, now: u64, who: &str, command: Command) {
    room.handle_command(now, &ParticipantId::new(who), command).expect("command accepted");
}

/// Drives a room through transitions, committing each; the store must always equal the room's own state.
pub(crate) async fn conformance(store: &impl RoomStore) {
    let mut room = Room::new("r", RoomConfig::default(), 1_000);
    assert_eq!(store.load("r").await, Ok(None));
    // Not a new room's first commit: refused, nothing created.
    let orphan = Changes {
        base_seq: 3,
        seq: 4,
        room: None,
        upserted: Vec::new(),
        joined: Vec::new(),
        removed: Vec::new(),
        bans: None,
        guests: None,
        info: None,
        chat_added: Vec::new(),
        chat_removed: Vec::new(),
    };
    assert_eq!(store.commit("r", &orphan).await, Err(StoreError::Conflict { expected: 3, found: None }));
    assert_eq!(store.load("r").await, Ok(None));

    join(&mut room, 1_000, "mod", Role::Moderator);
    join(&mut room, 1_001, "a", Role::Speaker);
    join(&mut room, 1_002, "b", Role::Speaker);
    while room.poll_output().is_some() {}
    let changes = room.take_changes().expect("joins changed the room");
    store.commit("r", &changes).await.expect("first commit creates the room");
    assert_eq!(store.load("r").await.expect("load"), Some(room.state()));

    // A stale base is refused and changes nothing.
    let stale = changes.clone();
    assert_eq!(
        store.commit("r", &stale).await,
        Err(StoreError::Conflict { expected: stale.base_seq, found: Some(room.state().seq) })
    );
    assert_eq!(store.load("r").await.expect("load"), Some(room.state()));

    let b = ParticipantId::new("b");
    room.handle_command(1_003, &b, Command::RaiseHand).expect("raise");
    room.handle_leave(1_004, &ParticipantId::new("a"));
    let changes = room.take_changes().expect("changed");
    store.commit("r", &changes).await.expect("commit");
    let stored = store.load("r").await.expect("load").expect("stored");
    assert_eq!(stored, room.state());
    let restored = Room::from_state(stored, RoomConfig::default());
    assert_eq!(restored.state(), room.state());

    // Bans and the guest list are replaced whole; settings are room fields.
    command(&mut room, 1_005, "mod", Command::Ban { target: ParticipantId::new("x") });
    command(&mut room, 1_006, "mod", Command::InviteToRoom { identity: ParticipantId::new("g") });
    command(
        &mut room,
        1_007,
        "mod",
        Command::UpdateSettings {
            open_mic: None,
            closed: Some(true),
            stage_capacity: None,
            chat: None,
            chat_slow_mode_ms: None,
        },
    );
    let changes = room.take_changes().expect("changed");
    store.commit("r", &changes).await.expect("commit");
    assert_eq!(store.load("r").await.expect("load"), Some(room.state()));
    command(&mut room, 1_008, "mod", Command::Unban { target: ParticipantId::new("x") });
    let changes = room.take_changes().expect("changed");
    assert_eq!(changes.bans.as_deref(), Some(&[][..]));
    store.commit("r", &changes).await.expect("commit");
    assert_eq!(store.load("r").await.expect("load"), Some(room.state()));

    // The room's info is stored when it changes (and only then), and cleared; a raised hand keeps its deadline.
    let info = Command::SetRoomInfo {
        description: Some(Some("About\nus".into())),
        pinned_link: Some(Some(PinnedLink { url: "https://example.com/x".into(), title: Some("X".into()) })),
    };
    command(&mut room, 1_009, "mod", info);
    let changes = room.take_changes().expect("changed");
    assert!(changes.info.is_some() && changes.room.is_none());
    store.commit("r", &changes).await.expect("commit");
    let stored = store.load("r").await.expect("load").expect("stored");
    assert_eq!(stored.info.description.as_deref(), Some("About\nus"));
    assert!(stored.participants.iter().any(|p| p.hand_expires_at == Some(1_003 + RoomConfig::default().hand_ttl)));
    assert_eq!(stored, room.state());
    join(&mut room, 1_010, "c", Role::Moderator); // the room is closed now: a moderator token gets in
    let changes = room.take_changes().expect("changed");
    assert!(changes.info.is_none(), "a join does not carry the info");
    store.commit("r", &changes).await.expect("commit");
    assert_eq!(store.load("r").await.expect("load"), Some(room.state()), "the info stays when not carried");
    command(&mut room, 1_011, "mod", Command::SetRoomInfo { description: Some(None), pinned_link: Some(None) });
    store.commit("r", &room.take_changes().expect("changed")).await.expect("commit");
    let stored = store.load("r").await.expect("load").expect("stored");
    assert_eq!(stored.info, RoomInfo::default());
    assert_eq!(stored, room.state());

    // Chat: each message is stored with the room (ids from the room's fields), deletions and trimming remove them.
    let mut chatty = Room::new("chat", RoomConfig { chat_history: 3, ..RoomConfig::default() }, 3_000);
    join(&mut chatty, 3_000, "mod", Role::Moderator);
    join(&mut chatty, 3_000, "a", Role::Audience);
    store.commit("chat", &chatty.take_changes().expect("joins")).await.expect("commit");
    for (i, text) in ["one", "two\nlines", "three", "four"].into_iter().enumerate() {
        let now = 3_001 + i as u64;
        command(&mut chatty, now, "a", Command::SendChat { text: format!("  {text} ") });
        let changes = chatty.take_changes().expect("posted");
        assert_eq!(changes.chat_added.len(), 1);
        store.commit("chat", &changes).await.expect("commit");
    }
    let stored = store.load("chat").await.expect("load").expect("stored");
    assert_eq!(stored.chat.iter().map(|m| m.id).collect::<Vec<_>>(), [2, 3, 4], "trimmed to three, oldest first");
    assert_eq!(stored.chat[0].text, "two\nlines");
    assert_eq!(stored, chatty.state());
    command(&mut chatty, 3_010, "mod", Command::DeleteChat { message_id: 3 });
    store.commit("chat", &chatty.take_changes().expect("deleted")).await.expect("commit");
    let stored = store.load("chat").await.expect("load").expect("stored");
    assert_eq!(stored.chat.iter().map(|m| m.id).collect::<Vec<_>>(), [2, 4]);
    assert_eq!(stored.next_chat_id, 5);
    let restored = Room::from_state(stored.clone(), RoomConfig { chat_history: 3, ..RoomConfig::default() });
    assert_eq!(restored.state(), stored);
    store.remove("chat").await.expect("remove");
    assert_eq!(store.load("chat").await, Ok(None), "the history goes with the room");

    // The listing: by name, paged, the removed room gone from it.
    for name in ["r3", "r1", "r2"] {
        let mut other = Room::new(name, RoomConfig::default(), 2_000);
        join(&mut other, 2_000, "mod", Role::Moderator);
        store.commit(name, &other.take_changes().expect("join")).await.expect("commit");
    }
    assert_eq!(store.rooms_after(None, 10).await.expect("list"), ["r", "r1", "r2", "r3"]);
    assert_eq!(store.rooms_after(None, 2).await.expect("list"), ["r", "r1"]);
    assert_eq!(store.rooms_after(Some("r1"), 2).await.expect("list"), ["r2", "r3"]);
    assert_eq!(store.rooms_after(Some("r3"), 2).await.expect("list"), Vec::<String>::new());
    for name in ["r1", "r2", "r3"] {
        store.remove(name).await.expect("remove");
    }

    store.remove("r").await.expect("remove");
    assert_eq!(store.load("r").await, Ok(None));
    assert_eq!(store.rooms_after(None, 10).await.expect("list"), Vec::<String>::new());
}

#[test]
fn memory_store_conforms() {
    block_on(conformance(&MemoryStore::new()));
}

#[test]
fn redis_store_conforms() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.url(), &RedisOptions::default()).await.expect("connect");
        conformance(&store).await;
    });
}

#[test]
fn redis_cluster_store_conforms() {
    let server = RedisServer::start_cluster();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.cluster_url(), &RedisOptions::default()).await.expect("connect");
        conformance(&store).await;
    });
}

/// A room with every kind of stored state: moderators and speakers, a hand queue in a known order, an open
/// invitation, a ban, a guest list, changed settings, someone in their grace period.
fn busy_room(store_commits: &mut Vec<Changes>) -> Room {
    let mut room = Room::new("summit", RoomConfig::default(), 10_000);
    let mut now = 10_000;
    let mut step = |room: &mut Room, f: &mut dyn FnMut(&mut Room, u64)| {
        now += 1;
        f(room, now);
        while room.poll_output().is_some() {}
        if let Some(c) = room.take_changes() {
            store_commits.push(c);
        }
    };
    step(&mut room, &mut |r, t| join(r, t, "mod", Role::Moderator));
    step(&mut room, &mut |r, t| join(r, t, "mod2", Role::Moderator));
    step(&mut room, &mut |r, t| join(r, t, "spk", Role::Speaker));
    for (i, who) in ["l1", "l2", "l3", "l4", "l5"].into_iter().enumerate() {
        step(&mut room, &mut |r, t| join(r, t + i as u64, who, Role::Speaker));
    }
    // Hands in the order l3, l1, l5: the stored queue must keep it.
    for who in ["l3", "l1", "l5"] {
        step(&mut room, &mut |r, t| command(r, t, who, Command::RaiseHand));
    }
    step(&mut room, &mut |r, t| command(r, t, "mod", Command::ApproveHand { target: ParticipantId::new("l1") }));
    step(&mut room, &mut |r, t| command(r, t, "mod", Command::InviteToStage { target: ParticipantId::new("l2") }));
    step(&mut room, &mut |r, t| command(r, t, "mod", Command::MakeModerator { target: ParticipantId::new("mod2") }));
    step(&mut room, &mut |r, t| command(r, t, "mod", Command::Ban { target: ParticipantId::new("l4") }));
    step(&mut room, &mut |r, t| command(r, t, "mod", Command::InviteToRoom { identity: ParticipantId::new("vip") }));
    step(&mut room, &mut |r, t| {
        command(
            r,
            t,
            "mod",
            Command::UpdateSettings {
                open_mic: None,
                closed: None,
                stage_capacity: Some(7),
                chat: None,
                chat_slow_mode_ms: None,
            },
        );
    });
    step(&mut room, &mut |r, t| command(r, t, "spk", Command::RaiseHand));
    step(&mut room, &mut |r, t| command(r, t, "mod", Command::ApproveHand { target: ParticipantId::new("spk") }));
    step(&mut room, &mut |r, t| command(r, t, "spk", Command::SetMuted { muted: false }));
    step(&mut room, &mut |r, t| r.handle_disconnect(t, &ParticipantId::new("spk")));
    room
}

#[test]
fn acknowledged_commits_survive_kill_9() {
    let mut server = RedisServer::start();
    let rt = runtime();
    let mut commits = Vec::new();
    let room = busy_room(&mut commits);
    assert!(commits.len() > 10, "one commit per transition");
    let expected = room.state();
    assert_eq!(expected.bans, [ParticipantId::new("l4")]);
    assert_eq!(expected.guests, [ParticipantId::new("vip")]);
    let hands: Vec<&str> = {
        let mut h: Vec<_> =
            expected.participants.iter().filter_map(|p| Some((p.hand_raised?, p.id.as_str()))).collect();
        h.sort_unstable();
        h.into_iter().map(|(_, id)| id).collect()
    };
    assert_eq!(hands, ["l3", "l5"]);
    assert!(expected.participants.iter().any(|p| p.invite.is_some()));

    let store = rt.block_on(RedisStore::connect(&server.url(), &RedisOptions::default())).expect("connect");
    for c in &commits {
        rt.block_on(store.commit("summit", c)).expect("acknowledged");
    }
    server.kill9();
    // While Redis is down: an error, not a panic or a hang.
    let down = rt.block_on(store.load("summit"));
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    server.restart();

    // The same connection comes back by itself (the script cache is empty: EVALSHA falls back to loading it).
    let mut loaded = rt.block_on(store.load("summit"));
    for _ in 0..50 {
        if loaded.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        loaded = rt.block_on(store.load("summit"));
    }
    let loaded = loaded.expect("reconnected").expect("the room survived");
    assert_eq!(loaded, expected);
    let rebuilt = Room::from_state(loaded, RoomConfig::default());
    assert_eq!(rebuilt.state(), expected);

    // And a fresh client sees the same.
    let fresh = rt.block_on(RedisStore::connect(&server.url(), &RedisOptions::default())).expect("connect");
    assert_eq!(rt.block_on(fresh.load("summit")), Ok(Some(expected)));
}

#[test]
fn racing_writers_on_one_base_exactly_one_wins() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let opts = RedisOptions::default();
        let one = RedisStore::connect(&server.url(), &opts).await.expect("connect");
        let two = RedisStore::connect(&server.url(), &opts).await.expect("connect");
        let mut room = Room::new("race", RoomConfig::default(), 1_000);
        // 12 of the 13 seats taken; x and y have raised hands.
        join(&mut room, 1_000, "mod", Role::Moderator);
        for i in 0..11 {
            join(&mut room, 1_001, &format!("s{i}"), Role::Moderator);
        }
        for who in ["x", "y"] {
            join(&mut room, 1_002, who, Role::Speaker);
            command(&mut room, 1_003, who, Command::RaiseHand);
        }
        while room.poll_output().is_some() {}
        assert_eq!(room.state().participants.iter().filter(|p| p.role.on_stage()).count(), 12);
        one.commit("race", &room.take_changes().expect("joins")).await.expect("create");

        for round in 0..20u64 {
            let base = room.state();
            // Two hubs, each with its own copy of the room at the same version, each filling the last free seat.
            let mut a = Room::from_state(base.clone(), RoomConfig::default());
            let mut b = Room::from_state(base.clone(), RoomConfig::default());
            let now = 2_000 + 2 * round;
            command(&mut a, now, "mod", Command::ApproveHand { target: ParticipantId::new("x") });
            command(&mut b, now, "mod", Command::ApproveHand { target: ParticipantId::new("y") });
            let (ca, cb) = (a.take_changes().expect("a"), b.take_changes().expect("b"));
            assert_eq!((ca.base_seq, cb.base_seq), (base.seq, base.seq));
            let (ra, rb) = tokio::join!(one.commit("race", &ca), two.commit("race", &cb));
            let (winner, promoted) = match (&ra, &rb) {
                (Ok(()), Err(StoreError::Conflict { found, .. })) => {
                    assert_eq!(*found, Some(ca.seq));
                    (a, "x")
                }
                (Err(StoreError::Conflict { found, .. }), Ok(())) => {
                    assert_eq!(*found, Some(cb.seq));
                    (b, "y")
                }
                other => panic!("round {round}: exactly one must win, got {other:?}"),
            };
            let stored = one.load("race").await.expect("load").expect("stored");
            assert_eq!(stored, winner.state());
            assert_eq!(stored.participants.iter().filter(|p| p.role.on_stage()).count(), 13);
            // Back to one free seat and two raised hands for the next round.
            room = winner;
            let promoted = ParticipantId::new(promoted);
            command(&mut room, now + 1, "mod", Command::MoveToAudience { target: promoted.clone() });
            room.handle_command(now + 1, &promoted, Command::RaiseHand).expect("raise again");
            while room.poll_output().is_some() {}
            one.commit("race", &room.take_changes().expect("reset")).await.expect("reset");
        }
    });
}

/// A plain connection for looking at (and tampering with) what the store wrote.
async fn raw(server: &RedisServer) -> ::redis::aio::MultiplexedConnection {
    let client = ::redis::Client::open(server.url()).expect("url");
    client.get_multiplexed_async_connection().await.expect("raw connection")
}

async fn get(conn: &mut ::redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    ::redis::cmd("GET").arg(key).query_async(conn).await.expect("GET")
}

async fn media_lease_epochs(store: &RedisStore, server: &RedisServer) {
    use std::time::Duration;
    let mut raw = raw(server).await;
    let lease = Duration::from_secs(3);
    let lease_of = |held, holder: &str, epoch| Lease { held, holder: Some(holder.to_owned()), epoch };
    let media = redis::media_key("m");

    // The first claim starts the epoch at 1; renewing keeps it; another node is refused and told the holder.
    assert_eq!(store.claim_media("m", "a", lease).await, Ok(lease_of(true, "a", 1)));
    assert_eq!(get(&mut raw, &media).await.as_deref(), Some("1 a"));
    assert_eq!(store.claim_media("m", "a", lease).await, Ok(lease_of(true, "a", 1)));
    assert_eq!(store.claim_media("m", "b", lease).await, Ok(lease_of(false, "a", 1)));
    // The old timer-only claim shares the lease.
    assert_eq!(store.claim_owner("m", "b", lease).await, Ok(false));
    assert_eq!(store.claim_owner("m", "a", lease).await, Ok(true));

    // A released lease goes to the next claimer, and the media moves: a new epoch.
    store.release_owner("m", "a").await.expect("release");
    assert_eq!(get(&mut raw, &media).await.as_deref(), Some("1 a"), "releasing keeps the media key");
    assert_eq!(store.claim_media("m", "b", lease).await, Ok(lease_of(true, "b", 2)));
    assert_eq!(store.claim_media("m", "a", lease).await, Ok(lease_of(false, "b", 2)));
    assert_eq!(get(&mut raw, &media).await.as_deref(), Some("2 b"));

    // b loses its lease without a media move (Redis forgot it): re-claiming keeps the epoch.
    let _: i64 = ::redis::cmd("DEL").arg(redis::owner_key("m")).query_async(&mut raw).await.expect("DEL");
    assert_eq!(store.claim_media("m", "b", lease).await, Ok(lease_of(true, "b", 2)));

    // The lease expires; whoever claims next and is not b moves the media.
    assert_eq!(store.claim_media("m", "b", Duration::from_millis(30)).await, Ok(lease_of(true, "b", 2)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(store.claim_media("m", "a", lease).await, Ok(lease_of(true, "a", 3)));
    assert_eq!(get(&mut raw, &media).await.as_deref(), Some("3 a"));

    // A media value this build cannot read counts as none.
    let _: () = ::redis::cmd("SET").arg(&media).arg("junk").query_async(&mut raw).await.expect("SET");
    assert_eq!(store.claim_media("m", "a", lease).await, Ok(lease_of(true, "a", 1)));
    assert_eq!(get(&mut raw, &media).await.as_deref(), Some("1 a"));
}

#[test]
fn media_lease_epoch_changes_exactly_when_the_media_node_does() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.url(), &RedisOptions::default()).await.expect("connect");
        media_lease_epochs(&store, &server).await;
    });
}

#[test]
fn media_lease_epoch_on_a_cluster() {
    let server = RedisServer::start_cluster();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.cluster_url(), &RedisOptions::default()).await.expect("connect");
        media_lease_epochs(&store, &server).await;
    });
}

/// A lapsed lease prefers its last holder: after a silence every claimer shared (a Redis outage), the last holder
/// re-claims it in the same epoch; a holder that stops renewing while another node keeps claiming loses it as soon
/// as it lapses; a last holder that never comes back loses it after the grace window (twice the lease); a released
/// lease goes at once.
#[test]
fn a_lapsed_lease_prefers_its_last_holder() {
    use std::time::{Duration, Instant};
    let server = RedisServer::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.url(), &RedisOptions::default()).await.expect("connect");
        // Contact window 666 ms, grace 2 s.
        let lease = Duration::from_secs(1);
        let lease_of = |held, holder: &str, epoch| Lease { held, holder: Some(holder.to_owned()), epoch };
        assert_eq!(store.claim_media("m", "a", lease).await, Ok(lease_of(true, "a", 1)));
        assert_eq!(store.claim_media("m", "b", lease).await, Ok(lease_of(false, "a", 1)));

        // Nobody claims for longer than the lease (Redis was away): b comes back first and is told to wait for a,
        // which re-claims its own media in the same epoch.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(store.claim_media("m", "b", lease).await, Ok(lease_of(false, "a", 1)));
        assert_eq!(store.claim_media("m", "a", lease).await, Ok(lease_of(true, "a", 1)));

        // a stops renewing while b keeps claiming: the first claim after the lapse takes the media over.
        let a_renewed = Instant::now();
        while a_renewed.elapsed() < Duration::from_millis(800) {
            assert_eq!(store.claim_media("m", "b", lease).await, Ok(lease_of(false, "a", 1)));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(1100).saturating_sub(a_renewed.elapsed())).await;
        assert_eq!(store.claim_media("m", "b", lease).await, Ok(lease_of(true, "b", 2)));

        // b's lease lapses in a shared silence and b never comes back: a waits the grace window, then takes it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let watching = Instant::now();
        let taken = loop {
            let got = store.claim_media("m", "a", lease).await.expect("claim");
            if got.held {
                break got;
            }
            assert_eq!(got, lease_of(false, "b", 2));
            assert!(watching.elapsed() < Duration::from_secs(5), "a never took the lapsed lease");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let waited = watching.elapsed();
        assert_eq!(taken, lease_of(true, "a", 3));
        assert!(waited >= Duration::from_millis(1800), "a took the lease after {waited:?}, before the grace window");

        // A released lease needs no waiting, even by a claimer that was away.
        store.release_owner("m", "a").await.expect("release");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(store.claim_media("m", "b", lease).await, Ok(lease_of(true, "b", 4)));
    });
}

#[test]
fn media_epoch_survives_a_redis_restart() {
    let mut server = RedisServer::start();
    let rt = runtime();
    let store = rt.block_on(RedisStore::connect(&server.url(), &RedisOptions::default())).expect("connect");
    let lease = std::time::Duration::from_secs(3);
    let first = rt.block_on(store.claim_media("m", "a", lease)).expect("claim");
    assert_eq!(first, Lease { held: true, holder: Some("a".into()), epoch: 1 });
    server.kill9();
    assert!(matches!(rt.block_on(store.claim_media("m", "a", lease)), Err(StoreError::Unavailable(_))));
    server.restart();
    // The lease may or may not have outlived the restart; either way a re-claims its own media: same epoch.
    let _: i64 = rt
        .block_on(async { ::redis::cmd("DEL").arg(redis::owner_key("m")).query_async(&mut raw(&server).await).await })
        .expect("DEL");
    let mut again = rt.block_on(store.claim_media("m", "a", lease));
    for _ in 0..50 {
        if again.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        again = rt.block_on(store.claim_media("m", "a", lease));
    }
    assert_eq!(again, Ok(first));
}

/// Commits `room`'s pending changes with presence; returns them.
async fn commit_present(store: &RedisStore, room: &mut Room, present: Option<(&str, &str)>) -> Changes {
    while room.poll_output().is_some() {}
    let changes = room.take_changes().expect("changed");
    store.commit_present("p", &changes, Some("announced"), present).await.expect("commit");
    changes
}

async fn presence_follows_commits(store: &RedisStore, server: &RedisServer) {
    use std::collections::HashMap;
    let mut raw = raw(server).await;
    let map = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    // Left over from an earlier room of that name: creating the room clears it.
    let _: i64 = ::redis::cmd("HSET")
        .arg(redis::presence_key("p"))
        .arg("ghost")
        .arg("n9")
        .query_async(&mut raw)
        .await
        .expect("HSET");

    let mut room = Room::new("p", RoomConfig::default(), 1_000);
    join(&mut room, 1_000, "mod", Role::Moderator);
    commit_present(store, &mut room, Some(("mod", "n1"))).await;
    assert_eq!(store.presence("p").await, Ok(map(&[("mod", "n1")])));
    join(&mut room, 1_001, "a", Role::Speaker);
    commit_present(store, &mut room, Some(("a", "n2"))).await;
    join(&mut room, 1_002, "b", Role::Speaker);
    commit_present(store, &mut room, Some(("b", "n1"))).await;
    assert_eq!(store.presence("p").await, Ok(map(&[("mod", "n1"), ("a", "n2"), ("b", "n1")])));

    // A refused commit records nothing.
    let stale = Changes {
        base_seq: 1,
        seq: 2,
        room: None,
        upserted: Vec::new(),
        joined: Vec::new(),
        removed: Vec::new(),
        bans: None,
        guests: None,
        info: None,
        chat_added: Vec::new(),
        chat_removed: Vec::new(),
    };
    let refused = store.commit_present("p", &stale, None, Some(("c", "n3"))).await;
    assert!(matches!(refused, Err(StoreError::Conflict { .. })), "{refused:?}");
    assert_eq!(store.presence("p").await.expect("presence").len(), 3);

    // Leaving (and being kicked) removes presence; a reconnect elsewhere moves it; plain commits leave it be.
    room.handle_leave(1_003, &ParticipantId::new("a"));
    let changes = commit_present(store, &mut room, None).await;
    assert_eq!(changes.removed, [ParticipantId::new("a")]);
    command(&mut room, 1_004, "b", Command::RaiseHand);
    commit_present(store, &mut room, Some(("b", "n3"))).await;
    assert_eq!(store.presence("p").await, Ok(map(&[("mod", "n1"), ("b", "n3")])));
    command(&mut room, 1_005, "mod", Command::Kick { target: ParticipantId::new("b") });
    while room.poll_output().is_some() {}
    let changes = room.take_changes().expect("kicked");
    store.commit_announced("p", &changes, None).await.expect("commit");
    assert_eq!(store.presence("p").await, Ok(map(&[("mod", "n1")])));
    // A session taken over without a transition moves presence by itself; a removed participant stays absent.
    assert_eq!(store.present("p", "mod", "n4", Some("announced")).await, Ok(true));
    assert_eq!(store.present("p", "b", "n4", None).await, Ok(false));
    assert_eq!(store.presence("p").await, Ok(map(&[("mod", "n4")])));
    store.present("p", "mod", "n1", None).await.expect("present");
    assert_eq!(store.load("p").await.expect("load"), Some(room.state()));

    // Removing the room removes its lease, media epoch, presence and lease claims too.
    store.claim_media("p", "n1", std::time::Duration::from_secs(3)).await.expect("claim");
    store.remove("p").await.expect("remove");
    let keys = [redis::owner_key("p"), redis::media_key("p"), redis::presence_key("p"), redis::claims_key("p")];
    let left: i64 =
        ::redis::cmd("EXISTS").arg(&keys).arg(&redis::room_keys("p")).query_async(&mut raw).await.expect("EXISTS");
    assert_eq!(left, 0);
    assert_eq!(store.presence("p").await, Ok(HashMap::new()));
}

#[test]
fn presence_follows_commits_in_the_commit_script() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.url(), &RedisOptions::default()).await.expect("connect");
        let mut events = store.subscribe_all().await.expect("subscribe");
        presence_follows_commits(&store, &server).await;
        // Only commits that took place were announced (three joins, the leave, the raised hand).
        for _ in 0..5 {
            assert_eq!(events.next().await, Some(("p".into(), "announced".into())));
        }
    });
}

#[test]
fn presence_on_a_cluster() {
    let server = RedisServer::start_cluster();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.cluster_url(), &RedisOptions::default()).await.expect("connect");
        presence_follows_commits(&store, &server).await;
    });
}

async fn node_registry(store: &RedisStore, server: &RedisServer) {
    use std::time::Duration;
    let mut raw = raw(server).await;
    let ttl = Duration::from_secs(1);
    let one = NodeInfo { id: "n1".into(), url: Some("ws://10.0.0.1:7880".into()), draining: false };
    let two = NodeInfo { id: "n2".into(), url: None, draining: true };
    store.heartbeat(&two).await.expect("heartbeat");
    store.heartbeat(&one).await.expect("heartbeat");
    let nodes = store.nodes(ttl).await.expect("nodes");
    assert_eq!(nodes.iter().map(|n| &n.info).collect::<Vec<_>>(), [&one, &two]);
    assert!(nodes.iter().all(|n| n.alive && n.age <= ttl), "{nodes:?}");

    // The record is plain JSON stamped with Redis's clock.
    let record: String =
        ::redis::cmd("HGET").arg(redis::NODES_KEY).arg("n1").query_async(&mut raw).await.expect("HGET");
    let seen: u64 = record
        .strip_prefix(r#"{"url":"ws://10.0.0.1:7880","draining":false,"seen_ms":"#)
        .and_then(|r| r.strip_suffix('}'))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("unexpected record {record}"));
    let (secs, _): (u64, u64) = ::redis::cmd("TIME").query_async(&mut raw).await.expect("TIME");
    assert!(seen.abs_diff(secs * 1_000) < 5_000, "seen_ms {seen} is Redis's time in ms ({secs} s)");

    // A silent node is dead, then forgotten; unreadable entries are left out.
    let write = |id: &str, record: String| {
        let mut cmd = ::redis::cmd("HSET");
        cmd.arg(redis::NODES_KEY).arg(id).arg(record);
        cmd
    };
    let stale = format!(r#"{{"url":null,"draining":false,"seen_ms":{}}}"#, seen - 5_000);
    let ancient = format!(r#"{{"url":null,"draining":false,"seen_ms":{}}}"#, seen - 61_000);
    for (id, record) in [("stale", stale), ("ancient", ancient), ("bad", "{".to_owned()), ("odd", "[1]".to_owned())] {
        let _: i64 = write(id, record).query_async(&mut raw).await.expect("HSET");
    }
    let nodes = store.nodes(ttl).await.expect("nodes");
    let ids: Vec<&str> = nodes.iter().map(|n| n.info.id.as_str()).collect();
    assert_eq!(ids, ["n1", "n2", "stale"]);
    assert!(!nodes[2].alive && nodes[2].age >= Duration::from_secs(5), "{:?}", nodes[2]);
    let left: Vec<String> = ::redis::cmd("HKEYS").arg(redis::NODES_KEY).query_async(&mut raw).await.expect("HKEYS");
    assert!(!left.contains(&"ancient".to_owned()) && left.contains(&"bad".to_owned()), "{left:?}");
    // With a longer TTL the stale one is alive again (the pruning age grows with the TTL too).
    let nodes = store.nodes(Duration::from_secs(10)).await.expect("nodes");
    assert!(nodes.iter().all(|n| n.alive), "{nodes:?}");

    // A draining heartbeat replaces the entry; a forgotten node is gone.
    let draining = NodeInfo { draining: true, ..one.clone() };
    store.heartbeat(&draining).await.expect("heartbeat");
    store.forget_node("n2").await.expect("forget");
    store.forget_node("nobody").await.expect("forgetting an unknown node is fine");
    let infos: Vec<NodeInfo> = store.nodes(ttl).await.expect("nodes").into_iter().map(|n| n.info).collect();
    assert_eq!(infos.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["n1", "stale"]);
    assert_eq!(infos[0], draining);
}

#[test]
fn node_registry_heartbeats_age_and_prune() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.url(), &RedisOptions::default()).await.expect("connect");
        node_registry(&store, &server).await;
    });
}

#[test]
fn node_registry_on_a_cluster() {
    let server = RedisServer::start_cluster();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.cluster_url(), &RedisOptions::default()).await.expect("connect");
        node_registry(&store, &server).await;
    });
}

async fn next_message(sub: &mut Subscription) -> Option<BusMessage> {
    tokio::time::timeout(std::time::Duration::from_secs(5), sub.next_message()).await.expect("a message within 5 s")
}

#[test]
fn node_messages_keep_their_order_with_room_announcements() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.url(), &RedisOptions::default()).await.expect("connect");
        let mut n1 = store.subscribe("n1").await.expect("subscribe");
        n1.watcher().watch("r").await.expect("watch");
        let mut all = store.subscribe_all().await.expect("subscribe");

        let mut room = Room::new("r", RoomConfig::default(), 1_000);
        join(&mut room, 1_000, "mod", Role::Moderator);
        while room.poll_output().is_some() {}
        let changes = room.take_changes().expect("joined");

        store.publish("r", "first").await.expect("publish");
        assert_eq!(store.send_to_node("n1", "second").await, Ok(1));
        assert_eq!(store.send_to_node("n2", "not for n1").await, Ok(0));
        store.commit_announced("r", &changes, Some("third")).await.expect("commit");
        assert_eq!(store.send_to_node("n1", "fourth").await, Ok(1));
        store.publish("r", "last").await.expect("publish");

        let room_msg = |text: &str| Some(BusMessage::Room { room: "r".into(), text: text.into() });
        let node_msg = |text: &str| Some(BusMessage::Node { text: text.into() });
        assert_eq!(next_message(&mut n1).await, room_msg("first"));
        assert_eq!(next_message(&mut n1).await, node_msg("second"));
        assert_eq!(next_message(&mut n1).await, room_msg("third"));
        assert_eq!(next_message(&mut n1).await, node_msg("fourth"));
        assert_eq!(next_message(&mut n1).await, room_msg("last"));
        // A subscription to rooms only (the old API) sees no node messages.
        for text in ["first", "third", "last"] {
            assert_eq!(all.next().await, Some(("r".into(), text.into())));
        }
        // "not for n1" was sent between "second" and "third": n1 never saw it.
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(200), n1.next_message()).await;
        assert!(quiet.is_err(), "nothing more for n1: {quiet:?}");
    });
}

/// A hub's subscription carries only the rooms it watches: a watched room's announcements published after
/// `watch` returned arrive, with the node's messages; a room never watched, or no longer watched, sends nothing.
/// `ordered`: one server, so the messages arrive in the order they were published (on a cluster each `PUBLISH`
/// reaches the subscription's node through the cluster bus, so only the set is checked).
async fn watch_and_unwatch(store: &RedisStore, ordered: bool) {
    let mut sub = store.subscribe("n1").await.expect("subscribe");
    let watcher = sub.watcher();
    if ordered {
        // (On a cluster it might reach the subscription's node after the watch.)
        store.publish("r", "before the watch").await.expect("publish");
    }
    watcher.watch("r").await.expect("watch");
    store.publish("r", "a").await.expect("publish");
    store.publish("u", "never watched").await.expect("publish");
    assert_eq!(store.send_to_node("n1", "b").await, Ok(1));
    watcher.watch_rooms(["s", "t"]).await.expect("watch");
    store.publish("s", "c").await.expect("publish");
    store.publish("t", "d").await.expect("publish");
    watcher.unwatch("r").await.expect("unwatch");
    store.publish("r", "after the unwatch").await.expect("publish");
    store.publish("u", "never watched").await.expect("publish");
    watcher.clone().unwatch_rooms(["s"]).await.expect("unwatch");
    store.publish("s", "after the unwatch").await.expect("publish");
    store.publish("t", "e").await.expect("publish");

    let room_msg = |room: &str, text: &str| BusMessage::Room { room: room.into(), text: text.into() };
    let mut expected =
        vec![room_msg("r", "a"), BusMessage::Node { text: "b".into() }, room_msg("s", "c"), room_msg("t", "d")];
    expected.push(room_msg("t", "e"));
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        got.push(next_message(&mut sub).await.expect("the subscription is up"));
    }
    if !ordered {
        let key = |m: &BusMessage| format!("{m:?}");
        got.sort_by_key(key);
        expected.sort_by_key(key);
    }
    assert_eq!(got, expected);
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(300), sub.next_message()).await;
    assert!(quiet.is_err(), "nothing from unwatched rooms: {quiet:?}");

    // The watcher fails (does not hang) once its subscription is gone.
    drop(sub);
    assert!(matches!(watcher.watch("r").await, Err(StoreError::Unavailable(_))));
}

#[test]
fn a_subscription_carries_only_the_watched_rooms() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.url(), &RedisOptions::default()).await.expect("connect");
        watch_and_unwatch(&store, true).await;
    });
}

#[test]
fn watched_rooms_on_a_cluster() {
    let server = RedisServer::start_cluster();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.cluster_url(), &RedisOptions::default()).await.expect("connect");
        watch_and_unwatch(&store, false).await;
    });
}

/// Waits until `check` holds, or fails after `secs` seconds naming `what`.
fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "{what} within {secs} s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn sentinel_urls_name_sentinels_master_and_db() {
    let group = redis::sentinel_group_for_tests("redis+sentinel://u:p%40ss@a:1,b/main/3").expect("sentinel url");
    assert_eq!(group.0, ["redis://a:1/", "redis://b:26379/"]);
    assert_eq!(group.1, "main");
    assert_eq!((group.2.username(), group.2.password(), group.2.db()), (Some("u"), Some("p@ss"), 3));
    let plain = redis::sentinel_group_for_tests("redis+sentinel://[::1]:5000,[::1]/m/").expect("sentinel url");
    assert_eq!(plain.0, ["redis://[::1]:5000/", "redis://[::1]:26379/"]);
    assert_eq!((plain.1.as_str(), plain.2.password(), plain.2.db()), ("m", None, 0));
    for bad in [
        "redis+sentinel://a:1",
        "redis+sentinel://a:1/",
        "redis+sentinel:///m",
        "redis+sentinel://a/m/x",
        "redis+sentinel://a/m/1/2",
    ] {
        assert!(redis::sentinel_group_for_tests(bad).is_err(), "{bad}");
    }
}

#[test]
fn sentinel_store_commits_and_follows_a_failover() {
    let mut master = RedisServer::start();
    let replica = RedisServer::start_replica_of(&master);
    wait_for(10, "the replica syncs", || replica.info("replication").contains("master_link_status:up"));
    let sentinel = RedisServer::start_sentinel(&master, "podium");
    let replica_port = replica.port().to_string();
    wait_for(15, "the sentinel finds the replica", || {
        sentinel.command(&["SENTINEL", "replicas", "podium"]).contains(&replica_port)
    });
    let rt = runtime();
    let store = rt.block_on(RedisStore::connect(&sentinel.sentinel_url(), &RedisOptions::default())).expect("connect");
    assert!(format!("{store:?}").contains("sentinel"));
    rt.block_on(conformance(&store));

    let mut room = Room::new("f", RoomConfig::default(), 1_000);
    join(&mut room, 1_000, "mod", Role::Moderator);
    while room.poll_output().is_some() {}
    rt.block_on(store.commit("f", &room.take_changes().expect("joined"))).expect("commit through the sentinel");
    assert!(master.command(&["WAIT", "1", "5000"]).starts_with(":1"), "the replica has the commit");

    // The master dies; the sentinel promotes the replica, and the same store commits there.
    master.kill9();
    join(&mut room, 1_001, "a", Role::Speaker);
    while room.poll_output().is_some() {}
    let changes = room.take_changes().expect("joined");
    let mut attempts = 0;
    wait_for(30, "a commit on the new master", || {
        attempts += 1;
        match rt.block_on(store.commit("f", &changes)) {
            Ok(()) => true,
            Err(StoreError::Unavailable(_)) => false,
            Err(e) => panic!("after {attempts} attempts: {e}"),
        }
    });
    assert!(sentinel.command(&["SENTINEL", "get-master-addr-by-name", "podium"]).contains(&replica_port));
    assert!(replica.info("replication").contains("role:master"));
    assert_eq!(rt.block_on(store.load("f")), Ok(Some(room.state())));

    // Subscriptions go to the new master too.
    rt.block_on(async {
        let mut sub = store.subscribe("n1").await.expect("subscribe");
        assert_eq!(store.send_to_node("n1", "hello").await, Ok(1));
        assert_eq!(next_message(&mut sub).await, Some(BusMessage::Node { text: "hello".into() }));
    });
}

/// Webhook outbox and audit entries are written by the commit that carries them, and only by one that applies;
/// lanes are read, advanced under their lease, trimmed and forgotten as `redis::outbox` describes.
async fn outbox_and_audit(store: &RedisStore) {
    let mut room = Room::new("o", RoomConfig::default(), 1_000);
    join(&mut room, 1_000, "mod", Role::Moderator);
    while room.poll_output().is_some() {}
    let first = room.take_changes().expect("created");
    let extras = |hooks: &[&str], audit: &[&str]| CommitExtras {
        hooks: hooks.iter().map(|s| (*s).to_owned()).collect(),
        hooks_cap: 3,
        audit: audit.iter().map(|s| (*s).to_owned()).collect(),
        audit_max_len: 1_000,
        audit_max_age_ms: 60_000,
    };
    store.hooks_touch("o", 1).await.expect("touch");
    store.commit_with("o", &first, None, None, Some(&extras(&["e0", "e1"], &["a0"]))).await.expect("commit");
    // A conflicting commit writes none of its extras.
    let stale = store.commit_with("o", &first, None, None, Some(&extras(&["zz"], &["zz"]))).await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })), "{stale:?}");
    let ep = |cursor: u64, state: &str, events: &[&str]| EndpointPeek {
        cursor,
        state: state.to_owned(),
        events: events.iter().map(|s| (*s).to_owned()).collect(),
    };
    let peek = store.hooks_peek("o", &["a", "b"], 1).await.expect("peek");
    assert_eq!((peek.base, peek.next, peek.dropped), (0, 2, 0));
    assert_eq!(peek.endpoints, [ep(0, "", &["e0"]), ep(0, "", &["e0"])]);
    // A window of events from each cursor, at most what is queued.
    assert_eq!(store.hooks_peek("o", &["a"], 5).await.expect("peek").endpoints, [ep(0, "", &["e0", "e1"])]);
    let advance = |endpoint, cursor, state, delivered| LaneAdvance { endpoint, cursor, state, delivered, now_ms: 77 };
    // Advancing needs the lane's lease.
    assert_eq!(store.hooks_advance("o", "n1", &advance("a", Some(1), "", 1), &["a", "b"]).await, Ok(None));
    assert!(store.hooks_lease("o", "n1", std::time::Duration::from_secs(5)).await.expect("lease"));
    assert!(!store.hooks_lease("o", "n2", std::time::Duration::from_secs(5)).await.expect("lease"));
    assert_eq!(store.hooks_advance("o", "n1", &advance("a", Some(1), "", 1), &["a", "b"]).await, Ok(Some(2)));
    let failed = advance("b", None, "{\"attempts\":1}", 0);
    assert_eq!(store.hooks_advance("o", "n1", &failed, &["a", "b"]).await, Ok(Some(2)));
    let peek = store.hooks_peek("o", &["a", "b"], 2).await.expect("peek");
    assert_eq!(peek.endpoints, [ep(1, "", &["e1"]), ep(0, "{\"attempts\":1}", &["e0", "e1"])]);
    // Both past event 0: it is trimmed. One advance moves b over a run of two events and clears its retry state.
    assert_eq!(store.hooks_advance("o", "n1", &advance("b", Some(2), "", 2), &["a", "b"]).await, Ok(Some(1)));
    let peek = store.hooks_peek("o", &["a", "b"], 2).await.expect("peek");
    assert_eq!((peek.base, peek.endpoints), (1, vec![ep(1, "", &["e1"]), ep(2, "", &[])]));
    // The deliveries were counted with the lane, and are taken once.
    assert_eq!(store.hooks_take_delivered("o", &["a", "b", "c"]).await, Ok(vec![(1, 77), (2, 77), (0, 0)]));
    assert_eq!(store.hooks_take_delivered("o", &["a", "b"]).await, Ok(vec![(0, 0), (0, 0)]));
    // Past the cap (3), the oldest go and are counted; a cursor below the base reads as the base.
    command(&mut room, 1_001, "mod", Command::SetMuted { muted: false });
    while room.poll_output().is_some() {}
    let second = room.take_changes().expect("changed");
    store.commit_with("o", &second, None, None, Some(&extras(&["e2", "e3", "e4"], &["a1"]))).await.expect("commit");
    let peek = store.hooks_peek("o", &["a", "b"], 2).await.expect("peek");
    assert_eq!((peek.base, peek.next, peek.dropped), (2, 5, 1));
    assert_eq!(peek.endpoints, [ep(2, "", &["e2", "e3"]), ep(2, "", &["e2", "e3"])]);
    // The index: listed, kept while fresh, forgotten once stale.
    let (lanes, total) = store.hooks_lanes(10).await.expect("lanes");
    assert_eq!((lanes, total), (vec![("o".to_owned(), 1)], 1));
    assert!(!store.hooks_forget("o", 1).await.expect("forget"));
    assert!(store.hooks_forget("o", 2).await.expect("forget"));
    assert_eq!(store.hooks_lanes(10).await.expect("lanes").1, 0);
    store.hooks_unlease("o", "n1").await.expect("unlease");
    assert!(store.hooks_lease("o", "n2", std::time::Duration::from_secs(5)).await.expect("lease"));
    // Hub events outside a commit.
    store.hooks_append("@nodes", &["n0".into()], 10, 7).await.expect("append");
    assert_eq!(store.hooks_peek("@nodes", &["a"], 8).await.expect("peek").endpoints, [ep(0, "", &["n0"])]);
    // The audit stream, read with a cursor.
    let page = store.audit("o", None, 1).await.expect("audit");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].1, "a0");
    let rest = store.audit("o", Some(&page[0].0), 10).await.expect("audit");
    assert_eq!(rest.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>(), ["a1"]);
    assert!(store.audit("o", Some(&rest[0].0), 10).await.expect("audit").is_empty());
    // Counters.
    store.hooks_record("app", &[("delivered", 2)], &[("last_error", "boom".into())]).await.expect("record");
    let fields = store.hooks_endpoints().await.expect("endpoints");
    assert_eq!(fields.get("app:delivered").map(String::as_str), Some("2"));
    assert_eq!(fields.get("app:last_error").map(String::as_str), Some("boom"));
}

#[test]
fn redis_outbox_and_audit() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.url(), &RedisOptions::default()).await.expect("connect");
        outbox_and_audit(&store).await;
    });
}

#[test]
fn redis_cluster_outbox_and_audit() {
    let server = RedisServer::start_cluster();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.cluster_url(), &RedisOptions::default()).await.expect("connect");
        outbox_and_audit(&store).await;
    });
}

/// What every summit store does (`summit` module).
async fn summit_conformance(store: &impl SummitStore) {
    use crate::{CtlField, StageCtl};
    let ttl = std::time::Duration::from_secs(5);
    assert_eq!(store.summit_ids().await.unwrap(), Vec::<String>::new());
    assert_eq!(store.doc_get("s1", "wip").await.unwrap(), None);
    assert_eq!(store.doc_put("s1", "wip", "a", Some(0)).await.unwrap(), 1);
    // Created only if absent; then only at the version read.
    assert!(matches!(
        store.doc_put("s1", "wip", "b", Some(0)).await,
        Err(StoreError::Conflict { expected: 0, found: Some(1) })
    ));
    assert_eq!(store.doc_put("s1", "wip", "b", Some(1)).await.unwrap(), 2);
    assert!(matches!(store.doc_put("s1", "wip", "c", Some(1)).await, Err(StoreError::Conflict { .. })));
    assert_eq!(store.doc_put("s1", "wip", "c", None).await.unwrap(), 3);
    let got = store.doc_get("s1", "wip").await.unwrap().unwrap();
    assert_eq!((got.version, got.body.as_str()), (3, "c"));
    assert_eq!(store.doc_version("s1", "wip").await.unwrap(), 3);
    assert_eq!(store.doc_version("s1", "nope").await.unwrap(), 0);
    store.doc_put("s0", "wip", "x", None).await.unwrap();
    assert_eq!(store.summit_ids().await.unwrap(), vec!["s0".to_owned(), "s1".to_owned()]);

    // The lease, and writes fenced by it.
    assert!(store.lease("s1", "hub-a", ttl).await.unwrap());
    assert!(!store.lease("s1", "hub-b", ttl).await.unwrap());
    assert!(store.lease("s1", "hub-a", ttl).await.unwrap(), "renewal");
    assert_eq!(store.lease_holder("s1").await.unwrap().as_deref(), Some("hub-a"));
    let rec = |s: &str, r: &str| (s.to_owned(), r.to_owned());
    assert!(store.runs_put("s1", "hub-a", &[rec("main", "r1"), rec("side", "r2")]).await.unwrap());
    assert!(!store.runs_put("s1", "hub-b", &[rec("main", "stale")]).await.unwrap(), "fenced");
    let runs = store.runs_get("s1").await.unwrap();
    assert_eq!(runs.get("main").map(String::as_str), Some("r1"));
    assert_eq!(runs.len(), 2);
    store.unlease("s1", "hub-b").await.unwrap();
    assert_eq!(store.lease_holder("s1").await.unwrap().as_deref(), Some("hub-a"), "not b's to give up");
    store.unlease("s1", "hub-a").await.unwrap();
    assert!(store.lease("s1", "hub-b", ttl).await.unwrap());
    assert!(!store.runs_put("s1", "hub-a", &[rec("main", "stale")]).await.unwrap());
    // A lapsed lease goes to whoever asks.
    assert!(store.lease("s9", "hub-a", std::time::Duration::from_millis(30)).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    assert!(store.lease("s9", "hub-b", ttl).await.unwrap());

    // The inbox, in order, and answers taken once.
    for i in 0..5 {
        store.inbox_push("s1", &format!("c{i}")).await.unwrap();
    }
    assert_eq!(store.inbox_take("s1", 3).await.unwrap(), vec!["c0", "c1", "c2"]);
    assert_eq!(store.inbox_take("s1", 10).await.unwrap(), vec!["c3", "c4"]);
    assert!(store.inbox_take("s1", 10).await.unwrap().is_empty());
    store.result_put("s1", "c3", "done").await.unwrap();
    assert_eq!(store.result_take("s1", "c3").await.unwrap().as_deref(), Some("done"));
    assert_eq!(store.result_take("s1", "c3").await.unwrap(), None);

    // The stage control record.
    assert_eq!(store.ctl_get("room-a").await.unwrap(), StageCtl::default());
    store.ctl_set("room-a", CtlField::Schedule, Some("{}")).await.unwrap();
    store.ctl_set("room-a", CtlField::Filler, Some("/x.ogg")).await.unwrap();
    store.ctl_set("room-a", CtlField::Heard, Some("1234")).await.unwrap();
    let ctl = store.ctl_get("room-a").await.unwrap();
    assert_eq!(ctl.schedule.as_deref(), Some("{}"));
    assert_eq!(ctl.filler.as_deref(), Some("/x.ogg"));
    assert_eq!(ctl.heard_ms, Some(1234));
    store.ctl_set("room-a", CtlField::Filler, None).await.unwrap();
    assert_eq!(store.ctl_get("room-a").await.unwrap().filler, None);

    store.summit_delete("s1").await.unwrap();
    assert_eq!(store.doc_get("s1", "wip").await.unwrap(), None);
    assert!(store.runs_get("s1").await.unwrap().is_empty());
    assert_eq!(store.lease_holder("s1").await.unwrap(), None);
    // A lease alone makes no summit.
    assert_eq!(store.summit_ids().await.unwrap(), vec!["s0".to_owned()]);
}

#[test]
fn memory_summits_conform() {
    runtime().block_on(summit_conformance(&MemorySummits::new()));
}

#[test]
fn redis_summits_conform() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.url(), &RedisOptions::default()).await.expect("connect");
        summit_conformance(&store).await;
    });
}

#[test]
fn redis_cluster_summits_conform() {
    let server = RedisServer::start_cluster();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.cluster_url(), &RedisOptions::default()).await.expect("connect");
        summit_conformance(&store).await;
    });
}

#[test]
fn participants_among_reads_just_the_named_records() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&server.url(), &RedisOptions::default()).await.expect("connect");
        let mut commits = Vec::new();
        let room = busy_room(&mut commits);
        for c in &commits {
            store.commit("summit", c).await.expect("commit");
        }
        let got = store.participants_among("summit", &["mod", "nobody", "l1"]).await.expect("read");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().map(|p| p.role), room.role(&ParticipantId::new("mod")));
        assert!(got[1].is_none());
        assert_eq!(got[2].as_ref().map(|p| p.role), room.role(&ParticipantId::new("l1")));
        assert!(store.participants_among("summit", &[]).await.expect("none").is_empty());
    });
}
