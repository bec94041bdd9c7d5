//! `podium loadtest` against a real `podium serve` (issue #14, item 5), small and quick versions of each scenario:
//! a join storm with a speaker (every listener hears audio, the sampled ones decode the tone and measure the
//! end-to-end delay, the hub's CPU and memory are read from /proc), listener churn, a reconnect storm, and stage
//! changes (promoted listeners publish, the others answer the SFU's offers of a new slot), and a storm against a TLS
//! hub (`wss://`, its certificate from a test CA given with `--ca-file`, `/metrics` over `https://`). Margins are
//! generous: CI runs these on a loaded 2-core machine.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

#[allow(dead_code)]
#[path = "../../../tests/it/pki.rs"]
mod pki;

const SECRET: &str = "loadtest-secret-0123456789abcdef";

struct Hub {
    child: Child,
    url: String,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Hub {
    serve_with(&[])
}

/// `podium serve` with extra environment (`[tls]`).
fn serve_with(env: &[(&str, &std::path::Path)]) -> Hub {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podium"))
        .args(["serve", "--listen", "127.0.0.1:0", "--media-port", "0"])
        .envs(env.iter().copied())
        .env_remove("PODIUM_CONFIG")
        .env("PODIUM_AUTH__SECRET", SECRET)
        .env("PODIUM_MEDIA__WORKERS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start podium serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("Podium is listening: ").map(|u| u.trim().to_owned()))
        .expect("podium serve prints its address");
    // Keep reading, so that the hub's later output does not hit a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Hub { child, url }
}

/// Runs `podium loadtest --json --pid PID` with `args` against `hub`; the parsed report.
fn loadtest(hub: &Hub, room: &str, args: &[&str]) -> Value {
    let pid = hub.child.id().to_string();
    let mut all = vec!["--pid", &pid];
    all.extend_from_slice(args);
    loadtest_raw(hub, room, &all)
}

/// Runs `podium loadtest --json` with `args` against `hub`; the parsed report.
fn loadtest_raw(hub: &Hub, room: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_podium"))
        .args(["loadtest", "--url", &hub.url, "--secret", SECRET, "--room", room, "--json"])
        .args(args)
        .env_remove("PODIUM_AUTH__SECRET")
        .output()
        .expect("run podium loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let mut report: Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    let per = report["per_listener"].take();
    eprintln!("{report:#}");
    report["per_listener"] = per;
    report
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn listeners<'a>(report: &'a Value, cohort: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    report["per_listener"].as_array().expect("per_listener").iter().filter(move |l| l["cohort"] == cohort)
}

#[test]
fn a_join_storm_with_a_speaker_reaches_first_audio_everywhere() {
    let hub = serve();
    let report = loadtest(
        &hub,
        "storm",
        &["--listeners", "20", "--rate", "10", "--duration", "6", "--speaker", "--sample-every", "5"],
    );
    assert_eq!(report["scenario"], "storm");
    assert_eq!(report["listeners"], 20);
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(report["speaker_error"], Value::Null);
    assert!(report["speaker_sent"].as_u64().expect("speaker_sent") > 200);
    let phases = report["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases.iter().filter_map(|p| p["phase"].as_str()).collect();
    assert_eq!(names, ["websocket open", "joined", "answer", "connected", "first audio"]);
    for p in phases {
        assert_eq!(p["reached"], 20, "{p}");
        assert!(f(&p["p50_ms"]) <= f(&p["p99_ms"]), "{p}");
    }
    for l in listeners(&report, "storm") {
        // Listener i joined at i × 100 ms; it hears the rest of the 6 s at 50 packets/s.
        let (packets, lost) = (l["packets"].as_u64().expect("packets"), l["lost"].as_u64().expect("lost"));
        assert!(packets > 100, "{l}");
        assert!(lost * 100 < packets + lost, "lost ≥ 1 %: {l}");
        assert_eq!(l["end"], "stayed");
    }
    let seated = &report["seated_loss"];
    assert_eq!(seated["listeners"], 20);
    assert!(f(&seated["total_pct"]) < 1.0, "{seated}");
    // Four sampled listeners decrypted every frame: the speaker's marker and its tone, in sane time.
    let d = &report["delay"];
    assert_eq!(d["sampled_listeners"], 4, "{d}");
    assert!(d["frames"].as_u64().expect("frames") > 400, "{d}");
    assert!(f(&d["p50_ms"]) > 0.0 && f(&d["p50_ms"]) <= f(&d["p99_ms"]), "{d}");
    assert!(f(&d["p99_ms"]) < 500.0, "{d}");
    assert_eq!(d["bad"], 0, "{d}");
    assert!(f(&d["frames_missing_pct"]) < 1.0, "{d}");
    assert!(d["tone"].as_u64().expect("tone") * 10 >= d["decoded"].as_u64().expect("decoded") * 9, "{d}");
    // The hub's CPU and memory, from /proc/<pid>; the generator's own.
    for (who, u) in [("hub", &report["hub"]), ("generator", &report["generator"])] {
        assert_eq!(u["source"], "proc", "{who}: {u}");
        assert!(u["readings"].as_u64().expect("readings") >= 4, "{who}: {u}");
        assert!(f(&u["cpu_mean_pct"]) > 0.0, "{who}: {u}");
        assert!(f(&u["rss_max_mib"]) > 1.0, "{who}: {u}");
    }
}

#[test]
fn listener_churn_replaces_listeners_while_the_seated_ones_keep_hearing() {
    let hub = serve();
    let report = loadtest(
        &hub,
        "churn",
        &[
            "--listeners",
            "10",
            "--rate",
            "10",
            "--duration",
            "7",
            "--speaker",
            "--scenario",
            "churn",
            "--churn-rate",
            "1",
        ],
        // The storm takes 1 s; then one leave-and-join a second for about 5 s: 4 or 5 of the 10 leave.
    );
    assert_eq!(report["scenario"], "churn");
    let churned: Vec<&Value> = listeners(&report, "churn").collect();
    let left = listeners(&report, "storm").filter(|l| l["end"] == "left").count();
    assert!(churned.len() >= 3, "{} newcomers", churned.len());
    assert!((3..=6).contains(&left), "{left} left");
    for l in &churned[..churned.len() - 3] {
        assert!(l["phases_ms"][4].is_number(), "a newcomer heard nothing: {l}");
    }
    let seated = &report["seated_loss"];
    assert!(seated["listeners"].as_u64().expect("seated") >= 1, "{seated}");
    assert!(f(&seated["total_pct"]) < 1.0, "{seated}");
    assert_eq!(report["failed"], 0, "{report:#}");
}

#[test]
fn a_reconnect_storm_rejoins_every_listener() {
    let hub = serve();
    let report = loadtest(
        &hub,
        "reconnect",
        &["--listeners", "12", "--rate", "20", "--duration", "6", "--speaker", "--scenario", "reconnect"],
        // After the storm (0.6 s) and 1 s more, all 12 drop and rejoin at once.
    );
    assert_eq!(report["failed"], 0, "{report:#}");
    let dropped = listeners(&report, "storm").filter(|l| l["end"] == "dropped").count();
    let back: Vec<&Value> = listeners(&report, "reconnect").collect();
    assert_eq!((dropped, back.len()), (12, 12));
    for l in back {
        assert!(l["phases_ms"][4].is_number(), "a rejoined listener heard nothing: {l}");
        assert!(l["packets"].as_u64().expect("packets") > 50, "{l}");
    }
    let cohorts: Vec<&str> =
        report["cohorts"].as_array().expect("cohorts").iter().filter_map(|c| c["cohort"].as_str()).collect();
    assert_eq!(cohorts, ["storm", "reconnect"]);
}

#[test]
fn stage_changes_promote_listeners_who_publish_and_are_heard() {
    let hub = serve();
    let report = loadtest(
        &hub,
        "stage",
        &[
            "--listeners",
            "6",
            "--rate",
            "20",
            "--duration",
            "9",
            "--speaker",
            "--scenario",
            "stage",
            "--stage-rate",
            "1",
            "--stage-hold",
            "1.5",
            "--sample-every",
            "0",
        ],
    );
    assert_eq!(report["failed"], 0, "{report:#}");
    let st = &report["stage"];
    assert!(st["invites"].as_u64().expect("invites") >= 3, "{st}");
    assert_eq!(st["invite_errors"], 0, "{st}");
    assert!(st["published"].as_u64().expect("published") >= 2, "{st}");
    assert!(st["moved_back"].as_u64().expect("moved_back") >= 2, "{st}");
    // A promoted listener's tone needs a second slot on everyone else: the SFU offers it and they answer.
    assert!(report["offers_answered"].as_u64().expect("offers") >= 5, "{report:#}");
    // Their streams (two slots) are counted separately: no false loss.
    assert!(f(&report["seated_loss"]["total_pct"]) < 1.0, "{report:#}");
    let most = listeners(&report, "storm").map(|l| l["packets"].as_u64().unwrap_or(0)).max().unwrap_or(0);
    // More than the speaker alone could send in the run (9.5 s at 50/s): the promoted listeners were heard.
    assert!(most > 520, "{most}");
}

#[test]
fn a_join_storm_against_a_tls_hub_reaches_first_audio_everywhere() {
    let ca = pki::TestCa::new();
    let dir = pki::CertDir::new("loadtest", &ca.issue(&["127.0.0.1", "localhost"]));
    let ca_file = dir.cert.with_file_name("ca.pem");
    std::fs::write(&ca_file, pki::pem("CERTIFICATE", &ca.der)).expect("write ca.pem");
    let hub = serve_with(&[("PODIUM_TLS__CERT", &dir.cert), ("PODIUM_TLS__KEY", &dir.key)]);
    assert!(hub.url.starts_with("wss://127.0.0.1:"), "{}", hub.url);
    let ca = ca_file.to_str().expect("utf-8 path");
    // No --pid: the hub's figures come from its /metrics, over https:// with the same authority. A socket per
    // listener, as against a remote hub (the other tests use a media thread's shared socket).
    let report = loadtest_raw(
        &hub,
        "tls",
        &[
            "--ca-file",
            ca,
            "--socket-per-listener",
            "--listeners",
            "5",
            "--rate",
            "5",
            "--duration",
            "5",
            "--speaker",
            "--sample-every",
            "5",
        ],
    );
    assert_eq!(report["listeners"], 5);
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(report["speaker_error"], Value::Null);
    for p in report["phases"].as_array().expect("phases") {
        assert_eq!(p["reached"], 5, "{p}");
    }
    for l in listeners(&report, "storm") {
        // Listener i joined at i × 200 ms: it hears at least 4 s at 50 packets/s.
        let (packets, lost) = (l["packets"].as_u64().expect("packets"), l["lost"].as_u64().expect("lost"));
        assert!(packets > 100, "{l}");
        assert!(lost * 100 < packets + lost, "lost ≥ 1 %: {l}");
        assert_eq!(l["end"], "stayed");
    }
    let d = &report["delay"];
    assert_eq!(d["sampled_listeners"], 1, "{d}");
    assert_eq!(d["bad"], 0, "{d}");
    let u = &report["hub"];
    assert_eq!(u["source"], "metrics", "{u}");
    assert!(u["readings"].as_u64().expect("readings") >= 3, "{u}");
    assert_eq!(u["errors"], 0, "{u}");

    // Without the authority the hub's certificate is not trusted: every listener fails, with a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_podium"))
        .args(["loadtest", "--url", &hub.url, "--secret", SECRET, "--room", "untrusted", "--json"])
        .args(["--listeners", "1", "--rate", "5", "--duration", "1"])
        .env_remove("PODIUM_AUTH__SECRET")
        .output()
        .expect("run podium loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    if out.status.success() {
        let report: Value = serde_json::from_str(&stdout).expect("--json prints JSON");
        assert_eq!(report["failed"], 1, "{report:#}");
        let error = report["per_listener"][0]["error"].as_str().unwrap_or_else(|| panic!("no error: {report:#}"));
        assert!(error.contains("TLS") && error.contains("UnknownIssuer"), "{error}");
    } else {
        // A machine without a system trust store: refused before the run.
        assert!(stderr.contains("no trusted certificate authorities"), "{stderr}");
    }
}
