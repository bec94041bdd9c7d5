//! `podium summit` against a real hub: a `podium serve` process (in-memory store, an admin API key) driven by the
//! built `podium` binary. A Podium JSON schedule made here with `podium_summit` is imported and released; `status`
//! shows the stage once the hub runs it, `action ... start` starts the first slot, `calendar` prints one VEVENT per
//! slot, a second release after moving a slot shows it as `moved`, an overlap is refused (`conflict`, exit 1), and a
//! rollback releases the first schedule again. A pretalx/frab file (the podium-summit fixture) is imported too.
//! Also `--json`, the format detection's refusal and the exit codes of a missing summit and bad arguments.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use podium_summit::{
    Person, PersonId, Schedule, Session, SessionCode, SessionRole, SlotGuid, Stage, StageId, Summit, export_podium_json,
};
use serde_json::Value;

const SECRET: &str = "summit-cli-test-secret";
const ADMIN_KEY: &str = "pk_summit_cli_admin_0123456789";

struct Hub {
    child: Child,
    /// `host:port`.
    addr: String,
}

impl Hub {
    fn start() -> Self {
        let keys = format!(r#"[{{name="ops",sha256="{}",scope="admin"}}]"#, podium_hub::admin_key_hash(ADMIN_KEY));
        let mut child = Command::new(env!("CARGO_BIN_EXE_podium"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("PODIUM_CONFIG")
            .env("PODIUM_AUTH__SECRET", SECRET)
            .env("PODIUM_MEDIA__ENABLED", "false")
            .env("PODIUM_ADMIN__KEYS", keys)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start podium serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                let rest = l.strip_prefix("Podium is listening: ws://")?;
                Some(rest.split('/').next().unwrap_or_default().to_owned())
            })
            .expect("podium serve prints its address");
        // Keep reading: the hub must not write into a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, addr }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `podium <args>` against the hub with the admin key (from the environment, as an operator would set it).
fn podium(hub: &Hub, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_podium"))
        .args(args)
        .env_remove("PODIUM_CONFIG")
        .env("PODIUM_URL", format!("http://{}", hub.addr))
        .env("PODIUM_ADMIN_KEY", ADMIN_KEY)
        .output()
        .expect("run podium");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    eprintln!("$ podium {}\n{}{}[exit {}]", args.join(" "), run.stdout, run.stderr, run.code);
    run
}

fn ok(run: &Run) -> &str {
    assert_eq!(run.code, 0, "failed: {}", run.stderr);
    &run.stdout
}

const SUMMIT: &str = "cli-summit";
const MINUTE: i64 = 60_000;

/// The test's schedule: stage `main`, "Opening" (ann hosts) at `t0` for 30 min and "Keynote" (bob hosts) at
/// `keynote`.
fn schedule(t0: i64, keynote: i64) -> (Schedule, SlotGuid, SlotGuid) {
    let mut s = Schedule::new(Summit::new(SUMMIT, "CLI Summit", "Europe/Berlin").unwrap());
    let main = StageId::new("main").unwrap();
    for (id, name) in [("ann", "Ann"), ("bob", "Bob")] {
        s.put_person(Person::new(PersonId::new(id).unwrap(), name).unwrap()).unwrap();
    }
    s.put_stage(Stage::new(main.clone(), "cli-main").unwrap()).unwrap();
    let mut place = |code: &str, title: &str, host: &str, start: i64| {
        let code = SessionCode::new(code).unwrap();
        let people = vec![(PersonId::new(host).unwrap(), SessionRole::Host)];
        s.add_session(Session::new(code.clone(), title, 30 * MINUTE, people).unwrap()).unwrap();
        s.place(&code, &main, start).unwrap()
    };
    let opening = place("opening", "Opening", "ann", t0);
    let keynote_slot = place("keynote", "Keynote", "bob", keynote);
    (s, opening, keynote_slot)
}

fn write(name: &str, text: &str) -> String {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("summit-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn organisers_run_a_summit_from_the_command_line() {
    let hub = Hub::start();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    // Two hours ahead, on the minute: nothing starts by itself during the test.
    let t0 = (now / MINUTE + 120) * MINUTE;

    assert_eq!(ok(&podium(&hub, &["summit", "list"])).trim(), "no summits");
    // Exit 4: no such summit.
    let run = podium(&hub, &["summit", "status", SUMMIT]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.starts_with("error: ") && run.stderr.contains("not_found"), "{}", run.stderr);

    // Import a Podium JSON schedule (detected from its `format`).
    let (first, opening, keynote) = schedule(t0, t0 + 60 * MINUTE);
    let file = write("v1.json", &export_podium_json(&first));
    let run = podium(&hub, &["summit", "import", SUMMIT, &file]);
    let out = ok(&run);
    assert!(out.contains("imported summit cli-summit: schedule version"), "{out}");
    assert!(out.contains("1 stages, 2 sessions, 2 slots, 2 people, 0 shifts"), "{out}");
    // A file that is neither format: exit 2, nothing sent.
    let bad = write("bad.json", r#"{"hello": "world"}"#);
    let run = podium(&hub, &["summit", "import", SUMMIT, &bad]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("give --format"), "{}", run.stderr);

    // Release 1: both slots are new.
    let run = podium(&hub, &["summit", "release", SUMMIT, "--comment", "first schedule"]);
    let out = ok(&run);
    assert!(out.contains("release 1 \"v1\" (2 slots)"), "{out}");
    assert!(out.contains("new 2, canceled 0, moved 0, changed 0"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("new") && l.contains(&opening.to_string()) && l.contains("Opening")));

    let list = ok(&podium(&hub, &["summit", "list"])).to_owned();
    let line = list.lines().find(|l| l.starts_with(SUMMIT)).unwrap_or_else(|| panic!("{list}"));
    assert!(line.contains("CLI Summit") && line.contains("Europe/Berlin"), "{line}");
    let listed: Value = serde_json::from_str(ok(&podium(&hub, &["summit", "list", "--json"]))).unwrap();
    assert_eq!(listed[0]["id"], SUMMIT);
    assert_eq!(listed[0]["release"], 1);

    // The hub takes the summit's lease and records the stage's run.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let run = podium(&hub, &["summit", "status", SUMMIT]);
        if ok(&run).contains("stage main:") {
            break run.stdout;
        }
        assert!(Instant::now() < deadline, "the stage never ran: {}", run.stdout);
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.contains("room cli-main, backstage cli-main.backstage, release 1"), "{status}");
    assert!(status.contains("times:    UTC"), "{status}");
    let row = status.lines().find(|l| l.contains("Opening")).unwrap();
    assert!(row.starts_with("scheduled") && row.ends_with(&opening.to_string()), "{row}");
    assert!(!status.lines().any(|l| l.starts_with("runner:") && l.contains("no hub")), "{status}");

    // Actions: bob cannot check in two hours early (the runner refuses: conflict, exit 1); start the next slot
    // now, then ann arrives late and checks in.
    let run = podium(&hub, &["summit", "action", SUMMIT, "main", "check-in", "bob"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("(conflict, HTTP 409)"), "{}", run.stderr);
    let run = podium(&hub, &["summit", "action", SUMMIT, "main", "start"]);
    assert_eq!(ok(&run).trim(), format!("started on stage main: slot {opening}"));
    let run = podium(&hub, &["summit", "action", SUMMIT, "main", "check-in", "ann"]);
    assert_eq!(ok(&run).trim(), "checked in ann on stage main");
    let run = podium(&hub, &["summit", "action", SUMMIT, "main", "extend", "10"]);
    assert!(ok(&run).contains("ends "), "{}", run.stdout);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = podium(&hub, &["summit", "status", SUMMIT]);
        let row = ok(&run).lines().find(|l| l.contains("Opening")).unwrap_or_default().to_owned();
        if row.starts_with("active") {
            assert!(row.contains("ann"), "checked in: {row}");
            break;
        }
        assert!(Instant::now() < deadline, "Opening never shown active: {}", run.stdout);
        std::thread::sleep(Duration::from_millis(200));
    }
    let status: Value = serde_json::from_str(ok(&podium(&hub, &["summit", "status", SUMMIT, "--json"]))).unwrap();
    assert_eq!(status["stages"][0]["active"], opening.to_string());
    // Bad arguments: exit 2 (clap's, and the API's 400).
    assert_eq!(podium(&hub, &["summit", "action", SUMMIT, "main", "extend", "0"]).code, 2);
    assert_eq!(podium(&hub, &["summit", "action", SUMMIT, "main", "cancel", "not-a-guid"]).code, 2);
    assert_eq!(podium(&hub, &["summit", "action", SUMMIT, "nowhere", "start"]).code, 4);

    // The calendar: one VEVENT per slot.
    let run = podium(&hub, &["summit", "calendar", SUMMIT]);
    let ics = ok(&run);
    assert!(ics.starts_with("BEGIN:VCALENDAR"), "{ics}");
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 2, "{ics}");
    assert!(ics.contains(&keynote.to_string()), "{ics}");
    let run = podium(&hub, &["summit", "calendar", SUMMIT, "--person", "ann"]);
    assert_eq!(ok(&run).matches("BEGIN:VEVENT").count(), 1, "{}", run.stdout);
    assert_eq!(podium(&hub, &["summit", "calendar", SUMMIT, "--stage", "nowhere"]).code, 4);

    // Move the keynote half an hour later: release 2 shows it moved.
    let (second, _, _) = schedule(t0, t0 + 90 * MINUTE);
    let file = write("v2.json", &export_podium_json(&second));
    ok(&podium(&hub, &["summit", "import", SUMMIT, &file, "--format", "podium"]));
    let run = podium(&hub, &["summit", "release", SUMMIT, "--name", "moved keynote"]);
    let out = ok(&run);
    assert!(out.contains("release 2 \"moved keynote\""), "{out}");
    assert!(out.contains("new 0, canceled 0, moved 1, changed 0"), "{out}");
    let moved = out.lines().find(|l| l.starts_with("moved")).unwrap_or_else(|| panic!("{out}"));
    assert!(moved.contains(&keynote.to_string()) && moved.contains("Keynote"), "{moved}");
    assert!(moved.contains("main ") && moved.contains(" -> main "), "{moved}");

    // An overlap: the import warns, the release is refused (409 conflict: exit 1).
    let (overlapping, _, _) = schedule(t0, t0 + 10 * MINUTE);
    let file = write("v3.json", &export_podium_json(&overlapping));
    let run = podium(&hub, &["summit", "import", SUMMIT, &file]);
    assert!(ok(&run).contains("warning: stage main:") && run.stdout.contains("overlap"), "{}", run.stdout);
    let run = podium(&hub, &["summit", "release", SUMMIT]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.starts_with("error: ") && run.stderr.contains("(conflict, HTTP 409)"), "{}", run.stderr);

    // The releases so far, and a rollback to the first: the keynote moves back.
    let run = podium(&hub, &["summit", "releases", SUMMIT]);
    let out = ok(&run);
    assert!(out.starts_with("SEQ"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("1 ") && l.contains("first schedule")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("2 ") && l.contains("moved keynote")), "{out}");
    let run = podium(&hub, &["summit", "rollback", SUMMIT, "1"]);
    let out = ok(&run);
    assert!(out.contains("release 3 \"rollback to 1\""), "{out}");
    assert!(out.contains("moved 1"), "{out}");
    let releases: Value = serde_json::from_str(ok(&podium(&hub, &["summit", "releases", SUMMIT, "--json"]))).unwrap();
    assert_eq!(releases.as_array().map(Vec::len), Some(3));
    assert_eq!(podium(&hub, &["summit", "rollback", SUMMIT, "9"]).code, 4);

    // A pretalx/frab schedule.json (detected from its top-level `schedule`) makes a second summit, unreleased.
    let frab = concat!(env!("CARGO_MANIFEST_DIR"), "/../podium-summit/tests/fixtures/schedule-two-days.json");
    let run = podium(&hub, &["summit", "import", "tidepool", frab, "--person-prefix", "tp-"]);
    let out = ok(&run);
    assert!(out.starts_with("imported summit tidepool: schedule version 1\n"), "{out}");
    assert!(out.contains(" stages, ") && !out.contains("0 slots"), "{out}");
    assert_eq!(ok(&podium(&hub, &["summit", "releases", "tidepool"])).trim(), "nothing released yet");
    let run = podium(&hub, &["summit", "import", "tidepool", frab, "--format", "podium", "--time-zone", "UTC"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let summits: Value = serde_json::from_str(ok(&podium(&hub, &["summit", "list", "--json"]))).unwrap();
    assert_eq!(summits.as_array().map(Vec::len), Some(2), "{summits}");

    // `export` prints the work in progress as Podium JSON.
    let run = podium(&hub, &["summit", "export", SUMMIT]);
    let doc: Value = serde_json::from_str(ok(&run)).unwrap();
    assert_eq!(doc["format"], "podium-schedule");
    assert_eq!(doc["schedule"]["summit"]["id"], SUMMIT);
}
