//! Shared by the benchmarks: a `podium serve` child process, environment knobs, percentiles.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

/// A running `podium serve`, killed on drop.
pub(crate) struct Serve {
    pub(crate) child: Child,
    /// The websocket URL it printed.
    pub(crate) url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        if std::env::var("PODIUM_BENCH_WRAP").is_ok() {
            let _ = Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status();
            let _ = self.child.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `podium` with `args` and `envs` (under the command in `PODIUM_BENCH_WRAP` when set, e.g.
/// `valgrind --tool=massif --massif-out-file=/tmp/massif.out`; the hub then gets SIGINT at the end instead of
/// SIGKILL, so the profiler can write its report), waits for the websocket URL on its stdout and keeps draining stdout so it
/// never blocks on a full pipe. Its stderr goes to `stderr` (take it from `child` when piped). `RUST_LOG` and
/// `PODIUM_CONFIG` are not inherited (set them in `envs`).
pub(crate) fn serve(args: &[&str], envs: &[(&str, &str)], stderr: Stdio) -> Serve {
    let wrap = std::env::var("PODIUM_BENCH_WRAP").unwrap_or_default();
    let mut wrap = wrap.split_whitespace();
    let mut child = match wrap.next() {
        Some(cmd) => {
            let mut c = Command::new(cmd);
            c.args(wrap).arg(env!("CARGO_BIN_EXE_podium"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_podium")),
    };
    let mut child = child
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("PODIUM_CONFIG")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start podium serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("podium serve exited early").expect("read stdout");
        if let Some(url) = line.strip_prefix("Podium is listening: ") {
            break url.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Serve { child, url }
}

/// The per-source admission limits, raised: a benchmark opens thousands of connections from 127.0.0.1, which the
/// defaults (made for real clients, one address each or a few thousand behind a carrier NAT) would refuse with 429.
pub(crate) const UNLIMITED_SOURCES: [(&str, &str); 3] = [
    ("PODIUM_LIMITS__PENDING_PER_SOURCE", "1000000"),
    ("PODIUM_LIMITS__CONNECTS_PER_SOURCE_PER_SECOND", "1000000"),
    ("PODIUM_LIMITS__CONNECT_BURST_PER_SOURCE", "1000000"),
];

/// An environment knob, or `default` when unset or unparsable.
pub(crate) fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `p` quantile (0..=1) of sorted values (nearest rank), or 0 when empty.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a websocket and joins; returns it and the time from sending `join` to the welcome, in µs.
pub(crate) async fn join(url: &str, token: &str) -> Result<(Ws, u64), String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| format!("connect: {e}"))?;
    let request = serde_json::json!({"type": "join", "id": 1, "token": token}).to_string();
    let sent = Instant::now();
    ws.send(Message::Text(request.into())).await.map_err(|e| format!("send: {e}"))?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(|_| "no welcome within 10 s".to_owned())?;
        let Some(Ok(Message::Text(text))) = msg else {
            if msg.is_none() {
                return Err("closed before the welcome".into());
            }
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if v["id"] == 1 {
            if v["type"] == "ok" {
                return Ok((ws, u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX)));
            }
            return Err(format!("join refused: {v}"));
        }
    }
}

/// Reads (and drops) what the hub sends until the connection ends.
pub(crate) async fn drain(mut ws: Ws) {
    while let Some(Ok(_)) = ws.next().await {}
}
