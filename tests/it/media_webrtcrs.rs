//! Issue #13: the SRTP the SFU produces is decoded by a third WebRTC stack, independent of str0m: the webrtc-rs
//! listener of `webrtcrs.rs` (the `webrtc` crate, Opus decoded with libopus), speaking the protocol as documented.
//! The speakers are aiortc peers (`tests/media/peer.py`) sending sine tones.
//!
//! - One hub: the listener hears speaker A's 440 Hz; a moderator promotes B (660 Hz) and the listener hears it too,
//!   on another slot; A is moved to the audience and its tone stops within a second while B's goes on; the
//!   listener restarts ICE (a `media_offer` from `create_offer` with `ice_restart: true`) and B's tone resumes within
//!   2 s.
//! - Two hubs on Redis: hub A, which runs the room's media, drains; the listener is closed with 4007, resumes on hub
//!   B, negotiates a new peer connection for the new media epoch and hears the tone again, never missing it for more
//!   than 3 s.
//!
//! Every received track's RTP continuity (lost packets, reordering, timestamp jumps) is printed and bounded.
//!
//! Needs the aiortc venv (`PODIUM_PYTHON`, see `aiortc.rs`), libopus (Debian's `libopus-dev`; `.ci/run` installs
//! it) and, for the drain, `redis-server`:
//! `PODIUM_PYTHON=$PWD/.venv-media/bin/python cargo test -p podium-e2e --test it media_webrtcrs`.

use std::time::Duration;

use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use podium_store::redis_server::RedisServer;
use serde_json::{Value, json};

use crate::aiortc::{HEAR_TIMEOUT, Peer, READY_TIMEOUT, is_tone, media_hub, now_unix, require_aiortc};
use crate::support::Client;
use crate::web_drain::{Node, SECRET};
use crate::webrtcrs::{Listener, TOLERANCE_HZ};

/// A speaker moved to the audience is silent for the listener within this long (seconds).
const STOP_WITHIN: f64 = 1.0;
/// A promoted speaker who unmutes is heard within this long, a new slot negotiated on the way (seconds).
const HEARD_WITHIN: f64 = 2.0;
/// After an ICE restart, the listener's longest silence (seconds).
const ICE_GAP_WITHIN: f64 = 2.0;
/// During a drain, the listener's longest silence (seconds), as `crates/podium/tests/failover.rs` allows.
const DRAIN_GAP_WITHIN: f64 = 3.0;
/// A listener closed with 4007 has resumed on the other hub within this long (seconds).
const RESUME_WITHIN: f64 = 3.0;
/// A draining hub stops by itself within this long.
const EXIT_WITHIN: Duration = Duration::from_secs(15);

/// Prints every received track's RTP continuity and checks it: nothing reordered or duplicated, every packet
/// decoded, the timestamps advancing with the sequence numbers (20 ms a packet), and next to nothing lost (loopback)
/// beyond `excused`: packets lost on (pc, mid) where the test expects a short loss (an ICE restart).
fn check_continuity(lis: &Listener, excused: &[((u64, &str), u64)]) {
    let all = lis.continuity();
    assert!(!all.is_empty(), "no track reported");
    for ((generation, mid, ssrc), rtp) in &all {
        eprintln!("{}: pc {generation} mid {mid} ssrc {ssrc}: {rtp}", lis.name);
        let n = |k: &str| rtp[k].as_u64().unwrap_or(u64::MAX);
        assert!(n("packets") > 0, "pc {generation} mid {mid}: {rtp}");
        assert_eq!(n("out_of_order"), 0, "pc {generation} mid {mid}: packets reordered or repeated: {rtp}");
        assert_eq!(n("decode_errors"), 0, "pc {generation} mid {mid}: undecodable Opus: {rtp}");
        assert_eq!(n("ts_jumps"), 0, "pc {generation} mid {mid}: RTP timestamps out of step with the sequence: {rtp}");
        let excuse: u64 = excused.iter().filter(|((g, m), _)| g == generation && m == mid).map(|(_, lost)| lost).sum();
        // Loopback loses nothing; allow 1 % for a starved process on a loaded machine.
        assert!(
            n("lost") <= excuse + 2 + n("packets") / 100,
            "pc {generation} mid {mid}: packets lost ({excuse} excused): {rtp}"
        );
    }
}

/// The packets counted lost on (pc, mid) so far.
fn lost_on(lis: &Listener, generation: u64, mid: &str) -> u64 {
    lis.continuity()
        .iter()
        .filter(|((g, m, _), _)| *g == generation && m == mid)
        .map(|(_, rtp)| rtp["lost"].as_u64().unwrap_or(0))
        .sum()
}

/// The `media_tracks` participants the listener saw for `mid`, in order, without repeats.
fn owners_of(lis: &Listener, mid: &str) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = Vec::new();
    for e in lis.hub_events("media_tracks") {
        let Some(tracks) = e["tracks"].as_array() else { continue };
        let Some(t) = tracks.iter().find(|t| t["mid"] == mid) else { continue };
        let owner = t["participant"].as_str().map(str::to_owned);
        if out.last() != Some(&owner) {
            out.push(owner);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtcrs_listener_hears_promotion_demotion_and_an_ice_restart() {
    let _heavy = crate::support::HEAVY.lock().await;
    require_aiortc();
    let started = now_unix();
    let room = "webrtcrs-stage";
    let hub = media_hub().await;
    let (mut m, _) = hub.join("mod", room, Role::Moderator).await;
    // A: a moderator-ceiling token straight onto the stage as speaker, unmuted, 440 Hz. B: an audience member allowed
    // on stage, already publishing 660 Hz (dropped by the SFU until B is on stage and unmuted).
    let mut a =
        Peer::spawn(&hub, "a", "a", room, Role::Moderator, &["--join-role", "speaker", "--unmute", "--tone", "440"]);
    let mut b = Peer::spawn(&hub, "b", "b", room, Role::Speaker, &["--tone", "660"]);
    let mut lis = Listener::spawn("lis", &[hub.url()], &hub.token("lis", room, Role::Audience));
    a.ready().await;
    b.ready().await;
    lis.ready(READY_TIMEOUT).await;

    // The listener hears A.
    let (mid_a, heard) = lis.until_heard(440.0, 1, HEAR_TIMEOUT).await;
    let freqs: Vec<&Value> = heard.iter().map(|r| &r["freq"]).collect();
    eprintln!("lis hears A's 440 Hz on mid {mid_a}: {freqs:?} Hz ({:.1} s after start)", now_unix() - started);
    assert_eq!(lis.track_owner(&mid_a).as_deref(), Some("a"), "lis's media_tracks should put a on mid {mid_a}");
    assert!(!lis.seen_events("audio").any(|r| is_tone(r, 660.0, TOLERANCE_HZ)), "lis heard B from the audience");

    // The moderator promotes B, who unmutes: the listener hears 660 Hz too, on another slot (which the SFU offered).
    b.ok(json!({"type": "raise_hand"})).await;
    m.ok(json!({"type": "approve_hand", "participant": "b"})).await;
    b.wait_for("promotion", READY_TIMEOUT, |v| {
        v["event"] == "ws" && v["msg"]["type"] == "you" && v["msg"]["you"]["role"] == "speaker"
    })
    .await;
    let unmuted_at = now_unix();
    b.ok(json!({"type": "set_muted", "muted": false})).await;
    let (mid_b, heard) = lis.until_heard(660.0, 1, HEAR_TIMEOUT).await;
    let b_first = heard[0]["first_loud_t"].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "lis hears B's 660 Hz on mid {mid_b}: {:?} Hz, first loud frame {:.3} s after B unmuted",
        heard.iter().map(|r| &r["freq"]).collect::<Vec<_>>(),
        b_first - unmuted_at
    );
    assert!(
        b_first - unmuted_at <= HEARD_WITHIN,
        "lis first heard B {:.3} s after B unmuted (limit {HEARD_WITHIN} s)",
        b_first - unmuted_at
    );
    assert_ne!(mid_a, mid_b, "A and B share a slot while both speak");
    assert_eq!(lis.track_owner(&mid_b).as_deref(), Some("b"), "lis's media_tracks should put b on mid {mid_b}");
    let offers: Vec<&Value> = lis.seen_events("server_offer").collect();
    eprintln!("lis answered {} offer(s) of the SFU: {offers:?}", offers.len());
    // One slot was offered at first; the SFU offered the second when B joined A in speaking.
    assert!(
        !offers.is_empty() && offers.iter().all(|o| o["reply"]["type"] == "ok"),
        "the SFU's media_offer for a second slot was missing or its answer refused: {offers:?}"
    );
    assert_eq!(offers.last().map(|o| &o["mlines"]), Some(&json!(2)), "{offers:?}");
    // A goes on meanwhile.
    let now = now_unix();
    let a_meanwhile = lis.reports_on(1, &mid_a, unmuted_at + 0.5, now);
    assert!(
        !a_meanwhile.is_empty() && a_meanwhile.iter().all(|r| is_tone(r, 440.0, TOLERANCE_HZ)),
        "A's tone wavered while B joined in: {a_meanwhile:?}"
    );

    // The moderator moves A to the audience: A's tone stops within STOP_WITHIN, B's goes on.
    let demoted_at = now_unix();
    m.ok(json!({"type": "move_to_audience", "participant": "a"})).await;
    lis.collect(Duration::from_millis(3000)).await;
    let stopped_after = lis.last_loud_on(1, &mid_a) - demoted_at;
    eprintln!("lis: A's last loud frame {stopped_after:+.3} s after move_to_audience was sent");
    assert!(
        (-0.6..=STOP_WITHIN).contains(&stopped_after),
        "lis heard A until {stopped_after:+.3} s after move_to_audience (limit {STOP_WITHIN} s; before -0.6 s means \
         the tone was not flowing at the move)"
    );
    let b_after = lis.reports_on(1, &mid_b, demoted_at + 0.5, now_unix());
    assert!(
        b_after.len() >= 4 && b_after.iter().all(|r| is_tone(r, 660.0, TOLERANCE_HZ)),
        "B's tone did not go on steadily after A's demotion: {b_after:?}"
    );
    let (b_gap, _) = lis.longest_silence(Some((1, &mid_b)), demoted_at - 0.5, now_unix() - 0.6);
    assert!(b_gap < 1.0, "B went silent for {b_gap:.3} s when A was demoted");
    assert!(
        !lis.seen_events("audio")
            .any(|r| is_tone(r, 440.0, 50.0) && r["t"].as_f64().is_some_and(|t| t > demoted_at + STOP_WITHIN + 0.6)),
        "lis heard A again after its demotion"
    );
    eprintln!(
        "lis's slots: mid {mid_a} carried {:?}, mid {mid_b} carried {:?}",
        owners_of(&lis, &mid_a),
        owners_of(&lis, &mid_b)
    );

    // The listener restarts ICE: new credentials on both sides, the same peer connection, B's tone back within
    // ICE_GAP_WITHIN.
    let lost_before = lost_on(&lis, 1, &mid_b);
    let restart_at = now_unix();
    let restart = lis.ice_restart().await;
    eprintln!("lis: ICE restart {restart}");
    assert_eq!(restart["ok"], true, "ICE restart failed: {restart}");
    assert_eq!(restart["gen"], 1, "the ICE restart should keep the peer connection: {restart}");
    assert_ne!(restart["ufrag_before"], restart["ufrag_after"], "the restart offer kept its ICE credentials");
    let first_answer = lis.seen_events("negotiated").next().expect("negotiated")["answer_ufrag"].clone();
    assert!(
        restart["answer_ufrag"].as_str().is_some_and(|u| !u.is_empty()) && restart["answer_ufrag"] != first_answer,
        "the SFU's answer to the ICE restart kept its ICE credentials ({first_answer}): {restart}"
    );
    let (_, resumed) = lis.until_heard(660.0, 1, HEAR_TIMEOUT).await;
    lis.collect(Duration::from_millis(2500)).await;
    let until = now_unix() - 0.6;
    let (gap, gap_at) = lis.longest_silence(Some((1, &mid_b)), restart_at - 0.5, until);
    let answered = restart["answered"].as_f64().unwrap_or(f64::NAN) - restart_at;
    eprintln!(
        "lis: ICE restart answered {answered:.3} s after it began; B's 660 Hz steady again ({:?} Hz); longest silence \
         on mid {mid_b} {gap:.3} s from {:+.3} s",
        resumed.iter().map(|r| &r["freq"]).collect::<Vec<_>>(),
        gap_at - restart_at
    );
    assert!(gap <= ICE_GAP_WITHIN, "B's tone was gone for {gap:.3} s over the ICE restart (limit {ICE_GAP_WITHIN} s)");
    // What the SFU sent while the new candidate pair was not up yet is lost: at most ICE_GAP_WITHIN of 20 ms packets.
    let lost_in_restart = lost_on(&lis, 1, &mid_b) - lost_before;
    eprintln!("lis: {lost_in_restart} packet(s) of B lost over the ICE restart ({lost_before} before it)");
    assert!(lost_in_restart as f64 * 0.020 <= ICE_GAP_WITHIN, "{lost_in_restart} packets lost over the ICE restart");
    let states: Vec<&Value> = lis.seen_events("pc_state").map(|v| &v["state"]).collect();
    assert_eq!(states.last().copied(), Some(&json!("connected")), "lis's peer connection states: {states:?}");
    assert_eq!(
        lis.seen_events("negotiated").count() + lis.seen_events("renegotiated").count(),
        1,
        "one peer connection"
    );

    check_continuity(&lis, &[((1, &mid_b), lost_in_restart)]);
    eprintln!("webrtcrs stage scenario took {:.1} s", now_unix() - started);
    drop((a, b, lis));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtcrs_listener_follows_a_hub_drain() {
    let _heavy = crate::support::HEAVY.lock().await;
    require_aiortc();
    let started = now_unix();
    let redis = RedisServer::start();
    let hub_a = Node::start(&redis.url()).await;
    let hub_b = Node::start(&redis.url()).await;
    let keys = TokenKeys::new(SECRET.as_bytes());
    hub_a.wait_up(&keys).await;
    hub_b.wait_up(&keys).await;
    let room = "webrtcrs-drain";
    let token = |identity: &str, role: Role| {
        keys.mint(&claims_for(identity, Some(&identity.to_uppercase()), room, role, Duration::from_secs(600)))
            .expect("mint")
    };

    // The moderator creates the room on A, which then runs its media.
    let mut m = Client::connect(&hub_a.ws).await;
    let welcome = m.ok(json!({"type": "join", "token": token("mod", Role::Moderator)})).await["result"].clone();
    let epoch = welcome["state"]["media_epoch"].as_u64().expect("a media epoch in the welcome");
    let m_resume = welcome["resume_token"].as_str().expect("resume token").to_owned();
    // A speaker (aiortc) and the listener (webrtc-rs) on A, each knowing both hubs.
    let urls = format!("{},{}", hub_a.ws, hub_b.ws);
    let mut spk = Peer::spawn_at(
        "spk",
        &hub_a.ws,
        &token("spk", Role::Moderator),
        &["--join-role", "speaker", "--unmute", "--tone", "440", "--urls", &urls, "--auto-reconnect"],
    );
    let mut lis = Listener::spawn("lis", &[hub_a.ws.clone(), hub_b.ws.clone()], &token("lis", Role::Audience));
    spk.ready().await;
    lis.ready(READY_TIMEOUT).await;
    let joined = lis.seen_events("joined").next().expect("a welcome")["welcome"].clone();
    assert_eq!(joined["state"]["media_epoch"], json!(epoch), "{joined}");
    let (mid, _) = lis.until_heard(440.0, 1, HEAR_TIMEOUT).await;
    eprintln!("lis hears spk's 440 Hz on mid {mid} through hub A (epoch {epoch})");

    // Hub A drains.
    let drained_at = now_unix();
    hub_a.stop.drain();
    let (code, _) = m.closed().await;
    assert_eq!(code, 4007, "the moderator should be closed with server_shutdown");
    let mut m = Client::connect(&hub_b.ws).await;
    let welcome =
        m.ok(json!({"type": "join", "token": token("mod", Role::Moderator), "resume": m_resume})).await["result"]
            .clone();
    assert_eq!(welcome["resumed"], true, "{welcome}");

    // The listener is closed with 4007, resumes on B at once, and negotiates anew for the next epoch.
    let rec = lis.wait_for("`reconnected`", Duration::from_secs(20), |v| v["event"] == "reconnected").await;
    let resumed_after = rec["t"].as_f64().unwrap_or(f64::NAN) - drained_at;
    assert_eq!((&rec["url"], &rec["code"], &rec["resumed"]), (&json!(hub_b.ws), &json!(4007), &json!(true)), "{rec}");
    let welcome = lis.seen_events("joined").last().expect("the welcome on B")["welcome"].clone();
    assert_eq!(welcome["state"]["you"]["role"], "audience", "{welcome}");
    // `media_moved` may come before the 4007 (the draining hub hands the room over first): then the new peer
    // connection was negotiated before the reconnect.
    let seen = lis.seen_events("renegotiated").next().cloned();
    let renegotiated = match seen {
        Some(line) => line,
        None => lis.wait_for("`renegotiated`", Duration::from_secs(20), |v| v["event"] == "renegotiated").await,
    };
    assert_eq!((&renegotiated["gen"], &renegotiated["epoch"]), (&json!(2), &json!(epoch + 1)), "{renegotiated}");
    let (new_mid, heard) = lis.until_heard(440.0, 2, HEAR_TIMEOUT).await;
    let back = heard[0]["first_loud_t"].as_f64().unwrap_or(f64::NAN) - drained_at;
    let until = now_unix().max(drained_at + 5.0);
    lis.collect(Duration::from_secs_f64((until + 0.6 - now_unix()).max(0.0))).await;
    let (gap, gap_at) = lis.longest_silence(None, drained_at - 0.5, until);
    eprintln!(
        "drain: lis resumed on B {resumed_after:.3} s after the drain ({} attempt(s)), renegotiated (epoch {}) at \
         {:.3} s, steady 440 Hz on the new peer connection's mid {new_mid} from {back:.3} s; longest silence {gap:.3} \
         s from {:+.3} s",
        rec["attempts"],
        renegotiated["epoch"],
        renegotiated["t"].as_f64().unwrap_or(f64::NAN) - drained_at,
        gap_at - drained_at
    );
    assert!(
        resumed_after <= RESUME_WITHIN,
        "lis resumed {resumed_after:.3} s after the drain (limit {RESUME_WITHIN} s)"
    );
    assert!(gap <= DRAIN_GAP_WITHIN, "lis heard no tone for {gap:.3} s during the drain (limit {DRAIN_GAP_WITHIN} s)");
    assert_eq!(lis.seen_events("renegotiated").count(), 1, "one new peer connection for one move");
    let state = lis.request(json!({"type": "get_state"})).await["result"].clone();
    assert_eq!((&state["you"]["role"], &state["media_epoch"]), (&json!("audience"), &json!(epoch + 1)), "{state}");

    // Hub A stops by itself once everyone moved.
    match tokio::time::timeout(EXIT_WITHIN, hub_a.task).await {
        Ok(result) => result.expect("join hub A").expect("hub A ran without error"),
        Err(_) => panic!("hub A did not stop within {EXIT_WITHIN:?} of the drain"),
    }
    check_continuity(&lis, &[]);
    eprintln!("webrtcrs drain scenario took {:.1} s", now_unix() - started);
    drop((spk, lis, m));
    hub_b.stop.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(10), hub_b.task).await;
    drop(redis);
}
