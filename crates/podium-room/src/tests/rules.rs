//! One test (or a few) per rule in the crate documentation's table.

use super::*;
use crate::{
    AudienceEntry, AudiencePage, DisconnectReason, EndReason, InviteView, ParticipantSummary, Settings, YourState,
};

use Command as C;
use CommandError as E;
use Role::{Audience, Moderator, Speaker};

fn seq_of(out: &[Output]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

/// A room with a moderator `m` and speaker-ceiling listeners `a`, `b`, `c`.
fn basic() -> Harness {
    let mut h = Harness::new(small_config());
    h.join("m", Moderator);
    for who in ["a", "b", "c"] {
        h.join(who, Speaker);
    }
    h
}

// ------------------------------------------------------------------------------------------------------- join

#[test]
fn moderator_token_joins_on_stage_muted_and_listeners_join_the_audience() {
    let mut h = Harness::new(small_config());
    assert_eq!(h.join_as("m", Moderator, None), Ok(Joined { resumed: false, role: Moderator }));
    let out = h.drain();
    assert_eq!(stage_causes(&out), vec![StageCause::Joined(pid("m"))]);
    assert!(matches!(&out[0], Output::Event { to: Recipients::Everyone, seq: 1, .. }));
    assert!(h.room.participant(&pid("m")).unwrap().muted, "every new stage member starts muted");
    assert!(!h.room.may_publish(&pid("m")));

    assert_eq!(h.join_as("a", Speaker, None), Ok(Joined { resumed: false, role: Audience }));
    let out = h.drain();
    assert_eq!(
        out,
        vec![Output::Event {
            to: Recipients::Stage,
            seq: 2,
            event: Event::ParticipantJoined { participant: ParticipantSummary { id: pid("a"), name: "a name".into() } }
        }]
    );
    assert_eq!(h.room.seq(), 2);
    assert_eq!(h.room.len(), 2);
}

#[test]
fn join_role_requests() {
    let mut h = Harness::new(small_config());
    assert_eq!(
        h.join_as("s", Speaker, Some(Speaker)),
        Err(E::Forbidden("only moderator tokens may join onto the stage"))
    );
    assert_eq!(h.join_as("s", Speaker, Some(Moderator)).unwrap_err().code(), "forbidden");
    assert_eq!(h.join_as("x", Moderator, Some(Audience)).unwrap().role, Audience);
    assert_eq!(h.join_as("y", Moderator, Some(Speaker)).unwrap().role, Speaker);
    assert_eq!(h.join_as("z", Moderator, Some(Moderator)).unwrap().role, Moderator);
    assert_eq!(h.join_as("w", Moderator, None).unwrap().role, Moderator);
    // Capacity 3 is reached: explicit requests are refused, the default falls back to the audience.
    assert_eq!(h.join_as("v", Moderator, Some(Speaker)), Err(E::StageFull));
    assert_eq!(h.join_as("v", Moderator, None).unwrap().role, Audience);
    assert_eq!(h.room.counts(), Counts { stage: 3, audience: 2, hands: 0, total: 5 });
}

#[test]
fn banned_closed_and_ended_joins_are_refused() {
    let mut h = basic();
    h.ok("m", C::Ban { target: pid("z") });
    assert_eq!(h.join_as("z", Moderator, None), Err(E::Banned));
    h.ok(
        "m",
        C::UpdateSettings {
            open_mic: None,
            closed: Some(true),
            stage_capacity: None,
            chat: None,
            chat_slow_mode_ms: None,
        },
    );
    assert_eq!(h.join_as("stranger", Speaker, None), Err(E::NotInvited));
    h.ok("m", C::InviteToRoom { identity: pid("guest") });
    h.ok("m", C::InviteToRoom { identity: pid("guest") });
    assert!(h.join_as("guest", Speaker, None).is_ok());
    assert!(h.join_as("mod2", Moderator, None).is_ok(), "moderator tokens need no invitation");
    h.ok("m", C::UninviteFromRoom { identity: pid("g2") });
    // A participant already present takes over their session even in a closed room.
    h.disconnect("a");
    assert!(h.join_as("a", Speaker, None).unwrap().resumed);
    h.drain();
    h.ok("m", C::EndRoom);
    assert_eq!(h.join_as("late", Moderator, None), Err(E::Ended));
}

#[test]
fn resume_keeps_role_mute_and_hand_and_announces_reconnection() {
    let mut h = basic();
    h.ok("a", C::RaiseHand);
    h.ok("b", C::RaiseHand);
    h.ok("m", C::SetMuted { muted: false });
    assert_eq!(counts_events(&h.at(100)).len(), 1);
    let out = h.disconnect("m");
    assert_eq!(stage_causes(&out), vec![StageCause::Disconnected(pid("m"))]);
    assert!(!h.room.participant(&pid("m")).unwrap().connected);
    assert!(h.room.may_publish(&pid("m")), "disconnection alone does not change publishing");
    h.disconnect("b");
    assert_eq!(h.room.poll_timeout(), Some(600), "disconnected at 100, grace 500");
    h.now = 500;
    assert_eq!(h.join_as("m", Moderator, None), Ok(Joined { resumed: true, role: Moderator }));
    let out = h.drain();
    assert_eq!(stage_causes(&out), vec![StageCause::Reconnected(pid("m"))]);
    assert!(!h.room.participant(&pid("m")).unwrap().muted);
    assert!(h.join_as("b", Speaker, None).unwrap().resumed);
    assert_eq!(h.drain(), vec![], "an audience member's reconnection is not announced");
    assert_eq!(h.room.participant(&pid("b")).unwrap().hand_position, Some(2));
    assert_eq!(h.room.poll_timeout(), Some(900_000), "grace periods are cancelled; the first hand's expiry is next");
    assert!(h.at(10_000).is_empty());
    assert_eq!(h.room.len(), 4);
}

#[test]
fn a_duplicate_connection_with_the_same_token_is_a_no_op() {
    let mut h = basic();
    h.ok("a", C::RaiseHand);
    let (seq, state) = (h.room.seq(), h.room.state());
    assert_eq!(h.join_as("a", Speaker, None), Ok(Joined { resumed: true, role: Audience }));
    assert_eq!((h.room.seq(), h.room.state()), (seq, state));
    assert!(h.drain().is_empty());
}

#[test]
fn resume_clamps_the_role_to_the_new_ceiling() {
    let mut h = basic();
    h.join("m2", Moderator);
    h.ok("m", C::InviteToStage { target: pid("a") });
    h.ok("b", C::RaiseHand);
    // A moderator comes back with a speaker token: speaker now.
    assert_eq!(h.join_as("m2", Speaker, None).unwrap(), Joined { resumed: true, role: Speaker });
    let out = h.drain();
    assert_eq!(stage_causes(&out), vec![StageCause::Reconnected(pid("m2"))]);
    assert_eq!(h.role("m2"), Some(Speaker));
    // A listener comes back with an audience token: hand and invitation dropped.
    assert!(h.join_as("a", Audience, None).unwrap().resumed);
    let out = h.drain();
    let you = yous(&out);
    assert_eq!(you.len(), 1);
    assert_eq!(you[0].1.invite, None);
    assert_eq!(you[0].1.ceiling, Audience);
    assert!(!h.room.participant(&pid("a")).unwrap().invited);
    h.join_as("b", Audience, None).unwrap();
    let out = h.drain();
    assert!(events(&out).iter().any(|e| matches!(e, Event::HandQueue { total: 0, .. })));
    assert!(h.room.hand_queue().is_empty());
    h.refused("b", C::RaiseHand, E::Forbidden("token does not allow the stage"));
    // The last moderator comes back with a speaker token: succession to the longest-serving eligible speaker.
    h.join_as("m3", Moderator, Some(Speaker)).unwrap();
    h.drain();
    h.join_as("m", Speaker, None).unwrap();
    let out = h.drain();
    assert_eq!(stage_causes(&out), vec![StageCause::Reconnected(pid("m")), StageCause::Succession(pid("m3"))]);
    assert_eq!(seq_of(&out).iter().min(), seq_of(&out).iter().max(), "one transition, one seq");
}

// ---------------------------------------------------------------------------------------- disconnect / leave

#[test]
fn grace_expiry_removes_like_a_leave() {
    let mut h = basic();
    h.ok("a", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("a") });
    h.ok("a", C::SetMuted { muted: false });
    h.ok("b", C::RaiseHand);
    h.ok("c", C::RaiseHand);
    assert_eq!(counts_events(&h.at(100)).len(), 1);
    h.disconnect("a");
    h.now = 200;
    h.disconnect("b");
    assert!(h.disconnect("b").is_empty(), "a second disconnect is a no-op");
    assert_eq!(h.room.poll_timeout(), Some(600));
    assert!(h.at(599).is_empty());
    let out = h.at(600);
    assert_eq!(stage_causes(&out), vec![StageCause::Left(pid("a"))]);
    assert!(publishes(&out).contains(&("a".into(), false)), "leaving stops publishing");
    assert_eq!(h.role("a"), None);
    let out = h.at(700);
    assert!(out.contains(&Output::Event {
        to: Recipients::Stage,
        seq: h.room.seq(),
        event: Event::ParticipantLeft { id: pid("b") }
    }));
    // c moved up from place 2 to 1.
    assert_eq!(
        yous(&out),
        vec![(
            "c".into(),
            YourState {
                role: Audience,
                ceiling: Speaker,
                muted: true,
                hand_position: Some(1),
                hand_expires_at: Some(900_000),
                invite: None,
                recording_opt_out: false
            }
        )]
    );
    assert!(events(&out).iter().any(|e| matches!(e, Event::HandQueue { total: 1, .. })));
}

#[test]
fn leaving_removes_at_once_and_unknown_identities_are_ignored() {
    let mut h = basic();
    h.ok("a", C::RaiseHand);
    h.ok("b", C::RaiseHand);
    h.ok("c", C::RaiseHand);
    let seq = h.room.seq();
    assert!(h.leave("nobody").is_empty());
    assert!(h.disconnect("nobody").is_empty());
    assert_eq!(h.room.seq(), seq);
    let out = h.leave("a");
    assert_eq!(h.room.seq(), seq + 1);
    let positions: Vec<_> = yous(&out).into_iter().map(|(id, y)| (id, y.hand_position)).collect();
    assert_eq!(positions, vec![("b".into(), Some(1)), ("c".into(), Some(2))]);
    assert_eq!(h.room.hand_queue(), vec![pid("b"), pid("c")]);
    // The hand queue event carries at most `hand_queue_event_limit` (2) entries and the total.
    h.join("d", Speaker);
    let out = h.ok("d", C::RaiseHand);
    let q = events(&out).into_iter().find_map(|e| match e {
        Event::HandQueue { hands, total } => Some((hands.len(), *total)),
        _ => None,
    });
    assert_eq!(q, Some((2, 3)));
}

#[test]
fn an_empty_room_ends_after_the_timeout_and_a_join_resets_the_timer() {
    let mut h = Harness::new(small_config());
    assert_eq!(h.room.poll_timeout(), Some(2_000), "a new room with nobody in it ends too");
    h.now = 1_000;
    h.join("a", Speaker);
    assert_eq!(h.room.poll_timeout(), Some(1_100), "only the counts flush is pending");
    h.at(1_100);
    assert_eq!(h.room.poll_timeout(), None);
    h.now = 1_500;
    h.leave("a");
    h.at(1_600);
    assert_eq!(h.room.poll_timeout(), Some(3_500));
    assert!(h.at(3_499).is_empty());
    let out = h.at(3_500);
    assert_eq!(out, vec![Output::Ended { reason: EndReason::Empty }]);
    assert!(h.room.is_ended());
    assert_eq!(h.room.poll_timeout(), None);
    assert_eq!(h.cmd("a", C::GetState), Err(E::Ended));
    h.room.handle_timeout(10_000);
    assert!(h.drain().is_empty());
}

// ---------------------------------------------------------------------------------------------- succession

#[test]
fn succession_picks_the_longest_serving_eligible_speaker() {
    let mut h = Harness::new(RoomConfig { stage_capacity: 5, ..small_config() });
    h.join("m", Moderator);
    h.join("s1", Speaker);
    h.join("e1", Moderator);
    h.ok("m", C::StepDown);
    assert_eq!(h.role("e1"), Some(Moderator), "e1 joined on stage as the only moderator after m stepped down");
    // Build: stage = m2 (moderator), s1 (speaker, ceiling speaker), e2 (speaker, ceiling moderator), e3 (same).
    h.join("m2", Moderator);
    h.ok("e1", C::StepDown);
    h.ok("s1", C::RaiseHand);
    h.ok("m2", C::ApproveHand { target: pid("s1") });
    h.join_as("e2", Moderator, Some(Speaker)).unwrap();
    h.join_as("e3", Moderator, Some(Speaker)).unwrap();
    h.drain();
    let out = h.leave("m2");
    assert_eq!(stage_causes(&out), vec![StageCause::Left(pid("m2")), StageCause::Succession(pid("e2"))]);
    assert_eq!(yous(&out).into_iter().map(|(id, y)| (id, y.role)).collect::<Vec<_>>(), vec![("e2".into(), Moderator)]);
    let seqs = seq_of(&out);
    assert!(seqs.iter().all(|s| *s == h.room.seq()));
    assert_eq!(h.role("s1"), Some(Speaker));
}

#[test]
fn without_an_eligible_speaker_the_room_runs_unmoderated_until_a_moderator_joins() {
    let mut h = basic();
    h.ok("a", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("a") });
    h.ok("b", C::RaiseHand);
    let out = h.leave("m");
    assert_eq!(stage_causes(&out), vec![StageCause::Left(pid("m"))]);
    assert_eq!(h.stage_ids(), vec![("a".into(), Speaker)]);
    // Listeners and speakers carry on.
    h.ok("a", C::SetMuted { muted: false });
    h.ok("c", C::RaiseHand);
    h.refused("a", C::ApproveHand { target: pid("b") }, E::Forbidden("only moderators may do this"));
    assert_eq!(h.join_as("m9", Moderator, None).unwrap().role, Moderator);
    let out = h.drain();
    // The new moderator learns the queue.
    assert!(out.iter().any(|o| matches!(o,
        Output::Event { to: Recipients::One(id), event: Event::HandQueue { total: 2, .. }, .. } if id == &pid("m9"))));
}

// ------------------------------------------------------------------------------------------------- hands

#[test]
fn raise_and_lower_hands() {
    let mut h = basic();
    h.refused("m", C::RaiseHand, E::Forbidden("only the audience raises hands"));
    h.join("l", Audience);
    h.refused("l", C::RaiseHand, E::Forbidden("token does not allow the stage"));
    h.refused("ghost", C::RaiseHand, E::NotFound("you are not in this room"));
    assert_eq!(h.cmd("a", C::RaiseHand), Ok(Reply::Hand { position: Some(1), promoted: false }));
    let out = h.drain();
    assert!(out.contains(&Output::Event {
        to: Recipients::Moderators,
        seq: h.room.seq(),
        event: Event::HandQueue { hands: vec![ParticipantSummary { id: pid("a"), name: "a name".into() }], total: 1 }
    }));
    assert_eq!(yous(&out)[0].1.hand_position, Some(1));
    assert_eq!(h.cmd("b", C::RaiseHand), Ok(Reply::Hand { position: Some(2), promoted: false }));
    h.drain();
    assert_eq!(h.noop("b", C::RaiseHand), Reply::Hand { position: Some(2), promoted: false });
    assert_eq!(h.noop("c", C::LowerHand), Reply::Done);
    let out = h.ok("a", C::LowerHand);
    assert_eq!(
        yous(&out).into_iter().map(|(id, y)| (id, y.hand_position)).collect::<Vec<_>>(),
        vec![("a".into(), None), ("b".into(), Some(1))]
    );
    assert_eq!(h.room.counts().hands, 1);
}

#[test]
fn hand_positions_in_a_long_queue() {
    let mut h = Harness::with_defaults();
    h.join("m", Moderator);
    let ids: Vec<String> = (0..40).map(|i| format!("h{i:02}")).collect();
    for (i, who) in ids.iter().enumerate() {
        h.join(who, Speaker);
        assert_eq!(h.cmd(who, C::RaiseHand), Ok(Reply::Hand { position: Some(i as u32 + 1), promoted: false }));
        h.drain();
    }
    // Remove a few from the front, the middle and the back; everyone behind each hears their new place.
    for who in ["h00", "h20", "h39", "h10"] {
        let behind = h.room.participant(&pid(who)).unwrap().hand_position.unwrap() as usize;
        let out = h.ok(who, C::LowerHand);
        assert_eq!(yous(&out).len(), 1 + h.room.hand_queue().len() + 1 - behind);
    }
    for (i, id) in h.room.hand_queue().iter().enumerate() {
        assert_eq!(h.room.participant(id).unwrap().hand_position, Some(i as u32 + 1));
    }
    assert_eq!(h.room.hand_queue().len(), 36);
}

#[test]
fn open_mic_promotes_at_once_while_a_seat_is_free() {
    let mut h = basic();
    h.ok("b", C::RaiseHand);
    let out = h.ok(
        "m",
        C::UpdateSettings {
            open_mic: Some(true),
            closed: None,
            stage_capacity: None,
            chat: None,
            chat_slow_mode_ms: None,
        },
    );
    assert_eq!(
        events(&out),
        vec![&Event::Settings(Settings {
            open_mic: true,
            closed: false,
            stage_capacity: 3,
            chat: true,
            chat_slow_mode_ms: 0
        })]
    );
    assert_eq!(h.room.hand_queue(), vec![pid("b")], "turning open mic on does not promote the queue");
    assert_eq!(h.cmd("a", C::RaiseHand), Ok(Reply::Hand { position: None, promoted: true }));
    let out = h.drain();
    assert_eq!(stage_causes(&out), vec![StageCause::Promoted { id: pid("a"), by: None, reason: None }]);
    assert_eq!(h.role("a"), Some(Speaker));
    assert!(h.room.participant(&pid("a")).unwrap().muted);
    // The stage is full now (m, a, and c gets the last seat); then hands queue.
    assert_eq!(h.cmd("c", C::RaiseHand), Ok(Reply::Hand { position: None, promoted: true }));
    h.join("d", Speaker);
    assert_eq!(h.cmd("d", C::RaiseHand), Ok(Reply::Hand { position: Some(2), promoted: false }));
}

#[test]
fn approve_hand() {
    let mut h = basic();
    h.ok("a", C::RaiseHand);
    h.ok("b", C::RaiseHand);
    h.ok("c", C::RaiseHand);
    h.refused("a", C::ApproveHand { target: pid("b") }, E::Forbidden("only moderators may do this"));
    h.refused("m", C::ApproveHand { target: pid("zz") }, E::NotFound("no such participant in this room"));
    h.refused("m", C::ApproveHand { target: pid("m") }, E::Conflict("hand not raised"));
    let out = h.ok("m", C::ApproveHand { target: pid("b") });
    assert_eq!(stage_causes(&out), vec![StageCause::Promoted { id: pid("b"), by: Some(act("m")), reason: None }]);
    let you: Vec<_> = yous(&out).into_iter().map(|(id, y)| (id, y.role, y.hand_position)).collect();
    assert_eq!(you, vec![("b".into(), Speaker, None), ("c".into(), Audience, Some(2))]);
    assert!(h.room.participant(&pid("b")).unwrap().muted);
    h.ok("m", C::ApproveHand { target: pid("c") });
    h.refused("m", C::ApproveHand { target: pid("a") }, E::StageFull);
    assert_eq!(h.room.counts(), Counts { stage: 3, audience: 1, hands: 1, total: 4 });
}

// ----------------------------------------------------------------------------------------------- invites

#[test]
fn invite_accept_decline_cancel_and_expire() {
    let mut h = basic();
    h.join("l", Audience);
    h.refused("a", C::InviteToStage { target: pid("b") }, E::Forbidden("only moderators may do this"));
    h.refused("m", C::InviteToStage { target: pid("m") }, E::Conflict("already on stage"));
    h.refused("m", C::InviteToStage { target: pid("l") }, E::Forbidden("token does not allow the stage"));
    h.refused("m", C::InviteToStage { target: pid("zz") }, E::NotFound("no such participant in this room"));
    h.refused("a", C::AcceptInvite, E::NotFound("no invitation"));
    h.refused("a", C::DeclineInvite, E::NotFound("no invitation"));
    h.refused("m", C::CancelInvite { target: pid("a") }, E::NotFound("no invitation"));

    let out = h.ok("m", C::InviteToStage { target: pid("a") });
    let invite = Some(InviteView { by: act("m"), expires_at: 1_000 });
    assert_eq!(
        yous(&out),
        vec![(
            "a".into(),
            YourState {
                role: Audience,
                ceiling: Speaker,
                muted: true,
                hand_position: None,
                hand_expires_at: None,
                invite: invite.clone(),
                recording_opt_out: false
            }
        )]
    );
    // Same moderator, same time: nothing to refresh.
    h.noop("m", C::InviteToStage { target: pid("a") });
    h.now = 100;
    h.ok("m", C::InviteToStage { target: pid("a") });
    assert_eq!(h.room.snapshot_for(&pid("a")).unwrap().you.invite.unwrap().expires_at, 1_100);

    h.ok("a", C::RaiseHand);
    let out = h.ok("a", C::AcceptInvite);
    assert_eq!(stage_causes(&out), vec![StageCause::InviteAccepted(pid("a"))]);
    assert!(events(&out).contains(&&Event::InviteAnswered { id: pid("a"), accepted: true, expired: false }));
    assert_eq!(h.room.hand_queue(), vec![], "accepting clears the hand");
    assert!(h.room.participant(&pid("a")).unwrap().muted);

    h.ok("m", C::InviteToStage { target: pid("b") });
    let out = h.ok("b", C::DeclineInvite);
    assert_eq!(
        out.iter().find(|o| matches!(o, Output::Event { event: Event::InviteAnswered { .. }, .. })),
        Some(&Output::Event {
            to: Recipients::Moderators,
            seq: h.room.seq(),
            event: Event::InviteAnswered { id: pid("b"), accepted: false, expired: false }
        })
    );
    h.ok("m", C::InviteToStage { target: pid("b") });
    let out = h.ok("m", C::CancelInvite { target: pid("b") });
    assert_eq!(yous(&out)[0].1.invite, None);

    // Expiry: an invitation past its time cannot be accepted even before the timer runs.
    h.ok("m", C::InviteToStage { target: pid("c") });
    assert_eq!(counts_events(&h.at(100)).len(), 1, "the pending counts flush comes first");
    assert_eq!(h.room.poll_timeout(), Some(1_100));
    h.now = 1_100;
    h.refused("c", C::AcceptInvite, E::NotFound("no invitation"));
    let out = h.at(1_100);
    assert!(events(&out).contains(&&Event::InviteAnswered { id: pid("c"), accepted: false, expired: true }));
    assert_eq!(yous(&out)[0].1.invite, None);
    assert!(!h.room.participant(&pid("c")).unwrap().invited);
}

#[test]
fn accepting_on_a_full_stage_keeps_the_invitation() {
    let mut h = basic();
    h.ok("m", C::InviteToStage { target: pid("a") });
    h.ok("b", C::RaiseHand);
    h.ok("c", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("b") });
    h.ok("m", C::ApproveHand { target: pid("c") });
    h.refused("a", C::AcceptInvite, E::StageFull);
    assert!(h.room.participant(&pid("a")).unwrap().invited);
    h.ok("c", C::StepDown);
    h.ok("a", C::AcceptInvite);
    assert_eq!(h.role("a"), Some(Speaker));
}

// ------------------------------------------------------------------------------------ stage moves and mutes

#[test]
fn step_down_and_move_to_audience() {
    let mut h = basic();
    h.join("m2", Moderator);
    h.ok("a", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("a") });
    h.refused("b", C::StepDown, E::Conflict("not on stage"));
    h.refused("a", C::MoveToAudience { target: pid("b") }, E::Forbidden("only moderators may do this"));
    h.refused("m", C::MoveToAudience { target: pid("m2") }, E::Forbidden("revoke moderator first"));
    h.refused("m", C::MoveToAudience { target: pid("b") }, E::Conflict("not on stage"));
    h.refused("m", C::MoveToAudience { target: pid("zz") }, E::NotFound("no such participant in this room"));
    h.ok("a", C::SetMuted { muted: false });
    let out = h.ok("m", C::MoveToAudience { target: pid("a") });
    assert_eq!(stage_causes(&out), vec![StageCause::MovedToAudience { id: pid("a"), by: act("m"), reason: None }]);
    assert_eq!(publishes(&out), vec![("a".into(), false)]);
    assert_eq!(yous(&out)[0].1.role, Audience);
    assert!(h.room.participant(&pid("a")).unwrap().muted);
    let out = h.ok("m2", C::StepDown);
    assert_eq!(stage_causes(&out), vec![StageCause::SteppedDown(pid("m2"))]);
    assert_eq!(h.stage_ids(), vec![("m".into(), Moderator)]);
    // Back in the audience at the original join order.
    let Reply::Audience(page) = h.cmd("m", C::ListAudience { after: None, limit: 3 }).unwrap() else { panic!() };
    let ids: Vec<_> = page.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

#[test]
fn self_mute_and_moderator_mute() {
    let mut h = basic();
    h.ok("a", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("a") });
    h.refused("b", C::SetMuted { muted: false }, E::Forbidden("the audience cannot publish"));
    h.refused("b", C::SetMuted { muted: true }, E::Forbidden("the audience cannot publish"));
    h.noop("a", C::SetMuted { muted: true });
    let out = h.ok("a", C::SetMuted { muted: false });
    assert_eq!(stage_causes(&out), vec![StageCause::Unmuted(pid("a"))]);
    assert_eq!(publishes(&out), vec![("a".into(), true)]);
    assert!(h.room.may_publish(&pid("a")));
    h.refused("b", C::Mute { target: pid("a") }, E::Forbidden("only moderators may do this"));
    h.refused("m", C::Mute { target: pid("b") }, E::Conflict("not on stage"));
    let out = h.ok("m", C::Mute { target: pid("a") });
    assert_eq!(stage_causes(&out), vec![StageCause::Muted { id: pid("a"), by: Some(act("m")), reason: None }]);
    assert_eq!(publishes(&out), vec![("a".into(), false)]);
    h.noop("m", C::Mute { target: pid("a") });
    h.ok("a", C::SetMuted { muted: false });
    let out = h.ok("a", C::SetMuted { muted: true });
    assert_eq!(stage_causes(&out), vec![StageCause::Muted { id: pid("a"), by: None, reason: None }]);
    assert!(!h.room.may_publish(&pid("b")));
}

// ------------------------------------------------------------------------------------------- kick and ban

#[test]
fn kick() {
    let mut h = basic();
    h.join("m2", Moderator);
    h.ok("a", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("a") });
    h.ok("a", C::SetMuted { muted: false });
    h.refused("a", C::Kick { target: pid("b") }, E::Forbidden("only moderators may do this"));
    h.refused("m", C::Kick { target: pid("m") }, E::BadRequest("cannot remove yourself"));
    h.refused("m", C::Kick { target: pid("m2") }, E::Forbidden("cannot remove a moderator"));
    h.refused("m", C::Kick { target: pid("zz") }, E::NotFound("no such participant in this room"));
    let out = h.ok("m", C::Kick { target: pid("a") });
    assert_eq!(stage_causes(&out), vec![StageCause::Removed { id: pid("a"), by: act("m"), reason: None }]);
    assert_eq!(publishes(&out), vec![("a".into(), false)]);
    assert_eq!(out.last(), Some(&Output::Disconnect { who: pid("a"), reason: DisconnectReason::Kicked }));
    let out = h.ok("m", C::Kick { target: pid("b") });
    assert!(events(&out).contains(&&Event::ParticipantLeft { id: pid("b") }));
    assert!(h.join_as("b", Speaker, None).is_ok(), "a kicked identity may rejoin");
}

#[test]
fn ban_and_unban() {
    let mut h = basic();
    h.join("m2", Moderator);
    h.refused("a", C::Ban { target: pid("b") }, E::Forbidden("only moderators may do this"));
    h.refused("m", C::Ban { target: pid("m") }, E::BadRequest("cannot remove yourself"));
    h.refused("m", C::Ban { target: pid("m2") }, E::Forbidden("cannot remove a moderator"));
    h.refused("m", C::Unban { target: pid("b") }, E::NotFound("not banned"));
    let out = h.ok("m", C::Ban { target: pid("b") });
    assert_eq!(out.last(), Some(&Output::Disconnect { who: pid("b"), reason: DisconnectReason::Banned }));
    assert!(h.room.is_banned(&pid("b")));
    assert_eq!(h.join_as("b", Speaker, None), Err(E::Banned));
    // Absent identities can be banned too; banning again is a no-op.
    let out = h.ok("m", C::Ban { target: pid("ghost") });
    assert!(out.is_empty());
    h.noop("m", C::Ban { target: pid("ghost") });
    h.refused("a", C::Unban { target: pid("b") }, E::Forbidden("only moderators may do this"));
    h.ok("m", C::Unban { target: pid("b") });
    assert!(!h.room.is_banned(&pid("b")));
    assert!(h.join_as("b", Speaker, None).is_ok());
}

// ------------------------------------------------------------------------------------------- moderators

#[test]
fn make_and_revoke_moderator() {
    let mut h = basic();
    h.join_as("e", Moderator, Some(Audience)).unwrap();
    h.join_as("f", Moderator, Some(Audience)).unwrap();
    h.drain();
    h.refused("a", C::MakeModerator { target: pid("e") }, E::Forbidden("only moderators may do this"));
    h.refused("m", C::MakeModerator { target: pid("a") }, E::Forbidden("token does not allow moderating"));
    h.refused("m", C::MakeModerator { target: pid("zz") }, E::NotFound("no such participant in this room"));
    h.noop("m", C::MakeModerator { target: pid("m") });
    h.ok("e", C::RaiseHand);
    let out = h.ok("m", C::MakeModerator { target: pid("e") });
    assert_eq!(stage_causes(&out), vec![StageCause::ModeratorGranted { id: pid("e"), by: act("m"), reason: None }]);
    assert_eq!(h.role("e"), Some(Moderator));
    assert!(h.room.participant(&pid("e")).unwrap().muted);
    assert_eq!(h.room.hand_queue(), vec![]);
    h.ok("f", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("f") });
    assert_eq!(h.role("f"), Some(Speaker));
    let out = h.ok("e", C::MakeModerator { target: pid("f") });
    assert_eq!(stage_causes(&out), vec![StageCause::ModeratorGranted { id: pid("f"), by: act("e"), reason: None }]);
    h.ok("f", C::StepDown);
    h.ok("a", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("a") });
    h.refused("m", C::MakeModerator { target: pid("f") }, E::StageFull);

    h.refused("a", C::RevokeModerator { target: pid("e") }, E::Forbidden("only moderators may do this"));
    h.refused("m", C::RevokeModerator { target: pid("a") }, E::Conflict("not a moderator"));
    let out = h.ok("m", C::RevokeModerator { target: pid("e") });
    assert_eq!(stage_causes(&out), vec![StageCause::ModeratorRevoked { id: pid("e"), by: act("m"), reason: None }]);
    assert_eq!(h.role("e"), Some(Speaker));
    h.refused("m", C::RevokeModerator { target: pid("m") }, E::Conflict("last moderator"));
}

#[test]
fn handover_validation() {
    let mut h = basic();
    h.join_as("e", Moderator, Some(Audience)).unwrap();
    h.drain();
    let ho = |list: &[(&str, Role)]| C::Handover { stage: list.iter().map(|(id, r)| (pid(id), *r)).collect() };
    h.refused("a", ho(&[("a", Speaker)]), E::Forbidden("only moderators may do this"));
    h.refused("m", ho(&[]), E::BadRequest("a handover needs at least one stage member"));
    h.refused("m", ho(&[("a", Audience)]), E::BadRequest("handover roles must be speaker or moderator"));
    h.refused("m", ho(&[("a", Speaker), ("a", Speaker)]), E::BadRequest("duplicate participant in handover"));
    h.refused("m", ho(&[("a", Speaker), ("zz", Speaker)]), E::NotFound("no such participant in this room"));
    h.refused("m", ho(&[("a", Moderator)]), E::Forbidden("token does not allow that role"));
    h.refused("m", ho(&[("a", Speaker), ("b", Speaker), ("c", Speaker), ("e", Moderator)]), E::StageFull);
    h.noop("m", ho(&[("m", Moderator)]));
}

#[test]
fn handover_replaces_the_stage_in_one_transition() {
    let mut h = Harness::new(RoomConfig { stage_capacity: 4, ..small_config() });
    h.join("m", Moderator);
    h.join("m2", Moderator);
    h.join("m3", Moderator);
    for who in ["a", "b", "c"] {
        h.join(who, Speaker);
    }
    h.ok("m2", C::SetMuted { muted: false });
    h.ok("a", C::RaiseHand);
    h.ok("b", C::RaiseHand);
    h.ok("c", C::RaiseHand);
    h.ok("m", C::InviteToStage { target: pid("c") });
    h.ok("m", C::RevokeModerator { target: pid("m3") });
    h.ok("m", C::MoveToAudience { target: pid("m3") });
    let seq = h.room.seq();
    let out = h.ok(
        "m",
        C::Handover {
            stage: vec![(pid("b"), Speaker), (pid("m2"), Moderator), (pid("c"), Speaker), (pid("m3"), Speaker)],
        },
    );
    assert_eq!(h.room.seq(), seq + 1);
    assert!(seq_of(&out).iter().all(|s| *s == seq + 1));
    assert_eq!(
        stage_causes(&out),
        vec![StageCause::Handover { by: act("m"), reason: None }],
        "exactly one stage event"
    );
    // Stayers keep their stage order and mute state; newcomers follow in list order, muted.
    assert_eq!(
        h.stage_ids(),
        vec![("m2".into(), Moderator), ("b".into(), Speaker), ("c".into(), Speaker), ("m3".into(), Speaker)]
    );
    assert!(h.room.may_publish(&pid("m2")));
    assert_eq!(h.role("m"), Some(Audience));
    let changed: Vec<_> = yous(&out).into_iter().map(|(id, _)| id).collect();
    assert_eq!(changed, ["m", "b", "c", "m3"], "a's place did not change");
    assert!(!h.room.participant(&pid("c")).unwrap().invited);
    assert_eq!(h.room.hand_queue(), vec![pid("a")]);
    assert!(events(&out).iter().any(|e| matches!(e, Event::HandQueue { total: 1, .. })));
    // The old moderator cannot moderate any more.
    h.refused("m", C::Kick { target: pid("a") }, E::Forbidden("only moderators may do this"));
}

#[test]
fn a_handover_that_succession_would_undo_is_a_no_op() {
    let mut h = basic();
    h.ok("a", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("a") });
    // m, the only moderator, hands over to speakers only; succession would make m moderator again.
    h.noop("m", C::Handover { stage: vec![(pid("m"), Speaker), (pid("a"), Speaker)] });
    assert_eq!(h.stage_ids(), vec![("m".into(), Moderator), ("a".into(), Speaker)]);
}

#[test]
fn handover_to_speakers_only_triggers_succession() {
    let mut h = basic();
    h.join_as("e", Moderator, Some(Audience)).unwrap();
    h.drain();
    let out = h.ok("m", C::Handover { stage: vec![(pid("a"), Speaker), (pid("e"), Speaker)] });
    assert_eq!(
        stage_causes(&out),
        vec![StageCause::Handover { by: act("m"), reason: None }, StageCause::Succession(pid("e"))]
    );
    assert_eq!(h.stage_ids(), vec![("a".into(), Speaker), ("e".into(), Moderator)]);
}

// --------------------------------------------------------------------------------------------- settings

#[test]
fn update_settings() {
    let mut h = basic();
    let us = |open_mic, closed, stage_capacity| C::UpdateSettings {
        open_mic,
        closed,
        stage_capacity,
        chat: None,
        chat_slow_mode_ms: None,
    };
    h.refused("a", us(Some(true), None, None), E::Forbidden("only moderators may do this"));
    h.refused("m", us(None, None, None), E::BadRequest("nothing to update"));
    h.refused("m", us(None, None, Some(0)), E::BadRequest("stage_capacity out of range"));
    h.refused("m", us(None, None, Some(6)), E::BadRequest("stage_capacity out of range"));
    h.ok("a", C::RaiseHand);
    h.ok("b", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("a") });
    h.ok("m", C::ApproveHand { target: pid("b") });
    h.refused("m", us(Some(true), None, Some(2)), E::Conflict("more members on stage than that"));
    h.noop("m", us(Some(false), Some(false), Some(3)));
    let out = h.ok("m", us(None, Some(true), Some(5)));
    assert_eq!(
        out,
        vec![Output::Event {
            to: Recipients::Everyone,
            seq: h.room.seq(),
            event: Event::Settings(Settings {
                open_mic: false,
                closed: true,
                stage_capacity: 5,
                chat: true,
                chat_slow_mode_ms: 0
            })
        }]
    );
    assert_eq!(
        h.room.settings(),
        Settings { open_mic: false, closed: true, stage_capacity: 5, chat: true, chat_slow_mode_ms: 0 }
    );
}

#[test]
fn guest_list_is_idempotent_and_moderator_only() {
    let mut h = basic();
    h.refused("a", C::InviteToRoom { identity: pid("g") }, E::Forbidden("only moderators may do this"));
    h.refused("a", C::UninviteFromRoom { identity: pid("g") }, E::Forbidden("only moderators may do this"));
    let seq = h.room.seq();
    h.ok("m", C::InviteToRoom { identity: pid("g") });
    h.noop("m", C::InviteToRoom { identity: pid("g") });
    h.ok("m", C::UninviteFromRoom { identity: pid("g") });
    h.noop("m", C::UninviteFromRoom { identity: pid("g") });
    assert_eq!(h.room.seq(), seq + 2);
    assert!(h.room.state().guests.is_empty());
}

// ------------------------------------------------------------------------------------------- read-only

#[test]
fn list_audience_pages_in_join_order() {
    let mut h = basic();
    for who in ["d", "e", "f", "g"] {
        h.join(who, Speaker);
    }
    h.disconnect("e");
    h.ok("d", C::RaiseHand);
    h.refused("a", C::ListAudience { after: None, limit: 3 }, E::Forbidden("only moderators may do this"));
    h.refused("m", C::ListAudience { after: None, limit: 0 }, E::BadRequest("limit out of range"));
    h.refused("m", C::ListAudience { after: None, limit: 4 }, E::BadRequest("limit out of range"));
    let mut ids = Vec::new();
    let mut after = None;
    let seq = h.room.seq();
    loop {
        let Reply::Audience(page) = h.cmd("m", C::ListAudience { after, limit: 3 }).unwrap() else { panic!() };
        assert_eq!(page.total, 7);
        ids.extend(page.entries.iter().map(|e| e.id.as_str().to_owned()));
        if page.entries.iter().any(|e| e.id == pid("d")) {
            assert!(page.entries.contains(&AudienceEntry {
                id: pid("d"),
                name: "d name".into(),
                hand_raised: true,
                connected: true
            }));
            assert!(page.entries.contains(&AudienceEntry {
                id: pid("e"),
                name: "e name".into(),
                hand_raised: false,
                connected: false
            }));
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(ids, ["a", "b", "c", "d", "e", "f", "g"]);
    assert_eq!(h.room.seq(), seq, "read-only");
    assert!(h.drain().is_empty());
    // A page that ends exactly at the end has no cursor; a cursor past the end gives an empty page.
    let Reply::Audience(p) = h.cmd("m", C::ListAudience { after: Some(u64::MAX), limit: 3 }).unwrap() else { panic!() };
    assert_eq!(p, AudiencePage { entries: vec![], next: None, total: 7 });
}

#[test]
fn get_state_shows_the_queue_to_moderators_only() {
    let mut h = basic();
    h.ok("a", C::RaiseHand);
    h.ok("m", C::InviteToStage { target: pid("b") });
    let seq = h.room.seq();
    let Ok(Reply::State(s)) = h.cmd("a", C::GetState) else { panic!() };
    assert_eq!(s.hands, None);
    assert_eq!(s.you.hand_position, Some(1));
    assert_eq!(s.seq, seq);
    assert_eq!(s.room, "room");
    let Ok(Reply::State(s)) = h.cmd("m", C::GetState) else { panic!() };
    assert_eq!(s.hands, Some((vec![ParticipantSummary { id: pid("a"), name: "a name".into() }], 1)));
    assert_eq!(s.stage.len(), 1);
    assert_eq!(s.counts, Counts { stage: 1, audience: 3, hands: 1, total: 4 });
    let Ok(Reply::State(s)) = h.cmd("b", C::GetState) else { panic!() };
    assert_eq!(s.you.invite, Some(InviteView { by: act("m"), expires_at: 1_000 }));
    assert_eq!(h.room.seq(), seq);
    assert!(h.drain().is_empty());
    h.refused("zz", C::GetState, E::NotFound("you are not in this room"));
}

#[test]
fn end_room() {
    let mut h = basic();
    h.ok("a", C::RaiseHand);
    h.ok("m", C::ApproveHand { target: pid("a") });
    h.ok("a", C::SetMuted { muted: false });
    h.refused("a", C::EndRoom, E::Forbidden("only moderators may do this"));
    let out = h.ok("m", C::EndRoom);
    assert_eq!(
        out,
        vec![
            Output::Publish { who: pid("a"), allowed: false },
            Output::Ended { reason: EndReason::ByModerator { by: act("m"), reason: None } }
        ]
    );
    assert!(h.room.is_ended());
    assert!(!h.room.may_publish(&pid("a")));
    assert_eq!(h.room.poll_timeout(), None);
    for c in [C::GetState, C::EndRoom, C::RaiseHand] {
        assert_eq!(h.cmd("m", c), Err(E::Ended));
    }
    let seq = h.room.seq();
    h.leave("a");
    h.disconnect("m");
    h.at(1_000_000);
    assert_eq!(h.room.seq(), seq);
    assert!(h.drain().is_empty());
    // An ended room restores as ended.
    assert!(Room::from_state(h.room.state(), small_config()).is_ended());
}

// --------------------------------------------------------------------------------------------- counts

#[test]
fn counts_are_coalesced() {
    let mut h = Harness::new(small_config());
    h.now = 1_000;
    h.join("m", Moderator);
    h.now = 1_010;
    h.join("a", Speaker);
    h.now = 1_020;
    h.join("b", Speaker);
    assert_eq!(h.room.poll_timeout(), Some(1_100), "first change + counts_interval");
    assert!(h.at(1_099).is_empty());
    let seq = h.room.seq();
    let out = h.at(1_100);
    assert_eq!(
        out,
        vec![Output::Event {
            to: Recipients::Everyone,
            seq,
            event: Event::Counts(Counts { stage: 1, audience: 2, hands: 0, total: 3 })
        }]
    );
    assert_eq!(h.room.seq(), seq, "counts do not change seq");
    assert_eq!(h.room.poll_timeout(), None);
    // A change that is undone before the flush sends nothing.
    h.join("c", Speaker);
    h.leave("c");
    assert_eq!(h.room.poll_timeout(), Some(1_200));
    assert!(counts_events(&h.at(1_200)).is_empty());
    // Changes that do not touch the counts schedule nothing.
    h.ok("m", C::SetMuted { muted: false });
    assert_eq!(h.room.poll_timeout(), None);
}

#[test]
fn restore_sends_counts_once_and_round_trips() {
    let mut h = basic();
    h.ok("a", C::RaiseHand);
    h.ok("m", C::InviteToStage { target: pid("b") });
    h.disconnect("c");
    let state = h.room.state();
    let mut restored = Room::from_state(state.clone(), small_config());
    assert_eq!(restored.state(), state);
    assert!(restored.take_changes().is_none(), "a faithful restore has nothing to commit");
    assert_eq!(restored.poll_timeout(), Some(0));
    restored.handle_timeout(5);
    let out: Vec<_> = std::iter::from_fn(|| restored.poll_output()).collect();
    assert_eq!(counts_events(&out), vec![h.room.counts()]);
    assert_eq!(restored.poll_timeout(), Some(500), "c's grace period carries over");
}

#[test]
fn error_codes() {
    let all = [
        (E::Forbidden("x"), "forbidden"),
        (E::NotFound("x"), "not_found"),
        (E::Conflict("x"), "conflict"),
        (E::StageFull, "stage_full"),
        (E::BadRequest("x"), "bad_request"),
        (E::Banned, "banned"),
        (E::NotInvited, "not_invited"),
        (E::Ended, "room_ended"),
    ];
    for (e, code) in all {
        assert_eq!(e.code(), code);
    }
    assert_eq!(E::Conflict("last moderator").to_string(), "conflict: last moderator");
}
