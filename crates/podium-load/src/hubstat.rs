//! The hub's CPU and memory during a run, and the generator's own.
//!
//! Sampled once a second. From the hub's `/metrics` when it exports the standard process metrics
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, Prometheus text format, read line by line: a
//! sample line is `name{labels} value`, and only these unlabelled names are needed); otherwise from
//! `/proc/<pid>/stat` (user + system time, in the kernel's fixed 100 Hz USER_HZ) and `/proc/<pid>/status`
//! (`VmRSS`) for a hub running on this machine (`--pid`). The generator reads `/proc/self` the same way, so a report
//! shows how the machine's cores were shared.

use std::time::{Duration, Instant};

use serde::Serialize;

/// One reading: cumulative CPU seconds and resident memory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reading {
    pub(crate) at: Instant,
    pub(crate) cpu_s: f64,
    pub(crate) rss: u64,
}

/// Where the hub's figures come from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// `GET` this URL (`http://host:port/metrics`).
    Metrics(String),
    /// `/proc/<pid>`.
    Pid(u32),
}

/// CPU and memory over a run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Usage {
    /// Where the figures come from: `metrics` (the hub's `/metrics`), `proc` (`/proc/<pid>`).
    pub source: String,
    /// Mean CPU over the run, in percent of one core.
    pub cpu_mean_pct: Option<f64>,
    /// The busiest one-second window, in percent of one core.
    pub cpu_max_pct: Option<f64>,
    /// Resident memory at the start, at most, and at the end.
    pub rss_start_mib: Option<f64>,
    pub rss_max_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    /// Readings taken (one a second) and failed.
    pub readings: usize,
    pub errors: usize,
    /// The last failure, if any.
    pub error: Option<String>,
}

/// Collects readings into a [`Usage`].
#[derive(Default)]
pub(crate) struct Series {
    source: String,
    first: Option<Reading>,
    last: Option<Reading>,
    cpu_max: Option<f64>,
    rss_max: u64,
    errors: usize,
    readings: usize,
    error: Option<String>,
}

impl Series {
    pub(crate) fn new(source: &str) -> Self {
        Self { source: source.to_owned(), ..Self::default() }
    }

    pub(crate) fn add(&mut self, r: anyhow::Result<Reading>) {
        match r {
            Ok(r) => {
                if let Some(last) = self.last {
                    let dt = r.at.duration_since(last.at).as_secs_f64();
                    if dt > 0.2 {
                        let pct = 100.0 * (r.cpu_s - last.cpu_s) / dt;
                        self.cpu_max = Some(self.cpu_max.map_or(pct, |m: f64| m.max(pct)));
                    }
                }
                self.first.get_or_insert(r);
                self.last = Some(r);
                self.rss_max = self.rss_max.max(r.rss);
                self.readings += 1;
            }
            Err(e) => {
                self.errors += 1;
                self.error = Some(format!("{e:#}"));
            }
        }
    }

    pub(crate) fn usage(&self) -> Usage {
        let mib = |b: u64| (b as f64 / 1048576.0 * 10.0).round() / 10.0;
        let (cpu_mean_pct, rss_start_mib, rss_end_mib) = match (self.first, self.last) {
            (Some(f), Some(l)) if l.at > f.at => (
                Some(100.0 * (l.cpu_s - f.cpu_s) / l.at.duration_since(f.at).as_secs_f64()),
                Some(mib(f.rss)),
                Some(mib(l.rss)),
            ),
            (Some(f), Some(l)) => (None, Some(mib(f.rss)), Some(mib(l.rss))),
            _ => (None, None, None),
        };
        Usage {
            source: self.source.clone(),
            cpu_mean_pct: cpu_mean_pct.map(round1),
            cpu_max_pct: self.cpu_max.map(round1),
            rss_start_mib,
            rss_max_mib: (self.readings > 0).then(|| mib(self.rss_max)),
            rss_end_mib,
            readings: self.readings,
            errors: self.errors,
            error: self.error.clone(),
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Reads `/proc/<pid>` (`self` for this process).
pub(crate) fn read_proc(pid: &str) -> anyhow::Result<Reading> {
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: the fields after it start past its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| anyhow::anyhow!("bad /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the command name (0-based: 11, 12).
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(user), Some(system)) = (ticks(11), ticks(12)) else { anyhow::bail!("bad /proc/{pid}/stat") };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))?;
    Ok(Reading { at, cpu_s: (user + system) as f64 / 100.0, rss: rss_kib * 1024 })
}

/// Parses the process metrics out of a Prometheus/OpenMetrics text exposition.
pub(crate) fn parse_metrics(text: &str, at: Instant) -> anyhow::Result<Reading> {
    let mut cpu = None;
    let mut rss = None;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut it = line.split_whitespace();
        let (Some(name), Some(value)) = (it.next(), it.next()) else { continue };
        match name {
            "process_cpu_seconds_total" => cpu = value.parse::<f64>().ok(),
            "process_resident_memory_bytes" => rss = value.parse::<f64>().ok(),
            _ => {}
        }
    }
    match (cpu, rss) {
        (Some(cpu_s), Some(rss)) => Ok(Reading { at, cpu_s, rss: rss as u64 }),
        _ => anyhow::bail!(
            "the hub's /metrics has no process_cpu_seconds_total and process_resident_memory_bytes \
             (give --pid for a hub on this machine)"
        ),
    }
}

/// Reads the hub once.
pub(crate) async fn read_hub(client: &reqwest::Client, source: &Source) -> anyhow::Result<Reading> {
    match source {
        Source::Pid(pid) => read_proc(&pid.to_string()),
        Source::Metrics(url) => {
            let text = client.get(url).timeout(Duration::from_secs(5)).send().await?.error_for_status()?.text().await?;
            parse_metrics(&text, Instant::now())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_read_from_the_text_format() {
        let text = "# HELP process_cpu_seconds_total CPU.\n# TYPE process_cpu_seconds_total counter\n\
                    process_cpu_seconds_total 12.5\nprocess_resident_memory_bytes 1.048576e6\n\
                    podium_rooms 3\n# EOF\n";
        let r = parse_metrics(text, Instant::now()).expect("parsed");
        assert_eq!((r.cpu_s, r.rss), (12.5, 1_048_576));
        assert!(parse_metrics("podium_rooms 3\n", Instant::now()).is_err());
    }

    #[test]
    fn this_process_is_read_from_proc() {
        let r = read_proc("self").expect("/proc/self");
        assert!(r.rss > 0);
    }
}
