use super::{H, M, T0, actions, drain, events, filler_stage, guid, pid, plan, shift, slot, stage};
use crate::{
    Action, CancelReason, EmptyPolicy, Event, FallbackReason, Handover, OverrunPolicy, RunError, RunState,
    SessionRole::{CoHost, Host, Moderator, Speaker},
    ShiftRole, SlotStatus, StageRun,
};

fn handovers(run: &mut StageRun) -> Vec<(i64, Handover)> {
    actions(&drain(run))
        .into_iter()
        .filter_map(|(at, a)| match a {
            Action::Handover(h) => Some((at, h)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_slot_goes_backstage_then_on_stage_then_off() {
    let s = stage("main");
    let p = plan(s, vec![slot(1, T0, T0 + H, &[("alice", Host), ("bob", Speaker), ("mo", Moderator)])], vec![]);
    let mut run = StageRun::new(p, T0 - 2 * H).expect("valid");
    assert_eq!(events(&drain(&mut run)), vec![(T0 - 2 * H, Event::ScheduleReleased { seq: 1 })], "the release first");
    assert_eq!(run.poll_timeout(), Some(T0 - 10 * M));
    assert_eq!(run.handle_check_in(&pid("alice"), T0 - 20 * M), Err(RunError::NotExpected), "backstage not open");
    run.handle_timeout(T0 - 10 * M);
    let out = drain(&mut run);
    assert_eq!(
        actions(&out),
        vec![(T0 - 10 * M, Action::OpenBackstage { slot: guid(1), people: vec![pid("alice"), pid("bob"), pid("mo")] })]
    );
    assert_eq!(events(&out), vec![(T0 - 10 * M, Event::BackstageOpened { slot: guid(1) })]);
    for person in ["alice", "bob", "mo"] {
        run.handle_check_in(&pid(person), T0 - 8 * M).expect("expected");
    }
    run.handle_check_in(&pid("alice"), T0 - 7 * M).expect("again is a no-op");
    assert_eq!(drain(&mut run).len(), 3);
    run.handle_timeout(T0 - 5 * M);
    assert!(drain(&mut run).is_empty(), "everyone checked in: no no-show");
    run.handle_timeout(T0);
    let out = drain(&mut run);
    assert_eq!(
        actions(&out),
        vec![
            (
                T0,
                Action::Handover(Handover {
                    from: None,
                    to: Some(guid(1)),
                    demote: vec![],
                    promote: vec![pid("alice"), pid("bob"), pid("mo")],
                    moderators_add: vec![pid("alice"), pid("mo")],
                    moderators_remove: vec![],
                    record: Some(true),
                })
            ),
            (T0, Action::CloseBackstage { slot: guid(1) }),
        ]
    );
    assert_eq!(events(&out), vec![(T0, Event::SlotStarted { slot: guid(1) })]);
    assert_eq!(run.active().map(|s| s.status), Some(SlotStatus::Active));
    run.handle_timeout(T0 + H);
    let out = drain(&mut run);
    assert_eq!(
        actions(&out),
        vec![(
            T0 + H,
            Action::Handover(Handover {
                from: Some(guid(1)),
                to: None,
                demote: vec![pid("alice"), pid("bob"), pid("mo")],
                promote: vec![],
                moderators_add: vec![],
                moderators_remove: vec![pid("alice"), pid("mo")],
                record: None,
            })
        )]
    );
    assert_eq!(events(&out), vec![(T0 + H, Event::SlotEnded { slot: guid(1) })]);
    assert_eq!(run.slots()[0].status, SlotStatus::Completed);
    assert_eq!(run.poll_timeout(), None);
}

#[test]
fn back_to_back_slots_are_one_handover() {
    let s = stage("main");
    let p = plan(
        s,
        vec![slot(1, T0, T0 + H, &[("alice", Host), ("bob", Speaker)]), slot(2, T0 + H, T0 + 2 * H, &[("bob", Host)])],
        vec![],
    );
    let mut run = StageRun::new(p, T0 - H).expect("valid");
    run.handle_timeout(T0 - 10 * M);
    run.handle_check_in(&pid("alice"), T0 - 9 * M).expect("ok");
    run.handle_check_in(&pid("bob"), T0 - 9 * M).expect("ok");
    run.handle_timeout(T0 + 50 * M);
    run.handle_check_in(&pid("bob"), T0 + 51 * M).expect("bob checks in to his own slot's backstage");
    drain(&mut run);
    run.handle_timeout(T0 + H);
    let hs = handovers(&mut run);
    assert_eq!(hs.len(), 1);
    assert_eq!(
        hs[0].1,
        Handover {
            from: Some(guid(1)),
            to: Some(guid(2)),
            demote: vec![pid("alice")],
            promote: vec![],
            moderators_add: vec![pid("bob")],
            moderators_remove: vec![pid("alice")],
            record: Some(true),
        }
    );
}

#[test]
fn a_session_that_must_not_be_recorded_says_so_at_its_handover() {
    let s = stage("main");
    let quiet = crate::PlannedSlot { record: false, ..slot(2, T0 + H, T0 + 2 * H, &[("bob", Host)]) };
    let p = plan(s, vec![slot(1, T0, T0 + H, &[("alice", Host)]), quiet], vec![]);
    let mut run = StageRun::new(p, T0 - H).expect("valid");
    run.handle_timeout(T0 - 10 * M);
    run.handle_check_in(&pid("alice"), T0 - 9 * M).expect("ok");
    run.handle_timeout(T0);
    assert_eq!(handovers(&mut run).iter().map(|h| h.1.record).collect::<Vec<_>>(), [Some(true)]);
    run.handle_timeout(T0 + 50 * M);
    run.handle_check_in(&pid("bob"), T0 + 51 * M).expect("ok");
    run.handle_timeout(T0 + H);
    assert_eq!(handovers(&mut run).iter().map(|h| h.1.record).collect::<Vec<_>>(), [Some(false)], "bob's session");
    run.handle_timeout(T0 + 2 * H);
    assert_eq!(handovers(&mut run).iter().map(|h| h.1.record).collect::<Vec<_>>(), [None], "nobody incoming");
}

#[test]
fn no_show_is_substituted_by_a_checked_in_standby_host() {
    let mut s = filler_stage("main");
    s.standby_hosts = vec![pid("sam"), pid("sue")];
    let p = plan(s, vec![slot(1, T0, T0 + H, &[("alice", Host), ("bob", Speaker)])], vec![]);
    let mut run = StageRun::new(p, T0 - H).expect("valid");
    run.handle_timeout(T0 - 10 * M);
    run.handle_check_in(&pid("bob"), T0 - 9 * M).expect("ok");
    run.handle_check_in(&pid("sue"), T0 - 9 * M).expect("standby checks in");
    drain(&mut run);
    run.handle_timeout(T0 - 5 * M);
    assert_eq!(events(&drain(&mut run)), vec![(T0 - 5 * M, Event::NoShow { slot: guid(1), person: pid("alice") })]);
    run.handle_timeout(T0);
    let out = drain(&mut run);
    let Some((_, Action::Handover(h))) = actions(&out).into_iter().next() else { panic!("handover first") };
    assert_eq!(h.promote, vec![pid("bob"), pid("sue")]);
    assert_eq!(h.moderators_add, vec![pid("sue")]);
    assert!(events(&out).contains(&(T0, Event::Substituted { slot: guid(1), substitute: pid("sue") })));
    assert!(!actions(&out).iter().any(|(_, a)| matches!(a, Action::StartFiller { .. })));
    // Alice turns up late: on stage at once.
    run.handle_check_in(&pid("alice"), T0 + 2 * M).expect("late");
    let out = drain(&mut run);
    assert!(
        actions(&out).contains(&(T0 + 2 * M, Action::Promote { slot: guid(1), person: pid("alice"), moderator: true }))
    );
}

#[test]
fn no_show_without_standby_runs_the_filler_until_someone_speaks() {
    let p = plan(filler_stage("main"), vec![slot(1, T0, T0 + H, &[("alice", Host)])], vec![]);
    let mut run = StageRun::new(p, T0 - H).expect("valid");
    run.handle_timeout(T0);
    let out = drain(&mut run);
    assert!(actions(&out).contains(&(T0, Action::StartFiller { file: "intermission.opus".to_owned() })));
    assert!(events(&out).contains(&(T0, Event::Fallback { slot: Some(guid(1)), reason: FallbackReason::NoShow })));
    run.handle_check_in(&pid("alice"), T0 + M).expect("late");
    drain(&mut run);
    run.handle_speaking(T0 + 2 * M);
    assert_eq!(actions(&drain(&mut run)), vec![(T0 + 2 * M, Action::StopFiller)]);
}

#[test]
fn dead_air_runs_the_filler_and_speaking_stops_it() {
    let mut s = filler_stage("main");
    s.dead_air_ms = 30_000;
    let p = plan(s, vec![slot(1, T0, T0 + H, &[("alice", Host)])], vec![]);
    let mut run = StageRun::new(p, T0 - H).expect("valid");
    run.handle_timeout(T0 - 10 * M);
    run.handle_check_in(&pid("alice"), T0 - 9 * M).expect("ok");
    run.handle_timeout(T0 + 20_000);
    run.handle_speaking(T0 + 20_000);
    drain(&mut run);
    assert_eq!(run.poll_timeout(), Some(T0 + 50_000));
    run.handle_timeout(T0 + 50_000);
    let out = drain(&mut run);
    assert_eq!(actions(&out), vec![(T0 + 50_000, Action::StartFiller { file: "intermission.opus".to_owned() })]);
    assert_eq!(
        events(&out),
        vec![(T0 + 50_000, Event::Fallback { slot: Some(guid(1)), reason: FallbackReason::DeadAir })]
    );
    run.handle_timeout(T0 + 10 * M);
    assert!(drain(&mut run).is_empty(), "the filler runs once per silence");
    run.handle_speaking(T0 + 11 * M);
    assert_eq!(actions(&drain(&mut run)), vec![(T0 + 11 * M, Action::StopFiller)]);
    assert_eq!(run.poll_timeout(), Some(T0 + 11 * M + 30_000));
}

#[test]
fn an_always_on_stage_is_watched_between_slots_and_never_closed() {
    let mut s = stage("main");
    s.always_on = true;
    s.dead_air_ms = M;
    s.empty = EmptyPolicy::HouseHost { identity: pid("house") };
    let p = plan(s, vec![slot(1, T0, T0 + H, &[("alice", Host)])], vec![]);
    let mut run = StageRun::new(p, T0 - 30 * M).expect("valid");
    run.handle_timeout(T0 - 29 * M);
    assert_eq!(actions(&drain(&mut run)), vec![(T0 - 29 * M, Action::CallHouseHost { identity: pid("house") })]);
    run.handle_timeout(T0 - 10 * M);
    run.handle_check_in(&pid("alice"), T0 - 9 * M).expect("ok");
    drain(&mut run);
    run.handle_timeout(T0);
    let hs = handovers(&mut run);
    assert_eq!(hs[0].1.demote, vec![pid("house")], "the house host leaves when the slot takes the stage");
    assert_eq!(hs[0].1.promote, vec![pid("alice")]);
}

#[test]
fn open_mic_closes_at_the_next_handover() {
    let mut s = stage("main");
    s.dead_air_ms = M;
    s.empty = EmptyPolicy::OpenMic;
    let p =
        plan(s, vec![slot(1, T0, T0 + H, &[("alice", Host)]), slot(2, T0 + H, T0 + 2 * H, &[("bob", Host)])], vec![]);
    let mut run = StageRun::new(p, T0 - 30 * M).expect("valid");
    run.handle_timeout(T0 - 10 * M);
    run.handle_check_in(&pid("alice"), T0 - 9 * M).expect("ok");
    run.handle_timeout(T0 + 50 * M);
    run.handle_check_in(&pid("bob"), T0 + 51 * M).expect("ok");
    let out = drain(&mut run);
    assert!(actions(&out).contains(&(T0 + M, Action::OpenMic)));
    run.handle_timeout(T0 + H);
    let out = actions(&drain(&mut run));
    assert!(matches!(out[0].1, Action::Handover(_)));
    assert!(out.contains(&(T0 + H, Action::CloseMic)));
}

#[test]
fn hard_stop_extend_only_takes_free_time() {
    let p = plan(stage("main"), vec![slot(1, T0, T0 + H, &[]), slot(2, T0 + 90 * M, T0 + 2 * H, &[])], vec![]);
    let mut run = StageRun::new(p, T0).expect("valid");
    drain(&mut run);
    assert_eq!(run.handle_extend(10 * M, T0 + M), Ok(T0 + 70 * M));
    assert_eq!(run.handle_extend(H, T0 + M), Ok(T0 + 90 * M), "clamped at the next start");
    assert_eq!(run.handle_extend(-1, T0 + M), Err(RunError::BadExtension));
    run.handle_timeout(T0 + 90 * M);
    let hs = handovers(&mut run);
    assert_eq!(hs.len(), 1);
    assert_eq!((hs[0].0, hs[0].1.from, hs[0].1.to), (T0 + 90 * M, Some(guid(1)), Some(guid(2))));
}

#[test]
fn soft_stop_overruns_into_free_time_only() {
    let mut s = stage("main");
    s.overrun = OverrunPolicy::SoftStop { grace_ms: 10 * M };
    let p = plan(
        s,
        vec![slot(1, T0, T0 + H, &[]), slot(2, T0 + 65 * M, T0 + 2 * H, &[]), slot(3, T0 + 3 * H, T0 + 4 * H, &[])],
        vec![],
    );
    let mut run = StageRun::new(p, T0).expect("valid");
    drain(&mut run);
    run.handle_timeout(T0 + H);
    let overruns: Vec<_> =
        events(&drain(&mut run)).into_iter().filter(|(_, e)| matches!(e, Event::SlotOverrun { .. })).collect();
    assert_eq!(overruns, vec![(T0 + H, Event::SlotOverrun { slot: guid(1), until: T0 + 70 * M })]);
    run.handle_timeout(T0 + 65 * M);
    let hs = handovers(&mut run);
    assert_eq!(
        (hs[0].0, hs[0].1.from, hs[0].1.to),
        (T0 + 65 * M, Some(guid(1)), Some(guid(2))),
        "the next slot cuts it"
    );
    run.handle_timeout(T0 + 2 * H);
    drain(&mut run);
    run.handle_timeout(T0 + 2 * H + 10 * M);
    let hs = handovers(&mut run);
    assert_eq!((hs[0].0, hs[0].1.from, hs[0].1.to), (T0 + 130 * M, Some(guid(2)), None), "ends at end + grace");
    assert_eq!(run.handle_end(T0 + 2 * H + 11 * M), Err(RunError::NotActive));
}

#[test]
fn cascade_pushes_later_slots_until_a_break_absorbs_it() {
    let mut s = stage("main");
    s.overrun = OverrunPolicy::Cascade;
    let mut lunch = slot(3, T0 + 2 * H, T0 + 3 * H, &[]);
    lunch.is_break = true;
    let mut coffee = slot(5, T0 + 4 * H, T0 + 4 * H + 10 * M, &[]);
    coffee.is_break = true;
    let p = plan(
        s,
        vec![
            slot(1, T0, T0 + H, &[]),
            slot(2, T0 + H, T0 + 2 * H, &[]),
            lunch,
            slot(4, T0 + 3 * H, T0 + 4 * H, &[]),
            coffee,
            slot(6, T0 + 4 * H + 10 * M, T0 + 5 * H, &[]),
        ],
        vec![],
    );
    let mut run = StageRun::new(p, T0).expect("valid");
    drain(&mut run);
    assert_eq!(run.handle_extend(20 * M, T0 + 50 * M), Ok(T0 + 80 * M));
    let evs = events(&drain(&mut run));
    assert!(evs.contains(&(T0 + 50 * M, Event::SlotOverrun { slot: guid(1), until: T0 + 80 * M })));
    assert!(evs.contains(&(T0 + 50 * M, Event::SlotMoved { slot: guid(2), start: T0 + 80 * M, end: T0 + 140 * M })));
    assert!(evs.contains(&(T0 + 50 * M, Event::SlotMoved { slot: guid(3), start: T0 + 140 * M, end: T0 + 3 * H })));
    let starts: Vec<_> = run.slots().iter().map(|s| (s.guid, s.start)).collect();
    assert!(starts.contains(&(guid(4), T0 + 3 * H)), "the lunch break absorbed it");
    // The next session overruns by 15 minutes: the 10-minute coffee break is swallowed and the rest moves.
    run.handle_timeout(T0 + 3 * H);
    drain(&mut run);
    run.handle_extend(15 * M, T0 + 3 * H + M).expect("active");
    let evs = events(&drain(&mut run));
    assert!(evs.contains(&(T0 + 3 * H + M, Event::SlotCanceled { slot: guid(5), reason: CancelReason::Absorbed })));
    assert!(evs.contains(&(
        T0 + 3 * H + M,
        Event::SlotMoved { slot: guid(6), start: T0 + 4 * H + 15 * M, end: T0 + 5 * H + 5 * M }
    )));
}

#[test]
fn shifts_grant_and_revoke_and_page_backups() {
    let s = stage("main");
    let shifts = vec![
        shift("a1", &s, "ann", ShiftRole::Lead, T0, T0 + 8 * H),
        shift("a2", &s, "ann", ShiftRole::Lead, T0 + 8 * H, T0 + 16 * H),
        shift("m1", &s, "max", ShiftRole::Mod, T0 + 4 * H, T0 + 12 * H),
        shift("b1", &s, "bea", ShiftRole::Backup, T0, T0 + 12 * H),
    ];
    let mut run = StageRun::new(plan(s, vec![], shifts), T0 - H).expect("valid");
    run.handle_check_in(&pid("ann"), T0 - 5 * M).expect("opens with the backstage lead");
    assert_eq!(run.handle_check_in(&pid("max"), T0 - 1), Err(RunError::NotExpected));
    drain(&mut run);
    run.handle_timeout(T0 + 4 * H);
    let out = drain(&mut run);
    let acts = actions(&out);
    assert!(acts.contains(&(T0, Action::GrantModerator { person: pid("ann") })));
    assert!(acts.contains(&(T0 + 4 * H, Action::GrantModerator { person: pid("max") })));
    assert!(events(&out).contains(&(
        T0 + 4 * H,
        Event::ShiftMissed {
            shift: crate::ShiftId::new("m1").expect("ok"),
            person: pid("max"),
            backups: vec![pid("bea")]
        }
    )));
    run.handle_timeout(T0 + 16 * H);
    let acts = actions(&drain(&mut run));
    assert!(!acts.contains(&(T0 + 8 * H, Action::RevokeModerator { person: pid("ann") })), "back-to-back shifts");
    assert!(!acts.contains(&(T0 + 8 * H, Action::GrantModerator { person: pid("ann") })));
    assert!(acts.contains(&(T0 + 12 * H, Action::RevokeModerator { person: pid("max") })));
    assert!(acts.contains(&(T0 + 16 * H, Action::RevokeModerator { person: pid("ann") })));
}

#[test]
fn a_shift_moderator_in_a_session_is_never_demoted_by_a_handover() {
    let s = stage("main");
    let shifts = vec![shift("a1", &s, "ann", ShiftRole::Lead, T0 - H, T0 + 3 * H)];
    let p = plan(s, vec![slot(1, T0, T0 + H, &[("ann", CoHost), ("bob", Host)])], shifts);
    let mut run = StageRun::new(p, T0 - 2 * H).expect("valid");
    run.handle_timeout(T0 - 10 * M);
    run.handle_check_in(&pid("ann"), T0 - 9 * M).expect("ok");
    run.handle_check_in(&pid("bob"), T0 - 9 * M).expect("ok");
    run.handle_timeout(T0 + H);
    let hs = handovers(&mut run);
    assert_eq!(hs[0].1.moderators_add, vec![pid("bob")]);
    assert_eq!(hs[1].1.demote, vec![pid("bob")]);
    assert_eq!(hs[1].1.moderators_remove, vec![pid("bob")]);
}

#[test]
fn reminders_at_the_stage_offsets() {
    let mut s = stage("main");
    s.reminder_offsets_ms = vec![5 * M, 30 * M, 0];
    let mut run = StageRun::new(plan(s, vec![slot(1, T0, T0 + H, &[])], vec![]), T0 - H).expect("valid");
    run.handle_timeout(T0);
    let reminders: Vec<_> =
        actions(&drain(&mut run)).into_iter().filter(|(_, a)| matches!(a, Action::Remind { .. })).collect();
    assert_eq!(
        reminders,
        vec![
            (T0 - 30 * M, Action::Remind { slot: guid(1), offset_ms: 30 * M }),
            (T0 - 5 * M, Action::Remind { slot: guid(1), offset_ms: 5 * M }),
            (T0, Action::Remind { slot: guid(1), offset_ms: 0 }),
        ]
    );
}

#[test]
fn the_clock_never_goes_back() {
    let mut run = StageRun::new(plan(stage("main"), vec![slot(1, T0, T0 + H, &[])], vec![]), T0 - H).expect("ok");
    run.handle_timeout(T0 + M);
    let before = drain(&mut run);
    assert_eq!(handovers_in(&before), 1);
    run.handle_timeout(T0 - 2 * H);
    assert!(drain(&mut run).is_empty());
    assert_eq!(run.state().now, T0 + M);
    run.handle_speaking(T0 - H);
    assert_eq!(run.state().last_heard, T0 + M, "a stale report counts at the latest now");
}

fn handovers_in(outputs: &[crate::Output]) -> usize {
    actions(outputs).iter().filter(|(_, a)| matches!(a, Action::Handover(_))).count()
}

#[test]
fn a_big_jump_runs_every_transition_in_order() {
    let p = plan(
        stage("main"),
        vec![slot(1, T0, T0 + H, &[("a", Host)]), slot(2, T0 + 2 * H, T0 + 3 * H, &[("b", Host)])],
        vec![],
    );
    let mut run = StageRun::new(p, T0 - H).expect("ok");
    run.handle_timeout(T0 + 10 * H);
    let out = drain(&mut run);
    assert!(out.windows(2).all(|w| w[0].at <= w[1].at && w[0].seq + 1 == w[1].seq));
    let hs: Vec<_> = actions(&out)
        .into_iter()
        .filter_map(|(at, a)| match a {
            Action::Handover(h) => Some((at, h.from, h.to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        hs,
        vec![
            (T0, None, Some(guid(1))),
            (T0 + H, Some(guid(1)), None),
            (T0 + 2 * H, None, Some(guid(2))),
            (T0 + 3 * H, Some(guid(2)), None)
        ]
    );
    assert!(events(&out).contains(&(T0 - 5 * M, Event::NoShow { slot: guid(1), person: pid("a") })));
    assert!(run.slots().iter().all(|s| s.status == SlotStatus::Completed));
}

#[test]
fn manual_start_end_and_cancel() {
    let p = plan(
        stage("main"),
        vec![slot(1, T0, T0 + H, &[]), slot(2, T0 + H, T0 + 2 * H, &[]), slot(3, T0 + 2 * H, T0 + 3 * H, &[])],
        vec![],
    );
    let mut run = StageRun::new(p, T0 - H).expect("ok");
    assert_eq!(run.handle_end(T0 - H), Err(RunError::NotActive));
    assert_eq!(run.handle_start(T0 - 30 * M), Ok(guid(1)));
    let out = drain(&mut run);
    assert!(events(&out).contains(&(T0 - 30 * M, Event::BackstageOpened { slot: guid(1) })), "passes backstage");
    assert_eq!(run.active().map(|s| (s.guid, s.start)), Some((guid(1), T0 - 30 * M)));
    assert_eq!(run.handle_end(T0 + 10 * M), Ok(guid(1)));
    assert_eq!(run.handle_cancel(guid(2), T0 + 20 * M), Ok(()));
    assert_eq!(run.handle_cancel(guid(2), T0 + 20 * M), Err(RunError::Over(guid(2))));
    assert_eq!(run.handle_cancel(guid(9), T0 + 20 * M), Err(RunError::NoSlot(guid(9))));
    run.handle_timeout(T0 + 2 * H + M);
    drain(&mut run);
    assert_eq!(run.active().map(|s| s.guid), Some(guid(3)));
    run.handle_cancel(guid(3), T0 + 2 * H + 2 * M).expect("active can be canceled");
    let out = drain(&mut run);
    assert!(
        events(&out)
            .contains(&(T0 + 2 * H + 2 * M, Event::SlotCanceled { slot: guid(3), reason: CancelReason::Manual }))
    );
    assert_eq!(handovers_in(&out), 1);
    assert!(run.active().is_none());
}

#[test]
fn a_new_release_mid_run_keeps_the_running_slot() {
    let s = stage("main");
    let p1 = plan(
        s.clone(),
        vec![slot(1, T0, T0 + H, &[]), slot(2, T0 + H, T0 + 2 * H, &[]), slot(3, T0 + 2 * H, T0 + 3 * H, &[])],
        vec![],
    );
    let mut run = StageRun::new(p1, T0 - H).expect("ok");
    run.handle_timeout(T0 + 30 * M);
    drain(&mut run);
    // Release 2: slot 1 runs 10 minutes longer, slot 2 moves, slot 3 is gone, slot 4 is new.
    let mut p2 = plan(
        s,
        vec![
            slot(1, T0, T0 + 70 * M, &[]),
            slot(2, T0 + 90 * M, T0 + 2 * H, &[]),
            slot(4, T0 + 3 * H, T0 + 4 * H, &[]),
        ],
        vec![],
    );
    p2.release_seq = 2;
    run.handle_release(p2, T0 + 31 * M).expect("same stage");
    let out = drain(&mut run);
    assert!(
        events(&out).contains(&(T0 + 31 * M, Event::SlotCanceled { slot: guid(3), reason: CancelReason::Release }))
    );
    assert!(events(&out).contains(&(T0 + 31 * M, Event::ScheduleReleased { seq: 2 })));
    assert_eq!(run.active().map(|s| (s.guid, s.end)), Some((guid(1), T0 + 70 * M)));
    assert_eq!(run.release_seq(), 2);
    run.handle_timeout(T0 + 5 * H);
    let hs: Vec<_> = actions(&drain(&mut run))
        .into_iter()
        .filter_map(|(at, a)| match a {
            Action::Handover(h) => Some((at, h.to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        hs,
        vec![
            (T0 + 70 * M, None),
            (T0 + 90 * M, Some(guid(2))),
            (T0 + 2 * H, None),
            (T0 + 3 * H, Some(guid(4))),
            (T0 + 4 * H, None)
        ]
    );
    let other = plan(stage("other"), vec![], vec![]);
    assert_eq!(run.handle_release(other, T0 + 5 * H), Err(RunError::WrongStage));
}

#[test]
fn state_round_trips_through_json() {
    let mut s = filler_stage("main");
    s.dead_air_ms = M;
    let p = plan(s, vec![slot(1, T0, T0 + H, &[("alice", Host)]), slot(2, T0 + H, T0 + 2 * H, &[])], vec![]);
    let mut run = StageRun::new(p, T0 - H).expect("ok");
    run.handle_timeout(T0 - 10 * M);
    run.handle_check_in(&pid("alice"), T0 - 9 * M).expect("ok");
    run.handle_timeout(T0 + 5 * M);
    drain(&mut run);
    let json = serde_json::to_string(run.state()).expect("serialises");
    let state: RunState = serde_json::from_str(&json).expect("deserialises");
    let mut resumed = StageRun::from_state(state).expect("valid");
    assert_eq!(resumed.state(), run.state());
    run.handle_timeout(T0 + 3 * H);
    resumed.handle_timeout(T0 + 3 * H);
    assert_eq!(drain(&mut run), drain(&mut resumed));
    assert_eq!(resumed.state(), run.state());
}

#[test]
fn from_state_refuses_broken_states() {
    let mut run = StageRun::new(plan(stage("main"), vec![slot(1, T0, T0 + H, &[])], vec![]), T0 + M).expect("ok");
    let mut state = run.state().clone();
    state.active = None;
    assert_eq!(StageRun::from_state(state).map(drop).err(), Some(RunError::BadState("active slot")));
    let mut state = run.state().clone();
    state.cursor = state.now + 1;
    assert!(StageRun::from_state(state).is_err());
    drain(&mut run);
}

#[test]
fn plans_are_validated() {
    let overlapping =
        plan(stage("main"), vec![slot(1, T0, T0 + H, &[]), slot(2, T0 + 30 * M, T0 + 2 * H, &[])], vec![]);
    assert!(StageRun::new(overlapping, T0).is_err());
    let duplicate = plan(stage("main"), vec![slot(1, T0, T0 + H, &[]), slot(1, T0 + H, T0 + 2 * H, &[])], vec![]);
    assert!(StageRun::new(duplicate, T0).is_err());
    let empty = plan(stage("main"), vec![slot(1, T0, T0, &[])], vec![]);
    assert!(StageRun::new(empty, T0).is_err());
}
