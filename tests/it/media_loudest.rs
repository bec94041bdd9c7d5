//! Loudest-N end to end (`[media] loudest`, issue #13): five aiortc speakers on stage, each sending a sine of its own
//! frequency and loudness (aiortc derives the RFC 6464 audio level it sends from the samples), and an aiortc listener
//! that decodes whatever the SFU forwards. With `loudest = 3` the listener must hear the three loudest tones, never
//! the other two, on at most three downstream slots; when one of the three mutes, the fourth loudest takes its place
//! within [`SWITCH_WITHIN`]. `active_speakers` is not limited: it still lists all five with their levels.
//!
//! Needs Python with aiortc (see `aiortc.rs`):
//! `PODIUM_PYTHON=$PWD/.venv-media/bin/python cargo test -p podium-e2e --test it media_loudest`.

use std::time::Duration;

use podium_hub::Role;
use serde_json::{Value, json};

use crate::aiortc::{HEAR_TIMEOUT, Peer, TOLERANCE_HZ, media_hub_with, now_unix, require_aiortc};

/// The speakers, loudest first: identity, tone (Hz), amplitude (int16 peak). Their RMS levels are about -5.7, -10.4,
/// -15.3, -25.4 and -33.3 dBov: all speech (louder than -50), the third and fourth 10 dB apart and the fourth and
/// fifth 8 dB apart, more than the selection's 6 dB hysteresis margin.
const SPEAKERS: [(&str, f64, f64); 5] = [
    ("s1", 300.0, 24000.0),
    ("s2", 450.0, 14000.0),
    ("s3", 650.0, 8000.0),
    ("s4", 850.0, 2500.0),
    ("s5", 1100.0, 1000.0),
];
/// The limit under test.
const LOUDEST: usize = 3;
/// From a selected speaker muting to the next loudest being heard in its place (the SFU notices a silent place after
/// 400 ms).
const SWITCH_WITHIN: f64 = 2.0;
/// The listener's report window (`peer.py --window`, 0.5 s by default).
const REPORT_WINDOW: f64 = 0.5;
/// A report whose dominant frequency is a speaker's counts as hearing it above this RMS (int16 scale): the quietest
/// tone decodes at about 700.
const PRESENT_RMS: f64 = 200.0;
/// How long the listener's audio is watched for a tone that must not be there.
const ABSENT_FOR: Duration = Duration::from_secs(3);

/// The active-speaker level (0..=127, 127 loudest) of a sine of peak `amplitude`: 127 - its RMS in -dBov.
fn expected_level(amplitude: f64) -> f64 {
    let dbov = -20.0 * (amplitude / 2f64.sqrt() / 32768.0).log10();
    127.0 - dbov
}

/// Whether an audio report has `hz` (± the tolerance) as its dominant frequency, at least at [`PRESENT_RMS`].
fn carries(report: &Value, hz: f64) -> bool {
    report["event"] == "audio"
        && report["rms"].as_f64().unwrap_or(0.0) > PRESENT_RMS
        && report["frames"].as_u64().unwrap_or(0) >= 10
        && report["freq"].as_f64().is_some_and(|f| (f - hz).abs() <= TOLERANCE_HZ)
}

/// The listener's audio reports whose window ended within `from..=to`.
fn reports_between(p: &Peer, from: f64, to: f64) -> Vec<&Value> {
    p.seen_events("audio").filter(|r| r["t"].as_f64().is_some_and(|t| (from..=to).contains(&t))).collect()
}

/// The speakers `p` heard (as the dominant tone of a report on some track) within `from..=to`.
fn heard_between(p: &Peer, from: f64, to: f64) -> Vec<&'static str> {
    let reports = reports_between(p, from, to);
    SPEAKERS.iter().filter(|(_, hz, _)| reports.iter().any(|r| carries(r, *hz))).map(|(who, _, _)| *who).collect()
}

/// Listens with `p` for [`ABSENT_FOR`]; asserts that it heard exactly `speakers` (in [`SPEAKERS`]' order) in that
/// time, saying `must` otherwise.
async fn hears_only_for_a_while(p: &mut Peer, speakers: [&str; LOUDEST], must: &str) {
    let from = now_unix();
    p.collect(ABSENT_FOR).await;
    let to = now_unix();
    let heard = heard_between(p, from, to);
    assert_eq!(heard, speakers, "{must}; reports:\n{:#?}", reports_between(p, from, to));
}

/// The most slots any `media_tracks` event gave `p`.
fn most_slots(p: &Peer) -> usize {
    p.hub_events("media_tracks").map(|e| e["tracks"].as_array().map_or(0, Vec::len)).max().unwrap_or(0)
}

/// Who `p`'s latest `media_tracks` puts on its slots.
fn on_slots(p: &Peer) -> Vec<String> {
    let mut who: Vec<String> = p
        .hub_events("media_tracks")
        .last()
        .and_then(|e| e["tracks"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t["participant"].as_str().map(str::to_owned))
        .collect();
    who.sort();
    who
}

/// The highest active-speaker level `p` saw for `who` (None: never listed as speaking).
fn speaking_level(p: &Peer, who: &str) -> Option<u64> {
    p.hub_events("active_speakers")
        .flat_map(|e| e["speaking"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["participant"] == who)
        .filter_map(|s| s["level"].as_u64())
        .max()
}

#[tokio::test]
async fn aiortc_listeners_hear_the_three_loudest_of_five_and_the_fourth_when_one_mutes() {
    require_aiortc();
    let room = "aiortc-loudest";
    // Two workers: the speakers spread over both, so the selection also runs on forwarded packets.
    let hub = media_hub_with(|c| {
        c.media.loudest = LOUDEST;
        c.media.workers = 2;
    })
    .await;
    // The quietest join first, so the loud ones must win their places from them (hysteresis), not just take free
    // ones.
    let mut speakers: Vec<Peer> = SPEAKERS
        .iter()
        .rev()
        .map(|(who, hz, amplitude)| {
            let (hz, amplitude) = (hz.to_string(), amplitude.to_string());
            let args = ["--join-role", "speaker", "--unmute", "--tone", &hz, "--amplitude", &amplitude];
            Peer::spawn(&hub, who, who, room, Role::Moderator, &args)
        })
        .collect();
    speakers.reverse();
    let mut lis = Peer::spawn(&hub, "lis", "lis", room, Role::Audience, &["--recv"]);
    for p in &mut speakers {
        p.ready().await;
        let unmuted = p.seen_events("reply").find(|r| r["tag"] == "unmute").cloned().expect("unmute reply");
        assert_eq!(unmuted["msg"]["type"], "ok", "{} could not unmute: {unmuted}", p.name);
    }
    lis.ready().await;

    // The listener hears the three loudest steadily...
    for (who, hz, _) in &SPEAKERS[..LOUDEST] {
        let (mid, _) = lis.until_heard(*hz, HEAR_TIMEOUT).await;
        eprintln!("lis hears {who} ({hz} Hz) on mid {mid}");
    }
    // ... and, from then on, those three and nobody else.
    let must = format!("with loudest = {LOUDEST} the listener must hear exactly the three loudest over {ABSENT_FOR:?}");
    hears_only_for_a_while(&mut lis, ["s1", "s2", "s3"], &must).await;
    assert!(
        most_slots(&lis) <= LOUDEST,
        "the listener got {} downstream slots (at most {LOUDEST}): {:?}",
        most_slots(&lis),
        lis.hub_events("media_tracks").collect::<Vec<_>>()
    );
    assert_eq!(on_slots(&lis), ["s1", "s2", "s3"], "media_tracks should name the three loudest");

    // Active speakers are not limited to the loudest: all five are listed as speaking, with their own levels.
    for (who, _, amplitude) in &SPEAKERS {
        let level = speaking_level(&lis, who).unwrap_or_else(|| panic!("{who} never listed in active_speakers"));
        let expected = expected_level(*amplitude);
        eprintln!("{who}: active-speaker level {level} (expected about {expected:.1})");
        assert!((level as f64 - expected).abs() <= 4.0, "{who}: level {level}, expected about {expected:.1}");
    }

    // The loudest mutes: the fourth loudest is heard in its place within SWITCH_WITHIN, on one of the same slots.
    let muted_at = now_unix();
    speakers[0].ok(json!({"type": "set_muted", "muted": true})).await;
    let (s4, hz4, _) = SPEAKERS[3];
    let (mid, _) = lis.until_heard(hz4, HEAR_TIMEOUT).await;
    // The first report (0.5 s window) after the mute that has s4's tone as its dominant frequency: s4 was audible
    // at the latest by its end, and s1's much louder tone was gone from that window.
    let first = lis
        .seen_events("audio")
        .filter(|r| r["t"].as_f64().is_some_and(|t| t > muted_at) && carries(r, hz4))
        .filter_map(|r| r["t"].as_f64())
        .fold(f64::NAN, f64::min);
    let after = first - muted_at;
    eprintln!("lis hears {s4} on mid {mid}, in a report ending {after:.2} s after s1 muted");
    assert!(
        after <= SWITCH_WITHIN + REPORT_WINDOW,
        "{s4} was heard only in a report ending {after:.2} s after s1 muted (limit {SWITCH_WITHIN} s + the {REPORT_WINDOW} s \
         report window)"
    );
    hears_only_for_a_while(&mut lis, ["s2", "s3", "s4"], "after s1 muted the listener must hear s2, s3 and s4 only")
        .await;
    assert!(most_slots(&lis) <= LOUDEST, "the listener got {} slots after the switch", most_slots(&lis));
    assert_eq!(on_slots(&lis), ["s2", "s3", "s4"], "media_tracks should name s4 in s1's place");

    // And active speakers says s1 stopped.
    assert!(
        lis.hub_events("active_speakers").any(|e| e["stopped"].as_array().is_some_and(|s| s.contains(&json!("s1")))),
        "lis never saw s1 in active_speakers.stopped"
    );

    drop((speakers, lis));
    hub.stop().await;
}
