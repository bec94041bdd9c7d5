//! TLS on the hub's listening socket (`[tls]`) with real clients: a test CA (rcgen, `pki.rs`) signs the hub's
//! certificate; a websocket client (tokio-tungstenite over tokio-rustls, trusting only that CA) joins a room over
//! `wss://`; HTTPS requests (reqwest) reach health, metrics, the SDK, the demo and the admin API; plain HTTP to the
//! port gets a `400`. A TCP client that never completes a handshake is cut off at the handshake timeout, one that
//! handshakes but sends no request at the auth timeout, and the per-source limit refuses connections before any
//! handshake. A renewed certificate is served without a restart, found by the file watcher or reloaded on demand
//! (what SIGHUP does), and a broken one leaves the previous certificate in use.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use podium_hub::Role;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::pki::{CertDir, ServerCert, TestCa};
use crate::support::{Client, TestHub};

/// The names the hub's test certificates are for.
const NAMES: [&str; 3] = ["127.0.0.1", "localhost", "podium.test"];

type TlsClient = Client<TlsStream<TcpStream>>;

/// Starts a hub serving TLS from `dir`'s files.
async fn tls_hub(dir: &CertDir, tweak: impl FnOnce(&mut podium_hub::Config)) -> TestHub {
    let (cert, key) = (dir.cert.clone(), dir.key.clone());
    TestHub::start_with(move |c| {
        c.media.enabled = false;
        c.tls.cert = Some(cert);
        c.tls.key = Some(key);
        tweak(c);
    })
    .await
}

/// A TLS connection to the hub that trusts only `ca`.
async fn tls_connect(addr: SocketAddr, ca: &TestCa) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(ca.client_config()).connect(name, tcp).await
}

/// The certificate the hub presents to a new connection.
async fn served(addr: SocketAddr, ca: &TestCa) -> CertificateDer<'static> {
    let tls = tls_connect(addr, ca).await.expect("TLS handshake");
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone()
}

/// Waits until new connections get `cert` (the watcher's next look at the files).
async fn until_served(addr: SocketAddr, ca: &TestCa, cert: &ServerCert, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if served(addr, ca).await == cert.der {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "the new certificate was not served within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens a websocket over TLS and joins `room`.
async fn wss_join(hub: &TestHub, ca: &TestCa, identity: &str, room: &str, role: Role) -> (TlsClient, Value) {
    let tls = tls_connect(hub.addr, ca).await.expect("TLS handshake");
    let url = format!("wss://{}{}", hub.addr, podium_hub::WS_PATH);
    let (ws, response) = tokio_tungstenite::client_async(url, tls).await.expect("websocket over TLS");
    assert_eq!(response.status(), 101);
    let mut client = Client::over(ws);
    let reply = client.request(json!({"type": "join", "token": hub.token(identity, room, role)})).await;
    assert_eq!(reply["type"], "ok", "join over wss: {reply}");
    (client, reply["result"].clone())
}

/// An HTTPS client trusting only `ca`.
fn https(ca: &TestCa) -> reqwest::Client {
    let root = reqwest::Certificate::from_der(&ca.der).expect("CA certificate");
    reqwest::Client::builder().tls_certs_only([root]).build().expect("https client")
}

/// The value of one series in the hub's metrics.
async fn metric(client: &reqwest::Client, hub: &TestHub, series: &str) -> u64 {
    let text = client.get(format!("https://{}/metrics", hub.addr)).send().await.expect("metrics").text().await;
    let text = text.expect("metrics body");
    let line = text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

/// Waits until a series reaches `value` (the hub counts a failed handshake when its side of it is over).
async fn metric_reaches(client: &reqwest::Client, hub: &TestHub, series: &str, value: u64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let now = metric(client, hub, series).await;
        if now == value {
            return;
        }
        assert!(Instant::now() < deadline, "{series} is {now}, not {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads until the hub closes the connection (or `limit`); how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf)).await {
            Err(_) => panic!("the hub kept the connection open for {limit:?}"),
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn wss_joins_and_every_route_answers_over_https() {
    let ca = TestCa::new();
    let dir = CertDir::new("routes", &ca.issue(&NAMES));
    let hub = tls_hub(&dir, |c| c.server.demo = Some(true)).await;

    // Two clients join over wss://; the first sees the second arrive, and a request gets its answer.
    let (mut mod_, welcome) = wss_join(&hub, &ca, "mia", "tls-room", Role::Moderator).await;
    assert_eq!(welcome["state"]["you"]["role"], "moderator", "{welcome}");
    let (mut ann, _) = wss_join(&hub, &ca, "ann", "tls-room", Role::Speaker).await;
    mod_.event("participant_joined", |e| e["participant"]["id"] == "ann").await;
    ann.ok(json!({"type": "raise_hand"})).await;
    mod_.event("hand_queue", |e| e["queue"]["total"] == 1).await;

    // HTTPS: health, readiness, metrics, the SDK, the demo, the admin API.
    let client = https(&ca);
    let base = format!("https://{}", hub.addr);
    for (path, needle) in [
        ("/healthz", "ok"),
        ("/readyz", "ready"),
        ("/metrics", "podium_tls_handshakes_total"),
        ("/sdk/podium.js", "connect"),
        ("/", "<html"),
    ] {
        let response = client.get(format!("{base}{path}")).send().await.expect("https request");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.version(), reqwest::Version::HTTP_11, "{path}");
        assert!(response.text().await.expect("body").contains(needle), "{path}");
    }
    let admin = hub.admin_token("ops", podium_hub::auth::Scope::Read);
    let rooms: Value = client
        .get(format!("{base}/v1/admin/rooms/tls-room/participants"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("admin API")
        .json()
        .await
        .expect("json");
    assert_eq!(rooms["participants"].as_array().map(Vec::len), Some(2), "{rooms}");

    // Plain HTTP and plain websockets are told to use TLS; a client that does not trust the CA gets nowhere.
    let mut plain = TcpStream::connect(hub.addr).await.expect("connect");
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), plain.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 400 ") && answer.contains("use https:// or wss://"), "{answer}");
    assert!(tokio_tungstenite::connect_async(format!("ws://{}{}", hub.addr, podium_hub::WS_PATH)).await.is_err());
    assert!(tls_connect(hub.addr, &TestCa::new()).await.is_err(), "a certificate from another CA was accepted");

    metric_reaches(&client, &hub, "podium_tls_handshakes_total{outcome=\"plain_http\"}", 2).await;
    metric_reaches(&client, &hub, "podium_tls_handshakes_total{outcome=\"error\"}", 1).await;
    assert!(metric(&client, &hub, "podium_tls_handshakes_total{outcome=\"ok\"}").await >= 3);
    drop((mod_, ann));
    hub.stop().await;
}

/// A message near the frame limit, over TLS: the hub reads it from many TLS records (its reads hold no buffer of
/// their own) and answers.
#[tokio::test]
async fn a_message_near_the_frame_limit_crosses_wss() {
    let ca = TestCa::new();
    let dir = CertDir::new("large", &ca.issue(&NAMES));
    let hub = tls_hub(&dir, |c| {
        c.limits.max_frame_bytes = 64 * 1024;
        c.limits.max_message_bytes = 64 * 1024;
    })
    .await;
    let (mut client, _) = wss_join(&hub, &ca, "big", "tls-big", Role::Speaker).await;
    for _ in 0..3 {
        let reply = client.request(json!({"type": "ping", "pad": "x".repeat(60_000)})).await;
        assert_eq!(reply["type"], "ok", "{reply}");
    }
    client.ok(json!({"type": "raise_hand"})).await;
    hub.stop().await;
}

#[tokio::test]
async fn connections_that_do_not_handshake_are_cut_off_and_limits_come_first() {
    let ca = TestCa::new();
    let dir = CertDir::new("timeouts", &ca.issue(&NAMES));
    let hub = tls_hub(&dir, |c| {
        c.tls.handshake_timeout_ms = 1_000;
        c.auth.auth_timeout_ms = 1_200;
        c.limits.pending_per_source = 2;
    })
    .await;

    // Two connections that never start a handshake (one silent, one with half a record header) hold this address's
    // two pending places: a third is refused at once, before any TLS, while the two are still open; they are cut at
    // the handshake timeout.
    let started = Instant::now();
    let mut silent = TcpStream::connect(hub.addr).await.expect("connect");
    let mut partial = TcpStream::connect(hub.addr).await.expect("connect");
    partial.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = TcpStream::connect(hub.addr).await.expect("connect");
    let took = closed_within(&mut refused, Duration::from_millis(800)).await;
    for stream in [&silent, &partial] {
        let mut byte = [0u8; 1];
        let still_open = matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(still_open, "a connection was closed before its handshake timeout ({:?})", started.elapsed());
    }
    eprintln!("the connection over the limit was closed after {took:?}");
    for stream in [&mut silent, &mut partial] {
        closed_within(stream, Duration::from_secs(4)).await;
        let at = started.elapsed();
        assert!(at >= Duration::from_millis(950), "cut off after {at:?}, before the handshake timeout");
    }
    let cut = started.elapsed();
    assert!(cut < Duration::from_millis(2_500), "cut off after {cut:?}");
    eprintln!("connections that never handshook were cut off after {cut:?}");

    // A handshake that completes but no request: the auth timeout closes it.
    let mut idle = tls_connect(hub.addr, &ca).await.expect("handshake");
    let start = Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(4), idle.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "the idle TLS connection was not closed: {read:?}");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1_000) && took < Duration::from_millis(3_000), "closed after {took:?}");

    // The hub still serves, and counted both timeouts.
    let client = https(&ca);
    metric_reaches(&client, &hub, "podium_tls_handshakes_total{outcome=\"timeout\"}", 2).await;
    hub.stop().await;
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let ca = TestCa::new();
    let first = ca.issue(&NAMES);
    let dir = CertDir::new("renew", &first);
    let hub = tls_hub(&dir, |c| c.tls.reload_interval_ms = 100).await;
    assert_eq!(served(hub.addr, &ca).await, first.der);
    let (mut open, _) = wss_join(&hub, &ca, "ann", "renewals", Role::Speaker).await;

    // A renewal: the watcher loads it; the websocket made with the old certificate carries on.
    let second = ca.issue(&NAMES);
    dir.install(&second);
    let took = until_served(hub.addr, &ca, &second, Duration::from_secs(5)).await;
    eprintln!("renewed certificate served {took:?} after the files changed");
    open.ok(json!({"type": "raise_hand"})).await;

    // A broken renewal (a certificate without its key) changes nothing; the fixed one is loaded.
    let third = ca.issue(&NAMES);
    crate::pki::replace(&dir.cert, &third.cert_pem);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(served(hub.addr, &ca).await, second.der, "a certificate without its key was used");
    crate::pki::replace(&dir.key, &third.key_pem);
    until_served(hub.addr, &ca, &third, Duration::from_secs(5)).await;
    let client = https(&ca);
    assert_eq!(metric(&client, &hub, "podium_tls_certificate_reloads_total{outcome=\"ok\"}").await, 2);
    // At least the broken renewal (a check between the two renames of a renewal may have seen half of it too).
    assert!(metric(&client, &hub, "podium_tls_certificate_reloads_total{outcome=\"failed\"}").await >= 1);
    open.ok(json!({"type": "lower_hand"})).await;
    drop(open);
    hub.stop().await;

    // Without the watcher (reload_interval_ms = 0) only a reload on demand, what SIGHUP does, loads new files.
    let hub = tls_hub(&dir, |c| c.tls.reload_interval_ms = 0).await;
    let handle = hub.tls.clone().expect("a TLS hub has a reload handle");
    let fourth = ca.issue(&NAMES);
    dir.install(&fourth);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served(hub.addr, &ca).await, third.der);
    crate::pki::replace(&dir.key, "not a key");
    let error = format!("{:#}", handle.reload().await.expect_err("a broken key loaded"));
    assert!(error.contains("tls.key") && error.contains(&dir.key.display().to_string()), "{error}");
    assert_eq!(served(hub.addr, &ca).await, third.der);
    crate::pki::replace(&dir.key, &fourth.key_pem);
    handle.reload().await.expect("reload");
    assert_eq!(served(hub.addr, &ca).await, fourth.der);
    hub.stop().await;
}

#[tokio::test]
async fn a_bad_certificate_stops_the_hub_at_startup() {
    let ca = TestCa::new();
    let server = ca.issue(&NAMES);
    let dir = CertDir::new("startup", &server);
    crate::pki::replace(&dir.key, &ca.issue(&NAMES).key_pem);
    let mut config = podium_hub::Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("address");
    config.tls.cert = Some(dir.cert.clone());
    config.tls.key = Some(dir.key.clone());
    let error = match podium_hub::Hub::bind(config).await {
        Ok(_) => panic!("a hub started with a key that is not its certificate's"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("is not the private key of the first certificate"), "{error}");
    assert!(error.contains(&dir.key.display().to_string()), "{error}");
}
