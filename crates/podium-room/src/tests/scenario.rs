//! A whole session: a moderator opens the room, listeners come, hands, approvals, invitations (accepted, declined,
//! expired), moving back, mutes, kick, ban, handover, the last moderator leaving (succession), grace expiry, resume.

use super::*;

use Command as C;
use Role::{Audience, Moderator, Speaker};

#[test]
fn full_scenario() {
    let mut h = Harness::with_defaults();
    let t = |h: &mut Harness, ms: Millis| h.now = ms;

    // The moderator opens the room; listeners join.
    t(&mut h, 1_000);
    assert_eq!(h.join("mod", Moderator).role, Moderator);
    for (i, who) in ["l1", "l2", "l3", "l4", "m2", "m3"].into_iter().enumerate() {
        t(&mut h, 1_001 + i as u64);
        let ceiling = if who.starts_with('m') { Moderator } else { Speaker };
        h.join_as(who, ceiling, Some(Audience)).unwrap();
    }
    h.drain();
    assert_eq!(h.room.counts(), Counts { stage: 1, audience: 6, hands: 0, total: 7 });
    let out = h.at(2_000);
    assert_eq!(counts_events(&out), vec![h.room.counts()]);

    // Hands: l1, l2 raise; l1 is approved; l2 moves up.
    h.ok("l1", C::RaiseHand);
    h.ok("l2", C::RaiseHand);
    let out = h.ok("mod", C::ApproveHand { target: pid("l1") });
    assert_eq!(stage_causes(&out), vec![StageCause::Promoted { id: pid("l1"), by: Some(act("mod")), reason: None }]);
    assert_eq!(h.room.participant(&pid("l2")).unwrap().hand_position, Some(1));

    // Invitations: l3 accepts, l4 declines, m2's expires.
    h.ok("mod", C::InviteToStage { target: pid("l3") });
    h.ok("l3", C::AcceptInvite);
    h.ok("mod", C::InviteToStage { target: pid("l4") });
    h.ok("l4", C::DeclineInvite);
    t(&mut h, 3_000);
    h.ok("mod", C::InviteToStage { target: pid("m2") });
    let out = h.at(63_000);
    assert!(events(&out).contains(&&Event::InviteAnswered { id: pid("m2"), accepted: false, expired: true }));
    assert_eq!(h.stage_ids(), vec![("mod".into(), Moderator), ("l1".into(), Speaker), ("l3".into(), Speaker)]);

    // l1 is moved back; l3 unmutes and is muted by the moderator.
    h.ok("mod", C::MoveToAudience { target: pid("l1") });
    let out = h.ok("l3", C::SetMuted { muted: false });
    assert_eq!(publishes(&out), vec![("l3".into(), true)]);
    let out = h.ok("mod", C::Mute { target: pid("l3") });
    assert_eq!(publishes(&out), vec![("l3".into(), false)]);

    // Kick l4 (rejoins), then ban them (cannot rejoin).
    h.ok("mod", C::Kick { target: pid("l4") });
    h.join("l4", Speaker);
    h.ok("mod", C::Ban { target: pid("l4") });
    assert_eq!(h.join_as("l4", Speaker, None), Err(CommandError::Banned));

    // Handover to m2 (moderator), m3 (speaker, moderator token) and l1.
    h.ok("mod", C::Handover { stage: vec![(pid("m2"), Moderator), (pid("m3"), Speaker), (pid("l1"), Speaker)] });
    assert_eq!(h.stage_ids(), vec![("m2".into(), Moderator), ("m3".into(), Speaker), ("l1".into(), Speaker)]);
    assert_eq!(h.role("mod"), Some(Audience));
    assert_eq!(h.role("l3"), Some(Audience));

    // The last moderator leaves: m3 (longest-serving speaker with a moderator token) succeeds.
    let out = h.leave("m2");
    assert_eq!(stage_causes(&out), vec![StageCause::Left(pid("m2")), StageCause::Succession(pid("m3"))]);
    h.ok("m3", C::Mute { target: pid("l1") }).len();

    // l1 drops and comes back within the grace period; l2 drops and does not.
    t(&mut h, 70_000);
    h.ok("l1", C::SetMuted { muted: false });
    h.disconnect("l1");
    h.disconnect("l2");
    t(&mut h, 80_000);
    assert!(h.join_as("l1", Speaker, None).unwrap().resumed);
    assert!(h.room.may_publish(&pid("l1")), "mute state survives the resume");
    let out = h.at(100_000);
    assert!(events(&out).contains(&&Event::ParticipantLeft { id: pid("l2") }));
    assert_eq!(h.role("l2"), None);
    assert!(!h.join_as("l2", Speaker, None).unwrap().resumed, "after the grace period, a fresh start");
    assert_eq!(h.role("l2"), Some(Audience));

    // Everyone leaves; the room ends after the empty timeout.
    for who in ["mod", "l1", "l2", "l3", "m3"] {
        h.leave(who);
    }
    assert_eq!(h.room.len(), 0);
    assert_eq!(h.room.poll_timeout(), Some(h.now + 1_000), "counts flush first");
    h.at(h.now + 1_000);
    assert_eq!(h.room.poll_timeout(), Some(100_000 + 300_000));
    let out = h.at(400_000);
    assert_eq!(out, vec![Output::Ended { reason: crate::EndReason::Empty }]);
}
