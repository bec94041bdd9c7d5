//! Acceptance through the hub's admin API: the iCalendar export (`GET /v1/admin/summits/{id}/calendar.ics`, with
//! `?stage=` and `?person=`) parses with the Python `icalendar` library (PyPI) and matches the release; a second
//! release moves one slot and removes another, and the feed bumps the moved slot's SEQUENCE (with its new times),
//! keeps the removed one as `STATUS:CANCELLED` with its SEQUENCE bumped, and leaves the unchanged ones alone; a
//! rollback to the first release moves the slot back and brings the canceled one back, each with a SEQUENCE above
//! every earlier one (RFC 5545 §3.8.7.4: calendar clients ignore an update whose SEQUENCE is not higher).
//!
//! Needs Python with `icalendar` (tests/media/requirements.txt): `bash tests/run` (or `.ci/run`) makes
//! `.venv-media` and sets `PODIUM_PYTHON`; by hand,
//! `PODIUM_PYTHON=$PWD/.venv-media/bin/python cargo test -p podium-hub --test summit_ical`.
//! Without it the test fails (it does not skip), saying how to get it.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use podium_hub::{Config, Hub};
use podium_summit::{
    Person, PersonId, Schedule, Session, SessionCode, SessionRole, SlotGuid, Stage, StageId, Summit, export_podium_json,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN_KEY: &str = "adm_ical_0123456789abcdef";
const HOST: &str = "podium.example.org";
const MIN: i64 = 60_000;
/// 2030-06-14T08:00:00Z: far enough ahead that nothing of the summit runs during the test.
const DAY: i64 = 1_907_654_400_000;

fn python() -> String {
    std::env::var("PODIUM_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".to_owned())
}

fn require_icalendar() {
    let py = python();
    let out = Command::new(&py).args(["-c", "import icalendar; print(icalendar.__version__)"]).output();
    let why = match out {
        Ok(out) if out.status.success() => return,
        Ok(out) => format!("`{py}` cannot import icalendar:\n{}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => format!("cannot run `{py}`: {e}"),
    };
    panic!(
        "the iCalendar acceptance test needs Python with icalendar (PyPI). {why}\n\
         Run `bash tests/run` (it creates .venv-media and sets PODIUM_PYTHON), or by hand:\n  \
         python3 -m venv .venv-media && .venv-media/bin/pip install -r tests/media/requirements.txt\n  \
         export PODIUM_PYTHON=$PWD/.venv-media/bin/python"
    );
}

fn pid(s: &str) -> PersonId {
    PersonId::new(s).unwrap()
}

fn code(s: &str) -> SessionCode {
    SessionCode::new(s).unwrap()
}

/// A session: code, title, stage, minutes after 08:00, people.
type SessionRow = (&'static str, &'static str, &'static str, i64, &'static [(&'static str, SessionRole)]);

/// Two stages: `main` (room `ic-main`) runs `keynote` (ada, 08:00) and `panel` (bob hosts, cy speaks, 09:00); `side`
/// (room `ic-side`) runs `workshop` (cy, 08:30) and `lightning` (dan, 09:30). 45 minutes each.
fn schedule() -> Schedule {
    let mut s = Schedule::new(Summit::new("ic1", "iCal Summit", "Europe/Berlin").unwrap());
    for (id, room) in [("main", "ic-main"), ("side", "ic-side")] {
        s.put_stage(Stage::new(StageId::new(id).unwrap(), room).unwrap()).unwrap();
    }
    for (id, name) in [("ada", "Ada"), ("bob", "Bob"), ("cy", "Cy"), ("dan", "Dan")] {
        s.put_person(Person::new(pid(id), name).unwrap()).unwrap();
    }
    let sessions: [SessionRow; 4] = [
        ("keynote", "Keynote: Live Audio", "main", 0, &[("ada", SessionRole::Host)]),
        (
            "panel",
            "Panel, with commas; and semicolons",
            "main",
            60,
            &[("bob", SessionRole::Host), ("cy", SessionRole::Speaker)],
        ),
        ("workshop", "Workshop: Mic Check", "side", 30, &[("cy", SessionRole::Host)]),
        ("lightning", "Lightning Talks", "side", 90, &[("dan", SessionRole::Host)]),
    ];
    for (c, title, stage, at, people) in sessions {
        let people = people.iter().map(|(p, r)| (pid(p), *r)).collect();
        s.add_session(Session::new(code(c), title, 45 * MIN, people).unwrap()).unwrap();
        s.place(&code(c), &StageId::new(stage).unwrap(), DAY + at * MIN).unwrap();
    }
    s
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<String>) -> (StatusCode, String, String) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (status, ctype, resp.text().await.unwrap())
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, text) = self.send(method, path, Some(body.to_string())).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Writes the schedule over `version` and returns the new version.
    async fn put(&self, schedule: &Schedule, version: u64) -> u64 {
        let (status, _, text) = self
            .send(
                reqwest::Method::PUT,
                &format!("/schedule?expect_version={version}"),
                Some(export_podium_json(schedule)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()["version"].as_u64().unwrap()
    }

    /// The schedule document's version, from the summit's status.
    async fn summit_version(&self) -> u64 {
        let (status, _, text) = self.send(reqwest::Method::GET, "", None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        serde_json::from_str::<Value>(&text).unwrap()["summit"]["version"].as_u64().unwrap()
    }

    /// The feed at `query`, parsed by Python's icalendar: UID → event.
    async fn calendar(&self, query: &str) -> BTreeMap<String, Value> {
        let (status, ctype, ics) = self.send(reqwest::Method::GET, &format!("/calendar.ics{query}"), None).await;
        assert_eq!(status, StatusCode::OK, "{query}: {ics}");
        assert!(ctype.starts_with("text/calendar"), "{ctype}");
        let parsed = parse_with_python(&ics);
        assert_eq!(parsed["version"], "2.0", "{parsed}");
        assert!(parsed["prodid"].as_str().unwrap().contains("Podium"), "{parsed}");
        let mut events = BTreeMap::new();
        for e in parsed["events"].as_array().unwrap() {
            assert_eq!(e["utc"], true, "DTSTART/DTEND in UTC: {e}");
            assert_eq!(e["dtstamp"], true, "DTSTAMP: {e}");
            let uid = e["uid"].as_str().unwrap().to_owned();
            assert!(events.insert(uid.clone(), e.clone()).is_none(), "UID {uid} twice in {query}:\n{ics}");
        }
        events
    }
}

/// Writes `ics` to a temporary file and parses it with tests/ical_dump.py.
fn parse_with_python(ics: &str) -> Value {
    let file = std::env::temp_dir().join(format!("podium-summit-ical-{}-{}.ics", std::process::id(), rand_suffix()));
    std::fs::write(&file, ics).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("ical_dump.py");
    let out = Command::new(python()).arg(&script).arg(&file).output().expect("python runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "icalendar rejected the feed:\n{}\n--- feed ---\n{ics}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_007).unwrap()
}

/// What one VEVENT must say.
#[derive(Clone, Debug, PartialEq)]
struct Want {
    start: i64,
    title: &'static str,
    sequence: i64,
    status: &'static str,
}

fn uid(guid: SlotGuid) -> String {
    format!("{guid}@{HOST}")
}

/// `got` (UID → event) is exactly `want`, UIDs `{guid}@{HOST}`.
fn assert_feed(what: &str, got: &BTreeMap<String, Value>, want: &BTreeMap<SlotGuid, Want>) {
    let want_uids: Vec<String> = want.keys().map(|g| uid(*g)).collect();
    let got_uids: Vec<String> = got.keys().cloned().collect();
    let mut sorted = want_uids.clone();
    sorted.sort();
    assert_eq!(got_uids, sorted, "{what}: the feed's UIDs");
    for (guid, w) in want {
        let e = &got[&uid(*guid)];
        let facts = (
            e["dtstart"].as_i64().unwrap(),
            e["dtend"].as_i64().unwrap(),
            e["summary"].as_str().unwrap(),
            e["sequence"].as_i64().unwrap(),
            e["status"].as_str().unwrap(),
        );
        assert_eq!(facts, (w.start / 1000, (w.start + 45 * MIN) / 1000, w.title, w.sequence, w.status), "{what}: {e}");
    }
}

fn only(all: &BTreeMap<SlotGuid, Want>, guids: &[SlotGuid]) -> BTreeMap<SlotGuid, Want> {
    all.iter().filter(|(g, _)| guids.contains(g)).map(|(g, w)| (*g, w.clone())).collect()
}

#[tokio::test]
async fn the_calendar_feed_parses_with_python_icalendar_and_follows_releases() {
    require_icalendar();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.public_url = Some(format!("wss://{HOST}/v1/ws"));
    config.auth.secret = Some("ical-secret".into());
    config.admin.keys = vec![podium_hub::config::AdminKey {
        name: "ops".into(),
        sha256: podium_hub::admin_key_hash(ADMIN_KEY),
        scope: podium_hub::auth::Scope::Admin,
    }];
    let hub = Hub::bind(config).await.unwrap();
    let addr = hub.local_addr();
    let stop = hub.shutdown_handle();
    let task = tokio::spawn(hub.run());
    let api = Api { http: reqwest::Client::new(), base: format!("http://{addr}/v1/admin/summits/ic1") };

    // No release yet: no calendar.
    let (status, _, _) = api.send(reqwest::Method::GET, "/calendar.ics", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Release 1.
    let mut sched = schedule();
    let g = |c: &str| sched.summit.slot_guid(&code(c), 0);
    let (keynote, panel, workshop, lightning) = (g("keynote"), g("panel"), g("workshop"), g("lightning"));
    let version = api.put(&sched, 0).await;
    let (status, _, _) = api.send(reqwest::Method::GET, "/calendar.ics", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "written but not released: no calendar");
    let (status, r1) = api.json(reqwest::Method::POST, "/releases", json!({"name": "v1"})).await;
    assert_eq!(status, StatusCode::CREATED, "{r1}");
    assert_eq!(r1["seq"], 1);

    let confirmed =
        |start: i64, title: &'static str, sequence: i64| Want { start, title, sequence, status: "CONFIRMED" };
    let mut want: BTreeMap<SlotGuid, Want> = BTreeMap::from([
        (keynote, confirmed(DAY, "Keynote: Live Audio", 0)),
        (panel, confirmed(DAY + 60 * MIN, "Panel, with commas; and semicolons", 0)),
        (workshop, confirmed(DAY + 30 * MIN, "Workshop: Mic Check", 0)),
        (lightning, confirmed(DAY + 90 * MIN, "Lightning Talks", 0)),
    ]);
    assert_feed("release 1", &api.calendar("").await, &want);
    assert_feed("release 1, ?stage=side", &api.calendar("?stage=side").await, &only(&want, &[workshop, lightning]));
    assert_feed("release 1, ?person=cy", &api.calendar("?person=cy").await, &only(&want, &[panel, workshop]));
    // The stage's feed carries the stage as LOCATION.
    let main = api.calendar("?stage=main").await;
    assert_feed("release 1, ?stage=main", &main, &only(&want, &[keynote, panel]));
    assert!(main.values().all(|e| e["location"].as_str().is_some_and(|l| !l.is_empty())), "{main:?}");

    // Release 2: the panel moves two hours later (same stage), the lightning talks' slot is removed.
    sched.move_slot(panel, &StageId::new("main").unwrap(), DAY + 180 * MIN).unwrap();
    sched.remove_slot(lightning).unwrap();
    // A release is a write too: write over the version the summit's status reports now.
    assert!(api.summit_version().await > version);
    api.put(&sched, api.summit_version().await).await;
    let (status, r2) =
        api.json(reqwest::Method::POST, "/releases", json!({"name": "v2", "comment": "panel moved"})).await;
    assert_eq!(status, StatusCode::CREATED, "{r2}");
    assert_eq!(r2["seq"], 2);
    let guids = |k: &str| -> Vec<String> {
        // `moved` lists objects with a `guid`, the others GUIDs.
        let guid = |m: &Value| m.as_str().or_else(|| m["guid"].as_str()).unwrap().to_owned();
        r2["diff"][k].as_array().unwrap().iter().map(guid).collect()
    };
    assert_eq!(guids("moved"), vec![panel.to_string()], "{r2}");
    assert_eq!(guids("canceled"), vec![lightning.to_string()], "{r2}");
    assert!(guids("new").is_empty(), "{r2}");

    want.insert(panel, confirmed(DAY + 180 * MIN, "Panel, with commas; and semicolons", 1));
    want.insert(lightning, Want { start: DAY + 90 * MIN, title: "Lightning Talks", sequence: 1, status: "CANCELLED" });
    assert_feed("release 2", &api.calendar("").await, &want);
    assert_feed("release 2, ?stage=side", &api.calendar("?stage=side").await, &only(&want, &[workshop, lightning]));
    assert_feed("release 2, ?stage=main", &api.calendar("?stage=main").await, &only(&want, &[keynote, panel]));
    assert_feed("release 2, ?person=dan", &api.calendar("?person=dan").await, &only(&want, &[lightning]));
    assert_feed("release 2, ?person=cy", &api.calendar("?person=cy").await, &only(&want, &[panel, workshop]));

    // Release 3 rolls back to release 1: the panel moves back and the lightning talks return, each with a SEQUENCE
    // higher than any it had, so calendar clients take the update; the untouched ones keep 0.
    let (status, r3) = api.json(reqwest::Method::POST, "/releases/1/rollback", json!({"comment": "back"})).await;
    assert_eq!(status, StatusCode::CREATED, "{r3}");
    assert_eq!(r3["seq"], 3);
    let feed = api.calendar("").await;
    let seq = |g: SlotGuid| feed[&uid(g)]["sequence"].as_i64().unwrap();
    assert!(seq(panel) >= 2, "the panel moved back: SEQUENCE {} not above 1", seq(panel));
    assert!(seq(lightning) >= 2, "the lightning talks returned: SEQUENCE {} not above 1", seq(lightning));
    want.insert(panel, confirmed(DAY + 60 * MIN, "Panel, with commas; and semicolons", seq(panel)));
    want.insert(lightning, confirmed(DAY + 90 * MIN, "Lightning Talks", seq(lightning)));
    assert_feed("release 3 (rollback to 1)", &feed, &want);

    // Bad filters.
    let (status, _, _) = api.send(reqwest::Method::GET, "/calendar.ics?stage=nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = api.send(reqwest::Method::GET, "/calendar.ics?stage=main&person=cy", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    stop.shutdown();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
}
