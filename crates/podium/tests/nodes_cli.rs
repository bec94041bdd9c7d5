//! `podium serve` with a Redis store prints its node id; `podium nodes` lists it as alive (with its public URL)
//! while it runs, and not at all once SIGTERM stopped it (it leaves the registry). A real `redis-server` started
//! here; real processes.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podium_store::redis_server::RedisServer;

fn podium_nodes(store: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_podium"))
        .args(["nodes", "--store", store])
        .env_remove("PODIUM_CONFIG")
        .output()
        .expect("run podium nodes");
    assert!(out.status.success(), "podium nodes failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn podium_nodes_lists_the_hubs_sharing_a_store() {
    let redis = RedisServer::start();
    let store = redis.url();
    assert_eq!(podium_nodes(&store).trim(), "no hubs registered");

    let mut hub = Command::new(env!("CARGO_BIN_EXE_podium"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store", &store])
        .env_remove("PODIUM_CONFIG")
        .env("PODIUM_AUTH__SECRET", "nodes-cli-test")
        .env("PODIUM_MEDIA__ENABLED", "false")
        .env("PODIUM_SERVER__PUBLIC_URL", "ws://hub-1.example.test/v1/ws")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start podium serve");
    let stdout = BufReader::new(hub.stdout.take().unwrap());
    let node = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("Node: ").map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned()))
        .expect("podium serve prints its node id");
    assert_eq!(node.len(), 16, "{node}");

    // The hub heartbeats every second; it shows as alive with its public URL.
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let listed = podium_nodes(&store);
        if listed.contains(&node) {
            break listed;
        }
        assert!(Instant::now() < deadline, "{node} never listed: {listed}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let line = listed.lines().find(|l| l.starts_with(&node)).unwrap();
    assert!(line.contains(" alive "), "{line}");
    assert!(line.ends_with("ws://hub-1.example.test/v1/ws"), "{line}");

    // SIGTERM: with no other hub to drain to it just stops, and leaves the registry.
    let status = Command::new("kill").args(["-TERM", &hub.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exited = hub.wait().unwrap();
    assert!(exited.success(), "{exited:?}");
    assert_eq!(podium_nodes(&store).trim(), "no hubs registered");

    // Bad input gets a clear error, not a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_podium"))
        .args(["nodes", "--store", "memory"])
        .env_remove("PODIUM_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node registry"), "{out:?}");
}
