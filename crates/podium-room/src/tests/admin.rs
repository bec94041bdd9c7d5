//! Administrators, reasons, persistent rooms and revocations: one test (or a few) per rule.

use super::*;
use crate::{DisconnectReason, EndReason, InviteView, Reason, Revocation, RoomSetup, RoomView, Settings};

use Command as C;
use CommandError as E;
use Role::{Audience, Moderator, Speaker};

/// A room with a moderator `m`, a speaker `s` (moderator ceiling), listeners `a`, `b` (speaker ceiling) and `l`
/// (audience ceiling).
fn room() -> Harness {
    let mut h = Harness::new(small_config());
    h.join("m", Moderator);
    h.join("s", Moderator);
    h.ok("s", C::StepDown);
    h.ok("s", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("s") });
    for who in ["a", "b"] {
        h.join(who, Speaker);
    }
    h.join("l", Audience);
    h.moderated.clear();
    h
}

fn ops() -> Actor {
    admin("ops")
}

fn join_token(h: &mut Harness, who: &str, ceiling: Role, token: Option<&str>, issued_at: Millis) -> Result<Joined, E> {
    let join = Join {
        token_id: token.map(str::to_owned),
        issued_at,
        ..Join::new(pid(who), format!("{who} name"), ceiling, None)
    };
    let r = h.room.handle_join(h.now, join);
    h.check();
    h.drain();
    r
}

// ---------------------------------------------------------------------------------------------- administrators

#[test]
fn an_admin_moderates_any_participant_without_being_one() {
    let mut h = room();
    let total = h.room.len();
    let out = h.ok_as(&ops(), C::Mute { target: pid("s") }, None);
    assert_eq!(out, vec![]); // `s` was muted already: a no-op
    h.ok("s", C::SetMuted { muted: false });
    let out = h.ok_as(&ops(), C::Mute { target: pid("s") }, Some("too loud"));
    assert_eq!(
        stage_causes(&out),
        vec![StageCause::Muted { id: pid("s"), by: Some(ops()), reason: Reason::parse("too loud").unwrap() }]
    );
    assert!(out.iter().all(|o| !matches!(o, Output::Event { to: Recipients::One(id), .. } if id.as_str() == "ops")));
    h.ok_as(&ops(), C::InviteToStage { target: pid("a") }, None);
    assert!(h.room.participant(&pid("a")).unwrap().invited);
    let Ok(Reply::State(snap)) = h.cmd("a", C::GetState) else { panic!() };
    assert_eq!(snap.you.invite, Some(InviteView { by: ops(), expires_at: 1_000 }));
    h.ok_as(&ops(), C::CancelInvite { target: pid("a") }, None);
    h.ok("b", C::RaiseHand);
    h.ok_as(&ops(), C::ApproveHand { target: pid("b") }, None);
    let out = h.ok_as(&ops(), C::MoveToAudience { target: pid("b") }, Some("off topic"));
    assert!(matches!(&stage_causes(&out)[..], [StageCause::MovedToAudience { by, .. }] if *by == ops()));
    let out = h.ok_as(&ops(), C::MakeModerator { target: pid("s") }, None);
    assert_eq!(stage_causes(&out), vec![StageCause::ModeratorGranted { id: pid("s"), by: ops(), reason: None }]);
    h.ok_as(&ops(), C::RevokeModerator { target: pid("s") }, None);
    assert_eq!(h.room.len(), total, "the admin is not counted");
    assert_eq!(h.room.participant(&pid("ops")), None);
    // Admin names and identities never collide: a participant named like the admin is someone else.
    assert_eq!(h.cmd("ops", C::GetState), Err(E::NotFound("you are not in this room")));
}

#[test]
fn an_admin_keeps_the_rules_of_a_moderator() {
    let mut h = room();
    h.refused_as(&ops(), C::MakeModerator { target: pid("a") }, None, E::Forbidden("token does not allow moderating"));
    h.refused_as(&ops(), C::Mute { target: pid("zz") }, None, E::NotFound("no such participant in this room"));
    h.refused_as(&ops(), C::InviteToStage { target: pid("l") }, None, E::Forbidden("token does not allow the stage"));
    h.refused_as(&ops(), C::RevokeModerator { target: pid("m") }, None, E::Conflict("last moderator"));
    h.refused_as(&ops(), C::MoveToAudience { target: pid("m") }, None, E::Forbidden("revoke moderator first"));
    h.ok("a", C::RaiseHand);
    h.ok_as(
        &ops(),
        C::UpdateSettings {
            open_mic: None,
            closed: None,
            stage_capacity: Some(2),
            chat: None,
            chat_slow_mode_ms: None,
        },
        None,
    );
    h.refused_as(&ops(), C::ApproveHand { target: pid("a") }, None, E::StageFull);
    h.refused_as(
        &ops(),
        C::UpdateSettings {
            open_mic: None,
            closed: None,
            stage_capacity: Some(9),
            chat: None,
            chat_slow_mode_ms: None,
        },
        None,
        E::BadRequest("stage_capacity out of range"),
    );
}

#[test]
fn participant_commands_are_refused_from_an_admin() {
    let mut h = room();
    for c in [C::RaiseHand, C::LowerHand, C::AcceptInvite, C::DeclineInvite, C::StepDown, C::SetMuted { muted: true }] {
        h.refused_as(
            &ops(),
            c,
            None,
            E::Forbidden("an administrator is not a participant: this command acts on the sender's own state"),
        );
    }
}

#[test]
fn an_admin_may_remove_a_moderator_and_succession_follows() {
    let mut h = room();
    h.refused("s", C::Kick { target: pid("m") }, E::Forbidden("only moderators may do this"));
    h.ok("m", C::MakeModerator { target: pid("s") });
    h.refused("s", C::Kick { target: pid("m") }, E::Forbidden("cannot remove a moderator"));
    h.ok("m", C::RevokeModerator { target: pid("s") });
    let out = h.ok_as(&ops(), C::Ban { target: pid("m") }, Some("abuse"));
    let reason = Reason::parse("abuse").unwrap();
    assert_eq!(
        stage_causes(&out),
        vec![StageCause::Removed { id: pid("m"), by: ops(), reason }, StageCause::Succession(pid("s"))]
    );
    assert!(out.contains(&Output::Disconnect { who: pid("m"), reason: DisconnectReason::Banned }));
    assert!(h.room.is_banned(&pid("m")));
}

#[test]
fn an_admin_reads_the_room_as_a_moderator_without_a_you() {
    let mut h = room();
    h.ok("a", C::RaiseHand);
    let seq = h.room.seq();
    let Ok(Reply::Room(view)) = h.cmd_as(&ops(), C::GetState, None) else { panic!() };
    assert_eq!(view, h.room.view());
    let RoomView { seq: s, hands, persistent, stage, .. } = view;
    assert_eq!((s, hands.1, persistent, stage.len()), (seq, 1, false, 2));
    let Ok(Reply::Audience(page)) = h.cmd_as(&ops(), C::ListAudience { after: None, limit: 3 }, None) else { panic!() };
    assert_eq!(page.total, 3);
    assert!(h.drain().is_empty() && h.moderated.is_empty(), "reads change nothing");
}

#[test]
fn an_admin_hands_over_an_unmoderated_stage() {
    let mut h = Harness::new(small_config());
    h.join("a", Speaker);
    h.join("e", Moderator);
    h.ok("e", C::StepDown);
    assert!(h.room.stage().is_empty());
    let out = h.ok_as(&ops(), C::Handover { stage: vec![(pid("a"), Speaker), (pid("e"), Speaker)] }, None);
    assert_eq!(stage_causes(&out), vec![StageCause::Handover { by: ops(), reason: None }]);
    assert_eq!(h.stage_ids(), vec![("a".into(), Speaker), ("e".into(), Speaker)], "no succession without a moderator");
    h.noop("e", C::GetState);
    let Err(_) = h.cmd_as(&ops(), C::Handover { stage: vec![(pid("a"), Speaker), (pid("e"), Speaker)] }, None) else {
        // The same stage again: a no-op.
        assert!(h.drain().is_empty());
        return;
    };
    panic!("a repeated handover is a no-op");
}

#[test]
fn an_admin_ends_the_room() {
    let mut h = room();
    let out = h.ok_as(&ops(), C::EndRoom, Some("event over"));
    assert_eq!(
        out.last(),
        Some(&Output::Ended {
            reason: EndReason::ByModerator { by: ops(), reason: Reason::parse("event over").unwrap() }
        })
    );
    h.refused_as(&ops(), C::GetState, None, E::Ended);
}

// ----------------------------------------------------------------------------------------------------- reasons

#[test]
fn reasons_are_bounded_and_only_for_moderation() {
    let mut h = room();
    let long = "é".repeat(257);
    let target = || C::Kick { target: pid("a") };
    h.refused_as(&act("m"), target(), Some(&long), E::BadRequest("reason must be at most 256 characters"));
    h.refused_as(&ops(), target(), Some("a\nb"), E::BadRequest("reason must not contain control characters"));
    h.refused_as(&act("a"), C::RaiseHand, Some("please"), E::BadRequest("only moderation commands take a reason"));
    h.refused_as(&ops(), C::GetState, Some("x"), E::BadRequest("only moderation commands take a reason"));
    // The role is checked before the arguments.
    h.refused_as(&act("a"), target(), Some(&long), E::Forbidden("only moderators may do this"));
    let out = h.ok_as(&act("m"), target(), Some(&"é".repeat(256)));
    assert!(matches!(&out[0], Output::Event { event: Event::ParticipantLeft { .. }, .. }));
    // An empty reason is no reason.
    h.ok_as(&act("m"), C::Kick { target: pid("b") }, Some(""));
    assert!(matches!(&h.moderated[1], Output::Moderated { reason: None, .. }));
}

#[test]
fn every_moderation_transition_is_reported_once_with_actor_command_and_reason() {
    let mut h = room();
    h.ok_as(&act("m"), C::Ban { target: pid("zz") }, Some("spam"));
    h.ok_as(&act("m"), C::Ban { target: pid("zz") }, Some("spam")); // no-op: not reported
    h.ok_as(&ops(), C::Unban { target: pid("zz") }, None);
    h.ok_as(&ops(), C::InviteToRoom { identity: pid("g") }, Some("speaker"));
    h.ok("a", C::RaiseHand); // not moderation
    let seq = h.room.seq();
    assert_eq!(
        h.moderated,
        vec![
            Output::Moderated {
                seq: seq - 3,
                by: act("m"),
                command: C::Ban { target: pid("zz") },
                reason: Reason::parse("spam").unwrap()
            },
            Output::Moderated { seq: seq - 2, by: ops(), command: C::Unban { target: pid("zz") }, reason: None },
            Output::Moderated {
                seq: seq - 1,
                by: ops(),
                command: C::InviteToRoom { identity: pid("g") },
                reason: Reason::parse("speaker").unwrap()
            },
        ]
    );
}

// ---------------------------------------------------------------------------------------------- persistent rooms

#[test]
fn a_persistent_room_outlives_the_empty_timeout_with_its_lists() {
    let config = RoomConfig { persistent: true, ..small_config() };
    let mut h = Harness::new(config.clone());
    assert_eq!(h.room.poll_timeout(), None, "no empty timer");
    h.join("m", Moderator);
    h.ok("m", C::Ban { target: pid("x") });
    h.ok(
        "m",
        C::UpdateSettings {
            open_mic: Some(true),
            closed: None,
            stage_capacity: None,
            chat: None,
            chat_slow_mode_ms: None,
        },
    );
    h.leave("m");
    let out = h.at(1_000_000);
    assert!(!out.iter().any(|o| matches!(o, Output::Ended { .. })));
    assert!(!h.room.is_ended() && h.room.is_banned(&pid("x")) && h.room.settings().open_mic);
    let restored = Room::from_state(h.room.state(), config);
    assert!(restored.is_persistent());
    // Made ad hoc again, it ends once empty for the timeout (counted from when it emptied).
    h.ok_as(&ops(), C::SetPersistent { persistent: false }, None);
    let out = h.at(1_000_001);
    assert_eq!(out, vec![Output::Ended { reason: EndReason::Empty }]);
}

#[test]
fn only_an_admin_sets_persistence() {
    let mut h = room();
    h.refused("m", C::SetPersistent { persistent: true }, E::Forbidden("only administrators may do this"));
    h.ok_as(&ops(), C::SetPersistent { persistent: true }, None);
    assert!(h.room.is_persistent() && h.room.view().persistent);
    h.noop("m", C::GetState);
    assert_eq!(h.cmd_as(&ops(), C::SetPersistent { persistent: true }, None), Ok(Reply::Done));
    assert_eq!(h.moderated.len(), 1, "the second is a no-op");
}

#[test]
fn a_room_is_created_with_settings_persistence_and_guests() {
    let config = small_config();
    let setup = RoomSetup {
        open_mic: Some(true),
        closed: Some(true),
        stage_capacity: Some(5),
        persistent: Some(true),
        guests: vec![pid("g")],
        record: None,
    };
    let room = Room::create("summit", config.clone(), 0, setup.clone()).unwrap();
    let mut h = Harness::with_room(room, config.clone());
    assert_eq!(
        h.room.settings(),
        Settings { open_mic: true, closed: true, stage_capacity: 5, chat: true, chat_slow_mode_ms: 0 }
    );
    assert!(h.room.is_persistent());
    let stored = h.store.clone().unwrap();
    assert_eq!((stored.persistent, stored.guests.clone()), (true, vec![pid("g")]), "the first changes carry it all");
    assert_eq!(h.join_as("x", Speaker, None), Err(E::NotInvited));
    h.join("g", Speaker);
    let bad = RoomSetup { stage_capacity: Some(6), ..setup };
    assert_eq!(Room::create("r", config.clone(), 0, bad).err(), Some(E::BadRequest("stage_capacity out of range")));
    let defaults = Room::create("r", config.clone(), 0, RoomSetup::default()).unwrap();
    assert_eq!(defaults.state(), Room::new("r", config, 0).state());
}

// ------------------------------------------------------------------------------------------------- revocations

#[test]
fn revoking_an_identity_removes_it_and_refuses_its_older_tokens() {
    let mut h = room();
    h.now = 100;
    h.refused(
        "m",
        C::Revoke { identity: Some(pid("a")), token_id: None },
        E::Forbidden("only administrators may do this"),
    );
    h.refused_as(
        &ops(),
        C::Revoke { identity: None, token_id: None },
        None,
        E::BadRequest("a revocation names an identity, a token id, or both"),
    );
    let out = h.ok_as(&ops(), C::Revoke { identity: Some(pid("s")), token_id: None }, Some("compromised"));
    let reason = Reason::parse("compromised").unwrap();
    assert_eq!(stage_causes(&out), vec![StageCause::Revoked { id: pid("s"), by: ops(), reason }]);
    assert!(out.contains(&Output::Disconnect { who: pid("s"), reason: DisconnectReason::Revoked }));
    assert_eq!(h.room.role(&pid("s")), None);
    let until = 100 + h.config.revocation_ttl;
    assert_eq!(
        h.room.revocations().cloned().collect::<Vec<_>>(),
        vec![Revocation { until, identity: Some(pid("s")), token_id: None, at: 100 }]
    );
    // Tokens issued at or before the revocation are refused; a newer one is accepted.
    assert_eq!(join_token(&mut h, "s", Moderator, Some("t1"), 0), Err(E::Revoked));
    assert_eq!(join_token(&mut h, "s", Moderator, None, 100), Err(E::Revoked));
    assert_eq!(E::Revoked.code(), "unauthorized");
    h.now = 150;
    assert!(join_token(&mut h, "s", Moderator, None, 101).is_ok());
    // Others are unaffected.
    assert!(join_token(&mut h, "z", Speaker, None, 0).is_ok());
}

#[test]
fn revoking_a_token_id_removes_its_holder_and_refuses_only_that_token() {
    let mut h = Harness::new(small_config());
    h.join("m", Moderator);
    join_token(&mut h, "a", Speaker, Some("t1"), 0).unwrap();
    join_token(&mut h, "b", Speaker, Some("t2"), 0).unwrap();
    let out = h.ok_as(&ops(), C::Revoke { identity: None, token_id: Some("t1".into()) }, None);
    assert!(out.contains(&Output::Disconnect { who: pid("a"), reason: DisconnectReason::Revoked }));
    assert!(h.room.role(&pid("b")).is_some());
    assert_eq!(join_token(&mut h, "a", Speaker, Some("t1"), 0), Err(E::Revoked));
    assert!(join_token(&mut h, "a", Speaker, Some("t3"), 0).is_ok(), "another token of the same identity works");
    // Both named: that identity's token with that id.
    h.ok_as(&ops(), C::Revoke { identity: Some(pid("b")), token_id: Some("t9".into()) }, None);
    assert!(h.room.role(&pid("b")).is_some(), "b's session uses t2");
    assert_eq!(join_token(&mut h, "b", Speaker, Some("t9"), 5), Err(E::Revoked));
    assert!(join_token(&mut h, "c", Speaker, Some("t9"), 5).is_ok(), "t9 of another identity is not named");
}

#[test]
fn a_session_resuming_with_a_revoked_token_is_refused() {
    let mut h = Harness::new(small_config());
    h.join("m", Moderator);
    join_token(&mut h, "a", Speaker, Some("t1"), 0).unwrap();
    h.disconnect("a");
    h.ok_as(&ops(), C::Revoke { identity: None, token_id: Some("t1".into()) }, None);
    assert_eq!(h.room.role(&pid("a")), None, "removed in its grace period too");
    // Resuming with a new token records it: revoking the old one no longer matches the session.
    join_token(&mut h, "b", Speaker, Some("t2"), 0).unwrap();
    join_token(&mut h, "b", Speaker, Some("t3"), 0).unwrap();
    assert_eq!(h.room.participant(&pid("b")).unwrap().token_id.as_deref(), Some("t3"));
    h.ok_as(&ops(), C::Revoke { identity: None, token_id: Some("t2".into()) }, None);
    assert!(h.room.role(&pid("b")).is_some());
}

#[test]
fn revocations_lapse_after_their_ttl_and_are_bounded() {
    let config = RoomConfig { revocation_ttl: 1_000, max_revocations: 2, ..small_config() };
    let mut h = Harness::new(config);
    h.join("m", Moderator);
    let revoke = |t: &str| C::Revoke { identity: None, token_id: Some(t.into()) };
    h.ok_as(&ops(), revoke("t1"), None);
    h.now = 500;
    h.ok_as(&ops(), revoke("t2"), None);
    h.refused_as(&ops(), revoke("t3"), None, E::Conflict("too many revocations in force"));
    // Repeating one refreshes it (not a new entry), and a repeat at the same time is a no-op.
    h.ok_as(&ops(), revoke("t1"), None);
    assert_eq!(h.cmd_as(&ops(), revoke("t1"), None), Ok(Reply::Done));
    assert_eq!(h.drain(), vec![]);
    h.at(500); // head counts
    assert_eq!(h.room.poll_timeout(), Some(1_500));
    let seq = h.room.seq();
    h.at(1_500);
    assert_eq!(h.room.seq(), seq + 1, "pruning is one transition");
    assert_eq!(h.room.revocations().count(), 0);
    assert_eq!(join_token(&mut h, "a", Speaker, Some("t1"), 0).map(|j| j.role), Ok(Audience));
    h.ok_as(&ops(), revoke("t3"), None);
    h.refused_as(
        &ops(),
        C::Revoke { identity: Some(pid(&"x".repeat(129))), token_id: None },
        None,
        E::BadRequest("identity and token id must be 1-128 bytes without control characters"),
    );
}

#[test]
fn revocations_survive_state_changes_and_replicas() {
    let mut h = room();
    h.ok_as(&ops(), C::Revoke { identity: Some(pid("zz")), token_id: Some("t".into()) }, None);
    let state = h.room.state();
    assert_eq!(state.revocations.len(), 1);
    assert_eq!(h.store.as_ref().unwrap().revocations, state.revocations);
    assert_eq!(h.replica.as_ref().unwrap().state().revocations, state.revocations);
    let restored = Room::from_state(state, h.config.clone());
    assert!(restored.revoked(h.now, &pid("zz"), Some("t"), 0));
}
