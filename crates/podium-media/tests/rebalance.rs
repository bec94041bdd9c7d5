//! Rebalancing: when listeners leave, the SFU moves others between its workers so a room stays spread evenly, and
//! a moved listener notices nothing (same ICE pair, same socket, same slot, no lost audio beyond the frames in
//! flight at the move), keeps working through an ICE restart, can be promoted and heard, and leaves cleanly.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Client, T, collect, start, wait_for};
use podium_media::{Media, MediaEvent, PeerState};
use str0m::media::Direction;

/// The port of the server's host candidate in an answer.
fn candidate_port(answer: &str) -> u16 {
    let line = answer.lines().find(|l| l.starts_with("a=candidate:")).expect("a candidate");
    let parts: Vec<&str> = line.split_whitespace().collect();
    parts[5].parse().expect("a port")
}

/// Joins `who` and returns the index of the worker whose socket the answer names.
async fn join_on(media: &Media, c: &Client, who: &str, dir: Direction, addrs: &[SocketAddr]) -> usize {
    let (offer, pending) = c.make_offer(dir);
    let answer = media.offer("r", who, &offer).await.unwrap();
    c.accept_answer(pending, &answer);
    let port = candidate_port(&answer);
    addrs.iter().position(|a| a.port() == port).expect("a worker's port")
}

/// The sequence numbers (the test clients' own, in the payload) of the frames `c` got tagged `tag`.
fn seqs(c: &Client, tag: u8) -> Vec<u64> {
    c.got()
        .iter()
        .filter(|g| g.data.first() == Some(&tag))
        .map(|g| u64::from_be_bytes(g.data[1..9].try_into().unwrap()))
        .collect()
}

/// Frames missing between the first and the last one received.
fn missing(seqs: &[u64]) -> u64 {
    let (Some(first), Some(last)) = (seqs.first(), seqs.last()) else { return 0 };
    (last - first + 1).saturating_sub(seqs.len() as u64)
}

/// Sends a frame tagged `tag` every 20 ms from `c` until `stop`.
fn talk_until(c: Arc<Client>, tag: u8, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            c.send_frame(tag);
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn departures_rebalance_listeners_and_moved_ones_notice_nothing() {
    let (media, ev) = start(2);
    let log = collect(ev);
    let addrs = media.local_addrs();
    media.set_publish("r", "alice", true);
    let alice = Arc::new(Client::new());
    join_on(&media, &alice, "alice", Direction::SendOnly, &addrs).await;
    let mut listeners: Vec<(String, Client, usize)> = Vec::new();
    for i in 0..12 {
        let c = Client::new();
        let name = format!("l{i}");
        let w = join_on(&media, &c, &name, Direction::RecvOnly, &addrs).await;
        listeners.push((name, c, w));
    }
    wait_for("all connected", T, || alice.connected() && listeners.iter().all(|(_, c, _)| c.connected())).await;
    let spread = media.room_spread("r");
    assert_eq!(spread.iter().sum::<u32>(), 13);
    assert!(spread[0].abs_diff(spread[1]) <= 1, "spread at join: {spread:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let talker = talk_until(alice.clone(), 1, stop.clone());
    wait_for("everyone hears alice", T, || listeners.iter().all(|(_, c, _)| c.count_from(1) >= 10)).await;

    // Five listeners of the busier worker leave: the room is 8 to 0 and more uneven without rebalancing.
    let busy = if spread[0] >= spread[1] { 0 } else { 1 };
    let mut left = 0;
    listeners.retain(|(name, _, w)| {
        if *w == busy && left < 5 {
            media.remove_peer("r", name);
            left += 1;
            false
        } else {
            true
        }
    });
    assert_eq!(left, 5);
    let spread = media.room_spread("r");
    assert_eq!(spread.iter().sum::<u32>(), 8);
    assert!(spread[0].abs_diff(spread[1]) <= 1, "spread after departures: {spread:?}");
    let moved = media.stats().peers_moved;
    assert!(moved >= 2, "{moved} listeners moved");

    // Everyone keeps hearing alice, with at most the frames in flight at a move lost.
    let counts: Vec<usize> = listeners.iter().map(|(_, c, _)| c.count_from(1)).collect();
    wait_for("everyone keeps hearing alice", T, || {
        listeners.iter().zip(&counts).all(|((_, c, _), n)| c.count_from(1) >= n + 75)
    })
    .await;
    let lost: u64 = listeners.iter().map(|(_, c, _)| missing(&seqs(c, 1))).sum();
    eprintln!("{moved} moves, {lost} frames lost in all");
    assert!(lost <= 2 * moved, "{lost} frames lost over {moved} moves");
    let bad_state = log.lock().unwrap().iter().any(|e| {
        matches!(e, MediaEvent::State { identity, state, .. }
            if identity.starts_with('l') && *state != PeerState::Connected)
    });
    assert!(!bad_state, "a listener's connection state changed");

    // An ICE restart of each listener: the answers still name the listener's first worker (its home), and audio
    // flows on.
    for (name, c, w) in &listeners {
        let (offer, pending) = c.ice_restart_offer();
        let answer = media.offer("r", name, &offer).await.unwrap();
        assert_eq!(candidate_port(&answer), addrs[*w].port(), "{name} keeps its home candidate");
        c.accept_answer(pending, &answer);
    }
    let counts: Vec<usize> = listeners.iter().map(|(_, c, _)| c.count_from(1)).collect();
    wait_for("audio after the ICE restarts", T, || {
        listeners.iter().zip(&counts).all(|((_, c, _), n)| c.count_from(1) >= n + 25)
    })
    .await;
    stop.store(true, Ordering::Release);
    talker.join().unwrap();

    // A listener that was moved off its home is promoted: its audio (arriving on its home worker's socket) is
    // heard by the others once alice steps down.
    let spread_now = media.room_spread("r");
    let speaker = listeners.iter().position(|(_, _, w)| *w == busy).expect("a listener of the busier worker stays");
    assert!(spread_now[busy] < 7, "{spread_now:?}");
    media.set_publish("r", "alice", false);
    let (name, c, _) = &listeners[speaker];
    media.set_publish("r", name, true);
    let (offer, pending) = c.make_offer(Direction::SendOnly);
    let answer = media.offer("r", name, &offer).await.unwrap();
    c.accept_answer(pending, &answer);
    let (name, c, _) = listeners.swap_remove(speaker);
    let c = Arc::new(c);
    let stop = Arc::new(AtomicBool::new(false));
    let talker = talk_until(c.clone(), 2, stop.clone());
    wait_for("the promoted listener is heard", T, || listeners.iter().all(|(_, l, _)| l.count_from(2) >= 25)).await;
    stop.store(true, Ordering::Release);
    talker.join().unwrap();

    // Everyone leaves: nothing is left of the room.
    media.remove_peer("r", &name);
    media.remove_peer("r", "alice");
    for (name, _, _) in &listeners {
        media.remove_peer("r", name);
    }
    assert!(media.room_spread("r").is_empty());
    media.shutdown();
}
