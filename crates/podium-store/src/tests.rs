//! Conformance tests every store must pass; run here against the in-memory store.

use podium_room::{Join, ParticipantId, Role, Room, RoomConfig};

use super::*;

fn block_on<F: Future>(f: F) -> F::Output {
    // The in-memory store never suspends, so polling once with a no-op waker completes it.
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("the in-memory store never suspends"),
    }
}

fn join(room: &mut Room, now: u64, id: &str, ceiling: Role) {
    room.handle_join(now, Join { id: ParticipantId::new(id), name: id.into(), ceiling, role: None }).expect("join");
}

/// Drives a room through transitions, committing each; the store must always equal the room's own state.
pub(crate) fn conformance(store: &impl RoomStore) {
    let mut room = Room::new("r", RoomConfig::default(), 1_000);
    assert_eq!(block_on(store.load("r")), Ok(None));
    join(&mut room, 1_000, "mod", Role::Moderator);
    join(&mut room, 1_001, "a", Role::Speaker);
    join(&mut room, 1_002, "b", Role::Speaker);
    while room.poll_output().is_some() {}
    let changes = room.take_changes().expect("joins changed the room");
    block_on(store.commit("r", &changes)).expect("first commit creates the room");
    assert_eq!(block_on(store.load("r")).expect("load"), Some(room.state()));

    // A stale base is refused and changes nothing.
    let stale = changes.clone();
    assert!(matches!(block_on(store.commit("r", &stale)), Err(StoreError::Conflict { .. })));
    assert_eq!(block_on(store.load("r")).expect("load"), Some(room.state()));

    let b = ParticipantId::new("b");
    room.handle_command(1_003, &b, podium_room::Command::RaiseHand).expect("raise");
    room.handle_leave(1_004, &ParticipantId::new("a"));
    let changes = room.take_changes().expect("changed");
    block_on(store.commit("r", &changes)).expect("commit");
    let stored = block_on(store.load("r")).expect("load").expect("stored");
    assert_eq!(stored, room.state());
    let restored = Room::from_state(stored, RoomConfig::default());
    assert_eq!(restored.state(), room.state());

    block_on(store.remove("r")).expect("remove");
    assert_eq!(block_on(store.load("r")), Ok(None));
}

#[test]
fn memory_store_conforms() {
    conformance(&MemoryStore::new());
}
