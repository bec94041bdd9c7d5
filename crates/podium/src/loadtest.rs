//! `podium loadtest`: real listeners (and a real speaker) against a hub over the real protocol, on the
//! `podium-load` crate: a join storm, then listener churn, a reconnect storm or stage changes. See
//! docs/LOADTEST.md.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use podium_load::{Auth, Config, PHASES, Progress, Scenario};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ScenarioArg {
    /// Listeners join at --rate and stay.
    Storm,
    /// After the storm, --churn-rate times a second the longest-present listener leaves and a new one joins.
    Churn,
    /// --reconnect-after seconds after the storm, --reconnect-count listeners drop and rejoin at once.
    Reconnect,
    /// After the storm, --stage-rate times a second a moderator invites a listener to the stage; it accepts and
    /// publishes the tone (the others answer the SFU's new-slot offers); --stage-hold seconds later it is moved back.
    Stage,
}

#[derive(clap::Args)]
#[command(after_help = "Against a local hub: podium serve, then \
    podium loadtest --secret S --speaker --listeners 6000 --rate 100 --duration 70 --pid $(pidof podium). \
    Against a TLS hub: --url wss://hub.example.com (port 443 by default), and --ca-file ca.pem when its \
    certificate comes from a private authority. Details, and what each figure means: docs/LOADTEST.md.")]
pub(crate) struct Loadtest {
    /// The hub's websocket URL: `ws://host:port`, or `wss://host[:port]` for a TLS hub (port 443 by default);
    /// `/v1/ws` is added when no path is given.
    #[arg(long, env = "PODIUM_WS_URL", default_value = "ws://127.0.0.1:7880")]
    url: String,
    /// A PEM file of certificate authorities to trust besides the system's (a private CA, or the hub's self-signed
    /// certificate): for a wss:// hub, its https:// /metrics and the admin API.
    #[arg(long, value_name = "PEM")]
    ca_file: Option<std::path::PathBuf>,
    /// The hub's `auth.secret`: the tool mints its participants' tokens with it (HS256).
    #[arg(long, env = "PODIUM_AUTH__SECRET", hide_env_values = true, required_unless_present = "admin_key")]
    secret: Option<String>,
    /// Instead of the secret: an admin API key (scope admin); each participant's token then comes from
    /// `POST /v1/admin/tokens` (one request per join, under the admin API's rate limit).
    #[arg(long, env = "PODIUM_ADMIN_KEY", hide_env_values = true, conflicts_with = "secret")]
    admin_key: Option<String>,
    /// The room every participant joins.
    #[arg(long, default_value = "loadtest")]
    room: String,
    /// How many listeners join in the storm.
    #[arg(long, default_value_t = 100)]
    listeners: usize,
    /// Joins started per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Length of the run in seconds, from the first join (the storm and the scenario).
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Also join a speaker (moderator token) that unmutes itself and sends a 440 Hz Opus tone every 20 ms, each
    /// frame stamped with its send time (end-to-end delay).
    #[arg(long)]
    speaker: bool,
    /// What happens after the storm.
    #[arg(long, value_enum, default_value = "storm")]
    scenario: ScenarioArg,
    /// churn: leaves (each replaced by a new join) per second.
    #[arg(long, default_value_t = 5.0)]
    churn_rate: f64,
    /// reconnect: seconds after the storm.
    #[arg(long, default_value_t = 3.0)]
    reconnect_after: f64,
    /// reconnect: how many listeners drop and rejoin (0: all).
    #[arg(long, default_value_t = 0)]
    reconnect_count: usize,
    /// stage: invitations per second.
    #[arg(long, default_value_t = 0.5)]
    stage_rate: f64,
    /// stage: seconds a promoted listener stays on stage.
    #[arg(long, default_value_t = 3.0)]
    stage_hold: f64,
    /// Media threads the counting listeners are spread over (a precise thread for the speaker and the sampled
    /// listeners comes on top).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Milliseconds a counting media thread sleeps between polls (phase times are up to this late).
    #[arg(long, default_value_t = 5)]
    tick_ms: u64,
    /// Against a loopback hub: one UDP socket per counting listener, instead of one per media thread with an
    /// address 127.2.x.y of its own per listener (the default: a system call per 64 datagrams, not per listener).
    #[arg(long)]
    socket_per_listener: bool,
    /// Against a loopback hub: spread the listeners over this many source addresses 127.1.x.y (0: one).
    #[arg(long, default_value_t = 64)]
    sources: usize,
    /// One listener in this many decrypts its audio and checks it (the tone, the end-to-end delay); 0: none.
    #[arg(long, default_value_t = 100)]
    sample_every: usize,
    /// The hub's metrics URL (default: http://HOST:PORT/metrics of --url, https:// for wss://); read for process_cpu_seconds_total and
    /// process_resident_memory_bytes.
    #[arg(long)]
    metrics_url: Option<String>,
    /// Read the hub's CPU and memory from /proc/PID instead (a hub on this machine).
    #[arg(long)]
    pid: Option<u32>,
    /// Print the report as JSON (stdout) instead of a table.
    #[arg(long)]
    json: bool,
}

impl Loadtest {
    pub(crate) fn run(self) -> ExitCode {
        let positive = |v: f64| v > 0.0 && v.is_finite();
        if !(positive(self.rate) && positive(self.duration)) {
            eprintln!("error: --rate and --duration must be positive");
            return ExitCode::from(2);
        }
        let scenario = match self.scenario {
            ScenarioArg::Storm => Scenario::Storm,
            ScenarioArg::Churn if positive(self.churn_rate) => Scenario::Churn { rate: self.churn_rate },
            ScenarioArg::Reconnect if self.reconnect_after >= 0.0 && self.reconnect_after.is_finite() => {
                Scenario::Reconnect {
                    after: Duration::from_secs_f64(self.reconnect_after),
                    count: self.reconnect_count,
                }
            }
            ScenarioArg::Stage if positive(self.stage_rate) && positive(self.stage_hold) => {
                Scenario::Stage { rate: self.stage_rate, hold: Duration::from_secs_f64(self.stage_hold) }
            }
            _ => {
                eprintln!("error: the scenario's rate and times must be positive");
                return ExitCode::from(2);
            }
        };
        let auth = match (self.secret, self.admin_key) {
            (Some(s), _) => Auth::Secret(s),
            (None, Some(key)) => {
                let base = self
                    .url
                    .replacen("wss://", "https://", 1)
                    .replacen("ws://", "http://", 1)
                    .split('/')
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("/");
                let client = match podium_load::http_client(self.ca_file.as_deref()) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return ExitCode::from(2);
                    }
                };
                Auth::AdminKey { key, base, client }
            }
            (None, None) => {
                eprintln!("error: give --secret or --admin-key");
                return ExitCode::from(2);
            }
        };
        let config = Config {
            url: self.url,
            ca_file: self.ca_file,
            auth,
            room: self.room,
            listeners: self.listeners,
            rate: self.rate,
            duration: Duration::from_secs_f64(self.duration),
            speaker: self.speaker,
            scenario,
            media_threads: self.threads,
            tick: Duration::from_millis(self.tick_ms),
            sources: self.sources,
            socket_per_listener: self.socket_per_listener,
            sample_every: self.sample_every,
            metrics_url: self.metrics_url,
            pid: self.pid,
        };
        let progress = Arc::new(Progress::default());
        let bar = ProgressBar::new(self.duration.ceil() as u64);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len}s {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let ticker = {
            let (bar, progress) = (bar.clone(), Arc::clone(&progress));
            std::thread::spawn(move || {
                let start = Instant::now();
                while !bar.is_finished() {
                    bar.set_position(start.elapsed().as_secs());
                    let r = &progress.reached;
                    bar.set_message(format!(
                        "started {} · {} {} · {} {} · {} {} · left {} · failed {} · packets {}",
                        progress.started.load(Ordering::Relaxed),
                        PHASES[1],
                        r[1].load(Ordering::Relaxed),
                        PHASES[3],
                        r[3].load(Ordering::Relaxed),
                        PHASES[4],
                        r[4].load(Ordering::Relaxed),
                        progress.ended.load(Ordering::Relaxed),
                        progress.failed.load(Ordering::Relaxed),
                        progress.packets.load(Ordering::Relaxed),
                    ));
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        let report = podium_load::run(&config, progress);
        bar.finish_and_clear();
        let _ = ticker.join();
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        if self.json {
            match serde_json::to_string_pretty(&report) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            print!("{}", podium_load::table(&report));
        }
        ExitCode::SUCCESS
    }
}
