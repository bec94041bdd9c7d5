//! Redis goes away during a live room, and audio does not notice: a hub with media keeps its rooms in a
//! `redis-server` this test starts (AOF, `appendfsync always`), with a moderator on a websocket, an aiortc speaker
//! promoted to the stage sending 440 Hz and an aiortc listener decoding it. Redis is killed (`kill -9`) for 30 s:
//! the listener hears the tone all along, commands that would change the room get `unavailable` quickly, reads and
//! `ping` still answer. Redis is restarted from its AOF on the same port, the hub (never restarted) takes commands
//! again within seconds, nothing acknowledged was lost, audio still flows, and a new listener joins and hears the
//! tone. Then Redis is blackholed (SIGSTOP) for a few seconds, with the same expectations.
//!
//! Needs `redis-server` on PATH and the aiortc venv (see `crate::aiortc`).

use std::time::Duration;

use podium_hub::Role;
use podium_store::redis_server::RedisServer;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::aiortc::{HEAR_TIMEOUT, LOUD_RMS, Peer, TOLERANCE_HZ, media_hub_with, now_unix, reports_on, require_aiortc};
use crate::support::{Client, on_stage, roster};

const ROOM: &str = "redis-outage";
/// How long Redis stays killed.
const OUTAGE: Duration = Duration::from_secs(30);
/// How long Redis stays stopped (SIGSTOP) in the second outage.
const STALL: Duration = Duration::from_secs(5);
/// The most any reply may take while Redis is away.
const FAST: Duration = Duration::from_millis(1500);
/// The longest silence the listener may hear at any time (between two loud decoded frames).
const MAX_GAP: f64 = 1.0;
/// Once Redis answers again, a stage command must succeed within this.
const RECOVER_WITHIN: Duration = Duration::from_secs(10);

/// Sends `body` and returns the reply and how long it took.
async fn timed(c: &mut Client, body: Value) -> (Value, Duration) {
    let started = Instant::now();
    let reply = c.request(body).await;
    (reply, started.elapsed())
}

/// [`timed`] through an aiortc peer's own websocket.
async fn timed_peer(p: &mut Peer, body: Value) -> (Value, Duration) {
    let started = Instant::now();
    let reply = p.request(body).await;
    (reply, started.elapsed())
}

/// What Redis itself holds for the room: the sequence number and each named participant's record, read straight from
/// the keys documented in ARCHITECTURE.md ("Redis keys").
fn stored(redis: &RedisServer, ids: &[&str]) -> (String, Vec<(String, Value)>) {
    let bulk = |reply: String| -> String {
        // `$LEN\r\nBODY\r\n`, or `$-1\r\n` for a missing field.
        reply.split_once("\r\n").map(|(_, body)| body.trim_end_matches("\r\n").to_owned()).unwrap_or_default()
    };
    let seq = bulk(redis.command(&["HGET", &format!("podium:{{{ROOM}}}:meta"), "seq"]));
    let records = ids
        .iter()
        .map(|id| {
            let raw = bulk(redis.command(&["HGET", &format!("podium:{{{ROOM}}}:participants"), id]));
            ((*id).to_owned(), serde_json::from_str(&raw).unwrap_or(Value::Null))
        })
        .collect();
    (seq, records)
}

fn stage_of(state: &Value) -> Vec<(String, String, bool)> {
    roster(&state["result"]["stage"])
}

/// The longest time between the arrivals of two consecutive loud decoded frames on `mid` during `from..=to` (Unix
/// seconds): within each report (`peer.py`'s `max_loud_gap`) and across consecutive reports (the last loud frame of
/// one to the first of the next); the reports of the half second after `to` cover the end of the window. Infinite
/// when a report had no loud frame at all.
fn longest_gap(p: &Peer, mid: &str, from: f64, to: f64) -> f64 {
    let reports = reports_on(p, mid, from, to + 0.5);
    if reports.is_empty() {
        return f64::INFINITY;
    }
    let within = reports.iter().map(|r| r["max_loud_gap"].as_f64().unwrap_or(f64::INFINITY)).fold(0.0, f64::max);
    let across = reports
        .windows(2)
        .map(|w| match (w[0]["last_loud_t"].as_f64(), w[1]["first_loud_t"].as_f64()) {
            (Some(last), Some(first)) => first - last,
            _ => f64::INFINITY,
        })
        .fold(0.0, f64::max);
    within.max(across)
}

/// A report in which the tone was heard: loud, at 440 Hz. Unlike `is_tone` it does not ask for a full report's worth
/// of frames: a peer starved of CPU on a loaded machine may decode only part of a half second (the gap check bounds
/// how long any silence lasted).
fn heard_tone(report: &Value) -> bool {
    report["event"] == "audio"
        && report["rms"].as_f64().unwrap_or(0.0) > LOUD_RMS
        && report["frames"].as_u64().unwrap_or(0) >= 1
        && report["freq"].as_f64().is_some_and(|f| (f - 440.0).abs() <= TOLERANCE_HZ)
}

/// Asserts `p` heard 440 Hz on `mid` in every report of `from..=to` with no silence longer than [`MAX_GAP`];
/// returns the longest gap.
fn assert_tone_throughout(p: &Peer, mid: &str, from: f64, to: f64, what: &str) -> f64 {
    let reports = reports_on(p, mid, from, to);
    let expected = ((to - from) * 2.0).floor() as usize;
    let off: Vec<&&Value> = reports.iter().filter(|r| !heard_tone(r)).collect();
    let gap = longest_gap(p, mid, from, to);
    eprintln!(
        "{}: {} reports on mid {mid} during {what} ({:.1} s), {} without the tone; longest silence {gap:.3} s",
        p.name,
        reports.len(),
        to - from,
        off.len()
    );
    assert!(
        reports.len() + 3 >= expected,
        "{}: only {} audio reports during {what} ({:.1} s, ~{expected} expected): the listener stalled",
        p.name,
        reports.len(),
        to - from
    );
    assert!(off.is_empty(), "{}: the 440 Hz tone faltered during {what}: {off:?}", p.name);
    assert!(gap <= MAX_GAP, "{}: {gap:.3} s without a loud frame during {what} (limit {MAX_GAP} s)", p.name);
    gap
}

/// While Redis is away (for `length`): the moderator's `command` and the listener's `raise_hand` are refused
/// `unavailable` within [`FAST`]; `ping` and `get_state` answer within [`FAST`] on every connection, and the state
/// still has the speaker on stage. Returns how many rounds ran.
async fn refused_while_away(
    m: &mut Client,
    ann: &mut Client,
    l1: &mut Peer,
    command: &Value,
    length: Duration,
) -> usize {
    let until = Instant::now() + length;
    let mut rounds = 0;
    let mut slowest = Duration::ZERO;
    while Instant::now() < until {
        let round = Instant::now();
        let (reply, took) = timed(m, command.clone()).await;
        assert_eq!((&reply["type"], &reply["code"]), (&json!("error"), &json!("unavailable")), "{command}: {reply}");
        assert!(took < FAST, "{command} took {took:?} while Redis was away (limit {FAST:?})");
        slowest = slowest.max(took);

        let (reply, took) = timed_peer(l1, json!({"type": "raise_hand"})).await;
        assert_eq!(reply["code"], "unavailable", "l1's raise_hand while Redis was away: {reply}");
        assert!(took < FAST, "l1's raise_hand took {took:?} while Redis was away");
        slowest = slowest.max(took);

        for (who, (reply, took)) in [
            ("mod ping", timed(m, json!({"type": "ping"})).await),
            ("ann ping", timed(ann, json!({"type": "ping"})).await),
            ("l1 ping", timed_peer(l1, json!({"type": "ping"})).await),
        ] {
            assert_eq!(reply["type"], "ok", "{who} while Redis was away: {reply}");
            assert!(took < FAST, "{who} took {took:?} while Redis was away");
            slowest = slowest.max(took);
        }
        for (who, (state, took)) in [
            ("mod", timed(m, json!({"type": "get_state"})).await),
            ("l1", timed_peer(l1, json!({"type": "get_state"})).await),
        ] {
            assert_eq!(state["type"], "ok", "{who}'s get_state is served from memory: {state}");
            assert!(took < FAST, "{who}'s get_state took {took:?} while Redis was away");
            assert_eq!(on_stage(&state["result"]["stage"], "spk").as_deref(), Some("speaker"), "{who}: {state}");
            slowest = slowest.max(took);
        }
        rounds += 1;
        tokio::time::sleep_until(round + Duration::from_secs(1)).await;
    }
    eprintln!("while Redis was away: {rounds} rounds of requests, slowest reply {slowest:?}");
    rounds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_audio_flowing_refuses_changes_and_recovers_without_a_restart() {
    let _heavy = crate::support::HEAVY.lock().await;
    require_aiortc();
    let mut redis = RedisServer::start();
    let store = redis.url();
    let hub = media_hub_with(|c| c.store.url = store).await;

    // The moderator on a websocket; ann (a plain websocket) and the two aiortc peers may speak if approved.
    let (mut m, _) = hub.join_when_up("mod", ROOM, Role::Moderator).await;
    let mut spk = Peer::spawn(&hub, "spk", "spk", ROOM, Role::Speaker, &["--tone", "440"]);
    let mut l1 = Peer::spawn(&hub, "l1", "l1", ROOM, Role::Speaker, &["--recv"]);
    spk.ready().await;
    l1.ready().await;
    let (mut ann, _) = hub.join("ann", ROOM, Role::Speaker).await;

    // spk raises a hand, the moderator approves it, spk unmutes: the listener hears 440 Hz.
    spk.ok(json!({"type": "raise_hand"})).await;
    m.event("hand_queue", |e| e["queue"]["hands"].as_array().is_some_and(|h| h.iter().any(|x| x["id"] == "spk"))).await;
    m.ok(json!({"type": "approve_hand", "participant": "spk"})).await;
    spk.wait_for("promotion", Duration::from_secs(10), |v| {
        v["event"] == "ws" && v["msg"]["type"] == "you" && v["msg"]["you"]["role"] == "speaker"
    })
    .await;
    spk.ok(json!({"type": "set_muted", "muted": false})).await;
    let (mid, _) = l1.until_heard(440.0, HEAR_TIMEOUT).await;
    // ann's hand is up: approving it is the stage change refused during the outage and accepted after it.
    let raised = ann.ok(json!({"type": "raise_hand"})).await;
    assert_eq!(raised["result"]["promoted"], false, "{raised}");
    let state = m.ok(json!({"type": "get_state"})).await;
    let stage_before = stage_of(&state);
    assert_eq!(
        stage_before,
        [("mod".to_owned(), "moderator".to_owned(), true), ("spk".to_owned(), "speaker".to_owned(), false)],
        "{state}"
    );
    assert_eq!(state["result"]["counts"]["hands"], 1, "{state}");
    let ids = ["mod", "spk", "l1", "ann"];
    let before = stored(&redis, &ids);
    assert!(!before.0.is_empty() && before.1.iter().all(|(_, r)| r.is_object()), "nothing in Redis: {before:?}");
    assert_eq!(before.1[1].1["role"], "speaker", "spk's stored record: {before:?}");

    // Redis is killed and stays away for 30 s.
    let killed_at = now_unix();
    let killed = Instant::now();
    tokio::task::block_in_place(|| redis.kill9());
    let approve_ann = json!({"type": "approve_hand", "participant": "ann"});
    let rounds =
        refused_while_away(&mut m, &mut ann, &mut l1, &approve_ann, OUTAGE.saturating_sub(killed.elapsed())).await;
    assert!(rounds >= 10, "only {rounds} rounds of requests in {OUTAGE:?}");
    l1.collect(Duration::from_millis(1)).await;

    // Redis comes back on the same port from its AOF; the hub is not restarted.
    let restart_at = now_unix();
    tokio::task::block_in_place(|| redis.restart());
    let up_at = now_unix();
    let up = Instant::now();
    let outage = restart_at - killed_at;
    let after = stored(&redis, &ids);
    assert_eq!(after, before, "Redis lost acknowledged state over the kill and restart");

    // A stage command succeeds again within RECOVER_WITHIN (refused `unavailable` until then).
    let mut refusals = 0;
    let recovered = loop {
        let (reply, took) = timed(&mut m, approve_ann.clone()).await;
        if reply["type"] == "ok" {
            break up.elapsed();
        }
        assert_eq!(reply["code"], "unavailable", "approve_hand ann after Redis returned: {reply}");
        assert!(took < FAST, "approve_hand ann took {took:?} after Redis returned");
        refusals += 1;
        assert!(
            up.elapsed() < RECOVER_WITHIN,
            "the hub did not take a stage command within {RECOVER_WITHIN:?} of Redis answering again \
             ({refusals} refusals, last {reply})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "redis outage {outage:.1} s (restart took {:.2} s); first stage command accepted {:.3} s after Redis answered \
         PING again ({refusals} `unavailable` before)",
        up_at - restart_at,
        recovered.as_secs_f64()
    );

    // The room as the hub and as Redis have it: spk still an unmuted speaker, ann promoted, the listener's refused
    // hands never happened.
    let state = m.ok(json!({"type": "get_state"})).await;
    let mut expected = stage_before.clone();
    expected.push(("ann".to_owned(), "speaker".to_owned(), true));
    assert_eq!(stage_of(&state), expected, "{state}");
    assert_eq!(state["result"]["counts"]["hands"], 0, "{state}");
    let (_, records) = stored(&redis, &["spk", "ann", "l1"]);
    assert_eq!((&records[0].1["role"], &records[0].1["muted"]), (&json!("speaker"), &json!(false)), "{records:?}");
    assert_eq!(records[1].1["role"], "speaker", "{records:?}");
    assert_eq!(
        (&records[2].1["role"], &records[2].1["hand_raised"]),
        (&json!("audience"), &Value::Null),
        "{records:?}"
    );

    // A new listener joins (a commit) and hears the speaker.
    let joined_at = now_unix();
    let mut l2 = Peer::spawn(&hub, "l2", "l2", ROOM, Role::Audience, &["--recv"]);
    l2.ready().await;
    let (l2_mid, heard) = l2.until_heard(440.0, HEAR_TIMEOUT).await;
    let first = heard.first().and_then(|r| r["t"].as_f64()).unwrap_or(f64::NAN);
    eprintln!("l2 joined after the recovery and heard 440 Hz {:.2} s after spawning", first - joined_at);
    let welcome = l2.seen_events("joined").next().cloned().expect("l2's welcome");
    assert_eq!(on_stage(&welcome["welcome"]["state"]["stage"], "spk").as_deref(), Some("speaker"), "{welcome}");

    // Audio went on through the outage, the restart, the recovery and the new join (the reports of the next 1.5 s
    // cover the end of the window).
    let recovered_at = now_unix();
    let window = Duration::from_millis(1500);
    tokio::join!(l1.collect(window), l2.collect(window), m.drain(window), ann.drain(window));
    let outage_gap = assert_tone_throughout(&l1, &mid, killed_at, restart_at, "the 30 s Redis outage");
    let recovery_gap =
        assert_tone_throughout(&l1, &mid, restart_at, recovered_at, "Redis's restart, the recovery and l2's join");

    // Redis blackholed (SIGSTOP: connections open, no replies) for a few seconds: same expectations.
    let stall_at = now_unix();
    redis.pause();
    let demote_ann = json!({"type": "move_to_audience", "participant": "ann"});
    refused_while_away(&mut m, &mut ann, &mut l1, &demote_ann, STALL).await;
    let resume_at = now_unix();
    redis.resume();
    let resumed = Instant::now();
    let stall_recovered = loop {
        let (reply, _) = timed(&mut m, demote_ann.clone()).await;
        if reply["type"] == "ok" {
            break resumed.elapsed();
        }
        if reply["code"] != "unavailable" {
            // A request that timed out while Redis was stopped may have been applied when it woke.
            let state = m.ok(json!({"type": "get_state"})).await;
            assert_eq!(on_stage(&state["result"]["stage"], "ann"), None, "{reply} / {state}");
            break resumed.elapsed();
        }
        assert!(resumed.elapsed() < RECOVER_WITHIN, "the hub did not recover from SIGSTOP: {reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let state = m.ok(json!({"type": "get_state"})).await;
    assert_eq!(stage_of(&state), stage_before, "{state}");
    let stall_end = now_unix();
    let window = Duration::from_millis(1500);
    tokio::join!(l1.collect(window), l2.collect(window), m.drain(window), ann.drain(window));
    let stall_gap = assert_tone_throughout(&l1, &mid, stall_at, stall_end, "the SIGSTOP stall and recovery");
    eprintln!(
        "SIGSTOP stall {:.1} s: stage command accepted {:.3} s after SIGCONT",
        resume_at - stall_at,
        stall_recovered.as_secs_f64()
    );
    assert_tone_throughout(&l2, &l2_mid, stall_at, stall_end, "the SIGSTOP stall and recovery");

    eprintln!(
        "SUMMARY: outage {outage:.1} s; longest silence heard: {outage_gap:.3} s during the outage, \
         {recovery_gap:.3} s around the restart, {stall_gap:.3} s around the SIGSTOP; first stage command \
         {:.3} s after Redis answered again",
        recovered.as_secs_f64()
    );
    drop((spk, l1, l2));
    hub.stop().await;
}
