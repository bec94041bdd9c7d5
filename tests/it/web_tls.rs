//! The demo app over `https://` in Debian's headless Chromium (`web/e2e/tls.mjs`, Playwright): the hub serves TLS
//! itself with a certificate for `podium.test` from a test CA (`pki.rs`); Chromium resolves that name to 127.0.0.1
//! and trusts the certificate by its public key (`--ignore-certificate-errors-spki-list`, no other check relaxed).
//! From that non-loopback name the page is a secure context only because of TLS: the moderator's fake microphone is
//! published over the SDK's `wss://` connection, and a listener page hears it.
//!
//! Needs Node.js and `web/node_modules` and Chromium, like `web_browser.rs`.

use std::time::Duration;

use crate::pki::{CertDir, TestCa};
use crate::support::{Browser, TestHub};

/// The whole browser scenario's time limit.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn demo_app_over_https_joins_and_publishes_the_microphone() {
    let _heavy = crate::support::HEAVY.lock().await;
    let browser = Browser::find();
    let ca = TestCa::new();
    let server = ca.issue(&["podium.test"]);
    let dir = CertDir::new("chromium", &server);

    // Development mode (the demo gets tokens from /dev/token), media on loopback, TLS from the test CA.
    let (cert, key) = (dir.cert.clone(), dir.key.clone());
    let hub = TestHub::start_with(move |c| {
        c.auth.secret = None;
        c.media.enabled = true;
        c.media.bind = [127, 0, 0, 1].into();
        c.media.port = 0;
        c.media.workers = 1;
        c.tls.cert = Some(cert);
        c.tls.key = Some(key);
    })
    .await;

    let env = [
        ("PODIUM_HTTPS", format!("https://podium.test:{}", hub.addr.port())),
        ("PODIUM_HOST_RULES", "MAP podium.test 127.0.0.1".to_owned()),
        ("PODIUM_SPKI", server.spki_sha256.clone()),
    ];
    browser.run("tls.mjs", &env, SCENARIO_TIMEOUT).await;
    hub.stop().await;
}
