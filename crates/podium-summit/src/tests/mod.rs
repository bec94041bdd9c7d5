//! Unit tests per rule, and property tests over random schedules and clocks.

use uuid::Uuid;

use crate::{
    Action, EmptyPolicy, Event, Item, Millis, Output, OverrunPolicy, PersonId, PlannedSlot, SessionRole, Shift,
    ShiftId, ShiftRole, Stage, StageId, StagePlan, StageRun,
};

mod import_ical;
mod props;
mod release;
mod rrule;
mod run;

const M: Millis = 60_000;
const H: Millis = 60 * M;
/// 2025-03-30T00:00:00Z: the night Europe/Berlin springs forward (02:00 CET → 03:00 CEST).
const T0: Millis = 1_743_292_800_000;

fn pid(id: &str) -> PersonId {
    PersonId::new(id).expect("valid id")
}

fn stage(id: &str) -> Stage {
    Stage::new(StageId::new(id).expect("valid id"), &format!("room-{id}")).expect("valid stage")
}

fn guid(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn slot(n: u128, start: Millis, end: Millis, people: &[(&str, SessionRole)]) -> PlannedSlot {
    PlannedSlot {
        guid: guid(n),
        start,
        end,
        is_break: false,
        title: format!("slot {n}"),
        people: people.iter().map(|(p, role)| (pid(p), *role)).collect(),
        canceled: false,
        record: true,
    }
}

fn shift(id: &str, stage: &Stage, person: &str, role: ShiftRole, start: Millis, end: Millis) -> Shift {
    Shift::new(ShiftId::new(id).expect("valid id"), stage.id.clone(), pid(person), role, start, end).expect("valid")
}

fn plan(stage: Stage, slots: Vec<PlannedSlot>, shifts: Vec<Shift>) -> StagePlan {
    StagePlan { release_seq: 1, stage, slots, shifts }
}

fn drain(run: &mut StageRun) -> Vec<Output> {
    std::iter::from_fn(|| run.poll_output()).collect()
}

fn actions(outputs: &[Output]) -> Vec<(Millis, Action)> {
    outputs
        .iter()
        .filter_map(|o| match &o.item {
            Item::Action(action) => Some((o.at, action.clone())),
            Item::Event(_) => None,
        })
        .collect()
}

fn events(outputs: &[Output]) -> Vec<(Millis, Event)> {
    outputs
        .iter()
        .filter_map(|o| match &o.item {
            Item::Event(event) => Some((o.at, event.clone())),
            Item::Action(_) => None,
        })
        .collect()
}

fn filler_stage(id: &str) -> Stage {
    let mut stage = stage(id);
    stage.empty = EmptyPolicy::Filler { file: "intermission.opus".to_owned() };
    stage.overrun = OverrunPolicy::HardStop;
    stage
}
