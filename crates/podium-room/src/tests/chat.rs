//! Chat and reactions (issue #15, items 1 and 2): who may post, delete and read; slow mode and the room's flood cap
//! with time passed in; trimming by count and age; the history in changes, restores and replicas; `may_react`.

use super::*;
use crate::{ChatMessage, ChatPage, Settings};

use Command as C;
use CommandError as E;
use Role::{Audience, Moderator, Speaker};

/// Moderator `m`, speaker `s`, listeners `a` and `b`; a history of 4, pages of at most 3, a burst of 5 at 10 a second.
fn room() -> Harness {
    let config = RoomConfig {
        chat_history: 4,
        chat_page_limit: 3,
        chat_snapshot: 2,
        chat_max_chars: 10,
        chat_max_age: 60_000,
        chat_room_per_second: 10,
        chat_room_burst: 5,
        counts_interval: 0,
        ..small_config()
    };
    let mut h = Harness::new(config);
    h.join("m", Moderator);
    h.join("s", Speaker);
    h.ok("s", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("s") });
    assert_eq!(h.role("s"), Some(Speaker));
    h.join("a", Audience);
    h.join("b", Speaker);
    h.at(0);
    h
}

fn send(text: &str) -> Command {
    C::SendChat { text: text.into() }
}

fn settings(chat: Option<bool>, slow: Option<u32>) -> Command {
    C::UpdateSettings { open_mic: None, closed: None, stage_capacity: None, chat, chat_slow_mode_ms: slow }
}

/// Posts and returns the new id.
fn post(h: &mut Harness, from: &str, text: &str) -> u64 {
    match h.cmd(from, send(text)) {
        Ok(Reply::ChatSent { message_id }) => {
            h.drain();
            message_id
        }
        other => panic!("{from}: {text:?}: {other:?}"),
    }
}

fn page(h: &mut Harness, from: &str, before: Option<u64>, limit: Option<usize>) -> ChatPage {
    match h.cmd(from, C::ChatHistory { before, limit }) {
        Ok(Reply::Chat(page)) => page,
        other => panic!("{other:?}"),
    }
}

fn ids(messages: &[ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.id).collect()
}

#[test]
fn anyone_present_posts_and_everyone_gets_the_message_in_one_transition() {
    let mut h = room();
    let seq = h.room.seq();
    h.now = 5;
    assert_eq!(h.cmd("a", send("  hi\nall ")), Ok(Reply::ChatSent { message_id: 1 }));
    let out = h.drain();
    assert_eq!(h.room.seq(), seq + 1);
    let message = ChatMessage { id: 1, from: pid("a"), name: "a name".into(), text: "hi\nall".into(), at: 5 };
    assert_eq!(out, vec![Output::Event { to: Recipients::Everyone, seq: seq + 1, event: Event::Chat(message) }]);
    assert_eq!(post(&mut h, "s", "yo"), 2);
    assert_eq!(post(&mut h, "m", "hello"), 3);
    // Not present: refused; an administrator is not a participant and cannot post.
    h.refused("ghost", send("hi"), E::NotFound("you are not in this room"));
    h.refused_as(
        &admin("ops"),
        send("hi"),
        None,
        E::Forbidden("an administrator is not a participant: this command acts on the sender's own state"),
    );
    // A reason is for moderation only.
    h.refused_as(&act("a"), send("hi"), Some("why"), E::BadRequest("only moderation commands take a reason"));
}

#[test]
fn bad_text_is_refused_and_changes_nothing() {
    let mut h = room();
    for (text, why) in [
        ("", "chat text must not be empty"),
        (" \n\t ", "chat text must not be empty"),
        ("a\tb", "chat text must not contain control characters other than newlines"),
        ("a\u{0}b", "chat text must not contain control characters other than newlines"),
        ("ééééééééééé", "chat text is too long"),
    ] {
        h.refused("a", send(text), E::BadRequest(why));
    }
    // Ten characters (not bytes), trimmed first, is fine.
    post(&mut h, "a", "  éééééééééé  ");
}

#[test]
fn chat_off_refuses_everyone_and_only_moderators_switch_it() {
    let mut h = room();
    h.refused("s", settings(Some(false), None), E::Forbidden("only moderators may do this"));
    let out = h.ok("m", settings(Some(false), None));
    assert!(matches!(events(&out)[..], [Event::Settings(Settings { chat: false, .. })]), "{out:?}");
    for who in ["a", "s", "m"] {
        h.refused(who, send("hi"), E::Forbidden("chat is off in this room"));
    }
    // Bad text is still told first (arguments before state).
    h.refused("a", send(""), E::BadRequest("chat text must not be empty"));
    h.ok_as(&admin("ops"), settings(Some(true), None), None);
    post(&mut h, "a", "back");
    h.noop("m", settings(Some(true), None));
}

#[test]
fn slow_mode_holds_back_everyone_but_moderators_by_the_time_passed_in() {
    let mut h = room();
    h.refused(
        "m",
        settings(None, Some(3_600_001)),
        E::BadRequest("chat_slow_mode_ms must be at most 3600000 (one hour)"),
    );
    h.ok("m", settings(None, Some(1_000)));
    h.now = 100;
    post(&mut h, "a", "one");
    post(&mut h, "s", "one");
    h.now = 1_099;
    h.refused("a", send("two"), E::RateLimited("slow mode: wait before sending another message"));
    h.refused("s", send("two"), E::RateLimited("slow mode: wait before sending another message"));
    post(&mut h, "b", "first"); // b has not posted: no wait
    post(&mut h, "m", "m1");
    post(&mut h, "m", "m2"); // moderators are exempt
    h.now = 1_100;
    post(&mut h, "a", "two");
    // A deleted message no longer counts.
    let id = post(&mut h, "s", "oops");
    h.ok("s", C::DeleteChat { message_id: id });
    h.now = 1_600; // within a second of "oops", with tokens for the flood cap again
    post(&mut h, "s", "again");
}

#[test]
fn the_room_flood_cap_refills_with_time() {
    let mut h = room();
    h.now = 1_000;
    for n in 0..5 {
        post(&mut h, ["a", "b", "s"][n % 3], "x");
    }
    h.refused("a", send("x"), E::RateLimited("too many chat messages in this room; try again shortly"));
    h.refused("m", send("x"), E::RateLimited("too many chat messages in this room; try again shortly"));
    h.now = 1_099;
    h.refused("a", send("x"), E::RateLimited("too many chat messages in this room; try again shortly"));
    h.now = 1_100; // ten a second: one more token
    post(&mut h, "a", "x");
    h.refused("b", send("x"), E::RateLimited("too many chat messages in this room; try again shortly"));
    h.now = 5_000;
    for _ in 0..5 {
        post(&mut h, "m", "x");
    }
    h.refused("m", send("x"), E::RateLimited("too many chat messages in this room; try again shortly"));
}

#[test]
fn authors_and_moderators_delete_others_may_not() {
    let mut h = room();
    let a1 = post(&mut h, "a", "mine");
    let s1 = post(&mut h, "s", "theirs");
    h.refused("b", C::DeleteChat { message_id: a1 }, E::Forbidden("only moderators may delete others' messages"));
    h.refused("s", C::DeleteChat { message_id: a1 }, E::Forbidden("only moderators may delete others' messages"));
    h.refused("a", C::DeleteChat { message_id: 99 }, E::NotFound("no such chat message"));
    let out = h.ok("a", C::DeleteChat { message_id: a1 });
    assert_eq!(
        events(&out),
        vec![&Event::ChatDeleted { message_id: a1, author: pid("a"), by: act("a"), reason: None }]
    );
    h.refused("a", C::DeleteChat { message_id: a1 }, E::NotFound("no such chat message"));
    h.ok_as(&act("m"), C::DeleteChat { message_id: s1 }, Some("rude"));
    let moderated = h.moderated.pop().expect("audited");
    assert!(
        matches!(moderated, Output::Moderated { command: C::DeleteChat { message_id }, reason: Some(_), .. } if message_id == s1)
    );
    let b1 = post(&mut h, "b", "by b");
    let out = h.ok_as(&admin("ops"), C::DeleteChat { message_id: b1 }, Some("spam"));
    assert!(
        matches!(events(&out)[..], [Event::ChatDeleted { by: Actor::Admin(_), author, reason: Some(_), .. }] if *author == pid("b")),
        "{out:?}"
    );
    assert!(h.room.chat().next().is_none());
}

#[test]
fn history_pages_back_with_cursors_and_is_trimmed_by_count_and_age() {
    let mut h = room();
    for n in 1..=6 {
        h.now = n * 100;
        post(&mut h, "m", &format!("m{n}"));
    }
    // Four kept: 3, 4, 5, 6.
    assert_eq!(h.room.chat().map(|m| m.id).collect::<Vec<_>>(), [3, 4, 5, 6]);
    let newest = page(&mut h, "a", None, None);
    assert_eq!((ids(&newest.messages), newest.next_before), (vec![4, 5, 6], Some(4)), "default: the page limit");
    let older = page(&mut h, "a", newest.next_before, Some(3));
    assert_eq!((ids(&older.messages), older.next_before), (vec![3], None));
    assert_eq!(ids(&page(&mut h, "a", Some(5), Some(1)).messages), [4]);
    h.refused("a", C::ChatHistory { before: None, limit: Some(0) }, E::BadRequest("limit out of range"));
    h.refused("a", C::ChatHistory { before: None, limit: Some(4) }, E::BadRequest("limit out of range"));
    // Administrators read it too.
    assert!(matches!(
        h.cmd_as(&admin("ops"), C::ChatHistory { before: None, limit: Some(1) }, None),
        Ok(Reply::Chat(ChatPage { next_before: Some(6), .. }))
    ));
    // The snapshot: the last two and that there are more.
    let snap = h.room.snapshot_for(&pid("a")).expect("present");
    assert_eq!((ids(&snap.chat), snap.chat_more), (vec![5, 6], true));
    // Age: message 3 (at 300) expires at 60,300, by the timer, as its own transition without events.
    assert_eq!(h.room.poll_timeout(), Some(60_300));
    let seq = h.room.seq();
    assert_eq!(h.at(60_300), vec![]);
    assert_eq!(h.room.seq(), seq + 1);
    assert_eq!(h.room.chat().map(|m| m.id).collect::<Vec<_>>(), [4, 5, 6]);
    h.at(60_600);
    assert!(h.room.chat().next().is_none());
    let snap = h.room.snapshot_for(&pid("a")).expect("present");
    assert_eq!((snap.chat.len(), snap.chat_more), (0, false));
    // Ids keep growing after everything was trimmed.
    assert_eq!(post(&mut h, "a", "new"), 7);
}

#[test]
fn the_history_survives_a_restore_and_follows_in_a_replica() {
    let mut h = room();
    post(&mut h, "a", "one");
    let two = post(&mut h, "b", "two");
    h.ok("m", C::DeleteChat { message_id: two });
    post(&mut h, "s", "three");
    let state = h.room.state();
    assert_eq!((ids(&state.chat), state.next_chat_id), (vec![1, 3], 4));
    let mut restored = Room::from_state(state.clone(), h.config.clone());
    assert_eq!(restored.state(), state);
    // `check` compares the store built from changes and the replica built by `apply_changes` with the room, so
    // every step above already did; and a restored room continues the ids.
    assert_eq!(restored.handle_command(h.now, &pid("a"), send("four")), Ok(Reply::ChatSent { message_id: 4 }));
    let changes = restored.take_changes().expect("posted");
    assert_eq!((ids(&changes.chat_added), changes.room.map(|f| f.next_chat_id)), (vec![4], Some(5)));
}

#[test]
fn reactions_need_a_present_participant_and_a_live_room() {
    let mut h = room();
    assert_eq!(h.room.may_react(&pid("a")), Ok(()));
    assert_eq!(h.room.may_react(&pid("ghost")), Err(E::NotFound("you are not in this room")));
    let seq = h.room.seq();
    assert_eq!(h.room.may_react(&pid("m")), Ok(()));
    assert_eq!(h.room.seq(), seq, "reactions are not transitions");
    h.ok("m", C::EndRoom);
    assert_eq!(h.room.may_react(&pid("a")), Err(E::Ended));
}
