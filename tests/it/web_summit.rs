//! The demo's summit panel end to end in Debian's headless Chromium, driven by Playwright (`web/e2e/summit.mjs`): once
//! the browser has loaded the demo in both pages (it prints READY), a schedule with one stage and two short sessions
//! (10 s and 18 s after the release, backstage 5 s before each) is written and released through the admin API and
//! its times sent to the script on stdin (so a slow browser start does not eat the lead time); a listener page
//! sees the Now / Next panel and a countdown that runs down; the first session's host clicks "Go backstage", gets
//! the backstage mic check (a speaker on the backstage room's stage), and at the slot's time sees "You're live"
//! while the listener sees the host on stage and "Now" switching to the session; then the host is heard, and the
//! second slot takes over. Screenshots go to `target/web-e2e/summit-*.png`.
//!
//! Needs Node.js and `web/node_modules` (`bash tests/run` runs `npm ci` in `web/` first) and Chromium
//! (`/usr/bin/chromium` or `PODIUM_CHROMIUM`).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use podium_summit::{
    Person, PersonId, Schedule, Session, SessionCode, SessionRole, Stage, StageId, Summit, export_podium_json,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::TestHub;

const ADMIN_KEY: &str = "adm_websummit_0123456789abcdef";
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);
/// The first session starts this long after the release, the second one slot later.
const FIRST_AFTER_MS: i64 = 10_000;
const SLOT_MS: i64 = 8_000;
/// Backstage opens this long before a slot.
const BACKSTAGE_LEAD_MS: i64 = 5_000;
const ROOM: &str = "websummit-main";

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis()).expect("ms")
}

fn pid(s: &str) -> PersonId {
    PersonId::new(s).expect("person id")
}

/// Stage `main` in room [`ROOM`]: `opening` (host ada) at `t`, `panel` (host bob) at `t + SLOT_MS`.
fn schedule(t: i64) -> Schedule {
    let mut s = Schedule::new(Summit::new("ws1", "Web Summit", "Europe/Berlin").expect("summit"));
    let mut stage = Stage::new(StageId::new("main").expect("id"), ROOM).expect("stage");
    stage.backstage_lead_ms = BACKSTAGE_LEAD_MS;
    stage.checkin_deadline_ms = 1_000;
    for (id, name) in [("ada", "Ada"), ("bob", "Bob")] {
        s.put_person(Person::new(pid(id), name).expect("person")).expect("person");
    }
    s.put_stage(stage).expect("stage");
    let main = StageId::new("main").expect("id");
    for (i, (code, title, host)) in
        [("opening", "Opening Keynote", "ada"), ("panel", "Closing Panel", "bob")].into_iter().enumerate()
    {
        let code = SessionCode::new(code).expect("code");
        s.add_session(Session::new(code.clone(), title, SLOT_MS, vec![(pid(host), SessionRole::Host)]).expect("s"))
            .expect("add");
        s.place(&code, &main, t + SLOT_MS * i64::try_from(i).expect("i")).expect("place");
    }
    s
}

/// The host with a moderator ceiling (what `POST /v1/admin/summits/{id}/people/{person}/tokens` gives hosts), joining
/// the stage room's audience with the demo's `?join=audience`.
#[tokio::test]
async fn demo_summit_panel_in_chromium_countdown_backstage_and_live() {
    scenario("moderator").await;
}

/// The same with web/README.md's host link, `?room=..&name=Ada&identity=ada`: the demo's default speaker ceiling.
/// The handover fits roles to ceilings: the host goes on stage as a speaker (their token does not allow more).
#[tokio::test]
async fn demo_summit_host_with_a_speaker_ceiling_goes_live() {
    scenario("speaker").await;
}

/// Runs web/e2e/summit.mjs with the host's token ceiling `host_role`.
async fn scenario(host_role: &str) {
    let _heavy = crate::support::HEAVY.lock().await;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned();
    let web = root.join("web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules is missing: run `bash tests/run` (it runs `npm ci` in web/), or `cd web && npm ci`"
    );
    let chromium = std::env::var("PODIUM_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&chromium).exists(), "Chromium not found at {chromium}; `.ci/run` installs it");

    // Development mode (the demo gets tokens from /dev/token), media on loopback, and an admin key for the summit.
    let hub = TestHub::start_with(|c| {
        crate::support::demo_with_media(c);
        c.admin.keys = vec![podium_hub::config::AdminKey {
            name: "ops".into(),
            sha256: podium_hub::admin_key_hash(ADMIN_KEY),
            scope: podium_hub::auth::Scope::Admin,
        }];
    })
    .await;
    let http = reqwest::Client::new();
    let api = format!("http://{}/v1/admin/summits/ws1", hub.addr);

    let shots = crate::support::screenshots_dir();
    let started = std::time::Instant::now();
    let mut child = std::process::Command::new("node")
        .arg(web.join("e2e/summit.mjs"))
        .current_dir(&web)
        .env("PODIUM_HTTP", format!("http://{}", hub.addr))
        .env(
            "PODIUM_SUMMIT",
            json!({"room": ROOM, "host": {"id": "ada", "name": "Ada", "role": host_role}}).to_string(),
        )
        .env("PODIUM_CHROMIUM", &chromium)
        .env("PODIUM_SCREENSHOTS", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node (Node.js is needed for the browser test)");
    let pid = child.id();
    let kill = move || {
        let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    };
    // Node's output, collected by two threads; READY (the pages are loaded) is passed on.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let out_reader = {
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "READY" {
                    let _ = ready_tx.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        })
    };
    let err_reader = {
        let mut stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut all = String::new();
            let _ = stderr.read_to_string(&mut all);
            all
        })
    };
    let ready = tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(60))).await;
    if !matches!(ready, Ok(Ok(()))) {
        kill();
        let (stdout, stderr) = (out_reader.join().unwrap_or_default(), err_reader.join().unwrap_or_default());
        panic!("the browser did not load the demo within 60 s:\n{stdout}\n{stderr}");
    }

    // Write and release the schedule once the pages are loaded; the first slot is FIRST_AFTER_MS after the release.
    let t = now_ms() + FIRST_AFTER_MS;
    let sched = schedule(t);
    let resp = http
        .put(format!("{api}/schedule?expect_version=0"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body(export_podium_json(&sched))
        .send()
        .await
        .expect("PUT schedule");
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap_or_default());
    let resp = http
        .post(format!("{api}/releases"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"comment": "web e2e"}))
        .send()
        .await
        .expect("release");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let release: Value = resp.json().await.expect("release JSON");
    assert_eq!(release["diff"]["new"].as_array().map(Vec::len), Some(2), "{release}");

    let slots: Vec<Value> = [("opening", "Opening Keynote"), ("panel", "Closing Panel")]
        .iter()
        .enumerate()
        .map(|(i, (code, title))| {
            let start = t + SLOT_MS * i64::try_from(i).expect("i");
            json!({
                "guid": sched.summit.slot_guid(&SessionCode::new(*code).expect("code"), 0).to_string(),
                "title": title, "start_ms": start, "end_ms": start + SLOT_MS,
            })
        })
        .collect();
    let programme = json!({"backstage_lead_ms": BACKSTAGE_LEAD_MS, "slots": slots});
    {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(format!("{programme}\n").as_bytes()).expect("send the programme to node");
    }

    let status = match tokio::time::timeout(SCENARIO_TIMEOUT, tokio::task::spawn_blocking(move || child.wait())).await {
        Ok(status) => status.expect("join").expect("wait for node"),
        Err(_) => {
            kill();
            panic!("the browser scenario did not finish within {SCENARIO_TIMEOUT:?}");
        }
    };
    let out_stdout = out_reader.join().expect("stdout reader");
    let out_stderr = err_reader.join().expect("stderr reader");
    let out = std::process::Output { status, stdout: out_stdout.into_bytes(), stderr: out_stderr.into_bytes() };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}(scenario {:?})", started.elapsed());
    if !out.status.success() {
        // The runner's view, to tell a scheduler problem from a page problem.
        let status = http.get(&api).bearer_auth(ADMIN_KEY).send().await.expect("status");
        eprintln!("summit status: {}", status.text().await.unwrap_or_default());
    }
    assert!(out.status.success(), "the browser scenario failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("PASS"));

    // The runner's record agrees: the opening ran with ada checked in, the panel is on.
    let st: Value = http.get(&api).bearer_auth(ADMIN_KEY).send().await.expect("status").json().await.expect("json");
    let slots = st["stages"][0]["slots"].as_array().expect("slots");
    assert_eq!(slots[0]["status"], "completed", "{st}");
    assert_eq!(slots[1]["status"], "active", "{st}");
    for shot in ["summit-1-listener-next.png", "summit-2-host-backstage.png", "summit-3-listener-live.png"] {
        assert!(shots.join(shot).is_file(), "screenshot {shot} missing in {}", shots.display());
    }
    hub.stop().await;
}
