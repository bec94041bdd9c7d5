//! The run's report: per-session outcomes, summarized; a table and (through serde) JSON.
//!
//! *Seated* listeners are the storm's listeners that stayed to the end (not left by churn, not dropped by a
//! reconnect, not failed): their loss, counted per listener from its first audio packet on, is the storm's loss
//! figure. Loss of a stream is the gap between the extended RTP sequence numbers seen and the packets counted; the
//! SFU numbers each downstream slot's packets consecutively whatever the source, so a source switch is no gap.

use serde::Serialize;

use crate::PHASES;
use crate::hubstat::Usage;
use crate::media::{DELAY_BUCKET_US, MediaReport, ThreadReport};
use crate::signal::{End, SignalReport};

/// One listener session's outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ListenerReport {
    pub identity: String,
    /// `storm`, `churn` or `reconnect`.
    pub cohort: &'static str,
    pub end: End,
    /// Milliseconds from the start of its join to each phase of [`PHASES`], `None` when not reached.
    pub phases_ms: [Option<f64>; 5],
    /// SRTP RTP packets received.
    pub packets: u64,
    /// Packets missing by RTP sequence number, per stream between its first and last seen.
    pub lost: u64,
    /// SFU offers it answered.
    pub offers: u64,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Latency statistics of one phase over the sessions that reached it.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseStats {
    pub phase: &'static str,
    pub reached: usize,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

/// The phases of one cohort.
#[derive(Clone, Debug, Serialize)]
pub struct CohortStats {
    pub cohort: &'static str,
    pub sessions: usize,
    pub failed: usize,
    pub phases: Vec<PhaseStats>,
}

/// Loss over a set of listeners (those that heard audio).
#[derive(Clone, Debug, Default, Serialize)]
pub struct LossStats {
    pub listeners: usize,
    pub packets: u64,
    pub lost: u64,
    /// Per listener, percent: p50, p99, max.
    pub p50_pct: Option<f64>,
    pub p99_pct: Option<f64>,
    pub max_pct: Option<f64>,
    /// Over all their packets, percent.
    pub total_pct: Option<f64>,
}

/// End-to-end audio delay measured by the sampled (decrypting) listeners.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DelayStats {
    pub sampled_listeners: usize,
    /// Frames with the speaker's marker.
    pub frames: u64,
    /// Speaker frames they never got, by the marker's frame number (includes drops inside the SFU, which the
    /// slot's RTP sequence numbers do not show).
    pub frames_missing: u64,
    /// `frames_missing` in percent of the frames expected.
    pub frames_missing_pct: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Frames decoded by libopus, and of those, the 440 Hz tone.
    pub decoded: u64,
    pub tone: u64,
    /// Frames without the marker or that libopus refused.
    pub bad: u64,
}

/// The stage scenario's tally.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StageStats {
    pub invites: u32,
    pub invite_errors: u32,
    pub accepted: u32,
    /// Promoted listeners whose publishing offer was answered (the tone then flows).
    pub published: u32,
    pub moved_back: u32,
    pub move_errors: u32,
    /// From the invitation's arrival to the SFU's answer of the publishing offer.
    pub publish_p50_ms: Option<f64>,
    pub publish_p99_ms: Option<f64>,
    pub error: Option<String>,
}

/// The whole run's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    /// Listener sessions started (the storm's and later ones), and failed.
    pub listeners: usize,
    pub failed: usize,
    pub phases: Vec<PhaseStats>,
    /// The same per cohort, when there is more than one.
    pub cohorts: Vec<CohortStats>,
    /// Packets received per connected listener: min, p50, max.
    pub packets_min: u64,
    pub packets_p50: u64,
    pub packets_max: u64,
    /// Every listener that heard audio.
    pub loss: LossStats,
    /// The storm's listeners that stayed to the end.
    pub seated_loss: LossStats,
    pub delay: DelayStats,
    /// SFU offers answered by listeners.
    pub offers_answered: u64,
    /// Frames the speaker sent (`None` without a speaker).
    pub speaker_sent: Option<u64>,
    pub speaker_error: Option<String>,
    pub stage: Option<StageStats>,
    /// The hub's CPU and memory.
    pub hub: Usage,
    /// The generator's own.
    pub generator: Usage,
    /// The generator's open-file limit.
    pub fd_limit: u64,
    pub per_listener: Vec<ListenerReport>,
}

pub(crate) struct Inputs {
    pub(crate) scenario: &'static str,
    /// Every session by id: identity, cohort, signaling report.
    pub(crate) sessions: Vec<(String, &'static str, SignalReport)>,
    pub(crate) speaker: Option<usize>,
    pub(crate) media: ThreadReport,
    pub(crate) stage: Option<(u32, u32, u32, u32, Option<String>)>,
    pub(crate) hub: Usage,
    pub(crate) generator: Usage,
    pub(crate) fd_limit: u64,
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn phases(sessions: &[&ListenerReport]) -> Vec<PhaseStats> {
    (0..PHASES.len())
        .map(|k| {
            let mut v: Vec<f64> = sessions.iter().filter_map(|l| l.phases_ms[k]).collect();
            v.sort_by(f64::total_cmp);
            PhaseStats {
                phase: PHASES[k],
                reached: v.len(),
                p50_ms: percentile(&v, 0.5),
                p99_ms: percentile(&v, 0.99),
                max_ms: v.last().copied(),
            }
        })
        .collect()
}

fn loss(ls: &[&ListenerReport]) -> LossStats {
    let heard: Vec<&&ListenerReport> = ls.iter().filter(|l| l.packets > 0).collect();
    let mut pct: Vec<f64> = heard.iter().map(|l| 100.0 * l.lost as f64 / (l.lost + l.packets) as f64).collect();
    pct.sort_by(f64::total_cmp);
    let (lost, packets) = heard.iter().fold((0, 0), |(a, b), l| (a + l.lost, b + l.packets));
    LossStats {
        listeners: heard.len(),
        packets,
        lost,
        p50_pct: percentile(&pct, 0.5),
        p99_pct: percentile(&pct, 0.99),
        max_pct: pct.last().copied(),
        total_pct: (packets > 0).then(|| 100.0 * lost as f64 / (lost + packets) as f64),
    }
}

pub(crate) fn summarize(input: Inputs) -> Report {
    let empty = MediaReport::default();
    let media = &input.media;
    let mut speaker_sent = None;
    let mut speaker_error = None;
    let mut stage = input.stage.map(|(invites, invite_errors, moved_back, move_errors, error)| StageStats {
        invites,
        invite_errors,
        moved_back,
        move_errors,
        error,
        ..StageStats::default()
    });
    let mut publish_ms = Vec::new();
    let mut per_listener = Vec::new();
    for (id, (identity, cohort, s)) in input.sessions.into_iter().enumerate() {
        let m = media.sessions.get(&id).unwrap_or(&empty);
        if Some(id) == input.speaker {
            speaker_sent = Some(m.sent);
            speaker_error = s.error.or_else(|| m.error.clone());
            continue;
        }
        if let Some(st) = stage.as_mut() {
            st.accepted += s.promoted;
            st.published += s.published;
            publish_ms.extend(s.publish_ms.iter().copied());
        }
        let p = [s.phases[0], s.phases[1], s.phases[2], m.connected, m.first_audio];
        per_listener.push(ListenerReport {
            identity,
            cohort,
            end: s.end,
            phases_ms: p.map(|d| d.map(ms)),
            packets: m.packets,
            lost: m.lost,
            offers: m.offers,
            error: s.error.or_else(|| m.error.clone()),
        });
    }
    if let Some(st) = stage.as_mut() {
        publish_ms.sort_by(f64::total_cmp);
        st.publish_p50_ms = percentile(&publish_ms, 0.5);
        st.publish_p99_ms = percentile(&publish_ms, 0.99);
    }
    let all: Vec<&ListenerReport> = per_listener.iter().collect();
    let mut names: Vec<&'static str> = Vec::new();
    for l in &per_listener {
        if !names.contains(&l.cohort) {
            names.push(l.cohort);
        }
    }
    let cohorts = if names.len() > 1 {
        names
            .iter()
            .map(|&c| {
                let ls: Vec<&ListenerReport> = per_listener.iter().filter(|l| l.cohort == c).collect();
                CohortStats {
                    cohort: c,
                    sessions: ls.len(),
                    failed: ls.iter().filter(|l| l.end == End::Failed).count(),
                    phases: phases(&ls),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut packets: Vec<u64> = per_listener.iter().filter(|l| l.phases_ms[3].is_some()).map(|l| l.packets).collect();
    packets.sort_unstable();
    let seated: Vec<&ListenerReport> =
        per_listener.iter().filter(|l| l.cohort == "storm" && l.end == End::Stayed && l.error.is_none()).collect();
    let frames = media.frames_marked;
    let quantile = |p: f64| -> Option<f64> {
        if frames == 0 {
            return None;
        }
        let want = ((p * frames as f64).ceil() as u64).max(1);
        let mut acc = 0;
        for (i, &c) in media.delay.iter().enumerate() {
            acc += c;
            if acc >= want {
                return Some((i as u64 + 1) as f64 * DELAY_BUCKET_US as f64 / 1e3);
            }
        }
        None
    };
    Report {
        scenario: input.scenario,
        listeners: per_listener.len(),
        failed: per_listener.iter().filter(|l| l.end == End::Failed).count(),
        phases: phases(&all),
        cohorts,
        packets_min: packets.first().copied().unwrap_or(0),
        packets_p50: packets.get(packets.len() / 2).copied().unwrap_or(0),
        packets_max: packets.last().copied().unwrap_or(0),
        loss: loss(&all),
        seated_loss: loss(&seated),
        delay: DelayStats {
            sampled_listeners: media.sampled,
            frames,
            frames_missing: media.frames_missing,
            frames_missing_pct: (frames > 0)
                .then(|| 100.0 * media.frames_missing as f64 / (frames + media.frames_missing) as f64),
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
            max_ms: media
                .delay
                .iter()
                .rposition(|&c| c > 0)
                .map(|i| (i as u64 + 1) as f64 * DELAY_BUCKET_US as f64 / 1e3),
            decoded: media.decoded,
            tone: media.tone,
            bad: media.bad,
        },
        offers_answered: per_listener.iter().map(|l| l.offers).sum(),
        speaker_sent,
        speaker_error,
        stage,
        hub: input.hub,
        generator: input.generator,
        fd_limit: input.fd_limit,
        per_listener,
    }
}

/// A plain-text summary table.
pub fn table(report: &Report) -> String {
    use std::fmt::Write as _;
    let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    let f3 = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "scenario: {}, listener sessions: {}, failed: {}",
        report.scenario, report.listeners, report.failed
    );
    let mut block = |title: &str, phases: &[PhaseStats], n: usize| {
        let _ = writeln!(s, "{:<16} {:>11} {:>10} {:>10} {:>10}", title, "REACHED", "P50 ms", "P99 ms", "MAX ms");
        for p in phases {
            let _ = writeln!(
                s,
                "{:<16} {:>11} {:>10} {:>10} {:>10}",
                p.phase,
                format!("{}/{}", p.reached, n),
                f(p.p50_ms),
                f(p.p99_ms),
                f(p.max_ms)
            );
        }
    };
    block("PHASE", &report.phases, report.listeners);
    for c in &report.cohorts {
        block(&format!("PHASE ({})", c.cohort), &c.phases, c.sessions);
    }
    let _ = writeln!(
        s,
        "packets per connected listener: min {} p50 {} max {}",
        report.packets_min, report.packets_p50, report.packets_max
    );
    if let Some(sent) = report.speaker_sent {
        let _ = writeln!(s, "speaker: {sent} frames sent");
    }
    for (name, l) in [("seated listeners", &report.seated_loss), ("all listeners", &report.loss)] {
        let _ = writeln!(
            s,
            "loss, {name} ({}): per listener p50 {} % p99 {} % max {} %; total {} % ({} of {})",
            l.listeners,
            f3(l.p50_pct),
            f3(l.p99_pct),
            f3(l.max_pct),
            f3(l.total_pct),
            l.lost,
            l.lost + l.packets
        );
    }
    let d = &report.delay;
    let _ = writeln!(
        s,
        "end-to-end delay ({} sampled listeners, {} frames, {} missing = {} %): p50 {} ms p99 {} ms max {} ms; decoded {}, tone {}, bad {}",
        d.sampled_listeners,
        d.frames,
        d.frames_missing,
        f3(d.frames_missing_pct),
        f(d.p50_ms),
        f(d.p99_ms),
        f(d.max_ms),
        d.decoded,
        d.tone,
        d.bad
    );
    if report.offers_answered > 0 {
        let _ = writeln!(s, "SFU offers answered by listeners: {}", report.offers_answered);
    }
    if let Some(st) = &report.stage {
        let _ = writeln!(
            s,
            "stage: {} invited ({} refused), {} accepted, {} published (invite to answer p50 {} ms p99 {} ms), {} moved back ({} refused)",
            st.invites,
            st.invite_errors,
            st.accepted,
            st.published,
            f(st.publish_p50_ms),
            f(st.publish_p99_ms),
            st.moved_back,
            st.move_errors
        );
        if let Some(e) = &st.error {
            let _ = writeln!(s, "stage error: {e}");
        }
    }
    for (name, u) in [("hub", &report.hub), ("generator", &report.generator)] {
        let _ = writeln!(
            s,
            "{name} ({}): CPU mean {} % max {} % (of one core); RSS start {} max {} end {} MiB",
            u.source,
            f(u.cpu_mean_pct),
            f(u.cpu_max_pct),
            f(u.rss_start_mib),
            f(u.rss_max_mib),
            f(u.rss_end_mib)
        );
        if let Some(e) = &u.error {
            let _ = writeln!(s, "  {name}: {} readings failed, last: {e}", u.errors);
        }
    }
    if let Some(e) = &report.speaker_error {
        let _ = writeln!(s, "speaker error: {e}");
    }
    for l in report.per_listener.iter().filter(|l| l.error.is_some()).take(5) {
        let _ = writeln!(s, "  {}: {}", l.identity, l.error.as_deref().unwrap_or(""));
    }
    s
}
