//! The stage, end to end: every role change a moderator and listeners make, seen by every kind of client.

use std::time::Duration;

use podium_hub::Role;
use serde_json::json;

use crate::support::{TestHub, on_stage, roster};

#[tokio::test]
async fn full_stage_scenario() {
    let hub = TestHub::start().await;
    let room = "summit";

    // A moderator opens the room and is on stage.
    let (mut m, welcome) = hub.join("mod", room, Role::Moderator).await;
    assert_eq!(welcome["protocol"], 1);
    assert_eq!(welcome["state"]["you"]["role"], "moderator");
    assert_eq!(on_stage(&welcome["state"]["stage"], "mod").as_deref(), Some("moderator"));

    // Three listeners join as audience; only the stage hears about each join.
    let (mut l1, w1) = hub.join("l1", room, Role::Speaker).await;
    let (mut l2, _) = hub.join("l2", room, Role::Speaker).await;
    let (mut l3, _) = hub.join("l3", room, Role::Speaker).await;
    assert_eq!(w1["state"]["you"]["role"], "audience");
    assert_eq!(w1["state"].get("hands"), None, "listeners do not see the hand queue");
    for id in ["l1", "l2", "l3"] {
        m.event("participant_joined", |e| e["participant"]["id"] == id).await;
    }
    let counts = l1.event("counts", |e| e["counts"]["total"] == 4).await;
    assert_eq!(counts["counts"]["audience"], 3);

    // Two raise hands; the queue keeps order and each sees their own place.
    let r = l1.ok(json!({"type": "raise_hand"})).await;
    assert_eq!(r["result"], json!({"position": 1, "promoted": false}));
    let r = l2.ok(json!({"type": "raise_hand"})).await;
    assert_eq!(r["result"]["position"], 2);
    let q = m.event("hand_queue", |e| e["queue"]["total"] == 2).await;
    assert_eq!(q["queue"]["hands"][0]["id"], "l1");
    assert_eq!(q["queue"]["hands"][1]["id"], "l2");

    // One is approved: promoted at once, muted, and everyone sees it.
    m.ok(json!({"type": "approve_hand", "participant": "l1"})).await;
    let e = l3.event("stage", |e| e["cause"]["kind"] == "promoted").await;
    assert_eq!(e["cause"], json!({"kind": "promoted", "participant": "l1", "by": "mod"}));
    assert_eq!(
        roster(&e["stage"]),
        vec![("mod".into(), "moderator".into(), true), ("l1".into(), "speaker".into(), true)]
    );
    let you = l2.event("you", |e| e["you"]["hand_position"] == 1).await;
    assert_eq!(you["you"]["role"], "audience");
    let you = l1.event("you", |e| e["you"]["role"] == "speaker").await;
    assert_eq!(you["you"].get("hand_position"), None);

    // One is invited and accepts.
    m.ok(json!({"type": "invite_to_stage", "participant": "l3"})).await;
    let you = l3.event("you", |e| e["you"]["invite"]["by"] == "mod").await;
    assert!(you["you"]["invite"]["expires_at_ms"].as_u64().is_some());
    l3.ok(json!({"type": "accept_invite"})).await;
    let e = l2.event("stage", |e| e["cause"]["kind"] == "invite_accepted").await;
    assert_eq!(on_stage(&e["stage"], "l3").as_deref(), Some("speaker"));

    // One is moved back to the audience.
    m.ok(json!({"type": "move_to_audience", "participant": "l1"})).await;
    let e = l2.event("stage", |e| e["cause"]["kind"] == "moved_to_audience").await;
    assert_eq!(on_stage(&e["stage"], "l1"), None);
    l1.event("you", |e| e["you"]["role"] == "audience").await;

    // Mute: the speaker unmutes herself; a moderator mutes her; there is no remote unmute; audience cannot mute.
    l3.ok(json!({"type": "set_muted", "muted": false})).await;
    m.event("stage", |e| e["cause"]["kind"] == "unmuted").await;
    m.ok(json!({"type": "mute", "participant": "l3"})).await;
    let e = l2.event("stage", |e| e["cause"]["kind"] == "muted").await;
    assert_eq!(e["cause"]["by"], "mod");
    assert!(roster(&e["stage"]).contains(&("l3".into(), "speaker".into(), true)));
    l1.expect_error(json!({"type": "mute", "participant": "l3"}), "forbidden").await;
    l1.expect_error(json!({"type": "set_muted", "muted": false}), "forbidden").await;

    // Kick: closed with `removed`; the identity may come back.
    m.ok(json!({"type": "kick", "participant": "l2"})).await;
    assert_eq!(l2.closed().await, (4004, "removed".into()));
    let (mut l2, _) = hub.join("l2", room, Role::Speaker).await;

    // Ban: closed with `banned`, and refused from then on.
    m.ok(json!({"type": "ban", "participant": "l2"})).await;
    assert_eq!(l2.closed().await, (4005, "banned".into()));
    let mut again = hub.connect().await;
    let token = hub.token("l2", room, Role::Speaker);
    again.expect_error(json!({"type": "join", "token": token}), "banned").await;
    assert_eq!(again.closed().await.0, 4005);

    // Handover: one transition replaces the whole stage.
    let (mut m2, _) = hub.join("m2", room, Role::Moderator).await;
    let (mut m3, w3) = hub.join("m3", room, Role::Moderator).await;
    // A moderator token joins onto the stage by default; m3 asked for nothing, so both sit on stage now.
    assert_eq!(w3["state"]["you"]["role"], "moderator");
    m.expect_error(json!({"type": "handover", "stage": [{"participant": "l1", "role": "moderator"}]}), "forbidden")
        .await;
    let before = l1.drain(Duration::from_millis(50)).await.len();
    let _ = before;
    m.ok(json!({"type": "handover", "stage": [
        {"participant": "m2", "role": "moderator"},
        {"participant": "m3", "role": "speaker"},
        {"participant": "l1", "role": "speaker"},
    ]}))
    .await;
    let e = l1.event("stage", |e| e["cause"]["kind"] == "handover").await;
    assert_eq!(
        roster(&e["stage"]).into_iter().map(|(i, r, _)| (i, r)).collect::<Vec<_>>(),
        vec![("m2".into(), "moderator".into()), ("m3".into(), "speaker".into()), ("l1".into(), "speaker".into())]
    );
    let seq = e["seq"].clone();
    // Exactly one stage event for the handover: nothing else with that seq is a stage event.
    let later = l1.drain(Duration::from_millis(200)).await;
    assert!(later.iter().all(|x| !(x["type"] == "stage" && x["seq"] == seq)), "{later:?}");
    m.event("you", |e| e["you"]["role"] == "audience").await;
    l3.event("you", |e| e["you"]["role"] == "audience").await;

    // The former moderator is audience now and cannot moderate.
    m.expect_error(json!({"type": "kick", "participant": "l3"}), "forbidden").await;

    // The last moderator leaves: the longest-serving speaker whose token allows it takes over.
    m2.ok(json!({"type": "leave"})).await;
    assert_eq!(m2.closed().await.0, 1000);
    let e = l3.event("stage", |e| e["cause"]["kind"] == "succession").await;
    assert_eq!(e["cause"]["participant"], "m3");
    assert_eq!(on_stage(&e["stage"], "m3").as_deref(), Some("moderator"));
    m3.event("you", |e| e["you"]["role"] == "moderator").await;
    // The room carries on: the new moderator can act.
    m3.ok(json!({"type": "mute", "participant": "l1"})).await;

    hub.stop().await;
}

#[tokio::test]
async fn resume_within_and_after_the_grace_period() {
    let hub = TestHub::start_with(|c| c.room.grace_ms = 700).await;
    let room = "grace";
    let (mut m, _) = hub.join("mod", room, Role::Moderator).await;
    let (mut s, _) = hub.join("s", room, Role::Speaker).await;
    let (mut h, _) = hub.join("h", room, Role::Speaker).await;
    s.ok(json!({"type": "raise_hand"})).await;
    h.ok(json!({"type": "raise_hand"})).await;
    m.ok(json!({"type": "approve_hand", "participant": "s"})).await;
    s.ok(json!({"type": "set_muted", "muted": false})).await;

    // Both drop without leaving.
    drop(s);
    drop(h);
    let e = m.event("stage", |e| e["cause"]["kind"] == "disconnected").await;
    assert_eq!(e["cause"]["participant"], "s");
    assert!(e["stage"].as_array().expect("array").iter().any(|x| x["id"] == "s" && x["connected"] == false));

    // Within the grace period: role, mute state and hand position come back.
    let (s, w) = hub.join("s", room, Role::Speaker).await;
    assert_eq!(w["resumed"], true);
    assert_eq!(w["state"]["you"]["role"], "speaker");
    assert_eq!(w["state"]["you"]["muted"], false);
    m.event("stage", |e| e["cause"]["kind"] == "reconnected").await;
    let mut h2 = hub.connect().await;
    let token = hub.token("h", room, Role::Speaker);
    let r = h2.ok(json!({"type": "join", "token": token})).await;
    assert_eq!(r["result"]["resumed"], true);
    assert_eq!(r["result"]["state"]["you"]["hand_position"], 1);

    // With the resume token too.
    let resume = w["resume_token"].as_str().expect("resume token").to_owned();
    drop(s);
    m.event("stage", |e| e["cause"]["kind"] == "disconnected").await;
    let mut s2 = hub.connect().await;
    let token = hub.token("s", room, Role::Speaker);
    let r = s2.ok(json!({"type": "join", "token": token, "resume": resume})).await;
    assert_eq!(r["result"]["resumed"], true);
    assert_eq!(r["result"]["state"]["you"]["role"], "speaker");

    // After the grace period: gone, and a new join starts fresh in the audience.
    drop(s2);
    m.event("stage", |e| e["cause"]["kind"] == "disconnected").await;
    let e = m.event("stage", |e| e["cause"]["kind"] == "left").await;
    assert_eq!(on_stage(&e["stage"], "s"), None);
    let (_s3, w) = hub.join("s", room, Role::Speaker).await;
    assert_eq!(w["resumed"], false);
    assert_eq!(w["state"]["you"]["role"], "audience");
    hub.stop().await;
}

#[tokio::test]
async fn duplicate_identity_closes_the_first_connection() {
    let hub = TestHub::start().await;
    let (mut first, _) = hub.join("dup", "r", Role::Speaker).await;
    first.ok(json!({"type": "raise_hand"})).await;
    let (mut second, w) = hub.join("dup", "r", Role::Speaker).await;
    assert_eq!(first.closed().await, (4003, "duplicate_identity".into()));
    assert_eq!(w["resumed"], true);
    assert_eq!(w["state"]["you"]["hand_position"], 1);
    second.ok(json!({"type": "lower_hand"})).await;
    hub.stop().await;
}

#[tokio::test]
async fn listeners_get_counts_not_joins_and_moderators_page_the_audience() {
    let hub = TestHub::start_with(|c| c.room.counts_interval_ms = 300).await;
    let room = "big";
    let (mut m, _) = hub.join("mod", room, Role::Moderator).await;
    let (mut watcher, _) = hub.join("watcher", room, Role::Audience).await;
    let mut others = Vec::new();
    for i in 0..25 {
        others.push(hub.join(&format!("a{i:02}"), room, Role::Speaker).await.0);
    }
    let seen = watcher.drain(Duration::from_millis(900)).await;
    assert!(seen.iter().all(|e| e["type"] != "participant_joined"), "listeners must not see joins: {seen:?}");
    let counts: Vec<_> = seen.iter().filter(|e| e["type"] == "counts").collect();
    assert!(!counts.is_empty() && counts.len() <= 4, "counts must be coalesced, got {}", counts.len());
    assert_eq!(counts.last().map(|c| c["counts"]["total"].clone()), Some(json!(27)));
    for i in 0..25 {
        m.event("participant_joined", |e| e["participant"]["id"] == format!("a{i:02}")).await;
    }

    // Paging: 26 audience members in pages of 10, in join order.
    let mut ids = Vec::new();
    let mut after = serde_json::Value::Null;
    loop {
        let mut req = json!({"type": "list_audience", "limit": 10});
        if !after.is_null() {
            req["after"] = after.clone();
        }
        let page = m.ok(req).await["result"].clone();
        assert_eq!(page["total"], 26);
        for e in page["entries"].as_array().expect("entries") {
            ids.push(e["id"].as_str().expect("id").to_owned());
        }
        after = page.get("next").cloned().unwrap_or(serde_json::Value::Null);
        if after.is_null() {
            break;
        }
    }
    let mut expected = vec!["watcher".to_owned()];
    expected.extend((0..25).map(|i| format!("a{i:02}")));
    assert_eq!(ids, expected);
    watcher.expect_error(json!({"type": "list_audience"}), "forbidden").await;
    hub.stop().await;
}

#[tokio::test]
async fn capacity_open_mic_and_closed_rooms() {
    let hub = TestHub::start().await;
    let room = "rules";
    let (mut m, _) = hub.join("mod", room, Role::Moderator).await;
    let (mut a, _) = hub.join("a", room, Role::Speaker).await;
    let (mut b, _) = hub.join("b", room, Role::Speaker).await;
    m.expect_error(json!({"type": "update_settings", "stage_capacity": 0}), "bad_request").await;
    m.ok(json!({"type": "update_settings", "stage_capacity": 2})).await;
    let s = a.event("settings", |_| true).await;
    assert_eq!(s["settings"]["stage_capacity"], 2);
    a.ok(json!({"type": "raise_hand"})).await;
    b.ok(json!({"type": "raise_hand"})).await;
    m.ok(json!({"type": "approve_hand", "participant": "a"})).await;
    m.expect_error(json!({"type": "approve_hand", "participant": "b"}), "stage_full").await;
    m.expect_error(json!({"type": "update_settings", "stage_capacity": 1}), "conflict").await;

    // Open mic: a raised hand goes straight up while a seat is free.
    m.ok(json!({"type": "update_settings", "open_mic": true, "stage_capacity": 3})).await;
    b.ok(json!({"type": "lower_hand"})).await;
    let r = b.ok(json!({"type": "raise_hand"})).await;
    assert_eq!(r["result"], json!({"position": null, "promoted": true}));

    // Closed room: only guests (and moderator tokens) get in.
    m.ok(json!({"type": "update_settings", "closed": true})).await;
    let mut stranger = hub.connect().await;
    let token = hub.token("stranger", room, Role::Speaker);
    stranger.expect_error(json!({"type": "join", "token": token}), "not_invited").await;
    assert_eq!(stranger.closed().await, (4009, "not_invited".into()));
    m.ok(json!({"type": "invite_to_room", "identity": "guest"})).await;
    let (_g, w) = hub.join("guest", room, Role::Speaker).await;
    assert_eq!(w["state"]["settings"]["closed"], true);
    hub.stop().await;
}

#[tokio::test]
async fn ending_the_room_and_shutting_down_close_everyone_with_a_reason() {
    let hub = TestHub::start().await;
    let (mut m, _) = hub.join("mod", "ending", Role::Moderator).await;
    let (mut l, _) = hub.join("l", "ending", Role::Speaker).await;
    l.expect_error(json!({"type": "end_room"}), "forbidden").await;
    m.ok(json!({"type": "end_room"})).await;
    assert_eq!(l.closed().await, (4006, "room_ended".into()));
    assert_eq!(m.closed().await.0, 4006);

    let (mut a, _) = hub.join("a", "other", Role::Speaker).await;
    let mut unjoined = hub.connect().await;
    unjoined.send_text("{}").await;
    hub.stop().await;
    assert_eq!(a.closed().await, (4007, "server_shutdown".into()));
    assert_eq!(unjoined.closed().await.0, 4007);
}

#[tokio::test]
async fn heartbeat_and_auth_timeouts_close_with_their_codes() {
    let hub = TestHub::start_with(|c| {
        c.limits.heartbeat_interval_ms = 100;
        c.limits.heartbeat_timeout_ms = 300;
        c.auth.auth_timeout_ms = 400;
    })
    .await;
    let mut silent = hub.connect().await;
    assert_eq!(silent.closed().await, (4001, "auth_timeout".into()));

    let (mut quiet, _) = hub.join("q", "hb", Role::Speaker).await;
    // Not reading means not answering pings: after the timeout the hub closes.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(quiet.closed().await, (4008, "heartbeat_timeout".into()));

    // A client that reads (and so answers pings) stays.
    let (mut alive, _) = hub.join("alive", "hb", Role::Speaker).await;
    let _ = alive.drain(Duration::from_millis(700)).await;
    alive.ok(json!({"type": "ping"})).await;
    hub.stop().await;
}
