//! End-to-end tests of the SFU with real str0m clients over loopback UDP.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Client, Log, T, collect, start, talk, wait_for};
use podium_media::{Media, MediaConfig, MediaError, MediaEvent, PeerState};
use str0m::media::{Direction, MediaKind};

async fn connect_all(clients: &[&Client]) {
    wait_for("ICE+DTLS connected", T, || clients.iter().all(|c| c.connected())).await;
}

fn has_state(log: &Log, who: &str, state: PeerState) -> bool {
    log.lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, MediaEvent::State { identity, state: s, .. } if identity == who && *s == state))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaker_reaches_two_listeners_never_itself() {
    let (media, ev) = start(2);
    let log = collect(ev);
    media.set_publish("r", "alice", true);
    let alice = Client::new();
    alice.join(&media, "r", "alice", Direction::SendRecv).await;
    let bob = Client::new();
    bob.join(&media, "r", "bob", Direction::RecvOnly).await;
    let carol = Client::new();
    carol.join(&media, "r", "carol", Direction::SendRecv).await;
    connect_all(&[&alice, &bob, &carol]).await;
    wait_for("Connected events", T, || {
        ["alice", "bob", "carol"].iter().all(|w| has_state(&log, w, PeerState::Connected))
    })
    .await;

    talk(&alice, 1, 50).await;
    wait_for("both listeners got alice", T, || bob.count_from(1) >= 45 && carol.count_from(1) >= 45).await;
    assert_eq!(alice.got().len(), 0, "a speaker never receives its own audio");
    // The frames arrive whole and in order.
    let seqs: Vec<u64> = bob.got().iter().map(|g| u64::from_be_bytes(g.data[1..9].try_into().unwrap())).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert_eq!(bob.got()[0].data.len(), 80);

    // Tracks and active speakers.
    wait_for("alice speaking", T, || {
        log.lock().unwrap().iter().any(|e| matches!(e, MediaEvent::ActiveSpeakers { speaking, .. } if speaking.iter().any(|(p, l)| p == "alice" && *l >= 100)))
    })
    .await;
    assert!(log.lock().unwrap().iter().any(
        |e| matches!(e, MediaEvent::Tracks { identity, tracks, .. } if identity == "bob" && tracks.iter().any(|(_, p)| p.as_deref() == Some("alice")))
    ));
    wait_for("alice stopped", T, || {
        log.lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, MediaEvent::ActiveSpeakers { stopped, .. } if stopped.iter().any(|p| p == "alice")))
    })
    .await;
    let st = media.stats();
    assert!(st.forwarded >= 90, "{st:?}");
    assert!(st.send_calls > 0 && st.datagrams_out >= st.send_calls, "{st:?}");
    media.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublish_stops_forwarding_and_non_publishers_reach_nobody() {
    let (media, ev) = start(2);
    let _log = collect(ev);
    media.set_publish("r", "alice", true);
    let alice = Client::new();
    alice.join(&media, "r", "alice", Direction::SendRecv).await;
    let bob = Client::new();
    bob.join(&media, "r", "bob", Direction::SendRecv).await;
    let dave = Client::new();
    dave.join(&media, "r", "dave", Direction::SendRecv).await;
    connect_all(&[&alice, &bob, &dave]).await;

    // dave was never allowed: his audio reaches nobody.
    talk(&dave, 4, 30).await;
    talk(&alice, 1, 20).await;
    wait_for("bob got alice", T, || bob.count_from(1) >= 15).await;
    assert_eq!(bob.count_from(4), 0);
    assert_eq!(alice.count_from(4), 0);
    let before = media.stats().unpublished_dropped;
    assert!(before >= 25, "dave's packets are dropped on arrival: {:?}", media.stats());

    // Revoke alice: forwarding stops within a few packets.
    media.set_publish("r", "alice", false);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (b0, d0) = (bob.count_from(1), dave.count_from(1));
    talk(&alice, 1, 30).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(bob.count_from(1) - b0 <= 3, "bob still got {} frames", bob.count_from(1) - b0);
    assert!(dave.count_from(1) - d0 <= 3);
    assert!(media.stats().unpublished_dropped >= before + 25);

    // Allowed again (no renegotiation needed).
    media.set_publish("r", "alice", true);
    let b1 = bob.count_from(1);
    talk(&alice, 1, 20).await;
    wait_for("bob gets alice again", T, || bob.count_from(1) >= b1 + 15).await;
    media.shutdown();
}

fn server_ufrag(answer: &str) -> String {
    answer.lines().find_map(|l| l.strip_prefix("a=ice-ufrag:")).unwrap().trim().to_owned()
}

fn stun_request(username: &str, pad_integrity: bool) -> Vec<u8> {
    let mut b = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42];
    b.extend_from_slice(&[9; 12]);
    let mut attrs = Vec::new();
    attrs.extend_from_slice(&[0x00, 0x06]);
    attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attrs.extend_from_slice(username.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff]); // PRIORITY
    attrs.extend_from_slice(&[0x80, 0x2a, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]); // ICE-CONTROLLING
    if pad_integrity {
        attrs.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]); // MESSAGE-INTEGRITY, wrong
        attrs.extend_from_slice(&[0xab; 20]);
    }
    b[2..4].copy_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(&attrs);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_bad_stun_do_not_disturb_a_connected_pair() {
    let (media, ev) = start(2);
    let log = collect(ev);
    media.set_publish("r", "alice", true);
    let alice = Client::new();
    let (offer, pending) = alice.make_offer(Direction::SendRecv);
    let answer = media.offer("r", "alice", &offer).await.unwrap();
    alice.accept_answer(pending, &answer);
    let ufrag = server_ufrag(&answer);
    let bob = Client::new();
    bob.join(&media, "r", "bob", Direction::RecvOnly).await;
    connect_all(&[&alice, &bob]).await;
    talk(&alice, 1, 10).await;
    wait_for("flowing", T, || bob.count_from(1) >= 8).await;
    let s0 = media.stats();

    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 1400],
        vec![0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 9, 9, 9], // RTP-looking
        vec![0x81, 200, 0, 6, 1, 2, 3, 4],                      // RTCP-looking
        vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 1, 2], // DTLS-looking
        stun_request("nope:evil", true),
        stun_request(&format!("{ufrag}:evil"), true), // right ufrag, wrong password
        stun_request(&format!("{ufrag}:evil"), false), // right ufrag, no integrity
    ];
    let mut x = 0x1234_5678u32;
    for len in [3usize, 20, 64, 200, 1200] {
        junk.push(
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect(),
        );
    }
    for addr in media.local_addrs() {
        for j in &junk {
            attacker.send_to(j, addr).unwrap();
            // Also from the connected client's own address: it must not break its session.
            alice.socket.send_to(j, addr).unwrap();
        }
    }
    talk(&alice, 1, 30).await;
    wait_for("still flowing", T, || bob.count_from(1) >= 8 + 28).await;
    let s1 = media.stats();
    let dropped = (s1.garbage_dropped + s1.unknown_dropped) - (s0.garbage_dropped + s0.unknown_dropped);
    assert!(dropped >= junk.len() as u64, "dropped {dropped}, {s1:?}");
    assert!(!has_state(&log, "alice", PeerState::Disconnected));
    // The attacker's address was never bound to a peer: its RTP-looking junk counts as unknown.
    let before = media.stats().unknown_dropped;
    attacker.send_to(&junk[3], media.local_addrs()[0]).unwrap();
    wait_for("unknown counted", T, || media.stats().unknown_dropped > before).await;
    media.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sdp_errors() {
    let (media, _ev) = start(1);
    let c = Client::new();
    let (good, _p) = c.make_offer(Direction::SendRecv);

    let e = media.offer("r", "x", "hello world").await.unwrap_err();
    assert!(matches!(&e, MediaError::BadSdp(m) if m.contains("not valid SDP")), "{e}");

    let big = format!("{good}{}", "a=x-pad:0123456789\r\n".repeat(1000));
    assert!(matches!(media.offer("r", "x", &big).await, Err(MediaError::TooLarge { max: 16384 })));

    let video = good.replace("m=audio", "m=video");
    let e = media.offer("r", "x", &video).await.unwrap_err();
    assert!(matches!(&e, MediaError::BadSdp(m) if m.contains("video-only")), "{e}");

    let no_opus = good.replace("opus/", "PCMU/");
    let e = media.offer("r", "x", &no_opus).await.unwrap_err();
    assert!(matches!(&e, MediaError::BadSdp(m) if m.contains("Opus")), "{e}");

    let no_audio =
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
    let e = media.offer("r", "x", no_audio).await.unwrap_err();
    assert!(matches!(&e, MediaError::BadSdp(m) if m.contains("no audio")), "{e}");

    let broken = "v=0\r\nm=audio nonsense\r\na=rtpmap:111 opus/48000/2\r\n";
    let e = media.offer("r", "x", broken).await.unwrap_err();
    assert!(matches!(&e, MediaError::BadSdp(_)), "{e}");

    // None of these created a peer.
    assert!(matches!(media.answer("r", "x", &good).await, Err(MediaError::UnknownPeer)));

    // A real offer works; an answer without a pending server offer is refused.
    let answer = media.offer("r", "x", &good).await.unwrap();
    assert!(answer.contains("m=audio") && answer.contains("opus/48000"));
    assert!(answer.contains("a=ice-lite"));
    let e = media.answer("r", "x", &answer).await.unwrap_err();
    assert!(matches!(e, MediaError::NoPendingOffer), "{e}");
    media.shutdown();
    assert!(matches!(media.offer("r", "y", &good).await, Err(MediaError::Unavailable)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_peer_traffic_is_dropped() {
    let (media, ev) = start(2);
    let _log = collect(ev);
    media.set_publish("r", "alice", true);
    let alice = Client::new();
    alice.join(&media, "r", "alice", Direction::SendRecv).await;
    let bob = Client::new();
    bob.join(&media, "r", "bob", Direction::RecvOnly).await;
    connect_all(&[&alice, &bob]).await;
    talk(&alice, 1, 10).await;
    wait_for("flowing", T, || bob.count_from(1) >= 8).await;

    media.remove_peer("r", "alice");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b0 = bob.count_from(1);
    let u0 = media.stats().unknown_dropped;
    talk(&alice, 1, 20).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(bob.count_from(1), b0);
    assert!(media.stats().unknown_dropped >= u0 + 15, "{:?}", media.stats());
    assert!(matches!(
        media.answer("r", "alice", "v=0\r\n").await,
        Err(MediaError::BadSdp(_) | MediaError::UnknownPeer)
    ));

    // Rejoining makes a new peer; the permission was dropped with the old one.
    let alice2 = Client::new();
    alice2.join(&media, "r", "alice", Direction::SendRecv).await;
    connect_all(&[&alice2]).await;
    talk(&alice2, 7, 10).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(bob.count_from(7), 0);
    media.set_publish("r", "alice", true);
    talk(&alice2, 7, 20).await;
    wait_for("bob gets the new alice", T, || bob.count_from(7) >= 15).await;
    media.shutdown();
}

async fn answer_server_offer(media: &Media, log: &Log, client: &Client, who: &str, nth: usize) {
    let mut sdp = None;
    wait_for("server offer", T, || {
        let offers: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Offer { identity, sdp, .. } if identity == who => Some(sdp.clone()),
                _ => None,
            })
            .collect();
        sdp = offers.get(nth).cloned();
        sdp.is_some()
    })
    .await;
    let answer = client.accept_offer(&sdp.unwrap());
    media.answer("r", who, &answer).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_speaker_gets_a_new_slot_by_server_offer() {
    let (media, ev) = start(2);
    let log = collect(ev);
    media.set_publish("r", "alice", true);
    media.set_publish("r", "erin", true);
    let alice = Client::new();
    alice.join(&media, "r", "alice", Direction::SendRecv).await;
    let erin = Client::new();
    erin.join(&media, "r", "erin", Direction::SendRecv).await;
    let bob = Client::new();
    bob.join(&media, "r", "bob", Direction::RecvOnly).await;
    connect_all(&[&alice, &erin, &bob]).await;

    talk(&alice, 1, 10).await;
    wait_for("bob got alice", T, || bob.count_from(1) >= 8).await;
    // Both talk: bob's only slot is taken, so the server offers another.
    for _ in 0..10 {
        alice.send_frame(1);
        erin.send_frame(2);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While the server's offer awaits its answer, a client offer is a conflict.
    let other = Client::new();
    let (o, _p) = other.make_offer(Direction::RecvOnly);
    wait_for("server offer", T, || {
        log.lock().unwrap().iter().any(|e| matches!(e, MediaEvent::Offer { identity, .. } if identity == "bob"))
    })
    .await;
    assert!(matches!(media.offer("r", "bob", &o).await, Err(MediaError::Conflict)));
    answer_server_offer(&media, &log, &bob, "bob", 0).await;

    let (a0, e0) = (bob.count_from(1), bob.count_from(2));
    for _ in 0..40 {
        alice.send_frame(1);
        erin.send_frame(2);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for("bob gets both", T, || bob.count_from(1) >= a0 + 35 && bob.count_from(2) >= e0 + 35).await;
    // Each speaker got the other on its own sendrecv slot, never itself.
    assert_eq!(alice.count_from(1), 0);
    assert_eq!(erin.count_from(2), 0);
    assert!(alice.count_from(2) >= 35 && erin.count_from(1) >= 35);
    // The two sources arrive on two different mids at bob.
    let got = bob.got();
    let mid_a = got.iter().rev().find(|g| g.data[0] == 1).unwrap().mid;
    let mid_e = got.iter().rev().find(|g| g.data[0] == 2).unwrap().mid;
    assert_ne!(mid_a, mid_e);

    // A renegotiation by the same peer (fresh offer on the same connection) keeps its publish permission.
    let (o2, p2) = alice.make_offer(Direction::RecvOnly);
    let ans = media.offer("r", "alice", &o2).await.unwrap();
    alice.accept_answer(p2, &ans);
    let b1 = bob.count_from(1);
    talk(&alice, 1, 20).await;
    wait_for("alice still publishes after renegotiation", T, || bob.count_from(1) >= b1 + 15).await;
    media.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_switch_keeps_the_stream_continuous_and_ice_restart_keeps_permission() {
    let (media, ev) = start(2);
    let log = collect(ev);
    media.set_publish("r", "alice", true);
    media.set_publish("r", "erin", true);
    let alice = Client::new();
    alice.join(&media, "r", "alice", Direction::SendOnly).await;
    let erin = Client::new();
    let (o, p) = erin.make_offer(Direction::SendOnly);
    let first_answer = media.offer("r", "erin", &o).await.unwrap();
    erin.accept_answer(p, &first_answer);
    let bob = Client::new();
    bob.join(&media, "r", "bob", Direction::RecvOnly).await;
    connect_all(&[&alice, &erin, &bob]).await;
    // Erin's client clock starts far from alice's, as real ones do.
    erin.state.lock().unwrap().seq = 1_000_000;

    talk(&alice, 1, 20).await;
    wait_for("bob got alice", T, || bob.count_from(1) >= 18).await;
    media.set_publish("r", "alice", false);
    tokio::time::sleep(Duration::from_millis(60)).await;
    talk(&erin, 2, 20).await;
    wait_for("bob got erin", T, || bob.count_from(2) >= 18).await;
    let got = bob.got();
    let last_a = got.iter().rev().find(|g| g.data[0] == 1).unwrap();
    let first_e = got.iter().find(|g| g.data[0] == 2).unwrap();
    assert_eq!(last_a.mid, first_e.mid, "one slot, reused");
    let jump = first_e.time.wrapping_sub(last_a.time);
    // Continuous: the gap in RTP time is about the wall-clock pause (60 ms + scheduling), not erin's offset.
    assert!((960..=48_000).contains(&jump), "RTP time jumped by {jump}");
    assert!(log.lock().unwrap().iter().any(
        |e| matches!(e, MediaEvent::Tracks { identity, tracks, .. } if identity == "bob" && tracks.iter().any(|(_, p)| p.as_deref() == Some("erin")))
    ));

    // Erin (sendonly) had no slot to hear alice: the server offered one. A client offer now is a conflict.
    let (o, _p) = Client::new().make_offer(Direction::SendRecv);
    assert!(matches!(media.offer("r", "erin", &o).await, Err(MediaError::Conflict)));
    answer_server_offer(&media, &log, &erin, "erin", 0).await;

    // ICE restart by erin: renegotiates, keeps the permission, media keeps flowing.
    let (o, p) = erin.ice_restart_offer();
    let ans = media.offer("r", "erin", &o).await.unwrap();
    erin.accept_answer(p, &ans);
    assert_ne!(server_ufrag(&ans), server_ufrag(&first_answer), "the server's credentials restart too");
    let e0 = bob.count_from(2);
    talk(&erin, 2, 30).await;
    wait_for("erin after ICE restart", T, || bob.count_from(2) >= e0 + 25).await;
    media.shutdown();
}

/// `max_mlines` bounds both sides: a client offer with more m-lines is refused, and the SFU stops offering slots
/// once a peer has that many (audio beyond them waits for a free slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mline_cap_bounds_client_offers_and_server_slots() {
    let (media, ev) = Media::start(MediaConfig { workers: 1, max_mlines: 2, ..MediaConfig::default() }).unwrap();
    let log = collect(ev);
    let big = Client::new();
    let (o, _p) = {
        let mut st = big.state.lock().unwrap();
        let mut api = st.rtc.sdp_api();
        for _ in 0..3 {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api.apply().unwrap();
        (offer.to_sdp_string(), pending)
    };
    let e = media.offer("r", "big", &o).await.unwrap_err();
    assert!(matches!(e, MediaError::TooMany { what: "m-lines", max: 2 }), "{e}");

    let talkers: Vec<Client> = (0..3).map(|_| Client::new()).collect();
    for (i, t) in talkers.iter().enumerate() {
        let who = format!("t{i}");
        media.set_publish("r", &who, true);
        t.join(&media, "r", &who, Direction::SendOnly).await;
    }
    let bob = Client::new();
    bob.join(&media, "r", "bob", Direction::RecvOnly).await;
    connect_all(&[&talkers[0], &talkers[1], &talkers[2], &bob]).await;
    let offers_to_bob = || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, MediaEvent::Offer { identity, .. } if identity == "bob"))
            .count()
    };
    for _ in 0..10 {
        for (i, t) in talkers.iter().enumerate() {
            t.send_frame(i as u8 + 1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    answer_server_offer(&media, &log, &bob, "bob", 0).await;
    for _ in 0..40 {
        for (i, t) in talkers.iter().enumerate() {
            t.send_frame(i as u8 + 1);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Two slots: two of the three talkers are heard, and no third slot was offered.
    let heard = (1..=3u8).filter(|tag| bob.count_from(*tag) > 0).count();
    assert_eq!(heard, 2, "bob heard {heard} talkers");
    assert_eq!(offers_to_bob(), 1, "the SFU offered a slot past max_mlines");
    assert!(media.stats().no_slot_dropped > 0);
    media.shutdown();
}

#[test]
fn media_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Media>();
}
