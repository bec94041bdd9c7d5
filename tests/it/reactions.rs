//! Issue #15, item 1, against a real hub: reactions (`react`, the `reactions` event, `welcome.reactions`). 5,000
//! real websocket listeners react at their rate limit: each gets at most one `reactions` event per window, the
//! counts add up to exactly the reactions accepted, and those over the limit were refused with `rate_limited`. (The
//! crowd test keeps each listener's share small, a few seconds at 2 a second, so it stays within about a minute on
//! two busy cores in a debug build; the file descriptors it needs, two per listener, fit the usual 20,000 limit.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use podium_hub::Role;
use serde_json::{Value, json};

use crate::support::{Client, HEAVY, TestHub};

#[tokio::test]
async fn reactions_are_checked_counted_per_window_and_never_close_the_socket() {
    let hub = TestHub::start_with(|c| {
        c.reactions.per_second = 2;
        c.reactions.burst = 3;
        c.reactions.window_ms = 300;
    })
    .await;
    let mut stranger = hub.connect().await;
    stranger.expect_error(json!({"type": "react", "reaction": "clap"}), "unauthorized").await;
    let (mut ann, welcome) = hub.join("ann", "react", Role::Speaker).await;
    assert_eq!(
        welcome["reactions"],
        json!({"kinds": ["clap", "heart", "laugh", "fire", "raised_hands", "plus_one"], "window_ms": 300, "per_second": 2}),
        "{welcome}"
    );
    let (mut bob, _) = hub.join("bob", "react", Role::Audience).await;

    for bad in [json!("Clap"), json!("confetti"), json!(""), json!(7)] {
        ann.expect_error(json!({"type": "react", "reaction": bad}), "bad_request").await;
    }
    ann.expect_error(json!({"type": "react"}), "bad_request").await;
    // The burst of three goes through; the fourth is dropped, and the socket stays open.
    for kind in ["clap", "clap", "heart"] {
        ann.ok(json!({"type": "react", "reaction": kind})).await;
    }
    let limited = ann.expect_error(json!({"type": "react", "reaction": "fire"}), "rate_limited").await;
    assert!(limited["message"].as_str().is_some_and(|m| m.contains("reactions")), "{limited}");
    ann.ok(json!({"type": "ping"})).await;

    // One event for the window, to everyone (the sender too), without a seq.
    for client in [&mut ann, &mut bob] {
        let event = client.event("reactions", |_| true).await;
        assert_eq!(event["counts"], json!({"clap": 2, "heart": 1}), "{event}");
        assert_eq!(event["window_ms"], 300);
        assert!(event.get("seq").is_none(), "{event}");
    }
    // An idle window sends nothing.
    let quiet = bob.drain(Duration::from_millis(700)).await;
    assert!(quiet.iter().all(|e| e["type"] != "reactions"), "{quiet:?}");
    // The bucket refills: a reaction half a second later is accepted again.
    ann.ok(json!({"type": "react", "reaction": "plus_one"})).await;
    assert_eq!(bob.event("reactions", |_| true).await["counts"], json!({"plus_one": 1}));
    hub.stop().await;
}

/// What one listener saw.
#[derive(Default)]
struct Seen {
    accepted: u64,
    limited: u64,
    /// Each `reactions` event's counts.
    events: Vec<BTreeMap<String, u64>>,
}

const KINDS: [&str; 3] = ["clap", "heart", "fire"];

/// One listener: `burst` reactions sent at once (pipelined, more than its bucket holds), then one every `every` (its
/// sustained rate) for `steady`. Returns the client (to drain later) and its tally.
async fn react_at_the_limit(
    mut client: Client,
    n: usize,
    burst: u64,
    every: Duration,
    steady: Duration,
) -> (Client, Seen) {
    let mut seen = Seen::default();
    let kind = KINDS[n % KINDS.len()];
    let tally = |reply: Value, seen: &mut Seen| match (reply["type"].as_str(), reply["code"].as_str()) {
        (Some("ok"), _) => seen.accepted += 1,
        (Some("error"), Some("rate_limited")) => seen.limited += 1,
        _ => panic!("listener {n}: unexpected reply {reply}"),
    };
    let react = |id: u64| json!({"type": "react", "id": id, "reaction": kind}).to_string();
    for id in 0..burst {
        client.send_text(&react(1_000 + id)).await;
    }
    for id in 0..burst {
        let reply = client.reply_to(json!(1_000 + id)).await;
        tally(reply, &mut seen);
    }
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval_at(started + every, every);
    while started.elapsed() < steady {
        tick.tick().await;
        let reply = client.request(json!({"type": "react", "reaction": kind})).await;
        tally(reply, &mut seen);
    }
    (client, seen)
}

/// Everything that arrived: the counts of each `reactions` event.
async fn reactions_received(mut client: Client) -> Vec<BTreeMap<String, u64>> {
    let events = client.drain(Duration::from_millis(300)).await;
    events
        .into_iter()
        .filter(|e| e["type"] == "reactions")
        .map(|e| serde_json::from_value(e["counts"].clone()).expect("counts by kind"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_listeners_reacting_at_their_limit_get_one_event_per_window_with_exact_counts() {
    const LISTENERS: usize = 5_000;
    const WINDOW_MS: u64 = 500;
    let _heavy = HEAVY.lock().await;
    let hub = Arc::new(
        TestHub::start_with(|c| {
            // Every connection comes from 127.0.0.1: lift the per-source limits for this crowd.
            c.limits.pending_per_source = 10_000;
            c.limits.connects_per_source_per_second = 100_000;
            c.limits.connect_burst_per_source = 100_000;
            c.reactions.window_ms = WINDOW_MS as u32;
            c.reactions.per_second = 2;
            c.reactions.burst = 2;
        })
        .await,
    );
    let open = Instant::now();
    let clients: Vec<Client> = futures_util::stream::iter(0..LISTENERS)
        .map(|n| {
            let hub = Arc::clone(&hub);
            async move { hub.join(&format!("l{n}"), "crowd", Role::Audience).await.0 }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    eprintln!("{LISTENERS} listeners joined in {:?}", open.elapsed());

    // At the limit (2 a second, a burst of 2): eight at once (most over it), then one every half second for two
    // seconds.
    let (burst, every, steady) = (8, Duration::from_millis(500), Duration::from_secs(2));
    let first = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(n, client)| tokio::spawn(react_at_the_limit(client, n, burst, every, steady)))
        .collect();
    let mut clients = Vec::with_capacity(LISTENERS);
    let mut seen = Vec::with_capacity(LISTENERS);
    for task in tasks {
        let (client, tally) = task.await.expect("listener task");
        clients.push(client);
        seen.push(tally);
    }
    eprintln!("reactions sent in {:?}", first.elapsed());
    // The last window ends, and its event arrives (generously, on two busy cores).
    tokio::time::sleep(Duration::from_millis(3 * WINDOW_MS)).await;
    let drains: Vec<_> = clients.into_iter().map(|c| tokio::spawn(reactions_received(c))).collect();
    for (task, s) in drains.into_iter().zip(&mut seen) {
        s.events = task.await.expect("drain task");
    }
    // Every event was sent between the first reaction and the end of the drain.
    let span = first.elapsed();
    let accepted: u64 = seen.iter().map(|s| s.accepted).sum();
    let limited: u64 = seen.iter().map(|s| s.limited).sum();
    eprintln!("accepted {accepted}, rate limited {limited}, in {span:?}");
    assert!(limited >= LISTENERS as u64, "the bursts of eight went over the bucket of two: {limited} refused");
    assert!(accepted >= LISTENERS as u64 * 2, "at least each bucket's two were accepted: {accepted}");
    for (n, s) in seen.iter().enumerate() {
        assert!(s.accepted + s.limited > burst, "listener {n}: its burst and at least one more answered");
    }
    let bound = span.as_millis() as usize / WINDOW_MS as usize + 1;
    for (n, s) in seen.iter().enumerate() {
        assert!(s.events.len() <= bound, "listener {n}: {} events in {span:?} (at most {bound})", s.events.len());
        assert!(s.events.iter().all(|c| !c.is_empty() && c.values().all(|v| *v > 0)), "listener {n}: empty counts");
        let total: u64 = s.events.iter().flat_map(|c| c.values()).sum();
        assert_eq!(total, accepted, "listener {n} saw every accepted reaction counted exactly once");
    }
    let by_kind = seen[0].events.iter().flat_map(|c| c.iter()).fold(BTreeMap::new(), |mut m, (k, v)| {
        *m.entry(k.clone()).or_insert(0) += v;
        m
    });
    assert_eq!(by_kind.keys().map(String::as_str).collect::<Vec<_>>(), ["clap", "fire", "heart"]);
    match Arc::try_unwrap(hub) {
        Ok(hub) => hub.stop().await,
        Err(_) => unreachable!("the joins are done"),
    }
}
