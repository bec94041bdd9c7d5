//! The npm package `@podium/sdk` (web/sdk) end to end (`web/e2e/package.mjs`): `npm pack`, a fresh Vite app from the
//! committed template web/e2e/vite-app copied to a temp dir (`npm ci` from its lockfile, then
//! `npm install ./podium-sdk-x.y.z.tgz`), `tsc --noEmit` against the package's declarations, `vite build`, `vite
//! preview`, and Debian's headless Chromium opens the built page, which joins this hub; the joined state is checked
//! on the page.
//!
//! Needs Node.js and npm with the npm registry reachable (the template's dependencies: vite, typescript),
//! `web/node_modules` (`bash tests/run` runs `npm ci` in `web/`) and Chromium (`/usr/bin/chromium` or
//! `PODIUM_CHROMIUM`).

use std::time::Duration;

use crate::support::{Browser, TestHub};

/// npm ci and two builds on a loaded 2-core machine take a while.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(420);

#[tokio::test]
async fn npm_package_in_a_fresh_vite_app_joins_the_hub() {
    let _heavy = crate::support::HEAVY.lock().await;
    let browser = Browser::find();
    // Development mode: the script gets a token from /dev/token. Signalling only.
    let hub = TestHub::start_with(|c| {
        c.auth.secret = None;
        c.media.enabled = false;
    })
    .await;
    let out = browser.run("package.mjs", &[("PODIUM_HTTP", format!("http://{}", hub.addr))], SCENARIO_TIMEOUT).await;
    assert!(out.contains("the app typechecks and builds against the packed SDK"), "{out}");
    assert!(out.contains("the Vite app joined the hub with the packed SDK"), "{out}");
    hub.stop().await;
}
