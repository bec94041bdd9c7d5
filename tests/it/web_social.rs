//! The demo app's room info, hand expiry, reactions, chat and recording indicator end to end in Debian's headless
//! Chromium, driven by Playwright (`web/e2e/info.mjs`, `web/e2e/social.mjs`): what one page does by clicking, a
//! second page sees. Screenshots go to `target/web-e2e/`.
//!
//! Needs Node.js and `web/node_modules` (`bash tests/run` runs `npm ci` in `web/` first) and Chromium
//! (`/usr/bin/chromium` or `PODIUM_CHROMIUM`).

use std::time::Duration;

use crate::support::{Browser, TestHub};

const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);
/// Raised hands go down after this long in the room-info scenario.
const HAND_TTL_MS: u64 = 4_000;

/// A moderator sets the description and pinned link by clicking, a listener's page shows them; the listener's raised
/// hand goes down by itself after `room.hand_ttl_ms` and then by the moderator's "Lower all hands"; the moderator
/// clears the link.
#[tokio::test]
async fn demo_room_info_and_hand_expiry_in_chromium() {
    let _heavy = crate::support::HEAVY.lock().await;
    let browser = Browser::find();
    // Development mode (the demo gets tokens from /dev/token); no media: this is signalling only.
    let hub = TestHub::start_with(|c| {
        c.auth.secret = None;
        c.media.enabled = false;
        c.room.hand_ttl_ms = HAND_TTL_MS;
    })
    .await;
    let shots = crate::support::screenshots_dir();
    let env = [
        ("PODIUM_HTTP", format!("http://{}", hub.addr)),
        ("PODIUM_HAND_TTL_MS", HAND_TTL_MS.to_string()),
        ("PODIUM_SCREENSHOTS", shots.display().to_string()),
    ];
    let out = browser.run("info.mjs", &env, SCENARIO_TIMEOUT).await;
    assert!(out.contains("the listener sees the description and the pinned link"), "{out}");
    assert!(out.contains("went down by itself"), "{out}");
    assert!(shots.join("info-1-listener-pinned-link.png").is_file(), "screenshot missing in {}", shots.display());
    hub.stop().await;
}

/// Reactions and chat by clicking, seen in a second page, and older chat loaded by a late joiner.
#[tokio::test]
async fn demo_reactions_and_chat_in_chromium() {
    social_scenario("reactions,chat").await;
}

/// The REC indicator in a listener's page when a moderator starts recording by clicking, gone when stopped.
#[tokio::test]
async fn demo_recording_indicator_in_chromium() {
    social_scenario("recording").await;
}

/// Runs web/e2e/social.mjs with `PODIUM_PARTS=parts` (some of `reactions,chat,recording`).
async fn social_scenario(parts: &str) {
    let _heavy = crate::support::HEAVY.lock().await;
    let browser = Browser::find();
    // Recording on (when a part), into a temp dir, the `[recording]` section read the way the binary reads it.
    let dir = std::env::temp_dir().join(format!("podium-web-social-{}-{parts}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("hub.toml");
    let recordings = dir.join("recordings").display().to_string();
    let toml = if parts.contains("recording") {
        format!("[recording]\nenabled = true\ndir = {recordings:?}\n")
    } else {
        String::new()
    };
    std::fs::write(&file, toml).expect("write hub.toml");
    let loaded = podium_hub::config::Config::load(Some(&file)).expect("the hub's configuration");
    // Development mode, media on loopback (recording writes the SFU's audio).
    let hub = TestHub::start_with(move |c| {
        let (listen, grace) = (c.server.listen, c.server.shutdown_grace_ms);
        *c = loaded;
        c.server.listen = listen;
        c.server.shutdown_grace_ms = grace;
        crate::support::demo_with_media(c);
    })
    .await;
    let shots = crate::support::screenshots_dir();
    let env = [
        ("PODIUM_HTTP", format!("http://{}", hub.addr)),
        ("PODIUM_SCREENSHOTS", shots.display().to_string()),
        ("PODIUM_PARTS", parts.to_owned()),
    ];
    let out = browser.run("social.mjs", &env, SCENARIO_TIMEOUT).await;
    for (part, step) in [
        ("reactions", "counted"),
        ("chat", "deleted it"),
        ("chat", "loaded older messages"),
        ("recording", "shows REC"),
        ("recording", "REC gone"),
    ] {
        assert!(!parts.contains(part) || out.contains(step), "step {step:?} missing:\n{out}");
    }
    hub.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
