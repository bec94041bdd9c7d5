//! The web SDK and demo app end to end in Debian's headless Chromium, driven by Playwright (`web/e2e/browser.mjs`,
//! playwright-core from npm with the system Chromium): a moderator page approves a raised hand by clicking, the new
//! speaker's fake microphone is heard by a third page (getStats(): packets and energy), the moderator moves the
//! speaker back by clicking and the third page stops receiving. Screenshots of the moderator's view are saved in
//! `target/web-e2e/`.
//!
//! Needs Node.js and `web/node_modules` (`bash tests/run` runs `npm ci` in `web/` first) and Chromium
//! (`/usr/bin/chromium` or `PODIUM_CHROMIUM`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::TestHub;

/// The whole browser scenario's time limit.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(150);

#[tokio::test]
async fn demo_app_in_chromium_approve_hear_move_back() {
    let _heavy = crate::support::HEAVY.lock().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned();
    let web = root.join("web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "web/node_modules is missing: run `bash tests/run` (it runs `npm ci` in web/), or `cd web && npm ci`"
    );
    let chromium = std::env::var("PODIUM_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(Path::new(&chromium).exists(), "Chromium not found at {chromium}; `.ci/run` installs it");

    // Development mode (no secret: the demo gets tokens from /dev/token), media on loopback.
    let hub = TestHub::start_with(|c| {
        c.auth.secret = None;
        c.media.enabled = true;
        c.media.bind = [127, 0, 0, 1].into();
        c.media.port = 0;
        c.media.workers = 1;
    })
    .await;

    let shots: PathBuf =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target")).join("web-e2e");
    let child = std::process::Command::new("node")
        .arg(web.join("e2e/browser.mjs"))
        .current_dir(&web)
        .env("PODIUM_HTTP", format!("http://{}", hub.addr))
        .env("PODIUM_CHROMIUM", &chromium)
        .env("PODIUM_SCREENSHOTS", &shots)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node (Node.js is needed for the browser test)");
    let pid = child.id();
    let out =
        match tokio::time::timeout(SCENARIO_TIMEOUT, tokio::task::spawn_blocking(|| child.wait_with_output())).await {
            Ok(out) => out.expect("join").expect("wait for node"),
            Err(_) => {
                // The script closes its browser itself; kill node if it hangs.
                let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                panic!("the browser scenario did not finish within {SCENARIO_TIMEOUT:?}");
            }
        };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "the browser scenario failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("PASS"));
    for shot in ["2-moderator-hand-raised.png", "3-moderator-speaker-live.png", "4-moderator-after-move.png"] {
        assert!(shots.join(shot).is_file(), "screenshot {shot} missing in {}", shots.display());
    }
    hub.stop().await;
}
