//! `/metrics` over HTTP: the hub's own exposition after joins and requests (participants by role, joins, requests
//! and errors by code), and the acceptance test: a real Prometheus server (Debian's `prometheus` package, which
//! `bash tests/run` installs) scrapes two hubs sharing one Redis, and its query API returns the participant counts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use podium_hub::Role;
use podium_store::redis_server::RedisServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{Client, TIMEOUT, TestHub};

/// An HTTP/1.0 GET (no chunked body, the server closes): the response head and body.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(String, String)> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut raw)).await??;
    let text = String::from_utf8(raw)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("no response head: {text}"))?;
    Ok((head.to_owned(), body.to_owned()))
}

/// One sample of an exposition: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses the text exposition (OpenMetrics or Prometheus): every sample line; panics on a malformed one.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series, Vec::new()),
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    let labels = rest
                        .split(',')
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("bad label: {line}"));
                            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                            (k.to_owned(), v.unwrap_or_else(|| panic!("unquoted label: {line}")).to_owned())
                        })
                        .collect();
                    (name, labels)
                }
            };
            (name.to_owned(), labels, value)
        })
        .collect()
}

/// The value of the sample `name` whose labels include `labels`; `None` when there is no such sample.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, ls, _)| n == name && labels.iter().all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|s| s.2)
}

/// Scrapes the hub's `/metrics`; checks the status and content type.
async fn scrape(hub: &TestHub) -> Vec<Sample> {
    let (head, body) = http_get(hub.addr, "/metrics").await.expect("scrape");
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF");
    parse(&body)
}

/// Scrapes until `check` holds for the participant gauges (a room task reports right after each message it
/// handles), at most a few seconds; returns the last scrape.
async fn scrape_until(hub: &TestHub, what: &str, check: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let samples = scrape(hub).await;
        if check(&samples) {
            return samples;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {samples:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn participants(samples: &[Sample], role: &str) -> f64 {
    value(samples, "podium_participants", &[("role", role)]).unwrap_or(-1.0)
}

async fn join_as(hub: &TestHub, identity: &str, room: &str, ceiling: Role, role: Option<&str>) -> Client {
    let mut c = hub.connect().await;
    let mut body = json!({"type": "join", "token": hub.token(identity, room, ceiling)});
    if let Some(role) = role {
        body["role"] = json!(role);
    }
    let reply = c.request(body).await;
    assert_eq!(reply["type"], "ok", "join of {identity}: {reply}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_participants_by_role_joins_requests_and_errors() {
    let hub = TestHub::start().await;
    let before = scrape(&hub).await;
    for role in ["audience", "speaker", "moderator"] {
        assert_eq!(value(&before, "podium_participants", &[("role", role)]), Some(0.0), "pre-initialised {role}");
    }
    assert_eq!(value(&before, "podium_errors_total", &[("code", "forbidden")]), Some(0.0));
    assert_eq!(value(&before, "podium_rooms", &[]), Some(0.0));

    let _moderator = join_as(&hub, "mo", "metrics-room", Role::Moderator, None).await;
    let _speaker = join_as(&hub, "sp", "metrics-room", Role::Moderator, Some("speaker")).await;
    let mut listener = join_as(&hub, "l1", "metrics-room", Role::Audience, None).await;
    let other = join_as(&hub, "l2", "metrics-room", Role::Audience, None).await;
    // A refused join: a forged token.
    let mut refused = hub.connect().await;
    refused.expect_error(json!({"type": "join", "token": "not-a-token"}), "unauthorized").await;
    // A request the rules refuse, and one of an unknown type.
    listener.expect_error(json!({"type": "kick", "participant": "mo"}), "forbidden").await;
    listener.expect_error(json!({"type": "fly"}), "unknown_type").await;
    // A media offer the SFU answers: timed whole and in the SFU.
    let answer = listener.ok(json!({"type": "media_offer", "sdp": crate::media_signaling::audio_offer()})).await;
    assert!(answer["result"]["sdp"].as_str().is_some_and(|s| s.contains("a=ice-lite")), "{answer}");

    let samples = scrape_until(&hub, "participants by role", |s| {
        participants(s, "audience") == 2.0 && participants(s, "speaker") == 1.0 && participants(s, "moderator") == 1.0
    })
    .await;
    assert_eq!(value(&samples, "podium_joins_total", &[("outcome", "ok")]), Some(4.0));
    assert_eq!(value(&samples, "podium_joins_total", &[("outcome", "refused")]), Some(1.0));
    assert_eq!(value(&samples, "podium_join_latency_seconds_count", &[]), Some(4.0));
    let slowest = value(&samples, "podium_join_latency_seconds_sum", &[]).expect("sum");
    assert!(slowest > 0.0 && slowest < 20.0, "{slowest}");
    assert_eq!(value(&samples, "podium_requests_total", &[("kind", "join")]), Some(5.0));
    assert_eq!(value(&samples, "podium_requests_total", &[("kind", "kick")]), Some(1.0));
    assert_eq!(value(&samples, "podium_errors_total", &[("code", "forbidden")]), Some(1.0));
    assert_eq!(value(&samples, "podium_errors_total", &[("code", "unknown_type")]), Some(1.0));
    assert_eq!(value(&samples, "podium_errors_total", &[("code", "unauthorized")]), Some(1.0));
    assert_eq!(value(&samples, "podium_rooms", &[]), Some(1.0));
    assert!(value(&samples, "podium_connections", &[]).unwrap_or(0.0) >= 4.0, "four websockets and this scrape");
    assert_eq!(value(&samples, "podium_leases_held", &[]), Some(0.0), "no shared store, no leases");
    assert!(value(&samples, "podium_media_fanout_seconds_count", &[]).is_some(), "the SFU's histogram is exported");
    for name in ["podium_media_request_latency_seconds", "podium_media_sfu_latency_seconds"] {
        let offers = value(&samples, &format!("{name}_count"), &[("kind", "media_offer")]);
        assert_eq!(offers, Some(1.0), "{name}: the one offer");
        let took = value(&samples, &format!("{name}_sum"), &[("kind", "media_offer")]).expect("sum");
        assert!(took > 0.0 && took < 20.0, "{name}: {took}");
        let answers = value(&samples, &format!("{name}_count"), &[("kind", "media_answer")]);
        assert_eq!(answers, Some(0.0), "{name}: pre-initialised, none yet");
    }
    assert!(value(&samples, "podium_media_dropped_total", &[("reason", "garbage")]).is_some());
    assert!(value(&samples, "podium_redis_operation_latency_seconds_count", &[]).is_none(), "no Redis");
    // The standard process metrics, unprefixed (here of the test process, which runs the hub).
    let cpu = value(&samples, "process_cpu_seconds_total", &[]).expect("process_cpu_seconds_total");
    assert!(cpu > 0.0, "{cpu}");
    let rss = value(&samples, "process_resident_memory_bytes", &[]).expect("process_resident_memory_bytes");
    assert!(rss > 1e6, "{rss}");
    assert!(value(&samples, "process_open_fds", &[]).unwrap_or(0.0) >= 4.0, "the four websockets at least");
    let started = value(&samples, "process_start_time_seconds", &[]).expect("process_start_time_seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    assert!(started <= now + 1.0 && started > now - 86_400.0, "started {started}, now {now}");

    // Listeners whose connections end are no longer counted here (their grace period runs in the room).
    drop(listener);
    drop(other);
    scrape_until(&hub, "listeners gone", |s| participants(s, "audience") == 0.0 && participants(s, "speaker") == 1.0)
        .await;
    hub.stop().await;
}

/// A Prometheus server started by the test; killed when dropped, its directory removed.
struct Prometheus {
    child: Child,
    dir: std::path::PathBuf,
    addr: SocketAddr,
}

impl Prometheus {
    /// Starts `prometheus` scraping `targets` every second.
    fn start(targets: &[SocketAddr]) -> Self {
        let found = Command::new("prometheus").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
        assert!(
            found.is_ok_and(|s| s.success()),
            "the `prometheus` binary is not on PATH: `bash tests/run` installs Debian's prometheus package \
             (apt-get install prometheus)"
        );
        let dir = std::env::temp_dir().join(format!("podium-prometheus-{}-{}", std::process::id(), targets[0].port()));
        std::fs::create_dir_all(dir.join("data")).expect("temp dir");
        let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: podium\n    \
             scrape_interval: 1s\n    scrape_timeout: 1s\n    metrics_path: /metrics\n    static_configs:\n      - \
             targets: [{list}]\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={port}"))
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Self { child, dir, addr: port }
    }

    /// The value of an instant query whose result is one sample; `None` until there is one.
    async fn query(&self, promql: &str) -> Option<f64> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (_, body) = http_get(self.addr, &format!("/api/v1/query?query={encoded}")).await.ok()?;
        let reply: Value = serde_json::from_str(&body).ok()?;
        let result = reply["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_two_hubs_and_sums_their_participants() {
    let redis = RedisServer::start();
    let store = redis.url();
    let a = TestHub::start_with(|c| c.store.url.clone_from(&store)).await;
    let b = TestHub::start_with(|c| c.store.url.clone_from(&store)).await;
    let mut clients = Vec::new();
    // One room on both hubs (its moderator and two listeners on A, three listeners on B), and a room only on B.
    let (moderator, _) = a.join_when_up("host", "shared-room", Role::Moderator).await;
    clients.push(moderator);
    for (hub, identity, room) in [
        (&a, "a1", "shared-room"),
        (&a, "a2", "shared-room"),
        (&b, "b1", "shared-room"),
        (&b, "b2", "shared-room"),
        (&b, "b3", "shared-room"),
        (&b, "c1", "b-only-room"),
    ] {
        clients.push(hub.join_when_up(identity, room, Role::Audience).await.0);
    }

    let prometheus = Prometheus::start(&[a.addr, b.addr]);
    let on_b = format!("sum(podium_participants{{instance=\"{}\"}})", b.addr);
    let queries = [
        ("count(up{job=\"podium\"} == 1)", 2.0),
        ("sum(podium_participants{role=\"audience\"})", 6.0),
        ("sum(podium_participants{role=\"moderator\"})", 1.0),
        (on_b.as_str(), 4.0),
        ("sum(podium_rooms)", 3.0),
        ("sum(podium_joins_total{outcome=\"ok\"})", 7.0),
        ("sum(podium_leases_held)", 2.0),
        ("max(podium_redis_breaker_open)", 0.0),
        ("count(process_resident_memory_bytes{job=\"podium\"} > 0)", 2.0),
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut answers = Vec::new();
        for (q, _) in &queries {
            answers.push(prometheus.query(q).await);
        }
        if queries.iter().zip(&answers).all(|((_, want), got)| *got == Some(*want)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus did not return the expected values within 60 s: {:?}\nlog:\n{}",
            queries.iter().map(|q| q.0).zip(answers).collect::<HashMap<_, _>>(),
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let on_a = scrape(&a).await;
    let ops = value(&on_a, "podium_redis_operation_latency_seconds_count", &[]).unwrap_or(0.0);
    assert!(ops > 0.0, "Redis operations are timed: {on_a:?}");
    let within = value(&on_a, "podium_redis_operation_latency_seconds_bucket", &[("le", "+Inf")]);
    assert_eq!(within, Some(ops), "every operation is in a bucket");
    drop(prometheus);
    drop(clients);
    a.stop().await;
    b.stop().await;
}
