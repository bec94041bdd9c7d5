//! `podium webhooks status` (the admin API's delivery status) and `podium webhooks test`: a signed test event,
//! signed here with the hub's own code, to the configured endpoints or to one given on the command line.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use podium_hub::Config;
use serde_json::{Value, json};

use super::{Api, Client, EXIT_OTHER, EXIT_USAGE, Failure, Table, text, yes_no};

/// The `type` of a test event. It is not one of the event types of `proto/schema/webhook.schema.json`: a receiver
/// answers 2xx to types it does not know.
pub(crate) const TEST_EVENT_TYPE: &str = "webhook.test";

#[derive(Args)]
pub(crate) struct Webhooks {
    #[command(subcommand)]
    command: WebhooksCommand,
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Delivery per endpoint, through the admin API (scope read): delivered, failures, queue depth, oldest event.
    Status {
        #[command(flatten)]
        api: Api,
    },
    /// POST a signed `webhook.test` event to each endpoint of `[webhooks]` in the configuration, or to `--url`, and
    /// print each one's HTTP status and latency. Exits 1 when one did not answer 2xx.
    Test {
        /// Configuration file whose `[webhooks] endpoints` to test (PODIUM_WEBHOOKS__ENDPOINTS overrides it).
        #[arg(long, short, env = "PODIUM_CONFIG")]
        config: Option<PathBuf>,
        /// Only the configured endpoint of this name.
        #[arg(long, value_name = "NAME", conflicts_with = "url")]
        endpoint: Option<String>,
        /// Test this receiver instead of the configured ones.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// With `--url`: a signing secret, `whsec_<base64>` (repeat for several, as during a rotation).
        #[arg(long = "secret", value_name = "WHSEC", requires = "url")]
        secrets: Vec<String>,
        /// How long each request may take, in ms (default: the endpoint's `timeout_ms`, else 10000).
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
        /// Print the results as JSON: `[{"endpoint", "url", "status", "latency_ms", "error"}]`.
        #[arg(long)]
        json: bool,
    },
}

impl Webhooks {
    pub(crate) fn run(self) -> Result<(), Failure> {
        match self.command {
            WebhooksCommand::Status { api } => status(&api),
            WebhooksCommand::Test { config, endpoint, url, secrets, timeout_ms, json } => {
                let targets = targets(config, endpoint, url, secrets, timeout_ms)?;
                test(&targets, json)
            }
        }
    }
}

fn status(api: &Api) -> Result<(), Failure> {
    let client = Client::new(api)?;
    let answer = client.get(&["webhooks"], &[])?;
    if client.json {
        println!("{}", answer.text.trim_end());
        return Ok(());
    }
    let status = answer.json()?;
    let endpoints = status["endpoints"].as_array().cloned().unwrap_or_default();
    if endpoints.is_empty() {
        println!("no webhook endpoints configured");
        return Ok(());
    }
    let mut table = Table::new(&[
        "ENDPOINT",
        "URL",
        "DISABLED",
        "DELIVERED",
        "FAILED",
        "GIVEN UP",
        "QUEUED",
        "OLDEST",
        "LAST ERROR",
    ]);
    for e in &endpoints {
        let oldest = e.get("oldest_age_ms").and_then(Value::as_u64).map_or_else(|| "-".to_owned(), age);
        table.row(vec![
            text(e, "name"),
            text(e, "url"),
            yes_no(e, "disabled").to_owned(),
            text(e, "delivered"),
            text(e, "failed_attempts"),
            text(e, "given_up"),
            text(e, "queue_depth"),
            oldest,
            text(e, "last_error"),
        ]);
    }
    print!("{table}");
    let truncated =
        if status["truncated"].as_bool().unwrap_or(false) { " (not all: see status_scan_rooms)" } else { "" };
    println!(
        "rooms with queued events scanned: {}{truncated}; events dropped (queue full): {}",
        text(&status, "rooms_scanned"),
        text(&status, "dropped")
    );
    Ok(())
}

/// `1.2 s`, `3 min`, `2.0 h`.
fn age(ms: u64) -> String {
    match ms {
        0..60_000 => format!("{:.1} s", ms as f64 / 1e3),
        60_000..7_200_000 => format!("{} min", ms / 60_000),
        _ => format!("{:.1} h", ms as f64 / 3.6e6),
    }
}

/// One receiver to test.
struct Target {
    name: String,
    url: String,
    secrets: Vec<String>,
    timeout: Duration,
}

fn targets(
    config: Option<PathBuf>,
    endpoint: Option<String>,
    url: Option<String>,
    secrets: Vec<String>,
    timeout_ms: Option<u64>,
) -> Result<Vec<Target>, Failure> {
    let timeout = |configured: Option<u64>| Duration::from_millis(timeout_ms.or(configured).unwrap_or(10_000).max(1));
    if let Some(url) = url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Failure::new(EXIT_USAGE, format!("--url {url:?}: not an http:// or https:// URL")));
        }
        return Ok(vec![Target { name: "-".to_owned(), url, secrets, timeout: timeout(None) }]);
    }
    let config = Config::load(config.as_deref()).map_err(|e| Failure::new(EXIT_USAGE, format!("{e:#}")))?;
    let targets: Vec<Target> = config
        .webhooks
        .endpoints
        .into_iter()
        .filter(|e| endpoint.as_ref().is_none_or(|n| *n == e.name))
        .map(|e| Target { name: e.name, url: e.url, secrets: e.secrets, timeout: timeout(Some(e.timeout_ms)) })
        .collect();
    if targets.is_empty() {
        let what = match endpoint {
            Some(name) => format!("no webhook endpoint named {name:?} in the configuration"),
            None => "no webhook endpoints configured: give --config, PODIUM_WEBHOOKS__ENDPOINTS or --url".to_owned(),
        };
        return Err(Failure::new(EXIT_USAGE, what));
    }
    Ok(targets)
}

fn test(targets: &[Target], json_out: bool) -> Result<(), Failure> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("podium-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::new(EXIT_OTHER, format!("making the HTTP client: {e}")))?;
    let runtime = super::runtime()?;
    let mut results = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let id = format!("msg_test_{:x}{:04x}{i:02x}", now.as_micros(), std::process::id() & 0xffff);
        let body =
            json!({"type": TEST_EVENT_TYPE, "timestamp": podium_hub::webhooks::timestamp(ms), "data": {"id": id}})
                .to_string();
        let timestamp = now.as_secs();
        let mut request = http
            .post(&target.url)
            .timeout(target.timeout)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string());
        if !target.secrets.is_empty() {
            let signature = podium_hub::webhooks::sign(&target.secrets, &id, timestamp, body.as_bytes())
                .map_err(|why| Failure::new(EXIT_USAGE, format!("{}: secret: {why}", target.name)))?;
            request = request.header("webhook-signature", signature);
        }
        let started = Instant::now();
        let outcome = runtime.block_on(async { request.body(body).send().await });
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let (status, error) = match outcome {
            Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
            Ok(r) => (Some(r.status().as_u16()), Some(format!("HTTP {}", r.status()))),
            Err(e) if e.is_timeout() => (None, Some("timed out".to_owned())),
            Err(e) if e.is_connect() => (None, Some("connection failed".to_owned())),
            Err(e) => (None, Some(format!("request failed: {e}"))),
        };
        results.push(json!({
            "endpoint": target.name,
            "url": target.url,
            "status": status,
            "latency_ms": (latency_ms * 10.0).round() / 10.0,
            "error": error,
        }));
    }
    let failed = results.iter().filter(|r| !r["error"].is_null()).count();
    let tested = results.len();
    if json_out {
        println!("{}", Value::Array(results));
    } else {
        let mut table = Table::new(&["ENDPOINT", "URL", "STATUS", "LATENCY", "RESULT"]);
        for r in &results {
            let result = r["error"].as_str().unwrap_or("ok").to_owned();
            let latency = format!("{:.1} ms", r["latency_ms"].as_f64().unwrap_or(0.0));
            table.row(vec![text(r, "endpoint"), text(r, "url"), text(r, "status"), latency, result]);
        }
        print!("{table}");
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::new(EXIT_OTHER, format!("{failed} of {} endpoints did not answer 2xx", tested)))
    }
}
