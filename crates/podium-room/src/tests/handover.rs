//! The administrator's `HandoverDelta`: one test (or a few) per rule.

use super::*;
use crate::Reason;

use Command as C;
use CommandError as E;
use Role::{Audience, Moderator, Speaker};

fn ops() -> Actor {
    admin("ops")
}

fn ids(list: &[&str]) -> Vec<ParticipantId> {
    list.iter().map(|s| pid(s)).collect()
}

fn delta(demote: &[&str], promote: &[(&str, Role)], add: &[&str], remove: &[&str]) -> Command {
    C::HandoverDelta {
        demote: ids(demote),
        promote: promote.iter().map(|(id, r)| (pid(id), *r)).collect(),
        moderators_add: ids(add),
        moderators_remove: ids(remove),
    }
}

fn seqs(out: &[Output]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

/// A full stage of three: moderator `m`, speakers `s1` (unmuted) and `s2`; in the audience `x` (moderator
/// ceiling, hand raised), `y` (speaker ceiling, invited), `z` (speaker ceiling, hand raised) and `l` (audience
/// ceiling).
fn full() -> Harness {
    let mut h = Harness::new(small_config());
    h.join("m", Moderator);
    for who in ["s1", "s2"] {
        h.join(who, Speaker);
        h.ok(who, C::RaiseHand);
        h.ok("m", C::ApproveHand { target: pid(who) });
    }
    h.ok("s1", C::SetMuted { muted: false });
    h.join("x", Moderator);
    for who in ["y", "z"] {
        h.join(who, Speaker);
    }
    h.join("l", Audience);
    h.ok("x", C::RaiseHand);
    h.ok("z", C::RaiseHand);
    h.ok("m", C::InviteToStage { target: pid("y") });
    h.moderated.clear();
    assert_eq!(h.room.stage().len(), 3);
    h
}

#[test]
fn only_an_administrator_hands_over() {
    let mut h = full();
    let cmd = delta(&["s1"], &[("y", Speaker)], &[], &[]);
    h.refused("m", cmd.clone(), E::Forbidden("only administrators may do this"));
    h.refused("y", cmd, E::Forbidden("only administrators may do this"));
}

#[test]
fn a_full_stage_is_swapped_in_one_transition() {
    let mut h = full();
    let seq = h.room.seq();
    let cmd = delta(&["m", "s1", "s2"], &[("x", Speaker), ("y", Speaker), ("z", Speaker)], &["x"], &[]);
    let Ok(reply) = h.cmd_as(&ops(), cmd.clone(), Some("slot 2")) else { panic!("refused") };
    assert_eq!(reply, Reply::HandedOver { absent: vec![] });
    let out = h.drain();
    assert_eq!(h.room.seq(), seq + 1, "one transition");
    assert!(seqs(&out).iter().all(|s| *s == seq + 1));
    let reason = Reason::parse("slot 2").unwrap();
    assert_eq!(stage_causes(&out), vec![StageCause::Handover { by: ops(), reason: reason.clone() }], "one stage event");
    // Newcomers take the stage in list order, muted; `x` is promoted and made moderator at once.
    assert_eq!(h.stage_ids(), vec![("x".into(), Moderator), ("y".into(), Speaker), ("z".into(), Speaker)]);
    for who in ["x", "y", "z"] {
        assert!(!h.room.may_publish(&pid(who)), "{who} starts muted");
    }
    for who in ["m", "s1", "s2"] {
        assert_eq!(h.role(who), Some(Audience));
    }
    // The demoted speaker who was publishing stops; nobody new publishes.
    assert_eq!(publishes(&out), vec![("s1".into(), false)]);
    // Hands and invitations of the promoted are cleared: the queue is empty, the new moderator learns it.
    assert!(h.room.hand_queue().is_empty());
    assert!(!h.room.participant(&pid("y")).unwrap().invited);
    assert!(events(&out).iter().any(|e| matches!(e, Event::HandQueue { total: 0, .. })));
    // One `You` to each participant whose own state changed, and to nobody else.
    let mut changed: Vec<_> = yous(&out).into_iter().map(|(id, _)| id).collect();
    changed.sort();
    assert_eq!(changed, ["m", "s1", "s2", "x", "y", "z"]);
    let you = |who: &str| yous(&out).into_iter().find(|(id, _)| id == who).unwrap().1;
    assert_eq!((you("x").role, you("x").hand_position, you("x").muted), (Moderator, None, true));
    assert_eq!((you("y").role, you("y").invite), (Speaker, None));
    assert_eq!((you("s1").role, you("s1").muted), (Audience, true));
    // Reported once for the audit log, with the command and the reason.
    assert_eq!(h.moderated, vec![Output::Moderated { seq: seq + 1, by: ops(), command: cmd, reason }]);
    // The old moderator cannot moderate any more; the new one can.
    h.refused("m", C::Kick { target: pid("l") }, E::Forbidden("only moderators may do this"));
    h.ok("x", C::Mute { target: pid("y") });
}

#[test]
fn a_ceiling_violation_refuses_the_whole_handover() {
    let mut h = full();
    let forbidden = E::Forbidden("token does not allow that role");
    h.refused_as(&ops(), delta(&["s1"], &[("y", Speaker), ("l", Speaker)], &[], &[]), None, forbidden.clone());
    h.refused_as(&ops(), delta(&["s1"], &[("y", Moderator)], &[], &[]), None, forbidden.clone());
    h.refused_as(
        &ops(),
        delta(&["s1", "s2"], &[], &["s1", "y"], &[]),
        None,
        E::BadRequest("a participant is both demoted and promoted"),
    );
    h.refused_as(&ops(), delta(&["s1"], &[], &["y"], &[]), None, forbidden);
}

#[test]
fn stage_capacity_holds_after_the_whole_change() {
    let mut h = full();
    // Full: one more without anyone leaving is refused, whole.
    h.refused_as(&ops(), delta(&[], &[("y", Speaker)], &[], &[]), None, E::StageFull);
    h.refused_as(&ops(), delta(&[], &[], &["x"], &[]), None, E::StageFull);
    h.refused_as(&ops(), delta(&["s1"], &[("y", Speaker), ("z", Speaker)], &[], &[]), None, E::StageFull);
    // Demoting an audience member frees no seat.
    h.refused_as(&ops(), delta(&["l"], &[("y", Speaker)], &[], &[]), None, E::StageFull);
    // One out, one in fits; a role change on stage takes no seat.
    h.ok_as(&ops(), delta(&["s1"], &[("y", Speaker), ("m", Moderator)], &[], &[]), None);
    assert_eq!(h.stage_ids(), vec![("m".into(), Moderator), ("s2".into(), Speaker), ("y".into(), Speaker)]);
}

#[test]
fn absent_participants_are_skipped_and_reported() {
    let mut h = full();
    let seq = h.room.seq();
    let r = h.cmd_as(
        &ops(),
        delta(&["gone", "s1"], &[("late", Speaker), ("y", Speaker), ("gone", Speaker)], &[], &[]),
        None,
    );
    assert_eq!(r, Err(E::BadRequest("a participant is both demoted and promoted")), "validation sees absent ids too");
    let r = h.cmd_as(&ops(), delta(&["gone", "s1"], &[("late", Speaker), ("y", Speaker)], &["late"], &["gone"]), None);
    assert_eq!(r, Ok(Reply::HandedOver { absent: ids(&["gone", "late"]) }));
    h.drain();
    assert_eq!(h.room.seq(), seq + 1);
    assert_eq!(h.role("y"), Some(Speaker));
    assert_eq!(h.role("late"), None);
    // Nobody present: accepted as a no-op, still reporting who was skipped.
    let (seq, state) = (h.room.seq(), h.room.state());
    let r = h.cmd_as(&ops(), delta(&["gone"], &[("late", Speaker)], &[], &[]), None);
    assert_eq!(r, Ok(Reply::HandedOver { absent: ids(&["gone", "late"]) }));
    assert_eq!((h.room.seq(), h.room.state()), (seq, state));
    assert!(h.drain().is_empty() && h.moderated.len() == 1);
}

#[test]
fn malformed_handovers_are_bad_requests() {
    let mut h = full();
    let dup = E::BadRequest("duplicate participant in handover");
    h.refused_as(&ops(), delta(&[], &[], &[], &[]), None, E::BadRequest("a handover names at least one participant"));
    h.refused_as(
        &ops(),
        delta(&[], &[("y", Audience)], &[], &[]),
        None,
        E::BadRequest("handover roles must be speaker or moderator"),
    );
    h.refused_as(&ops(), delta(&["s1", "s1"], &[], &[], &[]), None, dup.clone());
    h.refused_as(&ops(), delta(&[], &[("y", Speaker), ("y", Speaker)], &[], &[]), None, dup.clone());
    h.refused_as(&ops(), delta(&[], &[], &["x", "x"], &[]), None, dup.clone());
    h.refused_as(&ops(), delta(&[], &[], &[], &["m", "m"]), None, dup);
    let both = E::BadRequest("a participant both gains and loses moderator rights");
    h.refused_as(&ops(), delta(&[], &[], &["x"], &["x"]), None, both.clone());
    h.refused_as(&ops(), delta(&[], &[("x", Moderator)], &[], &["x"]), None, both);
    h.refused_as(
        &ops(),
        delta(&["s1"], &[("s1", Speaker)], &[], &[]),
        None,
        E::BadRequest("a participant is both demoted and promoted"),
    );
}

#[test]
fn moderator_rights_rotate_and_roles_are_never_lowered_by_promote() {
    let mut h = full();
    // A moderator added from the audience takes the seat of the one demoted.
    h.ok_as(&ops(), delta(&["s1"], &[], &["x"], &[]), None);
    assert_eq!(h.stage_ids(), vec![("m".into(), Moderator), ("s2".into(), Speaker), ("x".into(), Moderator)]);
    h.ok("m", C::SetMuted { muted: false });
    // Promoting someone already on stage with a lower role changes nothing.
    let r = h.cmd_as(&ops(), delta(&[], &[("m", Speaker), ("s2", Speaker)], &[], &[]), None);
    assert_eq!(r, Ok(Reply::HandedOver { absent: vec![] }));
    assert!(h.drain().is_empty());
    // Removing rights keeps a moderator on stage as a speaker, mute state kept.
    let seq = h.room.seq();
    let out = h.ok_as(&ops(), delta(&[], &[], &[], &["m"]), None);
    assert_eq!(h.room.seq(), seq + 1);
    assert_eq!(stage_causes(&out), vec![StageCause::Handover { by: ops(), reason: None }]);
    assert_eq!((h.role("m"), h.role("x")), (Some(Speaker), Some(Moderator)));
    assert!(h.room.may_publish(&pid("m")), "a stayer keeps its mute state");
    assert!(publishes(&out).is_empty());
    // Rights back and forth in one step: `m` gains them, `x` loses them.
    h.ok_as(&ops(), delta(&[], &[("m", Moderator)], &[], &["x"]), None);
    assert_eq!((h.role("m"), h.role("x")), (Some(Moderator), Some(Speaker)));
    // Removed and demoted: to the audience, muted.
    let out = h.ok_as(&ops(), delta(&["m"], &[("y", Speaker)], &["x"], &["m"]), None);
    assert_eq!((h.role("m"), h.role("x"), h.role("y")), (Some(Audience), Some(Moderator), Some(Speaker)));
    assert_eq!(publishes(&out), vec![("m".into(), false)]);
}

#[test]
fn removing_the_last_moderator_runs_succession_or_is_a_no_op() {
    let mut h = full();
    // `m` is the only moderator and the only stage member whose token allows it: succession would undo it.
    let (seq, state) = (h.room.seq(), h.room.state());
    let r = h.cmd_as(&ops(), delta(&[], &[], &[], &["m"]), None);
    assert_eq!(r, Ok(Reply::HandedOver { absent: vec![] }));
    assert_eq!((h.room.seq(), h.room.state()), (seq, state));
    assert!(h.drain().is_empty() && h.moderated.is_empty());
    // With `x` coming on stage, removing `m` leaves the stage to succession: `m` is the longest-serving heir.
    let out = h.ok_as(&ops(), delta(&["s1"], &[("x", Speaker)], &[], &["m"]), None);
    assert_eq!(
        stage_causes(&out),
        vec![StageCause::Handover { by: ops(), reason: None }, StageCause::Succession(pid("m"))]
    );
    // Demoting the only moderator: the longest-serving speaker who may moderate takes over.
    let out = h.ok_as(&ops(), delta(&["m"], &[], &[], &[]), None);
    assert_eq!(
        stage_causes(&out),
        vec![StageCause::Handover { by: ops(), reason: None }, StageCause::Succession(pid("x"))]
    );
    assert_eq!(h.stage_ids(), vec![("s2".into(), Speaker), ("x".into(), Moderator)]);
}

#[test]
fn an_ended_room_refuses_a_handover() {
    let mut h = full();
    h.ok("m", C::EndRoom);
    h.refused_as(&ops(), delta(&["s1"], &[], &[], &[]), None, E::Ended);
}
