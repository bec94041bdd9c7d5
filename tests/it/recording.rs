//! Issue #15, item 5, against a real hub: recording rules over the websocket and the admin API (who may start and
//! stop, `conflict`, a hub or room that does not record, the `recording` event to everyone, opt-outs in the stage
//! roster), and a recorded session of aiortc speakers mixed by ffmpeg into a replay that is checked by decoding it:
//! its length, the tones in order, its chapters, and the absence of a speaker who opted out.
//!
//! The aiortc test needs Python with aiortc (see `aiortc.rs`) and ffmpeg/ffprobe:
//! `PODIUM_PYTHON=$PWD/.venv-media/bin/python cargo test -p podium-e2e --test it recording`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use podium_hub::Role;
use podium_hub::auth::Scope;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::aiortc::{HEAR_TIMEOUT, Peer, media_hub_with, require_aiortc};
use crate::support::TestHub;

/// A fresh directory for one test's recordings.
fn recordings_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("podium-e2e-rec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("recordings dir");
    dir
}

/// The admin API: `method path` with `token` and an optional JSON body; the status and the JSON answer (Null when
/// empty).
async fn api(
    hub: &TestHub,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().request(method, format!("http://{}{path}", hub.addr)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
}

#[tokio::test]
async fn moderators_start_and_stop_recording_and_everyone_is_told() {
    let dir = recordings_dir("rules");
    let hub = TestHub::start_with(|c| {
        c.recording.enabled = true;
        c.recording.dir = dir.clone();
    })
    .await;
    let (mut moderator, _) = hub.join("mod", "rec", Role::Moderator).await;
    let (mut speaker, _) = hub.join("spk", "rec", Role::Speaker).await;
    let (mut listener, welcome) = hub.join("lis", "rec", Role::Audience).await;
    assert!(welcome["state"].get("recording").is_none(), "not recording: omitted: {welcome}");

    // The speaker (on stage) opts out first: the stage roster shows it to everyone, `you` to them.
    moderator.ok(json!({"type": "invite_to_stage", "participant": "spk"})).await;
    speaker.ok(json!({"type": "accept_invite"})).await;
    speaker.ok(json!({"type": "set_recording_opt_out", "opt_out": true})).await;
    let you = speaker.event("you", |e| e["you"]["recording_opt_out"] == true).await;
    assert_eq!(you["you"]["role"], "speaker", "{you}");
    for client in [&mut moderator, &mut listener] {
        let stage = client.event("stage", |e| e["cause"]["kind"] == "recording_opt_out").await;
        assert_eq!(stage["cause"]["participant"], "spk", "{stage}");
        let member = stage["stage"].as_array().unwrap().iter().find(|m| m["id"] == "spk").cloned().unwrap();
        assert_eq!(member["recording_opt_out"], true, "{stage}");
    }
    speaker.expect_error(json!({"type": "set_recording_opt_out"}), "bad_request").await;

    // Only moderators start it; everyone gets the event, and late joiners find it in the snapshot.
    speaker.expect_error(json!({"type": "start_recording"}), "forbidden").await;
    listener.expect_error(json!({"type": "start_recording"}), "forbidden").await;
    moderator.ok(json!({"type": "start_recording", "reason": "archive"})).await;
    let mut id = None;
    for client in [&mut moderator, &mut speaker, &mut listener] {
        let event = client.event("recording", |e| e["recording"].is_object()).await;
        let rec = &event["recording"];
        assert_eq!(rec["by"], "mod", "{event}");
        assert!(rec["started_at_ms"].as_u64().is_some() && rec.get("by_admin").is_none(), "{event}");
        let this = rec["id"].as_str().expect("id").to_owned();
        assert!(this.starts_with("rec_") && this.len() == 24, "{this}");
        assert!(id.get_or_insert(this.clone()) == &this, "one id for everyone");
    }
    let id = id.expect("an id");
    let (_, welcome) = hub.join("late", "rec", Role::Audience).await;
    assert_eq!(welcome["state"]["recording"]["id"], id.as_str(), "{welcome}");
    let conflict = moderator.expect_error(json!({"type": "start_recording"}), "conflict").await;
    assert!(conflict["message"].as_str().is_some_and(|m| m.contains("already")), "{conflict}");

    // Stopping: moderators only; `null` to everyone; a second stop is a conflict.
    speaker.expect_error(json!({"type": "stop_recording"}), "forbidden").await;
    moderator.ok(json!({"type": "stop_recording"})).await;
    for client in [&mut moderator, &mut speaker, &mut listener] {
        let event = client.event("recording", |e| e["recording"].is_null()).await;
        assert!(event["seq"].as_u64().is_some(), "{event}");
    }
    moderator.expect_error(json!({"type": "stop_recording"}), "conflict").await;

    // The same through the admin API (scope moderate), named `by_admin`; `read` may not.
    let read = hub.admin_token("dash", Scope::Read);
    let moderate = hub.admin_token("ops", Scope::Moderate);
    let path = "/v1/admin/rooms/rec/recording";
    let (status, _) = api(&hub, reqwest::Method::POST, path, &read, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, started) = api(&hub, reqwest::Method::POST, path, &moderate, Some(json!({"reason": "api"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let event = listener.event("recording", |e| e["recording"].is_object()).await;
    assert_eq!(event["recording"]["by_admin"], "ops", "{event}");
    assert_eq!(event["recording"]["id"], started["id"], "{event}");
    let (status, problem) = api(&hub, reqwest::Method::POST, path, &moderate, None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{problem}");
    let (status, _) = api(&hub, reqwest::Method::DELETE, path, &moderate, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    listener.event("recording", |e| e["recording"].is_null()).await;
    let (status, _) = api(&hub, reqwest::Method::DELETE, path, &moderate, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Unknown replays are 404 (and malformed ids too: they never reach the file system).
    for bad in ["rec_nope", "..%2Fetc", "a.json"] {
        let (status, _) = api(&hub, reqwest::Method::GET, &format!("/v1/admin/recordings/{bad}"), &read, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
    }
    let (status, _) = api(&hub, reqwest::Method::GET, "/v1/admin/recordings?after=../x", &read, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Nobody spoke: each stopped recording is described as failed (`recording.failed`), saying why.
    let first = wait_for_replay(&hub, &id, &read).await;
    assert_eq!(first["state"], "failed", "{first}");
    assert!(first["error"].as_str().is_some_and(|e| e.contains("nothing was recorded")), "{first}");
    // The room's end stops a recording too.
    let (status, started) = api(&hub, reqwest::Method::POST, path, &moderate, None).await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    moderator.ok(json!({"type": "end_room"})).await;
    let last = wait_for_replay(&hub, started["id"].as_str().expect("id"), &read).await;
    assert_eq!((last["state"].as_str(), last["room"].as_str()), (Some("failed"), Some("rec")), "{last}");
    let (_, page) = api(&hub, reqwest::Method::GET, "/v1/admin/recordings?room=rec&limit=2", &read, None).await;
    assert_eq!(page["recordings"].as_array().map(Vec::len), Some(2), "{page}");
    assert!(page["next"].is_string(), "three replays, a page of two: {page}");
    hub.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Polls the replay `id`'s description until it is no longer being mixed (at most 60 s).
async fn wait_for_replay(hub: &TestHub, id: &str, token: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, replay) = api(hub, reqwest::Method::GET, &format!("/v1/admin/recordings/{id}"), token, None).await;
        if status == StatusCode::OK && replay["state"] != "mixing" {
            return replay;
        }
        assert!(tokio::time::Instant::now() < deadline, "no replay {id} within 60 s: {status} {replay}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn recording_is_refused_when_the_hub_or_the_room_does_not_record() {
    let hub = TestHub::start().await;
    let (mut moderator, _) = hub.join("mod", "norec", Role::Moderator).await;
    let refused = moderator.expect_error(json!({"type": "start_recording"}), "forbidden").await;
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("disabled")), "{refused}");
    // Opting out is always possible (it matters for other hubs and later recordings).
    moderator.ok(json!({"type": "set_recording_opt_out", "opt_out": true})).await;
    hub.stop().await;

    let dir = recordings_dir("norec");
    let hub = TestHub::start_with(|c| {
        c.recording.enabled = true;
        c.recording.dir = dir.clone();
    })
    .await;
    let admin = hub.admin_token("ops", Scope::Admin);
    let body = json!({"name": "private", "record": false});
    let (status, room) = api(&hub, reqwest::Method::POST, "/v1/admin/rooms", &admin, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{room}");
    let (mut moderator, _) = hub.join("mod", "private", Role::Moderator).await;
    let refused = moderator.expect_error(json!({"type": "start_recording"}), "forbidden").await;
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("must not be recorded")), "{refused}");
    let (status, _) = api(&hub, reqwest::Method::POST, "/v1/admin/rooms/private/recording", &admin, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    hub.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

const HOOK_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Power of `samples` at `hz` (Goertzel), sample rate `rate`.
fn goertzel(samples: &[f64], hz: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Decodes `path` with ffmpeg to mono 8 kHz samples.
fn decode(path: &Path) -> Vec<f64> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "8000", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg could not decode the replay: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(2).map(|b| f64::from(i16::from_le_bytes([b[0], b[1]]))).collect()
}

fn ffprobe_json(path: &Path, what: &str) -> Value {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", what])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

#[tokio::test]
async fn a_recorded_session_mixes_into_a_replay_with_both_tones_in_order_and_chapters_without_the_opted_out() {
    require_aiortc();
    let _heavy = crate::support::HEAVY.lock().await;
    let dir = recordings_dir("aiortc");
    let (port, hooks, mut receiver) = crate::support::webhook_receiver(HOOK_KEY);
    let hub = media_hub_with(|c| {
        c.recording.enabled = true;
        c.recording.dir = dir.clone();
        c.webhooks.endpoints = vec![podium_hub::config::EndpointConfig {
            name: "app".into(),
            url: format!("http://127.0.0.1:{port}/hook"),
            secrets: vec![HOOK_KEY.into()],
            include: vec!["recording.*".into()],
            exclude: Vec::new(),
            timeout_ms: 2_000,
        }];
    })
    .await;
    let room = "aiortc-rec";
    let (mut moderator, _) = hub.join("mod", room, Role::Moderator).await;
    // ann (440 Hz) speaks first, bob (660 Hz) joins muted and speaks second, cid (880 Hz) speaks throughout but
    // opted out.
    let speaker = |who: &str, hz: &str, unmute: bool| {
        let mut args = vec!["--join-role", "speaker", "--tone", hz];
        if unmute {
            args.push("--unmute");
        }
        Peer::spawn(&hub, who, who, room, Role::Moderator, &args)
    };
    let mut ann = speaker("ann", "440", true);
    let mut bob = speaker("bob", "660", false);
    let mut cid = speaker("cid", "880", true);
    let mut lis = Peer::spawn(&hub, "lis", "lis", room, Role::Audience, &["--recv"]);
    for p in [&mut ann, &mut bob, &mut cid, &mut lis] {
        p.ready().await;
    }
    cid.ok(json!({"type": "set_recording_opt_out", "opt_out": true})).await;
    // Both tones reach the listener: the media flows before the recording starts.
    lis.until_heard(440.0, HEAR_TIMEOUT).await;
    lis.until_heard(880.0, HEAR_TIMEOUT).await;

    let started = moderator.ok(json!({"type": "start_recording"})).await;
    assert_eq!(started["type"], "ok");
    let event = moderator.event("recording", |e| e["recording"].is_object()).await;
    let id = event["recording"]["id"].as_str().expect("id").to_owned();
    tokio::time::sleep(Duration::from_secs(3)).await;
    ann.ok(json!({"type": "set_muted", "muted": true})).await;
    bob.ok(json!({"type": "set_muted", "muted": false})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    moderator.ok(json!({"type": "stop_recording"})).await;

    // The replay is mixed after the stop: its description says when it is ready.
    let read = hub.admin_token("dash", Scope::Read);
    let replay = wait_for_replay(&hub, &id, &read).await;
    assert_eq!(replay["state"], "ready", "{replay}");
    assert_eq!((replay["room"].as_str(), replay["recording_id"].as_str()), (Some(room), Some(id.as_str())));
    assert_eq!(replay["speakers"], json!(["ann", "bob"]), "cid opted out: never written: {replay}");
    let (status, page) =
        api(&hub, reqwest::Method::GET, &format!("/v1/admin/recordings?room={room}"), &read, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["recordings"][0]["id"], id.as_str(), "{page}");

    // Served with HTTP Range: a range is 206, the whole file 200, both audio/ogg.
    let url = format!("http://{}/v1/admin/recordings/{id}/replay", hub.addr);
    let http = reqwest::Client::new();
    let part = http.get(&url).bearer_auth(&read).header("Range", "bytes=0-99").send().await.expect("range");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.expect("bytes").len(), 100);
    let whole = http.get(&url).bearer_auth(&read).send().await.expect("replay");
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.headers()["content-type"], "audio/ogg");
    let bytes = whole.bytes().await.expect("bytes");
    assert_eq!(bytes.len() as u64, replay["bytes"].as_u64().unwrap_or(0), "{replay}");
    let file = dir.join(format!("{id}-download.ogg"));
    std::fs::write(&file, &bytes).expect("write");

    // About 6 s long (3 s of each speaker), with a chapter per speaker turn.
    let format = ffprobe_json(&file, "-show_format");
    let secs: f64 = format["format"]["duration"].as_str().and_then(|d| d.parse().ok()).expect("duration");
    assert!((4.5..=8.0).contains(&secs), "the replay is {secs} s long, expected about 6: {format}");
    let chapters = ffprobe_json(&file, "-show_chapters");
    let titles: Vec<&str> =
        chapters["chapters"].as_array().expect("chapters").iter().filter_map(|c| c["tags"]["title"].as_str()).collect();
    assert_eq!(titles, ["ANN", "BOB"], "{chapters}");
    let bob_at: f64 = chapters["chapters"][1]["start_time"].as_str().and_then(|s| s.parse().ok()).expect("start");
    assert!((1.5..=4.5).contains(&bob_at), "bob's chapter starts at {bob_at} s, expected about 3: {chapters}");

    // The tones, window by window: 440 Hz first, then 660 Hz; never 880 Hz.
    let samples = decode(&file);
    let window = 4_000; // 0.5 s at 8 kHz
    let mut order = Vec::new();
    for (i, w) in samples.chunks(window).enumerate() {
        let energy: f64 = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
        if energy.sqrt() < 300.0 {
            continue; // silence (before the first packet, or the switch)
        }
        let [p440, p660, p880] = [440.0, 660.0, 880.0].map(|hz| goertzel(w, hz, 8_000.0));
        // A speaker mixed in would be of the others' level; the edge of a tone (a window where it stops) spreads
        // about 1 % of its power over nearby frequencies, 880 Hz included (seen once under CI load: 1.2 %).
        assert!(p880 < 0.05 * p440.max(p660), "window {i}: 880 Hz present ({p880:e} vs {p440:e}/{p660:e})");
        order.push(if p440 > p660 { 440 } else { 660 });
    }
    let first_660 = order.iter().position(|hz| *hz == 660).expect("bob heard");
    assert!(first_660 >= 3, "ann's 440 Hz comes first, for about 3 s: {order:?}");
    assert!(order[first_660..].iter().filter(|hz| **hz == 440).count() <= 1, "then bob's 660 Hz: {order:?}");
    assert!(order[..first_660].iter().all(|hz| *hz == 440), "{order:?}");
    assert!(order.len() - first_660 >= 3, "bob speaks for about 3 s: {order:?}");

    // The webhooks, verified by the receiver (Standard Webhooks): started, stopped, then ready with the replay.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events: Vec<Value> = hooks.lock().expect("log").clone();
        if events.iter().any(|e| e["payload"]["type"] == "recording.ready") {
            break events;
        }
        assert!(tokio::time::Instant::now() < deadline, "no recording.ready: {events:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(events.iter().all(|e| e["ok"] == true), "every request verifies: {events:?}");
    let kinds: Vec<&str> = events.iter().map(|e| e["payload"]["type"].as_str().unwrap_or("")).collect();
    assert_eq!(kinds, ["recording.started", "recording.stopped", "recording.ready"], "{events:?}");
    let started = &events[0]["payload"]["data"];
    assert_eq!((started["recording_id"].as_str(), started["actor"].as_str()), (Some(id.as_str()), Some("mod")));
    let ready = &events[2]["payload"]["data"];
    assert_eq!(ready["recording_id"], id.as_str(), "{ready}");
    assert_eq!(ready["room"], room, "{ready}");
    assert_eq!(ready["bytes"], replay["bytes"], "{ready}");
    assert_eq!(ready["duration_ms"], replay["duration_ms"], "{ready}");
    assert_eq!(ready["chapters"], replay["chapters"], "{ready}");
    assert_eq!(ready["url"], format!("/v1/admin/recordings/{id}/replay").as_str(), "{ready}");

    for p in [ann, bob, cid, lis] {
        p.finish().await;
    }
    let _ = receiver.kill();
    let _ = receiver.wait();
    hub.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two hubs sharing a room through Redis: a recording started on one reaches the other's clients and its snapshots
/// (room state, stored and announced), an opt-out on the other shows in the first's roster, and the stop too. The
/// hub holding the room's media (whichever took the lease) writes and mixes the replay; the test checks the
/// description lands in the shared directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_follows_the_room_across_hubs() {
    let redis = podium_store::redis_server::RedisServer::start();
    let dir = recordings_dir("redis");
    let shared = |c: &mut podium_hub::Config| {
        c.store.url = redis.url();
        c.recording.enabled = true;
        c.recording.dir = dir.clone();
    };
    let a = TestHub::start_with(shared).await;
    let b = TestHub::start_with(shared).await;
    let (mut moderator, _) = a.join_when_up("mod", "shared-rec", Role::Moderator).await;
    let (mut speaker, _) = b.join_when_up("spk", "shared-rec", Role::Speaker).await;
    moderator.ok(json!({"type": "invite_to_stage", "participant": "spk"})).await;
    speaker.event("you", |e| e["you"]["invite"].is_object()).await;
    speaker.ok(json!({"type": "accept_invite"})).await;

    speaker.ok(json!({"type": "set_recording_opt_out", "opt_out": true})).await;
    let stage = moderator.event("stage", |e| e["cause"]["kind"] == "recording_opt_out").await;
    assert!(stage["stage"].as_array().unwrap().iter().any(|m| m["id"] == "spk" && m["recording_opt_out"] == true));

    moderator.ok(json!({"type": "start_recording"})).await;
    let event = speaker.event("recording", |e| e["recording"].is_object()).await;
    let id = event["recording"]["id"].as_str().expect("id").to_owned();
    assert_eq!(event["recording"]["by"], "mod", "delivered by the other hub: {event}");
    let (_, welcome) = b.join("late", "shared-rec", Role::Audience).await;
    assert_eq!(welcome["state"]["recording"]["id"], id.as_str(), "the other hub's copy has it: {welcome}");
    let spk = welcome["state"]["stage"].as_array().unwrap().iter().find(|m| m["id"] == "spk").cloned();
    assert_eq!(spk.map(|m| m["recording_opt_out"].clone()), Some(json!(true)), "{welcome}");
    speaker.expect_error(json!({"type": "start_recording"}), "forbidden").await;

    moderator.ok(json!({"type": "stop_recording"})).await;
    speaker.event("recording", |e| e["recording"].is_null()).await;
    let read = a.admin_token("dash", Scope::Read);
    let replay = wait_for_replay(&a, &id, &read).await;
    assert_eq!(replay["recording_id"], id.as_str(), "{replay}");
    a.stop().await;
    b.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
