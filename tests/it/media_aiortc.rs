//! Audio end to end with a third-party WebRTC stack: `tests/media/peer.py` (aiortc) processes join a hub started in
//! this test, negotiate with `media_offer`, publish sine tones and decode what the SFU forwards to them. Each peer
//! reports, every 0.5 s and per received track, the dominant frequency (FFT) and RMS of what it decoded, so these
//! tests check what was actually heard: which tone, when it stopped, and who was never heard at all.
//!
//! Needs Python with aiortc, numpy and websockets: `.ci/run` makes `.venv-media` and sets `PODIUM_PYTHON`; by hand,
//! `python3 -m venv .venv-media && .venv-media/bin/pip install -r tests/media/requirements.txt` and
//! `PODIUM_PYTHON=$PWD/.venv-media/bin/python cargo test -p podium-e2e --test it media_aiortc`.

use std::time::Duration;

use podium_hub::Role;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::aiortc::{
    HEAR_TIMEOUT, LOUD_RMS, Peer, TOLERANCE_HZ, freqs, is_tone, last_loud_on, media_hub, media_hub_with, now_unix,
    reports_on, require_aiortc, track_owner,
};
use crate::support::{Client, TestHub, on_stage, roster};

/// The acceptance limit for silencing a speaker moved to the audience.
const STOP_WITHIN: f64 = 1.0;

/// Whether any `active_speakers` event seen by `peer` lists `who` as speaking.
fn ever_speaking(peer: &Peer, who: &str) -> Option<u64> {
    peer.hub_events("active_speakers")
        .flat_map(|e| e["speaking"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["participant"] == who)
        .filter_map(|s| s["level"].as_u64())
        .max()
}

/// A hub with media, a moderator on the websocket, a stage speaker sending 440 Hz (a moderator-ceiling token that
/// joins straight onto the stage as speaker and unmutes) and two receive-only listeners, all spawned.
async fn stage_with_two_listeners(room: &str) -> (TestHub, Client, Peer, Peer, Peer) {
    stage_with_two_listeners_and(room, &[]).await
}

/// [`stage_with_two_listeners`], with extra `peer.py` arguments for the speaker.
async fn stage_with_two_listeners_and(room: &str, spk_args: &[&str]) -> (TestHub, Client, Peer, Peer, Peer) {
    require_aiortc();
    let hub = media_hub().await;
    let (m, _) = hub.join("mod", room, Role::Moderator).await;
    let mut args = vec!["--join-role", "speaker", "--unmute", "--tone", "440"];
    args.extend_from_slice(spk_args);
    let spk = Peer::spawn(&hub, "spk", "spk", room, Role::Moderator, &args);
    let l1 = Peer::spawn(&hub, "l1", "l1", room, Role::Audience, &["--recv"]);
    let l2 = Peer::spawn(&hub, "l2", "l2", room, Role::Audience, &["--recv"]);
    (hub, m, spk, l1, l2)
}

/// [`stage_with_two_listeners`], with every peer ready and both listeners hearing spk's 440 Hz.
struct HeardStage {
    hub: TestHub,
    m: Client,
    spk: Peer,
    l1: Peer,
    l2: Peer,
    /// The mids l1 and l2 hear spk on.
    mid1: String,
    mid2: String,
}

async fn stage_heard_by_two_listeners(room: &str) -> HeardStage {
    let (hub, m, mut spk, mut l1, mut l2) = stage_with_two_listeners(room).await;
    for p in [&mut spk, &mut l1, &mut l2] {
        p.ready().await;
    }
    let (mid1, _) = l1.until_heard(440.0, HEAR_TIMEOUT).await;
    let (mid2, _) = l2.until_heard(440.0, HEAR_TIMEOUT).await;
    HeardStage { hub, m, spk, l1, l2, mid1, mid2 }
}

#[tokio::test]
async fn aiortc_speaker_heard_by_listeners_until_moved_to_audience() {
    let room = "aiortc-stage";
    let (hub, mut m, mut spk, mut l1, mut l2) = stage_with_two_listeners(room).await;
    spk.ready().await;
    let unmuted = spk.seen_events("reply").find(|r| r["tag"] == "unmute").cloned().expect("unmute reply");
    assert_eq!(unmuted["msg"]["type"], "ok", "speaker could not unmute: {unmuted}");
    l1.ready().await;
    l2.ready().await;

    // Both listeners decode the 440 Hz tone.
    let (mid1, heard1) = l1.until_heard(440.0, HEAR_TIMEOUT).await;
    let (mid2, heard2) = l2.until_heard(440.0, HEAR_TIMEOUT).await;
    eprintln!("l1 hears 440 Hz on mid {mid1}: {:?} Hz", freqs(&heard1));
    eprintln!("l2 hears 440 Hz on mid {mid2}: {:?} Hz", freqs(&heard2));
    assert_eq!(track_owner(&l1, &mid1).as_deref(), Some("spk"), "l1's media_tracks should put spk on mid {mid1}");
    assert_eq!(track_owner(&l2, &mid2).as_deref(), Some("spk"), "l2's media_tracks should put spk on mid {mid2}");
    // The speaker never receives its own audio.
    assert!(
        !spk.seen_events("audio").any(|r| r["rms"].as_f64().unwrap_or(0.0) > LOUD_RMS),
        "spk heard something while alone on stage"
    );

    // The moderator moves the speaker to the audience: the SFU stops forwarding within a second.
    let moved_at = now_unix();
    m.ok(json!({"type": "move_to_audience", "participant": "spk"})).await;
    l1.collect(Duration::from_millis(2500)).await;
    l2.collect(Duration::from_millis(500)).await;
    for p in [&l1, &l2] {
        // The last loud 20 ms frame decoded, over the whole run: the tone flowed right up to the move, then stopped.
        let last_loud = p.seen_events("audio").filter_map(|r| r["last_loud_t"].as_f64()).fold(f64::NAN, f64::max);
        let stopped_after = last_loud - moved_at;
        eprintln!("{}: last loud frame decoded {stopped_after:+.3} s after move_to_audience was sent", p.name);
        assert!(
            (-0.6..=STOP_WITHIN).contains(&stopped_after),
            "{} heard spk until {stopped_after:+.3} s after move_to_audience (limit {STOP_WITHIN} s; before -0.6 s \
             means the tone was not flowing at the move)",
            p.name
        );
        let reports_after = p.seen_events("audio").filter(|r| r["t"].as_f64().unwrap_or(0.0) >= moved_at + 1.5).count();
        assert!(reports_after >= 2, "{} stopped reporting (the check above needs reports after the limit)", p.name);
    }
    // And it stays silent.
    let later = l2.collect(Duration::from_millis(1500)).await;
    assert!(!later.iter().any(|r| is_tone(r, 440.0, 50.0)), "l2 heard spk again: {later:?}");

    // Active speakers: spk was announced loud while on stage, then as stopped.
    let level = ever_speaking(&l1, "spk").expect("l1 never got spk in active_speakers");
    eprintln!("spk's active-speaker level (0..=127): {level}");
    assert!(level >= 90, "a -15 dBov tone should have a level near 112, got {level}");
    assert!(
        l1.hub_events("active_speakers").any(|e| e["stopped"].as_array().is_some_and(|s| s.contains(&json!("spk")))),
        "l1 never saw spk in active_speakers.stopped"
    );

    // A listener that is done exits cleanly on stdin EOF.
    let status = l2.finish().await;
    assert!(status.success(), "l2 exited with {status}");
    drop((spk, l1));
    hub.stop().await;
}

#[tokio::test]
async fn aiortc_audience_audio_is_dropped_until_promoted() {
    let room = "aiortc-audience";
    let (hub, mut m, mut spk, mut l1, mut l2) = stage_with_two_listeners(room).await;
    // An audience member (allowed on stage by its token, but not there) that sends a 660 Hz tone anyway.
    let mut aud = Peer::spawn(&hub, "aud", "aud", room, Role::Speaker, &["--tone", "660"]);
    for p in [&mut spk, &mut l1, &mut l2, &mut aud] {
        p.ready().await;
    }
    let aud_connected_at = now_unix();

    // The stage speaker is heard, which shows the path works...
    let (spk_mid1, _) = l1.until_heard(440.0, HEAR_TIMEOUT).await;
    l2.until_heard(440.0, HEAR_TIMEOUT).await;
    // ... while the audience member's audio reaches nobody, for three seconds more.
    for p in [&mut l1, &mut l2, &mut spk] {
        p.collect(Duration::from_millis(1000)).await;
    }
    for p in [&l1, &l2, &spk] {
        let heard_660: Vec<&Value> = p.seen_events("audio").filter(|r| is_tone(r, 660.0, 20.0)).collect();
        assert!(heard_660.is_empty(), "{} heard the audience member's 660 Hz: {heard_660:?}", p.name);
        let reports = p.seen_events("audio").filter(|r| r["t"].as_f64().unwrap_or(0.0) > aud_connected_at).count();
        assert!(reports >= 4, "{} reported only {reports} times while aud was connected", p.name);
    }
    assert_eq!(ever_speaking(&l1, "aud"), None, "aud was announced as an active speaker while in the audience");

    // The moderator approves aud's raised hand; aud unmutes; on the same peer connection it is now heard.
    let r = aud.ok(json!({"type": "raise_hand"})).await;
    assert_eq!(r["result"]["promoted"], false);
    m.event("hand_queue", |e| e["queue"]["hands"][0]["id"] == "aud").await;
    m.ok(json!({"type": "approve_hand", "participant": "aud"})).await;
    aud.wait_for("promotion", Duration::from_secs(5), |v| {
        v["event"] == "ws" && v["msg"]["type"] == "you" && v["msg"]["you"]["role"] == "speaker"
    })
    .await;
    let promoted_at = now_unix();
    aud.ok(json!({"type": "set_muted", "muted": false})).await;

    let (mid1, heard1) = l1.until_heard(660.0, HEAR_TIMEOUT).await;
    let (mid2, heard2) = l2.until_heard(660.0, HEAR_TIMEOUT).await;
    let first = heard1.first().and_then(|r| r["t"].as_f64()).unwrap_or(f64::NAN);
    eprintln!("l1 hears 660 Hz on mid {mid1}: {:?} Hz, {:.2} s after promotion", freqs(&heard1), first - promoted_at);
    eprintln!("l2 hears 660 Hz on mid {mid2}: {:?} Hz", freqs(&heard2));
    assert_ne!(mid1, spk_mid1, "aud's audio must arrive in its own slot, not replace spk's");
    assert_eq!(track_owner(&l1, &mid1).as_deref(), Some("aud"), "l1's media_tracks should put aud on mid {mid1}");
    // The stage speaker is still heard alongside.
    let (mid440, _) = l1.until_heard(440.0, Duration::from_secs(5)).await;
    assert_eq!(mid440, spk_mid1, "spk moved to another slot");
    // And spk, on stage, hears aud too.
    spk.until_heard(660.0, HEAR_TIMEOUT).await;

    // No new connection: aud negotiated once, from its own first offer, and got `ready` once.
    let offers = aud.seen_events("negotiated").filter(|v| v["by"] == "client").count();
    assert_eq!(offers, 1, "aud renegotiated: {:?}", aud.seen_events("negotiated").collect::<Vec<_>>());
    assert_eq!(aud.seen_events("ready").count(), 1);
    // Now it counts as speaking (active_speakers arrive a few times per second at most).
    if ever_speaking(&l1, "aud").is_none() {
        l1.collect(Duration::from_millis(1500)).await;
    }
    let level = ever_speaking(&l1, "aud").expect("aud never appeared in active_speakers after promotion");
    assert!(level >= 90, "a -15 dBov tone should have a level near 112, got {level}");

    drop((spk, l1, l2, aud));
    hub.stop().await;
}

/// Asserts `p` heard the tone on `mid` until `since` and stopped within `STOP_WITHIN` s of it; returns the delay.
fn assert_stopped(p: &Peer, mid: &str, since: f64, what: &str) -> f64 {
    let stopped_after = last_loud_on(p, mid) - since;
    eprintln!("{}: last loud frame on mid {mid} decoded {stopped_after:+.3} s after {what}", p.name);
    assert!(
        (-0.6..=STOP_WITHIN).contains(&stopped_after),
        "{} heard mid {mid} until {stopped_after:+.3} s after {what} (limit {STOP_WITHIN} s; before -0.6 s means the \
         tone was not flowing then)",
        p.name
    );
    let later = reports_on(p, mid, since + STOP_WITHIN + 0.5, f64::INFINITY).len();
    assert!(later >= 2, "{} stopped reporting mid {mid} (the check above needs reports after the limit)", p.name);
    stopped_after
}

/// The latest `media_tracks` event of `p` maps `mid` to nobody (the slot is idle).
fn slot_idle(p: &Peer, mid: &str) -> bool {
    p.hub_events("media_tracks")
        .last()
        .and_then(|e| e["tracks"].as_array().cloned())
        .is_some_and(|tracks| tracks.iter().any(|t| t["mid"] == mid && t["participant"].is_null()))
}

#[tokio::test]
async fn aiortc_kicked_speaker_is_cut_off_while_the_room_goes_on() {
    let room = "aiortc-kick";
    // With --keep-media the kicked speaker ignores the close: its peer connection goes on sending 440 Hz, so the
    // silence below is the SFU's doing (the hub removed the peer), not the client's.
    let (hub, mut m, mut spk, mut l1, mut l2) = stage_with_two_listeners_and(room, &["--keep-media"]).await;
    let mut spk2 = Peer::spawn(
        &hub,
        "spk2",
        "spk2",
        room,
        Role::Moderator,
        &["--join-role", "speaker", "--unmute", "--tone", "550"],
    );
    for p in [&mut spk, &mut spk2, &mut l1, &mut l2] {
        p.ready().await;
    }

    // Both speakers reach both listeners, each in its own slot; spk2, on stage, hears spk.
    let mut slots = Vec::new();
    for p in [&mut l1, &mut l2] {
        let (mid440, _) = p.until_heard(440.0, HEAR_TIMEOUT).await;
        let (mid550, _) = p.until_heard(550.0, HEAR_TIMEOUT).await;
        assert_ne!(mid440, mid550, "{}: spk and spk2 share a slot", p.name);
        assert_eq!(track_owner(p, &mid440).as_deref(), Some("spk"), "{}: media_tracks for mid {mid440}", p.name);
        assert_eq!(track_owner(p, &mid550).as_deref(), Some("spk2"), "{}: media_tracks for mid {mid550}", p.name);
        slots.push((mid440, mid550));
    }
    let (spk2_mid, _) = spk2.until_heard(440.0, HEAR_TIMEOUT).await;
    let sent_before = spk.control(json!({"stats": true}), Duration::from_secs(5)).await;

    // The moderator kicks spk: its websocket is closed with 4004 and everyone sees it leave the stage.
    let kicked_at = now_unix();
    m.ok(json!({"type": "kick", "participant": "spk"})).await;
    let closed = spk.wait_for("the close after the kick", Duration::from_secs(5), |v| v["event"] == "closed").await;
    eprintln!("spk's websocket closed {:.3} s after the kick: {closed}", now_unix() - kicked_at);
    assert_eq!((closed["code"].as_u64(), closed["reason"].as_str()), (Some(4004), Some("removed")), "{closed}");
    let ev = m.event("stage", |e| e["cause"]["kind"] == "removed").await;
    assert_eq!(ev["cause"], json!({"kind": "removed", "participant": "spk", "by": "mod"}));
    assert_eq!(on_stage(&ev["stage"], "spk"), None, "spk still on stage: {ev}");
    assert_eq!(on_stage(&ev["stage"], "spk2").as_deref(), Some("speaker"), "{ev}");

    // Four seconds of listening, everyone at once (the moderator's socket is read too, for its heartbeat).
    let window = Duration::from_secs(4);
    tokio::join!(l1.collect(window), l2.collect(window), spk2.collect(window), m.drain(window));
    let end = now_unix();

    // spk kept sending all along, its peer connection still up on its side...
    let sent_after = spk.control(json!({"stats": true}), Duration::from_secs(5)).await;
    let sent = sent_after["packets_sent"].as_u64().unwrap_or(0) - sent_before["packets_sent"].as_u64().unwrap_or(0);
    eprintln!("spk sent {sent} RTP packets after the kick (state {})", sent_after["state"]);
    assert_eq!(sent_after["state"], "connected", "spk's peer connection went down on its side: {sent_after}");
    assert!(sent >= 150, "spk sent only {sent} RTP packets in the ~4 s after the kick: {sent_before} {sent_after}");
    // ... yet the tone stopped within a second for every receiver, and nobody hears it any more.
    let mut stops = Vec::new();
    for (p, mid) in [(&l1, &slots[0].0), (&l2, &slots[1].0), (&spk2, &spk2_mid)] {
        stops.push(assert_stopped(p, mid, kicked_at, "the kick"));
        let heard: Vec<&Value> = p
            .seen_events("audio")
            .filter(|r| r["t"].as_f64().unwrap_or(0.0) > kicked_at + STOP_WITHIN + 0.5 && is_tone(r, 440.0, 50.0))
            .collect();
        assert!(heard.is_empty(), "{} still hears the kicked speaker: {heard:?}", p.name);
        assert!(slot_idle(p, mid), "{}: mid {mid} is not idle in the last media_tracks after the kick", p.name);
    }
    // spk2 went on undisturbed: every report on its slot after the kick carries 550 Hz.
    for (p, (_, mid550)) in [(&l1, &slots[0]), (&l2, &slots[1])] {
        let reports = reports_on(p, mid550, kicked_at + 0.5, end);
        assert!(reports.len() >= 6, "{}: only {} reports on spk2's mid {mid550} after the kick", p.name, reports.len());
        let off: Vec<&&Value> = reports.iter().filter(|r| !is_tone(r, 550.0, TOLERANCE_HZ)).collect();
        assert!(off.is_empty(), "{}: spk2's 550 Hz faltered after the kick: {off:?}", p.name);
    }

    // The moderator's requests go on working, and the SFU still follows the room: muting spk2 silences it.
    let state = m.ok(json!({"type": "get_state"})).await;
    let ids: Vec<String> = roster(&state["result"]["stage"]).into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids, ["mod", "spk2"], "stage after the kick: {state}");
    assert_eq!(state["result"]["counts"]["total"], 4, "counts after the kick: {state}");
    let muted_at = now_unix();
    m.ok(json!({"type": "mute", "participant": "spk2"})).await;
    tokio::join!(l1.collect(Duration::from_millis(2500)), m.drain(Duration::from_millis(2500)));
    assert_stopped(&l1, &slots[0].1, muted_at, "the moderator muted spk2");
    eprintln!("kick: websocket closed and tone stopped {stops:.3?} s after the kick");

    drop((spk, spk2, l1, l2));
    hub.stop().await;
}

#[tokio::test]
async fn aiortc_media_survives_a_websocket_drop_and_resume_keeps_the_role() {
    let HeardStage { hub, mut m, mut spk, mut l1, mut l2, mid1, mid2 } =
        stage_heard_by_two_listeners("aiortc-resume").await;
    let first = spk.seen_events("joined").next().cloned().expect("spk's first welcome");
    let resume_token = first["welcome"]["resume_token"].as_str().expect("resume_token").to_owned();
    let grace_ms = first["welcome"]["grace_ms"].as_u64().expect("grace_ms");

    // spk's websocket drops (TCP closed, no close frame, no `leave`); its peer connection stays.
    let dropped = spk.control(json!({"drop_ws": true}), Duration::from_secs(5)).await;
    assert_eq!(dropped["type"], "ok");
    let dropped_at = now_unix();
    let closed = spk.seen_events("closed").last().cloned().expect("a `closed` line before the drop_ws reply");
    assert_eq!((closed["code"].as_u64(), closed["dropped"].as_bool()), (Some(1006), Some(true)), "{closed}");
    let ev = m.event("stage", |e| e["cause"]["kind"] == "disconnected").await;
    assert_eq!(ev["cause"]["participant"], "spk", "{ev}");
    let member = ev["stage"].as_array().and_then(|s| s.iter().find(|x| x["id"] == "spk")).cloned();
    let member = member.unwrap_or_else(|| panic!("spk left the stage on a drop: {ev}"));
    assert_eq!(
        (&member["role"], &member["muted"], &member["connected"]),
        (&json!("speaker"), &json!(false), &json!(false))
    );

    // Signaling is gone, audio is not: for four seconds of the grace period every report carries the tone.
    let window = Duration::from_secs(4);
    tokio::join!(l1.collect(window), l2.collect(window), m.drain(window));
    let rejoin_at = now_unix();
    assert!(rejoin_at - dropped_at < grace_ms as f64 / 1000.0, "the grace period ran out during the test");
    for (p, mid) in [(&l1, &mid1), (&l2, &mid2)] {
        let reports = reports_on(p, mid, dropped_at, rejoin_at);
        let off: Vec<&&Value> = reports.iter().filter(|r| !is_tone(r, 440.0, TOLERANCE_HZ)).collect();
        eprintln!(
            "{}: {} reports on mid {mid} while spk's websocket was down, {} without the tone",
            p.name,
            reports.len(),
            off.len()
        );
        assert!(reports.len() >= 7, "{}: only {} reports while spk's websocket was down", p.name, reports.len());
        assert!(off.is_empty(), "{}: the tone faltered while spk's websocket was down: {off:?}", p.name);
    }

    // spk reconnects: a new websocket, `join` with the same token and the last resume_token (and no `role`).
    let reply = spk.control(json!({"rejoin": true}), Duration::from_secs(10)).await;
    assert_eq!(reply["type"], "ok", "rejoin refused: {reply}");
    let welcome = &reply["result"];
    eprintln!("spk resumed {:.3} s after the drop; welcome state: {}", now_unix() - dropped_at, welcome["state"]);
    assert_eq!(welcome["resumed"], true, "{welcome}");
    assert_eq!(welcome["state"]["you"], json!({"role": "speaker", "ceiling": "moderator", "muted": false}));
    let member = welcome["state"]["stage"].as_array().and_then(|s| s.iter().find(|x| x["id"] == "spk")).cloned();
    assert_eq!(
        member,
        Some(json!({"id": "spk", "name": "SPK", "role": "speaker", "muted": false, "connected": true})),
        "{welcome}"
    );
    let ev = m.event("stage", |e| e["cause"]["kind"] == "reconnected").await;
    assert_eq!(ev["cause"]["participant"], "spk", "{ev}");
    assert_ne!(welcome["resume_token"], json!(null));
    eprintln!("resume tokens: first {resume_token}, after resuming {}", welcome["resume_token"]);

    // Audio went on through the rejoin, on the same peer connection: one offer, one `connected`, nothing else.
    let window = Duration::from_secs(2);
    tokio::join!(l1.collect(window), l2.collect(window), spk.collect(window), m.drain(window));
    let now = now_unix();
    for (p, mid) in [(&l1, &mid1), (&l2, &mid2)] {
        let reports = reports_on(p, mid, dropped_at, now);
        let off: Vec<&&Value> = reports.iter().filter(|r| !is_tone(r, 440.0, TOLERANCE_HZ)).collect();
        assert!(reports.len() >= 10, "{}: only {} reports since the drop", p.name, reports.len());
        assert!(off.is_empty(), "{}: the tone faltered around the resume: {off:?}", p.name);
    }
    let offers: Vec<&Value> = spk.seen_events("negotiated").collect();
    assert_eq!(offers.len(), 1, "spk renegotiated: {offers:?}");
    let pc: Vec<&Value> = spk.seen_events("pc").collect();
    assert!(pc.iter().all(|v| v["gen"] == 1) && pc.last().is_some_and(|v| v["state"] == "connected"), "{pc:?}");
    assert!(!pc.iter().any(|v| v["state"] == "disconnected" || v["state"] == "failed"), "{pc:?}");

    // The resumed session still drives the same media peer: muting over the new websocket silences it, and
    // unmuting brings the tone back, without any new offer.
    let muted_at = now_unix();
    spk.ok(json!({"type": "set_muted", "muted": true})).await;
    tokio::join!(l1.collect(Duration::from_millis(2500)), m.drain(Duration::from_millis(2500)));
    assert_stopped(&l1, &mid1, muted_at, "spk muted itself after resuming");
    spk.ok(json!({"type": "set_muted", "muted": false})).await;
    let (mid, _) = l1.until_heard(440.0, HEAR_TIMEOUT).await;
    assert_eq!(mid, mid1, "spk came back in another slot");
    assert_eq!(spk.seen_events("negotiated").count(), 1, "spk renegotiated");
    assert_eq!(spk.seen_events("joined").count(), 2);

    drop((spk, l1, l2));
    hub.stop().await;
}

/// Waits until the hub has pushed `media_state` `state` to `p` (looking from its `from`th line on, so a push that
/// came while the test waited for something else counts), reading the moderator's socket meanwhile (for its
/// heartbeat; what it receives is appended to `m_events`). Returns the Unix time the line was read.
async fn media_state(
    p: &mut Peer,
    from: usize,
    m: &mut Client,
    m_events: &mut Vec<Value>,
    state: &str,
    timeout: Duration,
) -> f64 {
    let is_it = |v: &Value| v["event"] == "ws" && v["msg"]["type"] == "media_state" && v["msg"]["state"] == state;
    if let Some(i) = (from..p.seen.len()).find(|&i| is_it(&p.seen[i])) {
        return p.seen_at[i];
    }
    let deadline = Instant::now() + timeout;
    loop {
        let step = (Instant::now() + Duration::from_millis(500)).min(deadline);
        while let Some(v) = p.next_until(step).await {
            if is_it(&v) {
                return now_unix();
            }
        }
        m_events.extend(m.drain(Duration::from_millis(1)).await);
        assert!(
            Instant::now() < deadline,
            "{}: no media_state `{state}` within {timeout:?}; media_state events so far: {:?}\n{}",
            p.name,
            p.hub_events("media_state").collect::<Vec<_>>(),
            p.diagnostics()
        );
    }
}

/// `spk` opens a fresh peer connection (new ICE credentials, new DTLS certificate) and sends its new offer on the same
/// websocket, which the SFU must answer; returns when it sent it, and where its lines stood then.
async fn new_pc(spk: &mut Peer) -> (f64, usize) {
    let restart_at = now_unix();
    let mark = spk.seen.len();
    let reply = spk.control(json!({"new_pc": true}), Duration::from_secs(10)).await;
    assert_eq!(reply["type"], "ok", "the new media_offer was refused: {reply}");
    (restart_at, mark)
}

/// After [`new_pc`] (at `restart_at`, spk's lines from `mark` on) and its peer connection connected: the hub pushes
/// `media_state` `connected` to spk, both listeners hear 440 Hz again, and spk did not join again: its role, seat and
/// mute state were never touched.
async fn back_on_the_new_pc(
    spk: &mut Peer,
    l1: &mut Peer,
    l2: &mut Peer,
    m: &mut Client,
    m_events: &mut Vec<Value>,
    restart_at: f64,
    mark: usize,
) {
    let connected_at = media_state(spk, mark, m, m_events, "connected", Duration::from_secs(5)).await;
    eprintln!("media_state connected {:.2} s after the new offer", connected_at - restart_at);
    let (mid, heard) = l1.until_heard(440.0, HEAR_TIMEOUT).await;
    let back = heard.first().and_then(|r| r["t"].as_f64()).unwrap_or(f64::NAN) - restart_at;
    eprintln!("l1 hears 440 Hz again on mid {mid} {back:.2} s after the new offer");
    l2.until_heard(440.0, HEAR_TIMEOUT).await;
    assert_eq!(spk.seen_events("joined").count(), 1, "spk joined again");
    let state = spk.ok(json!({"type": "get_state"})).await;
    assert_eq!(state["result"]["you"], json!({"role": "speaker", "ceiling": "moderator", "muted": false}), "{state}");
}

#[tokio::test]
async fn aiortc_media_failure_is_reported_and_a_fresh_peer_connection_restores_audio() {
    let HeardStage { hub, mut m, mut spk, mut l1, mut l2, mid1, mid2 } =
        stage_heard_by_two_listeners("aiortc-restart").await;
    let states: Vec<&Value> = spk.hub_events("media_state").collect();
    assert_eq!(states, [&json!({"type": "media_state", "state": "connected"})], "spk's media_state so far");

    // What the moderator saw before the cut (spk joining and unmuting) is not what is checked below.
    m.drain(Duration::from_millis(100)).await;
    // spk's network dies for media only: its ICE sockets drop everything, its websocket stays up.
    let mark = spk.seen.len();
    let cut = spk.control(json!({"media_cut": true}), Duration::from_secs(5)).await;
    let cut_at = now_unix();
    assert!(cut["sockets"].as_u64().unwrap_or(0) >= 1, "nothing to cut: {cut}");
    let mut m_events = Vec::new();
    let disconnected_at =
        media_state(&mut spk, mark, &mut m, &mut m_events, "disconnected", Duration::from_secs(25)).await;
    eprintln!("media_state disconnected arrived {:.1} s after the cut", disconnected_at - cut_at);
    let failed_at = media_state(&mut spk, mark, &mut m, &mut m_events, "failed", Duration::from_secs(25)).await;
    eprintln!(
        "media_state failed arrived {:.1} s after the cut ({:.1} s after disconnected)",
        failed_at - cut_at,
        failed_at - disconnected_at
    );
    for p in [&mut l1, &mut l2] {
        p.collect(Duration::from_millis(1)).await;
    }
    assert_stopped(&l1, &mid1, cut_at, "the media cut");
    assert_stopped(&l2, &mid2, cut_at, "the media cut");

    // A fresh peer connection (new ICE credentials, new DTLS certificate) and a new offer on the same websocket.
    let (restart_at, mark) = new_pc(&mut spk).await;
    // The SFU answered; now the new peer connection must come up (ICE, then DTLS with its new certificate).
    let deadline = Instant::now() + Duration::from_secs(15);
    while !spk.seen[mark..].iter().any(|v| v["event"] == "pc" && v["gen"] == 2 && v["state"] == "connected") {
        if spk.next_until(deadline.min(Instant::now() + Duration::from_millis(500))).await.is_none() {
            m_events.extend(m.drain(Duration::from_millis(1)).await);
        }
        if Instant::now() >= deadline {
            let pc: Vec<Value> = spk.seen[mark..].iter().filter(|v| v["event"] == "pc").cloned().collect();
            let pushed: Vec<Value> = spk.seen[mark..]
                .iter()
                .filter(|v| v["event"] == "ws" && v["msg"]["type"] == "media_state")
                .map(|v| v["msg"].clone())
                .collect();
            let stats = spk.control(json!({"stats": true}), Duration::from_secs(5)).await;
            panic!(
                "the fresh peer connection did not connect within 15 s of its offer, which the SFU answered; its \
                 states: {pc:?}; its transports now: {stats}; media_state pushed to spk since the offer: {pushed:?}\n{}",
                spk.diagnostics()
            );
        }
    }
    back_on_the_new_pc(&mut spk, &mut l1, &mut l2, &mut m, &mut m_events, restart_at, mark).await;
    m_events.extend(m.drain(Duration::from_millis(1)).await);
    let spk_changes: Vec<&Value> =
        m_events.iter().filter(|e| e["type"] == "stage" && e["cause"]["participant"] == "spk").collect();
    assert!(spk_changes.is_empty(), "the media failure changed spk on stage: {spk_changes:?}");

    drop((spk, l1, l2));
    hub.stop().await;
}

#[tokio::test]
async fn aiortc_closed_peer_connection_is_failed_and_a_fresh_one_restores_audio() {
    let HeardStage { hub, mut m, mut spk, mut l1, mut l2, mid1, .. } =
        stage_heard_by_two_listeners("aiortc-reopen").await;

    // spk closes its peer connection (DTLS close_notify reaches the SFU); its websocket stays up.
    let closed_at = now_unix();
    let mark = spk.seen.len();
    let reply = spk.control(json!({"close_pc": true}), Duration::from_secs(5)).await;
    assert_eq!(reply["type"], "ok");
    let mut m_events = Vec::new();
    let failed_at = media_state(&mut spk, mark, &mut m, &mut m_events, "failed", Duration::from_secs(5)).await;
    eprintln!("media_state failed arrived {:.2} s after close_pc", failed_at - closed_at);
    let early: Vec<&Value> = spk.hub_events("media_state").collect();
    eprintln!("spk's media_state events: {early:?}");
    tokio::join!(l1.collect(Duration::from_millis(2500)), m.drain(Duration::from_millis(2500)));
    assert_stopped(&l1, &mid1, closed_at, "close_pc");

    let (restart_at, mark) = new_pc(&mut spk).await;
    spk.wait_for("the new peer connection to connect", Duration::from_secs(15), |v| {
        v["event"] == "pc" && v["gen"] == 2 && v["state"] == "connected"
    })
    .await;
    back_on_the_new_pc(&mut spk, &mut l1, &mut l2, &mut m, &mut m_events, restart_at, mark).await;

    drop((spk, l1, l2));
    hub.stop().await;
}

/// A listener whose websocket was away while its downstream slots changed gets the current `media_tracks` right after
/// the welcome of its resume: its peer connection went on all along, and without it the listener would keep showing
/// the old speaker on that slot until the next change.
#[tokio::test]
async fn a_resumed_listener_gets_the_current_media_tracks_at_once() {
    require_aiortc();
    let hub = media_hub().await;
    tracks_after_resume("aiortc-tracks-resume", &hub, &hub).await;
}

/// [`a_resumed_listener_gets_the_current_media_tracks_at_once`] with two hubs on one Redis: the room's media on hub A,
/// the listener's websocket on hub B, which relays its negotiation. Its resume on B is a join A only hears of through
/// the room's announcements; A sends the slots back through them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_resumed_on_another_hub_than_the_media_hub_gets_the_current_media_tracks() {
    require_aiortc();
    let redis = podium_store::redis_server::RedisServer::start();
    let a = media_hub_with(|c| c.store.url = redis.url()).await;
    let b = media_hub_with(|c| c.store.url = redis.url()).await;
    tracks_after_resume("aiortc-tracks-resume-2", &a, &b).await;
    drop(redis);
}

/// The moderator and a speaker (440 Hz) on `media`, which runs the room's media; a listener on `lis_hub`. The listener
/// hears the speaker, its websocket drops, the speaker leaves (freeing the listener's slot), the listener resumes:
/// right after the welcome it must get `media_tracks` with that slot idle.
async fn tracks_after_resume(room: &str, media: &TestHub, lis_hub: &TestHub) {
    let (mut m, _) = media.join_when_up("mod", room, Role::Moderator).await;
    let spk_args = ["--join-role", "speaker", "--unmute", "--tone", "440"];
    let mut spk = Peer::spawn(media, "spk", "spk", room, Role::Moderator, &spk_args);
    let mut lis = Peer::spawn(lis_hub, "lis", "lis", room, Role::Audience, &["--recv"]);
    spk.ready().await;
    lis.ready().await;
    let (mid, _) = lis.until_heard(440.0, HEAR_TIMEOUT).await;
    assert_eq!(track_owner(&lis, &mid).as_deref(), Some("spk"), "lis's media_tracks should put spk on mid {mid}");

    // lis's websocket drops (its peer connection stays); meanwhile spk leaves, which frees lis's slot.
    let dropped = lis.control(json!({"drop_ws": true}), Duration::from_secs(5)).await;
    assert_eq!(dropped["type"], "ok");
    tokio::time::sleep(Duration::from_millis(300)).await;
    spk.command(&json!({"leave": true}));
    m.event("stage", |e| e["cause"]["kind"] == "left" && e["cause"]["participant"] == "spk").await;
    // The SFU frees the slot when spk's peer goes (an event lis cannot get while away).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(track_owner(&lis, &mid).as_deref(), Some("spk"), "lis cannot have heard of it yet");

    // lis resumes: the welcome, then at once the slots as they are now.
    let from = lis.seen.len();
    let reply = lis.control(json!({"rejoin": true}), Duration::from_secs(10)).await;
    assert_eq!(reply["type"], "ok", "rejoin refused: {reply}");
    assert_eq!(reply["result"]["resumed"], true, "{reply}");
    let is_tracks = |v: &Value| v["event"] == "ws" && v["msg"]["type"] == "media_tracks";
    if !lis.seen[from..].iter().any(is_tracks) {
        lis.wait_for("`media_tracks` after resuming", Duration::from_secs(3), is_tracks).await;
    }
    let tracks = lis.seen[from..].iter().find(|v| is_tracks(v)).expect("media_tracks")["msg"].clone();
    eprintln!("lis after resuming: {tracks}");
    let slot = tracks["tracks"].as_array().and_then(|t| t.iter().find(|t| t["mid"] == mid.as_str())).cloned();
    assert_eq!(slot, Some(json!({"mid": mid, "participant": null})), "lis's slots after resuming: {tracks}");
}

/// The SFU seals forwarded audio itself (the thin egress path, `podium-media/src/srtp.rs`): an aiortc listener that
/// offers only one DTLS-SRTP protection profile decodes the tone under each of the three str0m negotiates.
#[tokio::test]
async fn aiortc_listeners_decode_forwarded_audio_under_every_srtp_profile() {
    require_aiortc();
    let room = "aiortc-srtp";
    let hub = media_hub().await;
    let (_m, _) = hub.join("mod", room, Role::Moderator).await;
    let mut spk = Peer::spawn(
        &hub,
        "spk",
        "spk",
        room,
        Role::Moderator,
        &["--join-role", "speaker", "--unmute", "--tone", "440"],
    );
    let profiles = ["aes128-cm-sha1-80", "aead-aes-128-gcm", "aead-aes-256-gcm"];
    let mut listeners: Vec<Peer> = profiles
        .iter()
        .map(|p| Peer::spawn(&hub, p, p, room, Role::Audience, &["--recv", "--srtp-profile", p]))
        .collect();
    spk.ready().await;
    for l in &mut listeners {
        l.ready().await;
        let (mid, heard) = l.until_heard(440.0, HEAR_TIMEOUT).await;
        eprintln!("{} hears 440 Hz on mid {mid}: {:?} Hz", l.name, freqs(&heard));
        assert_eq!(track_owner(l, &mid).as_deref(), Some("spk"), "{}: media_tracks should put spk on {mid}", l.name);
    }
    drop((spk, listeners));
    hub.stop().await;
}
