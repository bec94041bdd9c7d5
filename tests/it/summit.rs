//! The summit scheduler on a real hub, with real websocket participants: a schedule written and released through
//! the admin API runs by itself. Backstage check-in by joining the backstage room (and its mic-check stage), the
//! handover at the slot's time promoting people from the audience of the stage room, the host as moderator, a
//! no-show replaced by a standby host who checked in, the `schedule` view, status, runtime actions and the
//! iCalendar feed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use podium_hub::Role;
use podium_summit::{
    EmptyPolicy, Person, PersonId, Schedule, Session, SessionCode, SessionRole, Shift, ShiftId, ShiftRole, Stage,
    StageId, Summit, export_podium_json,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Client, TestHub};

const ADMIN_KEY: &str = "adm_summit_0123456789abcdef";

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis()).expect("ms")
}

async fn hub() -> TestHub {
    TestHub::start_with(|c| {
        c.admin.keys = vec![podium_hub::config::AdminKey {
            name: "ops".into(),
            sha256: podium_hub::admin_key_hash(ADMIN_KEY),
            scope: podium_hub::auth::Scope::Admin,
        }];
    })
    .await
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(hub: &TestHub) -> Self {
        Self { http: reqwest::Client::new(), base: format!("http://{}/v1/admin/summits", hub.addr) }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<String>) -> (StatusCode, String) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    }

    async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, text) = self.send(method, path, body.map(|b| b.to_string())).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn pid(s: &str) -> PersonId {
    PersonId::new(s).expect("person id")
}

/// A stage `main` in room `s1-main` with two back-to-back sessions: `opening` (host ada) at `t`, `panel` (host
/// bob, speaker cy) right after; `sam` is the stage's standby host. Backstage opens 2 s before, check-in closes
/// 1 s before.
fn schedule(t: i64, slot_ms: i64) -> Schedule {
    let mut s = Schedule::new(Summit::new("s1", "Summit One", "Europe/Berlin").expect("summit"));
    let mut stage = Stage::new(StageId::new("main").expect("id"), "s1-main").expect("stage");
    stage.backstage_lead_ms = 2_000;
    stage.checkin_deadline_ms = 1_000;
    stage.standby_hosts = vec![pid("sam")];
    for (id, name) in [("ada", "Ada"), ("bob", "Bob"), ("cy", "Cy"), ("sam", "Sam")] {
        s.put_person(Person::new(pid(id), name).expect("person")).expect("person");
    }
    s.put_stage(stage).expect("stage");
    let opening = SessionCode::new("opening").expect("code");
    s.add_session(
        Session::new(opening.clone(), "Opening", slot_ms, vec![(pid("ada"), SessionRole::Host)]).expect("session"),
    )
    .expect("add");
    let panel = SessionCode::new("panel").expect("code");
    s.add_session(
        Session::new(
            panel.clone(),
            "Panel",
            slot_ms,
            vec![(pid("bob"), SessionRole::Host), (pid("cy"), SessionRole::Speaker)],
        )
        .expect("session"),
    )
    .expect("add");
    let main = StageId::new("main").expect("id");
    s.place(&opening, &main, t).expect("place");
    s.place(&panel, &main, t + slot_ms).expect("place");
    s
}

/// Joins `room` as audience (the handover promotes; a moderator ceiling alone must not take the stage).
async fn join_audience(hub: &TestHub, identity: &str, room: &str, ceiling: Role) -> Client {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = hub.connect().await;
        let token = hub.token(identity, room, ceiling);
        let reply = c.request(json!({"type": "join", "token": token, "role": "audience"})).await;
        if reply["type"] == "ok" {
            return c;
        }
        assert!(tokio::time::Instant::now() < deadline, "join of {identity} to {room}: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for `you` with `role`, reading through everything else, for up to `within`.
async fn role_becomes(c: &mut Client, role: &str, within: Duration) -> Value {
    tokio::time::timeout(within, c.event("you", |e| e["you"]["role"] == role))
        .await
        .unwrap_or_else(|_| panic!("no `you` with role {role} within {within:?}"))
}

#[tokio::test]
async fn a_released_schedule_runs_itself_backstage_handovers_and_a_substituted_no_show() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let hub = hub().await;
    let api = Api::new(&hub);
    let slot_ms = 4_000;
    let t = now_ms() + 5_000;

    let body = export_podium_json(&schedule(t, slot_ms));
    let (status, text) = api.send(reqwest::Method::PUT, "/s1/schedule?expect_version=0", Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    // A second create-only write loses.
    let (status, _) = api.send(reqwest::Method::PUT, "/s1/schedule?expect_version=0", Some(body)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, release) = api.json(reqwest::Method::POST, "/s1/releases", Some(json!({"comment": "first"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{release}");
    assert_eq!(release["seq"], 1);
    assert_eq!(release["diff"]["new"].as_array().map(Vec::len), Some(2));

    // The runner creates the stage and backstage rooms; a listener and the opening's host join the stage as
    // audience, and the host checks in by joining the backstage.
    let mut listener = join_audience(&hub, "lee", "s1-main", Role::Audience).await;
    let mut ada = join_audience(&hub, "ada", "s1-main", Role::Moderator).await;
    let mut ada_back = join_audience(&hub, "ada", "s1-main.backstage", Role::Moderator).await;
    // The schedule view, on joining and as it changes.
    let view = listener.event("schedule", |_| true).await;
    assert_eq!(view["stage"], "main");
    assert_eq!(view["backstage"], "s1-main.backstage");
    assert_eq!(view["next"][0]["title"], "Opening");

    // Backstage opens at T − 2 s: ada, checked in, takes the backstage stage (mic check).
    role_becomes(&mut ada_back, "speaker", Duration::from_secs(6)).await;
    let opened = now_ms();
    assert!(opened >= t - 2_000 - 300, "backstage opened {} ms early", t - 2_000 - opened);

    // The standby host checks in too, while bob (the panel's host) never comes.
    let mut sam = join_audience(&hub, "sam", "s1-main", Role::Moderator).await;
    let _sam_back = join_audience(&hub, "sam", "s1-main.backstage", Role::Moderator).await;

    // At T the opening goes on stage: ada is promoted in the stage room (the host moderates), within 1 s.
    role_becomes(&mut ada, "moderator", Duration::from_secs(6)).await;
    let late = now_ms() - t;
    assert!((-300..1_000).contains(&late), "handover {late} ms from its time");
    let stage =
        listener.event("stage", |e| e["stage"].as_array().is_some_and(|s| s.iter().any(|m| m["id"] == "ada"))).await;
    assert!(stage["stage"].is_array());
    let view = listener.event("schedule", |v| v["now"]["title"] == "Opening").await;
    assert_eq!(view["now"]["status"], "active");
    assert_eq!(view["now"]["people"][0]["checked_in"], true);

    // At T + slot the panel starts: bob is a no-show, sam (standby, checked in) replaces him; ada leaves the stage.
    role_becomes(&mut sam, "moderator", Duration::from_secs(8)).await;
    let late = now_ms() - (t + slot_ms);
    assert!((-300..1_000).contains(&late), "second handover {late} ms from its time");
    role_becomes(&mut ada, "audience", Duration::from_secs(3)).await;

    // Metrics: this hub runs the summit, and timed both handovers.
    let metrics =
        reqwest::get(format!("http://{}/metrics", hub.addr)).await.expect("metrics").text().await.expect("text");
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert_eq!(sample("podium_summits_running"), 1.0);
    assert!(sample("podium_summit_handover_lateness_seconds_count") >= 2.0);
    assert!(sample("podium_summit_handover_lateness_seconds_sum") < 2.0, "both within 1 s");

    // The status shows what ran.
    let (status, st) = api.json(reqwest::Method::GET, "/s1", None).await;
    assert_eq!(status, StatusCode::OK, "{st}");
    let slots = st["stages"][0]["slots"].as_array().expect("slots").clone();
    assert_eq!(slots[0]["status"], "completed");
    assert_eq!(slots[1]["status"], "active");
    assert_eq!(slots[1]["substitute"], "sam");
    assert!(slots[1]["no_show"].as_array().expect("no_show").iter().any(|p| p == "bob"));

    // Ending the running slot by hand, through the runner.
    let (status, done) =
        api.json(reqwest::Method::POST, "/s1/stages/main/actions", Some(json!({"action": "end"}))).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    role_becomes(&mut sam, "audience", Duration::from_secs(3)).await;
    let (status, p) = api.json(reqwest::Method::POST, "/s1/stages/main/actions", Some(json!({"action": "end"}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing runs now: {p}");
    let (status, _) = api.json(reqwest::Method::POST, "/s1/stages/nope/actions", Some(json!({"action": "end"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The programme as JSON, and a subscriber's calendar with just the slot they follow.
    let (status, prog) = api.json(reqwest::Method::GET, "/s1/releases/latest", None).await;
    assert_eq!(status, StatusCode::OK, "{prog}");
    assert_eq!(prog["release"]["seq"], 1);
    let titles: Vec<&str> =
        prog["slots"].as_array().expect("slots").iter().filter_map(|s| s["title"].as_str()).collect();
    assert_eq!(titles, ["Opening", "Panel"]);
    assert_eq!(prog["slots"][0]["room"], "s1-main");
    assert_eq!(prog["slots"][0]["people"][0]["name"], "Ada");
    let (status, _) = api.json(reqwest::Method::GET, "/s1/releases/9", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let panel = prog["slots"][1]["guid"].as_str().expect("guid").to_owned();
    let (status, _) =
        api.json(reqwest::Method::PUT, "/s1/subscribers/lee", Some(json!({"slots": [panel.clone()]}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, ics) = api.send(reqwest::Method::GET, "/s1/calendar.ics?subscriber=lee", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 1, "{ics}");
    assert!(ics.contains(&format!("UID:{panel}@")), "{ics}");

    // Public feeds for calendar apps: the summit's without a credential, a subscriber's only with its signed link.
    let (status, links) = api.json(reqwest::Method::GET, "/s1/feeds?subscriber=lee&person=ada", None).await;
    assert_eq!(status, StatusCode::OK, "{links}");
    let public = |path: &str| {
        let url = format!("http://{}{path}", hub.addr);
        async move {
            let resp = reqwest::get(url).await.expect("get");
            (resp.status(), resp.text().await.expect("text"))
        }
    };
    let (status, ics) = public(links["summit"].as_str().expect("summit")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 2);
    let (status, ics) = public(links["stages"]["main"].as_str().expect("stage")).await;
    assert_eq!((status, ics.matches("BEGIN:VEVENT").count()), (StatusCode::OK, 2));
    let mine = links["subscriber"].as_str().expect("subscriber link");
    let (status, ics) = public(mine).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 1, "{ics}");
    let (status, ics) = public(links["person"].as_str().expect("person link")).await;
    assert_eq!((status, ics.matches("BEGIN:VEVENT").count()), (StatusCode::OK, 1), "ada hosts one session");
    let unsigned = mine.split("&sig=").next().expect("path");
    assert_eq!(public(unsigned).await.0, StatusCode::UNAUTHORIZED);
    let other = mine.replace("subscriber=lee", "subscriber=max");
    assert_eq!(public(&other).await.0, StatusCode::UNAUTHORIZED, "a link is for its subscriber only");
    assert_eq!(public("/v1/summits/s1/calendar.ics?person=ada&sig=zz").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(public("/v1/summits/nope/calendar.ics").await.0, StatusCode::NOT_FOUND);

    // The calendar: one VEVENT per slot, UIDs from the slot GUIDs.
    let (status, ics) = api.send(reqwest::Method::GET, "/s1/calendar.ics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ics.matches("BEGIN:VEVENT").count(), 2, "{ics}");
    for slot in &slots {
        assert!(ics.contains(&format!("UID:{}@", slot["guid"].as_str().expect("guid"))), "{ics}");
    }
    hub.stop().await;
}

#[tokio::test]
async fn schedule_writes_and_releases_refuse_bad_input_with_documented_codes() {
    let hub = hub().await;
    let api = Api::new(&hub);
    let t = now_ms() + 3_600_000;
    let body = export_podium_json(&schedule(t, 60_000));
    // Not a schedule; another summit's schedule; a bad id.
    let (status, _) = api.send(reqwest::Method::PUT, "/s1/schedule", Some("{\"nope\": 1}".into())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.send(reqwest::Method::PUT, "/other/schedule", Some(body.clone())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.send(reqwest::Method::PUT, "/bad%20id/schedule", Some(body.clone())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.json(reqwest::Method::POST, "/s1/releases", Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no summit yet");
    let (status, _) = api.send(reqwest::Method::PUT, "/s1/schedule", Some(body)).await;
    assert_eq!(status, StatusCode::OK);

    // Overlapping slots on one stage: the release is refused, nothing is released.
    let mut overlapping = schedule(t, 60_000);
    let code = SessionCode::new("extra").expect("code");
    overlapping
        .add_session(Session::new(code.clone(), "Extra", 60_000, vec![(pid("cy"), SessionRole::Speaker)]).expect("s"))
        .expect("add");
    overlapping.place(&code, &StageId::new("main").expect("id"), t + 30_000).expect("place");
    let (status, _) = api.send(reqwest::Method::PUT, "/s1/schedule", Some(export_podium_json(&overlapping))).await;
    assert_eq!(status, StatusCode::OK, "the WIP may overlap");
    let (status, p) = api.json(reqwest::Method::POST, "/s1/releases", Some(json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["code"], "conflict");
    let (status, list) = api.json(reqwest::Method::GET, "/s1/releases", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(0));

    // Runtime actions validate before they reach the runner.
    let (status, _) = api
        .json(reqwest::Method::POST, "/s1/stages/main/actions", Some(json!({"action": "extend", "minutes": 0})))
        .await;
    assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND, "{status}");
    hub.stop().await;
}

/// The scheduler's events reach a receiver that verifies every request with PyPI's `standardwebhooks`
/// (`tests/webhooks/receiver.py`), in the stage's order, with ids derived from the stage's output counter.
#[tokio::test]
async fn scheduler_events_arrive_signed_and_in_order() {
    const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (port, log, mut receiver) = crate::support::webhook_receiver(KEY);

    let hub = TestHub::start_with(|c| {
        c.admin.keys = vec![podium_hub::config::AdminKey {
            name: "ops".into(),
            sha256: podium_hub::admin_key_hash(ADMIN_KEY),
            scope: podium_hub::auth::Scope::Admin,
        }];
        c.webhooks.endpoints = vec![podium_hub::config::EndpointConfig {
            name: "app".into(),
            url: format!("http://127.0.0.1:{port}/hook"),
            secrets: vec![KEY.into()],
            include: vec!["slot.*".into(), "speaker.*".into(), "schedule.*".into()],
            exclude: Vec::new(),
            timeout_ms: 2_000,
        }];
    })
    .await;
    let api = Api::new(&hub);
    let slot_ms = 2_000;
    let t = now_ms() + 3_500;
    // Reminders 1.5 s before each session, for its subscribers.
    let mut sched = schedule(t, slot_ms);
    let mut stage = sched.stages().values().next().expect("stage").clone();
    stage.reminder_offsets_ms = vec![1_500];
    sched.put_stage(stage).expect("stage");
    let (status, text) = api.send(reqwest::Method::PUT, "/s1/schedule", Some(export_podium_json(&sched))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, _) = api.json(reqwest::Method::POST, "/s1/releases", Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, prog) = api.json(reqwest::Method::GET, "/s1/releases/latest", None).await;
    let opening = prog["slots"][0]["guid"].as_str().expect("guid").to_owned();
    for who in ["lee", "max"] {
        let (status, _) =
            api.json(reqwest::Method::PUT, &format!("/s1/subscribers/{who}"), Some(json!({"slots": [opening]}))).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let _ada = join_audience(&hub, "ada", "s1-main", Role::Moderator).await;
    let _ada_back = join_audience(&hub, "ada", "s1-main.backstage", Role::Moderator).await;

    // Both slots run and end (t + 2 slots), then the events are delivered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events: Vec<Value> = log.lock().expect("log").clone();
        if events.iter().filter(|e| e["payload"]["type"] == "slot.ended").count() == 2 {
            break events;
        }
        assert!(tokio::time::Instant::now() < deadline, "not every slot.ended arrived: {events:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(events.iter().all(|e| e["ok"] == true), "every request verifies: {events:?}");
    let kinds: Vec<&str> = events.iter().map(|e| e["payload"]["type"].as_str().unwrap_or("")).collect();
    let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap_or_else(|| panic!("no {k} in {kinds:?}"));
    assert!(pos("schedule.released") < pos("slot.backstage_opened"));
    assert!(pos("slot.backstage_opened") < pos("speaker.checked_in"));
    assert!(pos("speaker.checked_in") < pos("slot.started"));
    assert!(kinds.contains(&"speaker.no_show"), "bob never checked in: {kinds:?}");
    // The stage's own counter orders them, and names them.
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["payload"]["data"]["summit"]["stage_seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "stage_seq in order (reminders share one): {seqs:?}");
    for e in &events {
        let data = &e["payload"]["data"];
        assert_eq!(data["room"], "s1-main");
        let id = e["id"].as_str().expect("id");
        assert!(id.starts_with(&format!("sum_s1_main_{}", data["summit"]["stage_seq"])), "{id}");
    }
    // One reminder per subscriber of the opening; none for the panel (nobody follows it).
    let mut reminded: Vec<&str> = events
        .iter()
        .filter(|e| e["payload"]["type"] == "slot.reminder")
        .map(|e| {
            let s = &e["payload"]["data"]["summit"];
            assert_eq!(s["slot"], opening.as_str());
            assert_eq!(s["offset_ms"], 1_500);
            s["subscriber"].as_str().expect("subscriber")
        })
        .collect();
    reminded.sort_unstable();
    assert_eq!(reminded, ["lee", "max"]);
    let started = events.iter().find(|e| e["payload"]["type"] == "slot.started").expect("started");
    assert_eq!(started["payload"]["data"]["summit"]["title"], "Opening");
    let _ = receiver.kill();
    let _ = receiver.wait();
    hub.stop().await;
}

/// Schedules are bigger than the admin API's other bodies: a 85-day summit's worth of people and sessions (well over
/// the hub's usual 64 KiB) is written, with an `Idempotency-Key` too, and read back; beyond 4 MiB is `413`.
#[tokio::test]
async fn large_schedules_are_accepted_up_to_four_mebibytes() {
    let hub = hub().await;
    let api = Api::new(&hub);
    let t = now_ms() + 3_600_000;
    let mut s = schedule(t, 60_000);
    let main = StageId::new("main").expect("id");
    for i in 0..600 {
        let id = format!("speaker-{i:04}");
        s.put_person(Person::new(pid(&id), &format!("Speaker number {i} with a longer display name")).expect("p"))
            .expect("person");
        let code = SessionCode::new(format!("talk-{i:04}")).expect("code");
        s.add_session(
            Session::new(
                code.clone(),
                &format!("Talk {i}: a title of realistic length"),
                1_800_000,
                vec![(pid(&id), SessionRole::Host)],
            )
            .expect("session"),
        )
        .expect("add");
        s.place(&code, &main, t + 3_600_000 + i64::from(i) * 1_800_000).expect("place");
    }
    let body = export_podium_json(&s);
    assert!(body.len() > 256 * 1024, "{} bytes", body.len());
    let resp = api
        .http
        .put(format!("{}/s1/schedule", api.base))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .header("idempotency-key", "\"big-1\"")
        .body(body.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap_or_default());
    let (status, back) = api.send(reqwest::Method::GET, "/s1/schedule", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(back.len(), body.len());
    let (status, release) = api.json(reqwest::Method::POST, "/s1/releases", Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(release["slots"], 602);
    // Over the limit.
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(5 << 20));
    let (status, _) = api.send(reqwest::Method::PUT, "/s1/schedule", Some(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Other admin bodies keep the usual limit.
    let (status, _) = api
        .send(reqwest::Method::POST, "/s1/releases", Some(format!("{{\"comment\": \"{}\"}}", "x".repeat(100 << 10))))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    hub.stop().await;
}

/// A moderator shift gives its person the stage's moderator rights for its time and takes them away after, and dead
/// air on a stage whose empty policy is the open mic opens the mic (no audio here, so nobody is ever heard).
#[tokio::test]
async fn shifts_rotate_moderators_and_dead_air_opens_the_mic() {
    let hub = hub().await;
    let api = Api::new(&hub);
    let slot_ms = 6_000;
    let t = now_ms() + 4_000;
    let mut s = schedule(t, slot_ms);
    let mut stage = s.stages().values().next().expect("stage").clone();
    stage.empty = EmptyPolicy::OpenMic;
    stage.dead_air_ms = 1_500;
    s.put_stage(stage).expect("stage");
    s.put_person(Person::new(pid("mo"), "Mo").expect("p")).expect("person");
    let main = StageId::new("main").expect("id");
    s.put_shift(
        Shift::new(ShiftId::new("mo-1").expect("id"), main, pid("mo"), ShiftRole::Lead, t, t + 3_000).expect("s"),
    )
    .expect("shift");
    let (status, text) = api.send(reqwest::Method::PUT, "/s1/schedule", Some(export_podium_json(&s))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, _) = api.json(reqwest::Method::POST, "/s1/releases", Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED);

    let mut listener = join_audience(&hub, "lee", "s1-main", Role::Audience).await;
    let mut mo = join_audience(&hub, "mo", "s1-main", Role::Moderator).await;
    let _ada = join_audience(&hub, "ada", "s1-main", Role::Moderator).await;
    let _ada_back = join_audience(&hub, "ada", "s1-main.backstage", Role::Moderator).await;

    // The shift starts with the slot: mo moderates the stage.
    role_becomes(&mut mo, "moderator", Duration::from_secs(8)).await;
    let late = now_ms() - t;
    assert!((-300..1_000).contains(&late), "shift start {late} ms from its time");
    // Nobody is heard: 1.5 s into the slot the mic opens.
    let settings =
        tokio::time::timeout(Duration::from_secs(4), listener.event("settings", |e| e["settings"]["open_mic"] == true))
            .await
            .expect("the mic opens on dead air");
    assert_eq!(settings["settings"]["open_mic"], true);
    let opened = now_ms() - t;
    assert!((1_300..3_000).contains(&opened), "open mic {opened} ms into the slot");
    // The shift ends at t + 3 s: mo leaves the stage.
    role_becomes(&mut mo, "audience", Duration::from_secs(4)).await;
    let ended = now_ms() - (t + 3_000);
    assert!((-300..1_000).contains(&ended), "shift end {ended} ms from its time");

    let (status, st) = api.json(reqwest::Method::GET, "/s1", None).await;
    assert_eq!(status, StatusCode::OK);
    let shift = &st["stages"][0]["shifts"][0];
    assert_eq!(shift["started"], true);
    assert_eq!(shift["ended"], true);
    hub.stop().await;
}
