//! The web SDK and demo app end to end in Debian's headless Chromium, driven by Playwright (`web/e2e/browser.mjs`,
//! playwright-core from npm with the system Chromium): a moderator page approves a raised hand by clicking, the new
//! speaker's fake microphone is heard by a third page (getStats(): packets and energy), the moderator moves the
//! speaker back by clicking and the third page stops receiving. Screenshots of the moderator's view are saved in
//! `target/web-e2e/`.
//!
//! Needs Node.js and `web/node_modules` (`bash tests/run` runs `npm ci` in `web/` first) and Chromium
//! (`/usr/bin/chromium` or `PODIUM_CHROMIUM`).

use std::time::Duration;

use crate::support::{Browser, TestHub};

/// The whole browser scenario's time limit.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(150);

#[tokio::test]
async fn demo_app_in_chromium_approve_hear_move_back() {
    let _heavy = crate::support::HEAVY.lock().await;
    let browser = Browser::find();

    // Development mode (no secret: the demo gets tokens from /dev/token), media on loopback.
    let hub = TestHub::start_with(crate::support::demo_with_media).await;
    let shots = crate::support::screenshots_dir();
    let env = [("PODIUM_HTTP", format!("http://{}", hub.addr)), ("PODIUM_SCREENSHOTS", shots.display().to_string())];
    browser.run("browser.mjs", &env, SCENARIO_TIMEOUT).await;
    for shot in ["2-moderator-hand-raised.png", "3-moderator-speaker-live.png", "4-moderator-after-move.png"] {
        assert!(shots.join(shot).is_file(), "screenshot {shot} missing in {}", shots.display());
    }
    hub.stop().await;
}
