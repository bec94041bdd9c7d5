//! Conformance tests every store must pass, run against the in-memory store and against a real `redis-server`
//! started by the test (see `redis_server.rs`); and the Redis store's durability and concurrency tests.

use podium_room::{Command, Join, ParticipantId, Role, Room, RoomConfig};

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
    room.handle_join(now, Join { id: ParticipantId::new(id), name: id.into(), ceiling, role: None }).expect("join");
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
        removed: Vec::new(),
        bans: None,
        guests: None,
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
        Command::UpdateSettings { open_mic: None, closed: Some(true), stage_capacity: None },
    );
    let changes = room.take_changes().expect("changed");
    store.commit("r", &changes).await.expect("commit");
    assert_eq!(store.load("r").await.expect("load"), Some(room.state()));
    command(&mut room, 1_008, "mod", Command::Unban { target: ParticipantId::new("x") });
    let changes = room.take_changes().expect("changed");
    assert_eq!(changes.bans.as_deref(), Some(&[][..]));
    store.commit("r", &changes).await.expect("commit");
    assert_eq!(store.load("r").await.expect("load"), Some(room.state()));

    store.remove("r").await.expect("remove");
    assert_eq!(store.load("r").await, Ok(None));
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
        command(r, t, "mod", Command::UpdateSettings { open_mic: None, closed: None, stage_capacity: Some(7) });
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
