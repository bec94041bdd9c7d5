//! `podium loadtest`: a join storm of real listeners (and optionally a real speaker) against a hub, on the
//! `podium-load` crate. See deploy/README.md, "Load testing".

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use podium_load::{Config, PHASES, Progress};

#[derive(clap::Args)]
pub(crate) struct Loadtest {
    /// The hub's websocket URL (`ws://host:port`; `/v1/ws` is added when no path is given).
    #[arg(long, env = "PODIUM_WS_URL", default_value = "ws://127.0.0.1:7880")]
    url: String,
    /// The hub's `auth.secret`: the tool mints its participants' tokens with it (HS256).
    #[arg(long, env = "PODIUM_AUTH__SECRET", hide_env_values = true)]
    secret: String,
    /// The room every participant joins.
    #[arg(long, default_value = "loadtest")]
    room: String,
    /// How many listeners join.
    #[arg(long, default_value_t = 100)]
    listeners: usize,
    /// Joins started per second.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Length of the run in seconds, from the first join.
    #[arg(long, default_value_t = 30.0)]
    duration: f64,
    /// Also join a speaker (moderator token) that unmutes itself and sends a 440 Hz Opus tone every 20 ms.
    #[arg(long)]
    speaker: bool,
    /// Media threads the listeners are spread over.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the report as JSON (stdout) instead of a table.
    #[arg(long)]
    json: bool,
}

impl Loadtest {
    pub(crate) fn run(self) -> ExitCode {
        if !(self.rate > 0.0 && self.duration > 0.0 && self.duration.is_finite()) {
            eprintln!("error: --rate and --duration must be positive");
            return ExitCode::from(2);
        }
        let config = Config {
            url: self.url,
            secret: self.secret,
            room: self.room,
            listeners: self.listeners,
            rate: self.rate,
            duration: Duration::from_secs_f64(self.duration),
            speaker: self.speaker,
            media_threads: self.threads,
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
                        "started {} · {} {} · {} {} · {} {} · failed {} · packets {}",
                        progress.started.load(Ordering::Relaxed),
                        PHASES[1],
                        r[1].load(Ordering::Relaxed),
                        PHASES[3],
                        r[3].load(Ordering::Relaxed),
                        PHASES[4],
                        r[4].load(Ordering::Relaxed),
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
