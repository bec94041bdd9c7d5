//! `podium serve` with TLS (`[tls]` from the environment): the startup lines give `wss://` and `https://` URLs, SIGHUP
//! reloads renewed certificate files (a broken pair is logged and leaves the previous one in use), and a key that is
//! not the certificate's stops `podium serve` at startup with an error naming the file, not a panic. The certificates
//! come from a test CA (`tests/it/pki.rs`); a rustls client that trusts only that CA checks what is served.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

#[allow(dead_code)]
#[path = "../../../tests/it/pki.rs"]
mod pki;

use pki::{CertDir, TestCa};

/// `podium serve` with TLS from `dir`, reloaded only on SIGHUP.
fn serve(dir: &CertDir) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podium"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("PODIUM_CONFIG")
        .env("PODIUM_MEDIA__ENABLED", "false")
        .env("PODIUM_TLS__CERT", &dir.cert)
        .env("PODIUM_TLS__KEY", &dir.key)
        .env("PODIUM_TLS__RELOAD_INTERVAL_MS", "0")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

/// Lines of one of the child's outputs, read by a thread.
fn lines(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// The first line containing `needle` within 10 s.
fn line_with(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("no line with {needle:?} within 10 s"),
        }
    }
}

/// The certificate a new TLS connection to `addr` gets.
fn served(addr: &str, ca: &TestCa) -> CertificateDer<'static> {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ip = addr.rsplit_once(':').unwrap().0.parse::<std::net::IpAddr>().unwrap();
    let mut conn = rustls::ClientConnection::new(ca.client_config(), ServerName::IpAddress(ip.into())).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    conn.peer_certificates().unwrap()[0].clone()
}

fn hangup(child: &Child) {
    let status = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn podium_serve_prints_tls_urls_and_reloads_on_sighup() {
    let ca = TestCa::new();
    let first = ca.issue(&["127.0.0.1", "localhost"]);
    let dir = CertDir::new("serve", &first);
    let mut child = serve(&dir).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    let child = Killed(child);

    let listening = line_with(&out, "Podium is listening: ");
    let addr = listening.strip_prefix("Podium is listening: wss://").and_then(|r| r.strip_suffix("/v1/ws"));
    let addr = addr.unwrap_or_else(|| panic!("not a wss:// URL: {listening}")).to_owned();
    let demo = line_with(&out, "Demo app: ");
    assert_eq!(demo, format!("Demo app: https://{addr}/ (the browser SDK: https://{addr}/sdk/podium.js)"));
    let tokens = line_with(&out, "Development tokens over HTTP: ");
    assert!(tokens.contains(&format!("https://{addr}/dev/token?")), "{tokens}");
    assert_eq!(served(&addr, &ca), first.der);

    // A renewal, then SIGHUP: new connections get the new certificate.
    let second = ca.issue(&["127.0.0.1", "localhost"]);
    dir.install(&second);
    assert_eq!(served(&addr, &ca), first.der, "reloaded without SIGHUP (reload_interval_ms = 0)");
    hangup(&child.0);
    line_with(&err, "TLS certificate reloaded");
    assert_eq!(served(&addr, &ca), second.der);

    // A broken renewal: logged, and the hub goes on with the certificate it has.
    pki::replace(&dir.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
    hangup(&child.0);
    let error = line_with(&err, "did not reload");
    assert!(error.contains("tls.cert") && error.contains(&dir.cert.display().to_string()), "{error}");
    assert_eq!(served(&addr, &ca), second.der);
}

#[test]
fn a_key_that_is_not_the_certificates_stops_podium_serve() {
    let ca = TestCa::new();
    let dir = CertDir::new("mismatch", &ca.issue(&["localhost"]));
    pki::replace(&dir.key, &ca.issue(&["localhost"]).key_pem);
    let out = serve(&dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "podium serve started:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let key = dir.key.display().to_string();
    assert!(stderr.contains(&format!("tls.key: {key} is not the private key of the first certificate")), "{stderr}");
    assert!(out.stdout.is_empty(), "printed where to connect: {}", String::from_utf8_lossy(&out.stdout));
}
