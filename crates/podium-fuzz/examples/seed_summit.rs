//! Writes seed inputs for the `summit_schedule` target: the pretalx/frab fixture of `podium-summit` as it is (format
//! byte 0) and as Podium's JSON (format byte 1), the latter also with every session made a daily series.
//!
//! `cargo run -p podium-fuzz --example seed_summit -- fuzz/corpus`

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use podium_summit::{ImportOptions, export_podium_json, import_frab};

const FIXTURE: &str = include_str!("../../podium-summit/tests/fixtures/schedule-two-days.json");

fn main() {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into())).join("summit_schedule");
    std::fs::create_dir_all(&out).unwrap();
    let write = |name: &str, format: u8, text: &str| {
        let mut bytes = vec![format];
        bytes.extend_from_slice(text.as_bytes());
        std::fs::write(out.join(name), bytes).unwrap();
    };
    write("frab-two-days", 0, FIXTURE);
    let options = ImportOptions { summit_id: Some("fuzz".into()), ..ImportOptions::default() };
    let imported = import_frab(FIXTURE, &options).unwrap();
    write("podium-two-days", 1, &export_podium_json(&imported.schedule));
}
