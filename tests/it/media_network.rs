//! Network changes (issue #14, item 4): a client whose address changes (a new local port or interface) keeps its
//! role, its downstream slot and its audio. `tests/media/peer.py`'s `move` command moves an aiortc peer's ICE to a
//! new UDP socket on another loopback address (127.0.0.2): the old address dies first (its socket drops everything,
//! then closes), a check nominating the pair from the new address follows (after an ICE restart through
//! `media_offer`, as `proto/PROTOCOL.md` asks of a client that changes network; or without signaling, the nomination
//! alone, as libwebrtc does on its own), and the SFU must send to the new address from then on. What is measured is
//! the decoded audio: the longest silence a listener hears around the move, from the old address dying to the tone
//! being back, must be under 1 s; the role (`get_state`), the slot (mid, its `media_tracks` owner, and the RTP SSRC
//! the listener receives on it) must not change.
//!
//! Needs Python with aiortc (`PODIUM_PYTHON`, see `aiortc.rs`).

use std::time::Duration;

use podium_hub::Role;
use serde_json::{Value, json};

use crate::aiortc::{HEAR_TIMEOUT, Peer, TOLERANCE_HZ, is_tone, longest_silence, media_hub, reports_on, track_owner};

/// The acceptance limit: audio back within this long of the old address dying.
const BACK_WITHIN: f64 = 1.0;

/// `p`'s own role, from a fresh `get_state`.
async fn role_of(p: &mut Peer) -> String {
    let state = p.ok(json!({"type": "get_state"})).await;
    let you = &state["result"]["you"];
    you["role"].as_str().unwrap_or_else(|| panic!("{}: no you.role in {state}", p.name)).to_owned()
}

/// The SSRCs `p` receives RTP on.
async fn inbound_ssrcs(p: &mut Peer) -> Value {
    let stats = p.control(json!({"stats": true}), Duration::from_secs(10)).await;
    assert_eq!(stats["type"], "ok", "{}: stats: {stats}", p.name);
    stats["inbound_ssrcs"].clone()
}

/// A speaker (440 Hz) and a listener; `who` ("spk" or "lis") moves to 127.0.0.2 (`restart`: with an ICE restart)
/// while the listener hears the tone. Checks the gap, the role and the slot.
async fn moves(room: &str, who: &str, restart: bool) {
    let hub = media_hub().await;
    let mut spk = Peer::spawn(
        &hub,
        "spk",
        "spk",
        room,
        Role::Moderator,
        &["--join-role", "speaker", "--unmute", "--tone", "440"],
    );
    let mut lis = Peer::spawn(&hub, "lis", "lis", room, Role::Audience, &["--recv"]);
    spk.ready().await;
    lis.ready().await;
    let (mid, _) = lis.until_heard(440.0, HEAR_TIMEOUT).await;
    assert_eq!(track_owner(&lis, &mid).as_deref(), Some("spk"));
    let ssrcs = inbound_ssrcs(&mut lis).await;
    let roles = (role_of(&mut spk).await, role_of(&mut lis).await);
    lis.collect(Duration::from_millis(1000)).await;

    let mover = if who == "spk" { &mut spk } else { &mut lis };
    let moved = mover.control(json!({"move": true, "restart": restart}), Duration::from_secs(10)).await;
    assert_eq!(moved["type"], "ok", "{who}: move: {moved}");
    eprintln!("{who} moved (restart: {restart}): {moved}");
    let broken = moved["broken_t"].as_f64().expect("broken_t");
    lis.collect(Duration::from_millis(3000)).await;

    // The longest silence the listener heard from 1 s before the old address died to 2.5 s after it.
    let (from, to) = (broken - 1.0, broken + 2.5);
    let reports = reports_on(&lis, &mid, from, to + 1.0);
    let (gap, at) = longest_silence(reports.iter().copied(), from, to, f64::INFINITY);
    eprintln!(
        "{who} moved (restart: {restart}): longest silence {gap:.3} s, from {:+.3} s after the old address died; \
         offer {} ms, nominating check {} ms",
        at - broken,
        moved["offer_ms"],
        moved["check_ms"],
    );
    assert!(
        gap < BACK_WITHIN,
        "lis heard {gap:.3} s of silence from {:+.3} s after {who}'s old address died (limit {BACK_WITHIN} s)\n{}",
        at - broken,
        lis.diagnostics()
    );
    // And the tone goes on on the same slot: the last reports carry it.
    let after = reports_on(&lis, &mid, broken + 1.5, f64::INFINITY);
    assert!(
        after.len() >= 2 && after.iter().all(|r| is_tone(r, 440.0, TOLERANCE_HZ)),
        "lis does not hear 440 Hz on mid {mid} after the move: {after:?}"
    );

    // Same roles, same slot: the mid still carries spk, on the same SSRC.
    assert_eq!((role_of(&mut spk).await, role_of(&mut lis).await), roles, "roles changed across the move");
    assert_eq!(track_owner(&lis, &mid).as_deref(), Some("spk"), "lis's slot {mid} changed hands");
    assert_eq!(inbound_ssrcs(&mut lis).await, ssrcs, "lis receives on other SSRCs after the move");
    // Nobody renegotiated a new peer connection.
    for p in [&spk, &lis] {
        assert!(p.seen_events("pc").all(|e| e["gen"] == 1), "{}: a second peer connection was made", p.name);
    }
}

#[tokio::test]
async fn aiortc_listener_moves_with_an_ice_restart_and_hears_again_within_a_second() {
    moves("net-lis-restart", "lis", true).await;
}

#[tokio::test]
async fn aiortc_listener_moves_and_renominates_and_hears_again_within_a_second() {
    moves("net-lis-renominate", "lis", false).await;
}

#[tokio::test]
async fn aiortc_speaker_moves_with_an_ice_restart_and_is_heard_again_within_a_second() {
    moves("net-spk-restart", "spk", true).await;
}
