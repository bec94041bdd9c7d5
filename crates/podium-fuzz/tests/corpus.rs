//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`) through its target's function: the
//! fuzzers' smoke run on the stable toolchain, part of `bash tests/run`. A crash input found later is added to the
//! corpus, so it stays fixed.

use std::path::Path;
use std::time::Instant;

#[test]
fn replay_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, target) in podium_fuzz::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.map(|e| e.path()).unwrap_or_else(|e| panic!("{}: {e}", dir.display())))
            .collect();
        files.sort();
        assert!(files.len() >= 5, "{name}: only {} corpus files", files.len());
        let start = Instant::now();
        for f in &files {
            let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            target(&data);
        }
        eprintln!("{name}: {} inputs in {:?}", files.len(), start.elapsed());
    }
}
