//! Property tests: random schedules on several stages (overlaps refused at release), random shifts, a series
//! across the spring-forward night in Europe/Berlin, and random clocks (small steps, steps back, big jumps) with
//! random inputs and a mid-run release.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::Index;

use super::{H, M, T0, pid};
use crate::{
    Action, EmptyPolicy, GapRule, Item, Millis, Output, OverrunPolicy, Person, PersonId, Recurrence, ReleaseError,
    Releases, RunState, Schedule, Series, Session, SessionCode, SessionRole, SessionState, Shift, ShiftId, ShiftRole,
    SlotGuid, SlotStatus, Stage, StageId, StageRun, Summit,
};

const PEOPLE: usize = 6;
/// Schedules start here: noon UTC the day before Berlin springs forward.
const BASE: Millis = T0 - 12 * H;

#[derive(Clone, Debug)]
struct StageSpec {
    overrun: u8,
    empty: u8,
    dead_air_min: i64,
    always_on: bool,
    standby: Vec<usize>,
    reminders: bool,
}

#[derive(Clone, Debug)]
struct SlotSpec {
    stage: usize,
    start_min: i64,
    duration_min: i64,
    people: Vec<(usize, u8)>,
    is_break: bool,
    moved_min: i64,
    canceled: bool,
}

#[derive(Clone, Debug)]
struct ShiftSpec {
    stage: usize,
    person: usize,
    role: u8,
    start_min: i64,
    duration_min: i64,
}

#[derive(Clone, Debug)]
struct Spec {
    stages: Vec<StageSpec>,
    slots: Vec<SlotSpec>,
    shifts: Vec<ShiftSpec>,
    series: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Step(Millis),
    Jump(Millis),
    CheckIn(usize),
    /// One of the next slot's people, or a standby host.
    CheckInNext(Index),
    Speak,
    Start,
    End,
    Extend(Millis),
    Cancel(Index),
    Release,
}

fn stage_spec() -> impl Strategy<Value = StageSpec> {
    (
        0u8..3,
        0u8..4,
        prop_oneof![Just(0i64), 1i64..20],
        any::<bool>(),
        prop::collection::vec(0..PEOPLE, 0..3),
        any::<bool>(),
    )
        .prop_map(|(overrun, empty, dead_air_min, always_on, standby, reminders)| StageSpec {
            overrun,
            empty,
            dead_air_min,
            always_on,
            standby,
            reminders,
        })
}

fn slot_spec(stages: usize) -> impl Strategy<Value = SlotSpec> {
    (
        0..stages,
        0i64..(36 * 60),
        prop_oneof![5i64..90, Just(60)],
        prop::collection::vec((0..PEOPLE, 0u8..4), 0..4),
        prop::bool::weighted(0.15),
        prop_oneof![3 => Just(0i64), 1 => -120i64..120],
        prop::bool::weighted(0.1),
    )
        .prop_map(|(stage, start_min, duration_min, people, is_break, moved_min, canceled)| SlotSpec {
            stage,
            start_min: start_min / 5 * 5,
            duration_min,
            people,
            is_break,
            moved_min,
            canceled,
        })
}

fn shift_spec(stages: usize) -> impl Strategy<Value = ShiftSpec> {
    (0..stages, 0..PEOPLE, 0u8..3, 0i64..(3 * 24 * 60), 30i64..(10 * 60)).prop_map(
        |(stage, person, role, start_min, duration_min)| ShiftSpec { stage, person, role, start_min, duration_min },
    )
}

fn spec() -> impl Strategy<Value = Spec> {
    prop::collection::vec(stage_spec(), 1..4).prop_flat_map(|stages| {
        let n = stages.len();
        (
            Just(stages),
            prop::collection::vec(slot_spec(n), 0..24),
            prop::collection::vec(shift_spec(n), 0..8),
            any::<bool>(),
        )
            .prop_map(|(stages, slots, shifts, series)| Spec { stages, slots, shifts, series })
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (-10 * M..30 * M).prop_map(Op::Step),
        1 => prop_oneof![(0..3 * 24 * H).prop_map(Op::Jump), (-24 * H..0).prop_map(Op::Jump)],
        1 => (0..PEOPLE + 1).prop_map(Op::CheckIn),
        3 => any::<Index>().prop_map(Op::CheckInNext),
        2 => Just(Op::Speak),
        1 => Just(Op::Start),
        1 => Just(Op::End),
        1 => (0..2 * H).prop_map(Op::Extend),
        1 => any::<Index>().prop_map(Op::Cancel),
        1 => Just(Op::Release),
    ]
}

fn person(index: usize) -> PersonId {
    if index >= PEOPLE { pid("house") } else { pid(&format!("p{index}")) }
}

fn stage_id(index: usize) -> StageId {
    StageId::new(format!("s{index}")).expect("valid")
}

/// Releases until the WIP has no overlaps, removing the later slot of each refused pair.
fn release_clean(releases: &mut Releases, now: Millis) -> u64 {
    loop {
        match releases.release("r", "", now) {
            Ok(release) => return release.seq,
            Err(ReleaseError::Overlap(warnings)) => {
                assert!(!warnings.is_empty());
                for warning in warnings {
                    if let crate::Warning::StageOverlap { second, .. } = warning {
                        // Already removed by an earlier pair: fine.
                        let _ = releases.wip_mut().remove_slot(second);
                    }
                }
            }
            Err(other) => panic!("release refused: {other}"),
        }
    }
}

fn build(spec: &Spec) -> (Releases, u64, u64) {
    let mut schedule = Schedule::new(Summit::new("prop", "Prop", "Europe/Berlin").expect("valid"));
    for index in 0..=PEOPLE {
        schedule.put_person(Person::new(person(index), "someone").expect("valid")).expect("ok");
    }
    for (index, s) in spec.stages.iter().enumerate() {
        let mut stage = Stage::new(stage_id(index), &format!("room{index}")).expect("valid");
        stage.overrun = match s.overrun {
            0 => OverrunPolicy::HardStop,
            1 => OverrunPolicy::SoftStop { grace_ms: 5 * M },
            _ => OverrunPolicy::Cascade,
        };
        stage.empty = match s.empty {
            0 => EmptyPolicy::Filler { file: "f.opus".to_owned() },
            1 => EmptyPolicy::OpenMic,
            2 => EmptyPolicy::HouseHost { identity: person(PEOPLE) },
            _ => EmptyPolicy::Nothing,
        };
        stage.backstage_lead_ms = 90 * M;
        stage.checkin_deadline_ms = 10 * M;
        stage.dead_air_ms = s.dead_air_min * M;
        stage.always_on = s.always_on;
        stage.standby_hosts = s.standby.iter().map(|p| person(*p)).collect::<BTreeSet<_>>().into_iter().collect();
        if s.reminders {
            stage.reminder_offsets_ms = vec![15 * M, 0];
        }
        schedule.put_stage(stage).expect("valid");
    }
    let roles = [SessionRole::Host, SessionRole::CoHost, SessionRole::Speaker, SessionRole::Moderator];
    let mut guids = Vec::new();
    for (index, s) in spec.slots.iter().enumerate() {
        let start = BASE + s.start_min * M;
        let guid = if s.is_break {
            schedule.add_break(&format!("b{index}"), "break", &stage_id(s.stage), start, start + s.duration_min * M)
        } else {
            let mut people: BTreeMap<PersonId, SessionRole> = BTreeMap::new();
            for (p, role) in &s.people {
                people.entry(person(*p)).or_insert(roles[usize::from(*role)]);
            }
            let code = SessionCode::new(format!("c{index}")).expect("valid");
            let session =
                Session::new(code.clone(), "talk", s.duration_min * M, people.into_iter().collect()).expect("valid");
            schedule.add_session(session).expect("added");
            schedule.place(&code, &stage_id(s.stage), start)
        }
        .expect("placed");
        guids.push(guid);
    }
    if spec.series {
        let code = SessionCode::new("night").expect("valid");
        let mut session =
            Session::new(code, "night owls", 30 * M, vec![(person(0), SessionRole::Host)]).expect("valid");
        session.recurrence = Some(Recurrence {
            stage: stage_id(0),
            series: Series::new("2025-03-29T02:30", "FREQ=DAILY;COUNT=4").expect("valid"),
            gap_rule: GapRule::ShiftForward,
        });
        schedule.add_session(session).expect("added");
    }
    for (index, s) in spec.shifts.iter().enumerate() {
        let start = BASE + s.start_min * M;
        let role = [ShiftRole::Lead, ShiftRole::Mod, ShiftRole::Backup][usize::from(s.role)];
        let shift = Shift::new(
            ShiftId::new(format!("h{index}")).expect("valid"),
            stage_id(s.stage),
            person(s.person),
            role,
            start,
            start + s.duration_min * M,
        )
        .expect("valid");
        schedule.put_shift(shift).expect("added");
    }
    let mut releases = Releases::new(schedule);
    let first = release_clean(&mut releases, BASE - 2 * H);
    // The second release: moves and cancellations.
    for (index, s) in spec.slots.iter().enumerate() {
        let guid = guids[index];
        let Some(slot) = releases.wip().slots().get(&guid).cloned() else { continue };
        if s.moved_min != 0 {
            releases.wip_mut().move_slot(guid, &slot.stage, slot.start + s.moved_min * M).expect("moved");
        }
        if s.canceled && !s.is_break {
            let code = SessionCode::new(format!("c{index}")).expect("valid");
            releases.wip_mut().set_session_state(&code, SessionState::Canceled).expect("set");
        }
    }
    let second = release_clean(&mut releases, BASE - H);
    (releases, first, second)
}

type Log = (Vec<Output>, Vec<RunState>);

/// Runs every stage through `ops`, checking the invariants after every input; with `split`, the runs are
/// serialised to JSON and resumed from it before op `split`.
fn simulate(spec: &Spec, ops: &[Op], split: Option<usize>) -> Log {
    let (releases, first, second) = build(spec);
    let first = releases.get(first).expect("released");
    let second = releases.get(second).expect("released");
    let mut log = Vec::new();
    let mut states = Vec::new();
    for index in 0..spec.stages.len() {
        let plan = first.stage_plan(&stage_id(index)).expect("stage");
        plan.validate().expect("a release never has overlapping live slots");
        let mut clock = BASE - H;
        let mut run = StageRun::new(plan, clock).expect("valid plan");
        let mut checker = Checker::default();
        checker.check(&mut run, &mut log);
        for (step, op) in ops.iter().enumerate() {
            if split == Some(step) {
                let json = serde_json::to_string(run.state()).expect("serialises");
                run = StageRun::from_state(serde_json::from_str(&json).expect("deserialises")).expect("valid");
            }
            match op {
                Op::Step(ms) | Op::Jump(ms) => {
                    clock += ms;
                    run.handle_timeout(clock);
                }
                Op::CheckIn(p) => drop(run.handle_check_in(&person(*p), clock)),
                Op::CheckInNext(which) => {
                    let mut candidates: Vec<PersonId> = run.state().stage.standby_hosts.clone();
                    if let Some(next) = run.next() {
                        candidates.extend(next.people.iter().map(|(p, _)| p.clone()));
                    }
                    if !candidates.is_empty() {
                        let who = candidates[which.index(candidates.len())].clone();
                        drop(run.handle_check_in(&who, clock));
                    }
                }
                Op::Speak => run.handle_speaking(clock),
                Op::Start => drop(run.handle_start(clock)),
                Op::End => drop(run.handle_end(clock)),
                Op::Extend(ms) => drop(run.handle_extend(*ms, clock)),
                Op::Cancel(which) => {
                    if !run.slots().is_empty() {
                        let guid = run.slots()[which.index(run.slots().len())].guid;
                        drop(run.handle_cancel(guid, clock));
                    }
                }
                Op::Release => {
                    let plan = second.stage_plan(&stage_id(index)).expect("stage");
                    run.handle_release(plan, clock).expect("same stage");
                }
            }
            checker.check(&mut run, &mut log);
        }
        checker.finish(&run);
        states.push(run.state().clone());
    }
    (log, states)
}

#[derive(Default)]
struct Checker {
    seq: u64,
    last_at: Option<Millis>,
    current: Option<SlotGuid>,
    handed_to: BTreeMap<SlotGuid, Millis>,
}

impl Checker {
    fn check(&mut self, run: &mut StageRun, log: &mut Vec<Output>) {
        let now = run.state().now;
        while let Some(output) = run.poll_output() {
            assert_eq!(output.seq, self.seq + 1, "output seq");
            self.seq = output.seq;
            assert!(self.last_at.is_none_or(|last| last <= output.at), "outputs in time order");
            assert!(output.at <= now, "nothing before it is due");
            self.last_at = Some(output.at);
            if let Item::Action(Action::Handover(handover)) = &output.item {
                assert_eq!(handover.from, self.current, "a handover starts from the running slot");
                self.current = handover.to;
                if let Some(to) = handover.to {
                    assert!(self.handed_to.insert(to, output.at).is_none(), "one handover into a slot");
                }
            }
            log.push(output);
        }
        let active: Vec<_> = run.slots().iter().filter(|s| s.status == SlotStatus::Active).map(|s| s.guid).collect();
        assert!(active.len() <= 1, "never two active slots");
        assert_eq!(active.first().copied(), run.active().map(|s| s.guid));
        assert_eq!(self.current, run.active().map(|s| s.guid));
        for slot in run.slots() {
            if matches!(slot.status, SlotStatus::Scheduled | SlotStatus::Backstage) {
                assert!(slot.start > now, "no start skipped: {slot:?} at {now}");
            }
        }
    }

    fn finish(&self, run: &StageRun) {
        for slot in run.slots() {
            assert_eq!(slot.actual_start, self.handed_to.get(&slot.guid).copied(), "handed over iff it started");
            if slot.status == SlotStatus::Completed {
                assert!(slot.actual_start.is_some());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_schedules_and_clocks(spec in spec(), ops in prop::collection::vec(op(), 0..80), split in any::<Index>()) {
        let straight = simulate(&spec, &ops, None);
        prop_assert_eq!(&simulate(&spec, &ops, None), &straight, "replay is deterministic");
        let split = split.index(ops.len() + 1);
        prop_assert_eq!(&simulate(&spec, &ops, Some(split)), &straight, "a JSON round trip changes nothing");
    }
}
