//! Summits on the hub: the scheduler runner, its admin API, and what stage rooms do for it.
//!
//! Design and invariants are in the submodules' docs; the pure rules are `podium_summit`.

mod store;

pub(crate) use store::Summits;

/// The backstage room of a stage room.
pub(crate) fn backstage_room(stage_room: &str) -> String {
    format!("{stage_room}.backstage")
}
