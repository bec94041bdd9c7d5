//! Room info (description and pinned link) and raised-hand expiry and clearing (issue #15, items 3 and 4).

use super::*;
use crate::{HandLowered, PinnedLink, Reason, RoomInfo, YourState};

use Command as C;
use CommandError as E;
use Role::{Audience, Moderator, Speaker};

const TTL: Millis = 1_000;

/// A room with hands expiring after [`TTL`]: moderator `m`, listeners `a`, `b`, `c` (speaker ceiling), `l`
/// (audience ceiling).
fn room() -> Harness {
    let mut h = Harness::new(RoomConfig { hand_ttl: TTL, counts_interval: 0, ..small_config() });
    h.join("m", Moderator);
    for who in ["a", "b", "c"] {
        h.join(who, Speaker);
    }
    h.join("l", Audience);
    h
}

fn link(url: &str, title: Option<&str>) -> PinnedLink {
    PinnedLink { url: url.into(), title: title.map(Into::into) }
}

fn set_info(description: Option<Option<&str>>, pinned_link: Option<Option<PinnedLink>>) -> Command {
    C::SetRoomInfo { description: description.map(|d| d.map(str::to_owned)), pinned_link }
}

/// The `HandLowered` events in `out`, by recipient.
fn lowered(out: &[Output]) -> Vec<(String, HandLowered)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event { to: Recipients::One(id), event: Event::HandLowered(why), .. } => {
                Some((id.as_str().to_owned(), why.clone()))
            }
            _ => None,
        })
        .collect()
}

fn hand_queues(out: &[Output]) -> Vec<(Recipients, usize)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event { to, event: Event::HandQueue { total, .. }, .. } => Some((to.clone(), *total)),
            _ => None,
        })
        .collect()
}

/// The next timer after head counts (due at once: `counts_interval` is 0) went out.
fn next_timer(h: &mut Harness) -> Option<Millis> {
    h.at(h.now);
    h.room.poll_timeout()
}

fn position(h: &Harness, who: &str) -> Option<u32> {
    h.room.participant(&pid(who)).and_then(|p| p.hand_position)
}

// ------------------------------------------------------------------------------------------------- room info

#[test]
fn moderators_set_room_info_and_everyone_sees_it() {
    let mut h = room();
    let seq = h.room.seq();
    let out = h.ok("m", set_info(Some(Some("Line one\nline two\ttabbed")), Some(Some(link("https://x.test/a", None)))));
    let info = RoomInfo {
        description: Some("Line one\nline two\ttabbed".into()),
        pinned_link: Some(link("https://x.test/a", None)),
    };
    assert_eq!(
        out,
        vec![Output::Event { to: Recipients::Everyone, seq: seq + 1, event: Event::RoomInfo(info.clone()) }]
    );
    assert_eq!(h.room.info(), &info);
    assert_eq!(h.room.snapshot_for(&pid("a")).unwrap().info, info, "in every participant's snapshot");
    assert_eq!(h.room.view().info, info);
    assert!(matches!(h.moderated.as_slice(), [Output::Moderated { command: C::SetRoomInfo { .. }, .. }]));

    // The same values again: a no-op. One field alone leaves the other.
    h.noop("m", set_info(Some(Some("Line one\nline two\ttabbed")), None));
    h.ok("m", set_info(None, Some(Some(link("http://x.test", Some("Slides"))))));
    assert_eq!(h.room.info().description.as_deref(), Some("Line one\nline two\ttabbed"));
    assert_eq!(h.room.info().pinned_link, Some(link("http://x.test", Some("Slides"))));
    // Clearing: null, or an empty description / title.
    h.ok("m", set_info(Some(Some("")), Some(Some(link("http://x.test", Some(""))))));
    assert_eq!(h.room.info(), &RoomInfo { description: None, pinned_link: Some(link("http://x.test", None)) });
    let out = h.ok("m", set_info(None, Some(None)));
    assert_eq!(events(&out), vec![&Event::RoomInfo(RoomInfo::default())]);
    h.noop("m", set_info(Some(None), Some(None)));
}

#[test]
fn only_moderators_and_administrators_set_room_info() {
    let mut h = room();
    let cmd = || set_info(Some(Some("hello")), None);
    h.refused("a", cmd(), E::Forbidden("only moderators may do this"));
    h.refused("l", cmd(), E::Forbidden("only moderators may do this"));
    h.refused("zz", cmd(), E::NotFound("you are not in this room"));
    let out = h.ok_as(&admin("ops"), cmd(), Some("agenda"));
    assert_eq!(events(&out).len(), 1);
    assert!(matches!(
        h.moderated.as_slice(),
        [Output::Moderated { by: Actor::Admin(_), reason: Some(r), .. }] if r.as_str() == "agenda"
    ));
}

#[test]
fn room_info_values_are_checked_at_the_edges() {
    let mut h = room();
    h.refused("m", set_info(None, None), E::BadRequest("nothing to update: give description and/or pinned_link"));
    // Description: 1,000 characters (not bytes) pass, 1,001 do not; control characters other than \n \r \t fail.
    let long = "é".repeat(RoomInfo::MAX_DESCRIPTION_CHARS);
    h.ok("m", set_info(Some(Some(&long)), None));
    h.refused(
        "m",
        set_info(Some(Some(&format!("{long}x"))), None),
        E::BadRequest("description must be at most 1000 characters"),
    );
    h.ok("m", set_info(Some(Some("a\r\nb")), None));
    for bad in ["nul\0", "bell\u{7}", "esc\u{1b}[31m", "del\u{7f}"] {
        h.refused(
            "m",
            set_info(Some(Some(bad)), None),
            E::BadRequest("description must not contain control characters other than newlines and tabs"),
        );
    }
    // URL: absolute http(s) with a host, at most 2,048 bytes, no whitespace or control characters.
    for good in ["https://example.com", "HTTPS://Example.com/x?y#z", "http://user@host:8080/p", "https://[::1]/"] {
        h.ok("m", set_info(None, Some(Some(link(good, None)))));
        assert_eq!(h.room.info().pinned_link.as_ref().map(|l| l.url.as_str()), Some(good));
    }
    let scheme = E::BadRequest("pinned link URL must be an absolute http:// or https:// URL");
    let host = E::BadRequest("pinned link URL must name a host");
    let space = E::BadRequest("pinned link URL must not contain whitespace or control characters");
    for (bad, error) in [
        ("javascript:alert(1)", &scheme),
        ("ftp://example.com", &scheme),
        ("//example.com", &scheme),
        ("example.com", &scheme),
        ("", &scheme),
        ("https://", &host),
        ("https:///path", &host),
        ("http://user@/p", &host),
        ("https://:80", &host),
        ("https://exa mple.com", &space),
        ("https://example.com/\n", &space),
    ] {
        h.refused("m", set_info(None, Some(Some(link(bad, None)))), error.clone());
    }
    let prefix = "https://example.com/";
    let exact = format!("{prefix}{}", "a".repeat(PinnedLink::MAX_URL_BYTES - prefix.len()));
    h.ok("m", set_info(None, Some(Some(link(&exact, None)))));
    h.refused(
        "m",
        set_info(None, Some(Some(link(&format!("{exact}a"), None)))),
        E::BadRequest("pinned link URL must be at most 2048 bytes"),
    );
    // Title: 200 characters, no control characters.
    let title = "ü".repeat(PinnedLink::MAX_TITLE_CHARS);
    h.ok("m", set_info(None, Some(Some(link(prefix, Some(&title))))));
    h.refused(
        "m",
        set_info(None, Some(Some(link(prefix, Some(&format!("{title}x")))))),
        E::BadRequest("pinned link title must be at most 200 characters"),
    );
    h.refused(
        "m",
        set_info(None, Some(Some(link(prefix, Some("two\nlines"))))),
        E::BadRequest("pinned link title must not contain control characters"),
    );
    // A refusal of one field refuses the whole command.
    let before = h.room.info().clone();
    h.refused("m", set_info(Some(Some("fine")), Some(Some(link("nope", None)))), scheme);
    assert_eq!(h.room.info(), &before);
}

#[test]
fn room_info_survives_restore_and_replication() {
    let mut h = room();
    // The harness also compares a store mirror (`take_changes`) and a replica (`apply_changes`) after every step.
    h.ok("m", set_info(Some(Some("About")), Some(Some(link("https://x.test", Some("X"))))));
    let state = h.room.state();
    assert_eq!(state.info.description.as_deref(), Some("About"));
    let config = h.config.clone();
    assert_eq!(Room::from_state(state.clone(), config.clone()).info(), h.room.info());
    // The info travels only in the transition that changed it, not with every join.
    let mut room = Room::from_state(state, config.clone());
    let mut replica = Room::from_state(room.state(), config);
    room.handle_join(h.now, Join::new(pid("e"), "e", Speaker, None)).unwrap();
    let join = room.take_changes().unwrap();
    assert!(join.info.is_none() && join.room.is_some());
    assert!(replica.apply_changes(&join, h.now));
    room.handle_command(h.now, &pid("m"), set_info(Some(Some("New")), None)).unwrap();
    let changes = room.take_changes().unwrap();
    assert_eq!(changes.info.as_ref().and_then(|i| i.description.as_deref()), Some("New"));
    assert!(changes.room.is_none(), "settings and the other fields did not change");
    assert!(replica.apply_changes(&changes, h.now));
    assert_eq!(replica.info(), room.info());
    assert_eq!(replica.info().pinned_link, Some(link("https://x.test", Some("X"))));
    assert_eq!(replica.poll_output(), None, "following emits nothing");
}

// ------------------------------------------------------------------------------------------------ hand expiry

#[test]
fn a_hand_expires_exactly_at_its_deadline() {
    let mut h = room();
    h.now = 100;
    h.ok("a", C::RaiseHand);
    h.now = 300;
    let out = h.ok("b", C::RaiseHand);
    assert_eq!(yous(&out)[0].1.hand_expires_at, Some(300 + TTL), "the raiser is told when it expires");
    assert_eq!(h.room.snapshot_for(&pid("a")).unwrap().you.hand_expires_at, Some(100 + TTL));
    assert_eq!(next_timer(&mut h), Some(100 + TTL));
    assert!(lowered(&h.at(100 + TTL - 1)).is_empty(), "not a millisecond early");
    assert_eq!(position(&h, "a"), Some(1));
    let seq = h.room.seq();
    let out = h.at(100 + TTL);
    assert_eq!(h.room.seq(), seq + 1, "one transition");
    assert_eq!(lowered(&out), vec![("a".into(), HandLowered::Expired)]);
    assert_eq!(position(&h, "a"), None);
    assert_eq!(position(&h, "b"), Some(1), "those behind move up");
    let you = yous(&out);
    assert_eq!(
        you,
        vec![
            (
                "a".into(),
                YourState {
                    role: Audience,
                    ceiling: Speaker,
                    muted: true,
                    hand_position: None,
                    hand_expires_at: None,
                    invite: None,
                    recording_opt_out: false
                }
            ),
            (
                "b".into(),
                YourState {
                    role: Audience,
                    ceiling: Speaker,
                    muted: true,
                    hand_position: Some(1),
                    hand_expires_at: Some(300 + TTL),
                    invite: None,
                    recording_opt_out: false
                }
            ),
        ]
    );
    assert_eq!(hand_queues(&out), vec![(Recipients::Moderators, 1)]);
    assert!(h.moderated.is_empty(), "expiry is not a moderation action");
    assert_eq!(next_timer(&mut h), Some(300 + TTL));
    let out = h.at(10 * TTL);
    assert_eq!(lowered(&out), vec![("b".into(), HandLowered::Expired)]);
    assert_eq!(h.room.counts().hands, 0);
}

#[test]
fn raising_again_restarts_the_period_and_a_raised_hand_is_not_refreshed() {
    let mut h = room();
    h.ok("a", C::RaiseHand);
    h.now = 600;
    h.noop("a", C::RaiseHand);
    assert_eq!(next_timer(&mut h), Some(TTL), "raising a raised hand keeps its deadline");
    h.ok("a", C::LowerHand);
    assert_eq!(next_timer(&mut h), None, "a lowered hand has no deadline");
    h.ok("a", C::RaiseHand);
    assert_eq!(next_timer(&mut h), Some(600 + TTL));
    assert_eq!(lowered(&h.at(600 + TTL)), vec![("a".into(), HandLowered::Expired)]);
    h.ok("a", C::RaiseHand);
    assert_eq!(next_timer(&mut h), Some(600 + 2 * TTL), "after expiry, raising again starts afresh");
}

#[test]
fn a_hand_that_went_down_otherwise_does_not_expire_later() {
    let mut h = room();
    h.ok("a", C::RaiseHand);
    h.ok("b", C::RaiseHand);
    h.ok("c", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("a") });
    h.leave("b");
    h.disconnect("c");
    // c's grace (500) ends before the hand (1,000): removed, no expiry later.
    let out = h.at(TTL);
    assert!(lowered(&out).is_empty());
    assert_eq!(next_timer(&mut h), None);
    assert_eq!(h.role("a"), Some(Speaker));
}

#[test]
fn zero_ttl_hands_never_expire() {
    let mut h = Harness::new(RoomConfig { hand_ttl: 0, ..small_config() });
    h.join("m", Moderator);
    h.join("a", Speaker);
    let out = h.ok("a", C::RaiseHand);
    assert_eq!(yous(&out)[0].1.hand_expires_at, None);
    assert_eq!(next_timer(&mut h), Some(100), "only the counts flush");
    h.at(1_000_000_000);
    assert_eq!(position(&h, "a"), Some(1));
}

#[test]
fn hand_deadlines_survive_restore_and_follow_replicas() {
    let mut h = room();
    h.ok("a", C::RaiseHand);
    h.now = 200;
    h.ok("b", C::RaiseHand);
    let state = h.room.state();
    let stored: Vec<_> = state.participants.iter().filter_map(|p| p.hand_expires_at).collect();
    assert_eq!(stored, vec![TTL, 200 + TTL]);
    let mut restored = Room::from_state(state, h.config.clone());
    assert_eq!(restored.poll_timeout(), Some(0), "counts first, after a restore");
    restored.handle_timeout(200);
    std::iter::from_fn(|| restored.poll_output()).for_each(drop);
    assert_eq!(restored.poll_timeout(), Some(TTL));
    restored.handle_timeout(TTL);
    let out: Vec<_> = std::iter::from_fn(|| restored.poll_output()).collect();
    assert_eq!(lowered(&out), vec![("a".into(), HandLowered::Expired)]);
    // A stored deadline on a hand that is not raised (hand-edited) is dropped.
    let mut bad = h.room.state();
    bad.participants.iter_mut().filter(|p| p.id.as_str() == "c").for_each(|p| p.hand_expires_at = Some(5));
    let repaired = Room::from_state(bad, h.config.clone());
    repaired.check_invariants().unwrap();
    assert_eq!(repaired.state().participants.iter().filter_map(|p| p.hand_expires_at).count(), 2);
}

// ------------------------------------------------------------------------------------------------- clear hands

#[test]
fn clearing_an_empty_queue_is_a_no_op() {
    let mut h = room();
    h.noop("m", C::ClearHands);
    assert!(h.moderated.is_empty());
    h.refused("a", C::ClearHands, E::Forbidden("only moderators may do this"));
}

#[test]
fn clearing_one_hand() {
    let mut h = room();
    h.ok("a", C::RaiseHand);
    let seq = h.room.seq();
    let out = h.ok("m", C::ClearHands);
    assert_eq!(h.room.seq(), seq + 1);
    let by = act("m");
    assert_eq!(lowered(&out), vec![("a".into(), HandLowered::Cleared { by: by.clone(), reason: None })]);
    assert_eq!(yous(&out).len(), 1);
    assert_eq!(hand_queues(&out), vec![(Recipients::Moderators, 0)]);
    assert_eq!(next_timer(&mut h), None, "no expiry left");
    assert!(matches!(h.moderated.as_slice(), [Output::Moderated { command: C::ClearHands, .. }]));
}

#[test]
fn clearing_many_hands_is_one_transition() {
    let mut h = room();
    for who in ["c", "a", "b"] {
        h.ok(who, C::RaiseHand);
    }
    h.refused("a", C::ClearHands, E::Forbidden("only moderators may do this"));
    h.refused_as(
        &act("m"),
        C::ClearHands,
        Some("bad\u{7}"),
        E::BadRequest("reason must not contain control characters"),
    );
    let seq = h.room.seq();
    let out = h.ok_as(&admin("ops"), C::ClearHands, Some("next topic"));
    assert_eq!(h.room.seq(), seq + 1);
    let reason = Reason::parse("next topic").unwrap();
    let cleared = |who: &str| (who.to_owned(), HandLowered::Cleared { by: admin("ops"), reason: reason.clone() });
    assert_eq!(lowered(&out), vec![cleared("c"), cleared("a"), cleared("b")], "in queue order");
    assert!(out.iter().all(|o| matches!(o, Output::Event { seq: s, .. } if *s == seq + 1)));
    let mut you: Vec<_> = yous(&out).into_iter().map(|(id, y)| (id, y.hand_position, y.hand_expires_at)).collect();
    you.sort();
    assert_eq!(you, vec![("a".into(), None, None), ("b".into(), None, None), ("c".into(), None, None)]);
    assert_eq!(hand_queues(&out), vec![(Recipients::Moderators, 0)], "one queue event");
    assert_eq!(h.room.hand_queue(), Vec::<ParticipantId>::new());
    assert!(matches!(
        h.moderated.as_slice(),
        [Output::Moderated { command: C::ClearHands, by: Actor::Admin(_), reason: Some(_), .. }]
    ));
    assert!(lowered(&h.at(10 * TTL)).is_empty(), "cleared hands do not expire later");
}

// ------------------------------------------------------------------------------------------------ joins in changes

#[test]
fn changes_name_their_joins_relative_to_the_stored_version() {
    let config = RoomConfig { counts_interval: 0, ..small_config() };
    let mut room = Room::new("r", config.clone(), 0);
    for who in ["ann", "bob"] {
        room.handle_join(0, Join::new(pid(who), who, Speaker, None)).unwrap();
    }
    let first = room.take_changes().unwrap();
    assert_eq!(first.joined, vec![pid("ann"), pid("bob")]);
    let mut stored = RoomState::created_by(&first).unwrap();
    let mut replica = Room::from_state(stored.clone(), config.clone());

    // A join and a leave: only the join is named; the store and a replica follow.
    room.handle_join(1, Join::new(pid("cat"), "cat", Speaker, None)).unwrap();
    room.handle_leave(1, &pid("ann"));
    let second = room.take_changes().unwrap();
    assert_eq!(second.joined, vec![pid("cat")]);
    assert_eq!(second.removed, vec![pid("ann")]);
    stored.apply(&second);
    assert!(replica.apply_changes(&second, 1));

    // The replica, now writing itself, names only its own join: `cat` came in with the changes it followed.
    replica.handle_join(2, Join::new(pid("dan"), "dan", Speaker, None)).unwrap();
    replica.handle_command(2, &pid("cat"), C::RaiseHand).unwrap();
    let third = replica.take_changes().unwrap();
    assert_eq!(third.joined, vec![pid("dan")]);
    assert_eq!(third.upserted.len(), 2);
    stored.apply(&third);
    assert_eq!(stored, replica.state());

    // Leaving and joining again before the changes are taken: a new join order, but `bob` was stored, so he is
    // not a join, and applying the changes replaces his stored record instead of adding a second one.
    let mut restored = Room::from_state(stored.clone(), config);
    restored.handle_leave(3, &pid("bob"));
    restored.handle_join(3, Join::new(pid("bob"), "bob", Speaker, None)).unwrap();
    let fourth = restored.take_changes().unwrap();
    assert!(fourth.joined.is_empty(), "{:?}", fourth.joined);
    let old = stored.participants.iter().find(|p| p.id == pid("bob")).unwrap().join_order;
    let new = fourth.upserted.iter().find(|p| p.id == pid("bob")).unwrap().join_order;
    assert_ne!(old, new);
    stored.apply(&fourth);
    assert_eq!(stored, restored.state());
    assert_eq!(stored.participants.iter().filter(|p| p.id == pid("bob")).count(), 1);
}
