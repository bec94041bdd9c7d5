//! `podium loadtest` against a real `podium serve` (issue #14, item 5): 20 listeners at 10 joins/s and a speaker
//! for 5 s; every listener hears audio and loses less than 1 % of it.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

const SECRET: &str = "loadtest-secret-0123456789abcdef";

#[test]
fn a_join_storm_with_a_speaker_reaches_first_audio_everywhere() {
    let mut serve = Command::new(env!("CARGO_BIN_EXE_podium"))
        .args(["serve", "--listen", "127.0.0.1:0", "--media-port", "0"])
        .env_remove("PODIUM_CONFIG")
        .env("PODIUM_AUTH__SECRET", SECRET)
        .env("PODIUM_MEDIA__WORKERS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start podium serve");
    let mut lines = BufReader::new(serve.stdout.take().expect("stdout")).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("Podium is listening: ").map(|u| u.trim().to_owned()))
        .expect("podium serve prints its address");
    // Keep reading, so that the hub's later output does not hit a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let out = Command::new(env!("CARGO_BIN_EXE_podium"))
        .args(["loadtest", "--url", &url, "--secret", SECRET, "--room", "storm"])
        .args(["--listeners", "20", "--rate", "10", "--duration", "5", "--speaker", "--json"])
        .env_remove("PODIUM_AUTH__SECRET")
        .output()
        .expect("run podium loadtest");
    let _ = serve.kill();
    let _ = serve.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    eprintln!("{report:#}");
    assert_eq!(report["listeners"], 20);
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(report["speaker_error"], Value::Null, "{report:#}");
    assert!(report["speaker_sent"].as_u64().expect("speaker_sent") > 150, "{report:#}");
    let phases = report["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases.iter().filter_map(|p| p["phase"].as_str()).collect();
    assert_eq!(names, ["websocket open", "joined", "answer", "connected", "first audio"]);
    for p in phases {
        assert_eq!(p["reached"], 20, "{p}");
        assert!(p["p50_ms"].as_f64().expect("p50") <= p["p99_ms"].as_f64().expect("p99"), "{p}");
    }
    for (i, l) in report["per_listener"].as_array().expect("per_listener").iter().enumerate() {
        let packets = l["packets"].as_u64().expect("packets");
        let lost = l["lost"].as_u64().expect("lost");
        // Listener i joined at i × 100 ms; it hears the rest of the 5 s at 50 packets/s.
        assert!(packets > 50, "listener {i}: {l}");
        assert!(lost * 100 < packets + lost, "listener {i} lost ≥ 1 %: {l}");
    }
    assert!(report["loss_total_pct"].as_f64().expect("loss_total_pct") < 1.0, "{report:#}");
}
