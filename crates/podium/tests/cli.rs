//! The operator CLI against a real hub: a `podium serve` process (in-memory store, two admin API keys, a webhook
//! endpoint that cannot be reached) driven by the built `podium` binary (`rooms`, `moderate`, `hubs`,
//! `webhooks status`), with a participant joined over the websocket. Checks the tables, `--json`, the problems
//! printed as `error: <detail> (<code>, HTTP <status>)` and the exit codes. `podium webhooks test` posts to a small
//! HTTP receiver here, which checks that the Standard Webhooks headers are there and the signature is the hub's.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use podium_hub::Role;
use podium_hub::auth::{TokenKeys, claims_for};
use serde_json::{Value, json};

#[allow(dead_code)]
#[path = "../../../tests/it/support.rs"]
mod support;

const SECRET: &str = "cli-test-secret";
const ADMIN_KEY: &str = "pk_cli_test_admin_0123456789";
const READ_KEY: &str = "pk_cli_test_read_0123456789";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Hub {
    child: Child,
    /// `host:port`.
    addr: String,
}

impl Hub {
    fn start() -> Self {
        let keys = format!(
            r#"[{{name="ops",sha256="{}",scope="admin"}},{{name="viewer",sha256="{}",scope="read"}}]"#,
            podium_hub::admin_key_hash(ADMIN_KEY),
            podium_hub::admin_key_hash(READ_KEY)
        );
        let mut child = Command::new(env!("CARGO_BIN_EXE_podium"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("PODIUM_CONFIG")
            .env("PODIUM_AUTH__SECRET", SECRET)
            .env("PODIUM_MEDIA__ENABLED", "false")
            .env("PODIUM_ADMIN__KEYS", keys)
            .env("PODIUM_WEBHOOKS__ENDPOINTS", r#"[{name="unreachable",url="http://127.0.0.1:1/hook"}]"#)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start podium serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| {
                let rest = l.strip_prefix("Podium is listening: ws://")?;
                Some(rest.split('/').next().unwrap_or_default().to_owned())
            })
            .expect("podium serve prints its address");
        // Keep reading: the hub must not write into a closed pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, addr }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `podium <args>` with no ambient configuration.
fn podium(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podium"));
    cmd.args(args)
        .env_remove("PODIUM_CONFIG")
        .env_remove("PODIUM_URL")
        .env_remove("PODIUM_ADMIN_KEY")
        .env_remove("PODIUM_WEBHOOKS__ENDPOINTS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run podium")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `podium <args>` against the hub with the admin key (from the environment, as an operator would set it).
fn admin(hub: &Hub, args: &[&str]) -> Run {
    as_key(hub, ADMIN_KEY, args)
}

fn as_key(hub: &Hub, key: &str, args: &[&str]) -> Run {
    let url = format!("http://{}", hub.addr);
    let out = podium(args, &[("PODIUM_URL", &url), ("PODIUM_ADMIN_KEY", key)]);
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    eprintln!("$ podium {}\n{}{}[exit {}]", args.join(" "), run.stdout, run.stderr, run.code);
    run
}

fn ok(run: &Run) -> &str {
    assert_eq!(run.code, 0, "failed: {}", run.stderr);
    &run.stdout
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(ok(run)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.stdout))
}

/// The table row whose first column is `first`.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    let line = table.lines().find(|l| l.split_whitespace().next() == Some(first));
    line.unwrap_or_else(|| panic!("no row {first:?} in\n{table}")).split_whitespace().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_drive_rooms_and_moderation_from_the_command_line() {
    let hub = Hub::start();

    let run = admin(&hub, &["rooms", "list"]);
    assert_eq!(ok(&run).trim(), "no rooms");

    // Create: the room is shown; a second create is a conflict (exit 1).
    let run = admin(&hub, &["rooms", "create", "summit", "--stage-capacity", "4", "--closed", "--guest", "carol"]);
    let shown = ok(&run);
    assert!(shown.contains("room:        summit"), "{shown}");
    assert!(shown.contains("persistent:  yes"), "{shown}");
    assert!(shown.contains("stage capacity 4, open mic no, closed yes"), "{shown}");
    assert!(shown.contains("guests:      carol"), "{shown}");
    let run = admin(&hub, &["rooms", "create", "summit"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.trim(), r#"error: room "summit" already exists (conflict, HTTP 409)"#);

    // --json prints the API's room as it came.
    let room = json_of(&admin(&hub, &["rooms", "create", "aside", "--ephemeral", "--open-mic", "--json"]));
    assert_eq!(room["name"], "aside");
    assert_eq!(room["persistent"], false);
    assert_eq!(room["settings"]["open_mic"], true);

    // Lists: a table, one page with a hint to the next, and every page with --all.
    let run = admin(&hub, &["rooms", "list"]);
    let table = ok(&run);
    assert_eq!(
        table.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "PERSISTENT", "STAGE", "AUDIENCE", "HANDS", "SETTINGS"]
    );
    assert_eq!(row(table, "summit"), ["summit", "yes", "0/4", "0", "0", "closed"]);
    assert_eq!(row(table, "aside"), ["aside", "no", "0/13", "0", "0", "open-mic"]);
    let run = admin(&hub, &["rooms", "list", "--limit", "1"]);
    assert_eq!(ok(&run).lines().count(), 2, "{}", run.stdout);
    assert!(run.stderr.contains("more: --cursor aside"), "{}", run.stderr);
    let page = json_of(&admin(&hub, &["rooms", "list", "--limit", "1", "--json"]));
    assert_eq!(page["next"], "aside");
    let all = json_of(&admin(&hub, &["rooms", "list", "--limit", "1", "--all", "--json"]));
    let names: Vec<&str> = all["rooms"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["aside", "summit"]);

    // A participant joins over the websocket; the operator sees them and acts on them.
    let keys = TokenKeys::new(SECRET.as_bytes());
    let token =
        keys.mint(&claims_for("carol", Some("Carol"), "summit", Role::Speaker, Duration::from_secs(600))).unwrap();
    let mut carol = support::Client::connect(&format!("ws://{}{}", hub.addr, podium_hub::WS_PATH)).await;
    let reply = carol.request(json!({"type": "join", "token": token})).await;
    assert_eq!(reply["type"], "ok", "{reply}");

    let run = admin(&hub, &["rooms", "participants", "summit"]);
    assert_eq!(row(ok(&run), "carol"), ["carol", "Carol", "audience", "speaker", "yes", "yes", "-", "no"]);
    let run = admin(&hub, &["moderate", "summit", "carol", "invite-to-stage", "--reason", "come up"]);
    assert_eq!(ok(&run).trim(), "done: invite-to-stage carol in summit");
    let people = json_of(&admin(&hub, &["rooms", "participants", "summit", "--role", "audience", "--json"]));
    assert_eq!(people["participants"][0]["invited"], true, "{people}");
    // The room's rules hold: an audience member cannot be muted.
    let run = admin(&hub, &["moderate", "summit", "carol", "mute"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.starts_with("error: ") && run.stderr.contains(", HTTP 4"), "{}", run.stderr);

    let run = admin(&hub, &["moderate", "summit", "carol", "kick", "--reason", "spam"]);
    assert_eq!(ok(&run).trim(), "done: kick carol in summit");
    let (code, _) = carol.closed().await;
    assert_ne!(code, 1000, "kicked: closed with a Podium code");
    let run = admin(&hub, &["moderate", "summit", "troll", "ban", "--reason", "spam"]);
    ok(&run);
    let run = admin(&hub, &["moderate", "summit", "dave", "guest-add"]);
    ok(&run);
    let room = json_of(&admin(&hub, &["rooms", "show", "summit", "--json"]));
    assert_eq!(room["bans"], json!(["troll"]));
    assert_eq!(room["guests"], json!(["carol", "dave"]));
    let run = admin(&hub, &["moderate", "summit", "-", "revoke", "--token-id", "0123abcd"]);
    assert_eq!(ok(&run).trim(), "done: revoke in summit");

    // Update, then the table of a shown room.
    let run = admin(&hub, &["rooms", "update", "summit", "--open-mic", "true", "--stage-capacity", "6"]);
    assert!(ok(&run).contains("stage capacity 6, open mic yes, closed yes"), "{}", run.stdout);

    // Hubs and webhook delivery through the API.
    let run = admin(&hub, &["hubs", "list"]);
    let line = ok(&run).lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>();
    assert_eq!((line[1], line[line.len() - 1]), ("alive", "*"), "{}", run.stdout);
    let run = admin(&hub, &["webhooks", "status"]);
    assert_eq!(row(ok(&run), "unreachable")[1], "http://127.0.0.1:1/hook");
    let status = json_of(&admin(&hub, &["webhooks", "status", "--json"]));
    assert_eq!(status["endpoints"][0]["name"], "unreachable");

    // Failures: not found (4), a wrong or too small credential (3), usage (2), no hub (5).
    let run = admin(&hub, &["rooms", "show", "nope"]);
    assert_eq!(run.code, 4);
    assert_eq!(run.stderr.trim(), r#"error: no room "nope" (not_found, HTTP 404)"#);
    let run = as_key(&hub, "pk_wrong", &["rooms", "list"]);
    assert_eq!(run.code, 3);
    assert!(
        run.stderr.starts_with("error: ") && run.stderr.trim_end().ends_with("(unauthorized, HTTP 401)"),
        "{}",
        run.stderr
    );
    let run = as_key(&hub, READ_KEY, &["rooms", "end", "summit"]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.trim_end().ends_with("(forbidden, HTTP 403)"), "{}", run.stderr);
    assert_eq!(as_key(&hub, READ_KEY, &["rooms", "show", "summit"]).code, 0, "read scope may show");
    let out = podium(&["rooms", "list", "--url", &format!("http://{}", hub.addr)], &[]);
    assert_eq!(out.status.code(), Some(3), "no credential");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--key"));
    let run = admin(&hub, &["moderate", "summit", "carol", "dance"]);
    assert_eq!(run.code, 2, "clap's usage error");
    let run = admin(&hub, &["moderate", "summit", "troll", "unban", "--reason", "x"]);
    assert_eq!(run.code, 2);
    let out = podium(&["rooms", "list", "--url", "http://127.0.0.1:1", "--key", ADMIN_KEY], &[]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: could not reach the hub at http://127.0.0.1:1"));

    // End: gone for the API (the --key flag works like the variable).
    let out = podium(&["rooms", "end", "summit", "--url", &format!("http://{}", hub.addr), "--key", ADMIN_KEY], &[]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ended room summit");
    assert_eq!(admin(&hub, &["rooms", "show", "summit"]).code, 4);

    // Drain: an unknown hub is not found; this one drains and, with no other hub, stops.
    assert_eq!(admin(&hub, &["hubs", "drain", "0000000000000000"]).code, 4);
    let hubs = json_of(&admin(&hub, &["hubs", "list", "--json"]));
    let id = hubs["nodes"][0]["id"].as_str().unwrap().to_owned();
    let run = admin(&hub, &["hubs", "drain", &id]);
    assert_eq!(ok(&run).trim(), format!("draining hub {id}"));
    let mut hub = hub;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while hub.child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the drained hub did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One request the receiver got: its headers (lowercase names) and body.
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 receiver on a free port: answers each request with `status`, sends what it got to the test.
fn receiver(status: u16) -> (u16, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
            let length = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let answer = format!("HTTP/1.1 {status} Test\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            stream.write_all(answer.as_bytes()).unwrap();
            if tx.send(Received { path, headers, body }).is_err() {
                break;
            }
        }
    });
    (port, rx)
}

#[test]
fn webhooks_test_sends_signed_events() {
    let (port, got) = receiver(204);

    // One receiver from the command line, signed with two secrets (a rotation).
    let url = format!("http://127.0.0.1:{port}/hook");
    let old = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = podium(&["webhooks", "test", "--url", &url, "--secret", WHSEC, "--secret", old], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let line = stdout.lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>();
    assert_eq!((line[1], line[2], line[4], line[5]), (url.as_str(), "204", "ms", "ok"), "{stdout}");
    let request = got.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(request.path, "/hook");
    let id = request.header("webhook-id").expect("webhook-id");
    let timestamp: u64 = request.header("webhook-timestamp").expect("webhook-timestamp").parse().unwrap();
    let signature = request.header("webhook-signature").expect("webhook-signature");
    assert_eq!(signature.split(' ').filter(|s| s.starts_with("v1,")).count(), 2, "{signature}");
    assert_eq!(signature, podium_hub::webhooks::sign(&[WHSEC, old], id, timestamp, &request.body).unwrap());
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!((body["type"].as_str(), body["data"]["id"].as_str()), (Some("webhook.test"), Some(id)));

    // The configured endpoints (here from the environment): one answers, one cannot be reached; exit 1.
    let endpoints = format!(
        r#"[{{name="app",url="http://127.0.0.1:{port}/app",secrets=["{WHSEC}"]}},{{name="gone",url="http://127.0.0.1:1/"}}]"#
    );
    let out = podium(&["webhooks", "test", "--json"], &[("PODIUM_WEBHOOKS__ENDPOINTS", &endpoints)]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 2 endpoints did not answer 2xx"), "{out:?}");
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results[0]["endpoint"], "app");
    assert_eq!(results[0]["status"], 204);
    assert!(results[0]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(results[1]["endpoint"], "gone");
    assert_eq!(results[1]["status"], Value::Null);
    assert_eq!(results[1]["error"], "connection failed");
    let request = got.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(request.path, "/app");
    assert!(request.header("webhook-signature").is_some_and(|s| s.starts_with("v1,")));

    // --endpoint picks one; an unknown name is a usage error.
    let out = podium(&["webhooks", "test", "--endpoint", "app"], &[("PODIUM_WEBHOOKS__ENDPOINTS", &endpoints)]);
    assert!(out.status.success(), "{out:?}");
    let out = podium(&["webhooks", "test", "--endpoint", "nope"], &[("PODIUM_WEBHOOKS__ENDPOINTS", &endpoints)]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = podium(&["webhooks", "test"], &[]);
    assert_eq!(out.status.code(), Some(2), "no endpoints: {out:?}");
}
