//! The `podium` command: `podium serve` runs the hub; `podium token` mints access tokens; `podium rooms`,
//! `moderate`, `hubs` and `webhooks` drive the admin API (`cli/`).

mod cli;
mod loadtest;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use podium_hub::auth::{self, TokenKeys};
use podium_hub::config::DEVELOPMENT_SECRET;
use podium_hub::{Config, Hub};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "podium",
    version,
    about = "Podium: live audio rooms (signaling hub and SFU)",
    after_help = "The admin API commands (rooms, moderate, hubs, webhooks status) take --url (PODIUM_URL, default \
                  http://127.0.0.1:7880), --key (PODIUM_ADMIN_KEY) and --json. Exit codes: 0 done, 1 failed, 2 usage, \
                  3 credential refused, 4 not found, 5 hub unreachable. See proto/ADMIN.md, \"Command line\"."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub. With no configuration: in-memory store on 127.0.0.1:7880, development secret.
    Serve {
        /// Configuration file (TOML); see deploy/podium.toml. PODIUM_SECTION__KEY variables override it.
        #[arg(long, short, env = "PODIUM_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address (overrides the configuration).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Where room state lives (overrides `[store] url`): `memory`, `redis://host:port/`,
        /// `redis+cluster://host:port,host:port`, or `redis+sentinel://host:port,host:port/<master>`.
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// First UDP port of the SFU; worker i binds port + i; 0 picks free ports (overrides `[media] port`).
        #[arg(long, value_name = "PORT")]
        media_port: Option<u16>,
    },
    /// List the hubs in the node registry of a shared store: alive or gone, draining, last heartbeat.
    Nodes {
        /// Configuration file whose `[store] url` names the Redis (PODIUM_SECTION__KEY variables override it).
        #[arg(long, short, env = "PODIUM_CONFIG")]
        config: Option<PathBuf>,
        /// The Redis URL (overrides `[store] url`).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
    /// Mint an access token, signed with `auth.secret` from the configuration (file or PODIUM_AUTH__SECRET); with no
    /// secret configured, with the development secret that `podium serve` uses when it has none either.
    Token {
        /// The identity (token subject).
        #[arg(long)]
        identity: String,
        /// Display name (defaults to the identity).
        #[arg(long)]
        name: Option<String>,
        /// Room the token admits to, or `*` for any room.
        #[arg(long, default_value = "demo")]
        room: String,
        /// Highest role the holder may have.
        #[arg(long, value_enum, default_value_t = RoleArg::Speaker)]
        role: RoleArg,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 6 * 3600)]
        ttl: u64,
        /// Mint an admin-grant token for the admin API instead (`--identity` names the administrator; `--room`
        /// and `--role` do not apply).
        #[arg(long)]
        admin: bool,
        /// The admin-grant token's scope (with `--admin`).
        #[arg(long, value_enum, default_value_t = ScopeArg::Read)]
        scope: ScopeArg,
        /// Configuration file whose `auth.secret` signs the token (without one: PODIUM_AUTH__SECRET, else the
        /// development secret).
        #[arg(long, short, env = "PODIUM_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Rooms through the admin API: list, create, show, update, end, participants.
    Rooms(cli::rooms::Rooms),
    /// A moderation action on a participant or identity through the admin API (scope moderate).
    Moderate(cli::moderate::Moderate),
    /// The hubs sharing the store through the admin API: list, drain.
    Hubs(cli::hubs::Hubs),
    /// Webhooks: delivery status through the admin API, or a signed test event to the endpoints.
    Webhooks(cli::webhooks::Webhooks),
    /// Summits through the admin API: import and release schedules, status, stage actions, calendar.
    Summit(cli::summit::Summit),
    /// A join storm of real listeners (websocket, SDP, ICE, DTLS, SRTP) into one room, optionally with a real
    /// speaker: phase latencies, packets and loss per listener (deploy/README.md, "Load testing").
    Loadtest(loadtest::Loadtest),
    /// Make an admin API key: prints the key (keep it; it is not stored) and the `[admin] keys` entry to configure.
    AdminKey {
        /// Names the key's holder in the audit log and webhooks (`admin:<name>`).
        #[arg(long)]
        name: String,
        /// What the key may do.
        #[arg(long, value_enum, default_value_t = ScopeArg::Read)]
        scope: ScopeArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ScopeArg {
    Read,
    Moderate,
    Admin,
}

impl From<ScopeArg> for auth::Scope {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::Read => Self::Read,
            ScopeArg::Moderate => Self::Moderate,
            ScopeArg::Admin => Self::Admin,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Audience,
    Speaker,
    Moderator,
}

impl From<RoleArg> for podium_hub::Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Audience => Self::Audience,
            RoleArg::Speaker => Self::Speaker,
            RoleArg::Moderator => Self::Moderator,
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Rooms(c) => cli::finish(c.run()),
        Command::Moderate(c) => cli::finish(c.run()),
        Command::Hubs(c) => cli::finish(c.run()),
        Command::Webhooks(c) => cli::finish(c.run()),
        Command::Summit(c) => cli::finish(c.run()),
        Command::Loadtest(c) => c.run(),
        other => match run(other) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // What returning the error from `main` printed.
                eprintln!("Error: {e:?}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The commands that do not use the admin API.
fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Rooms(_)
        | Command::Moderate(_)
        | Command::Hubs(_)
        | Command::Webhooks(_)
        | Command::Summit(_)
        | Command::Loadtest(_) => Ok(()),
        Command::Serve { config, listen, store, media_port } => serve(config, listen, store, media_port),
        Command::Nodes { config, store } => nodes(config, store),
        Command::AdminKey { name, scope } => {
            anyhow::ensure!(
                !name.is_empty() && name.len() <= 64 && !name.chars().any(char::is_control),
                "--name: 1-64 bytes without control characters"
            );
            let key = podium_hub::new_admin_key();
            let scope = auth::Scope::from(scope).as_str();
            let hash = podium_hub::admin_key_hash(&key);
            println!("key: {key}");
            println!("[admin]");
            println!("keys = [{{ name = {name:?}, sha256 = \"{hash}\", scope = \"{scope}\" }}]");
            Ok(())
        }
        Command::Token { identity, admin: true, scope, ttl, config, .. } => {
            let config = Config::load(config.as_deref())?;
            let keys = TokenKeys::new(config.auth.secret().as_bytes());
            let now = auth::unix_now();
            let claims = auth::AdminClaims {
                sub: identity,
                admin: auth::AdminGrantClaim { scope: scope.into() },
                exp: now + ttl,
                iat: Some(now),
            };
            println!("{}", keys.mint_admin(&claims).map_err(|e| anyhow::anyhow!("{e}"))?);
            Ok(())
        }
        Command::Token { identity, name, room, role, ttl, config, .. } => {
            let config = Config::load(config.as_deref())?;
            let keys = TokenKeys::new(config.auth.secret().as_bytes());
            if room != auth::ANY_ROOM {
                auth::validate_room_name(&room).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let claims = auth::claims_for(&identity, name.as_deref(), &room, role.into(), Duration::from_secs(ttl));
            println!("{}", keys.mint(&claims).map_err(|e| anyhow::anyhow!("{e}"))?);
            Ok(())
        }
    }
}

fn serve(
    config: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
    store: Option<String>,
    media_port: Option<u16>,
) -> anyhow::Result<()> {
    // Logs go to stderr; stdout carries only what a newcomer needs (where to connect, a development token).
    // The default filter caps the media dependencies (see `podium_hub::logging`); RUST_LOG goes on top.
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::builder().parse_lossy(podium_hub::logging::log_filter(rust_log.as_deref())))
        .with_writer(std::io::stderr)
        .init();
    let mut config = Config::load(config.as_deref())?;
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    if let Some(port) = media_port {
        config.media.port = port;
    }
    if let Some(store) = store {
        config.store.url = store;
        config.validate()?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let development = config.auth.secret.is_none();
        let (ws, http) = if config.tls.enabled() { ("wss", "https") } else { ("ws", "http") };
        let keys = TokenKeys::new(config.auth.secret().as_bytes());
        let turn = config.turn.enabled().then(|| (config.turn.urls.join(", "), config.turn.credential_ttl_s));
        let hub = Hub::bind(config).await?;
        let addr = hub.local_addr();
        println!("Podium is listening: {ws}://{addr}{}", podium_hub::WS_PATH);
        println!("Demo app: {http}://{addr}/ (the browser SDK: {http}://{addr}/sdk/podium.js)");
        let media: Vec<String> = hub.media_addrs().iter().map(ToString::to_string).collect();
        if media.is_empty() {
            println!("Media: disabled ([media] enabled = false)");
        } else {
            println!("Media (WebRTC audio, UDP): {}", media.join(", "));
        }
        if let Some((urls, ttl)) = turn {
            println!("TURN for clients: {urls} (credentials minted per participant, valid {ttl} s)");
        }
        if hub.is_shared() {
            println!("Node: {} (one of the hubs sharing the store; `podium nodes` lists them)", hub.node_id());
        }
        if development {
            tracing::warn!("no auth.secret configured: using the development secret {DEVELOPMENT_SECRET:?}");
            let claims = auth::claims_for(
                "dev-moderator",
                Some("Dev Moderator"),
                "demo",
                podium_hub::Role::Moderator,
                Duration::from_secs(24 * 3600),
            );
            let token = keys.mint(&claims).map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("Development token (moderator of room \"demo\", valid 24 h):\n{token}");
            println!("More tokens: podium token --identity alice --room demo --role speaker");
            println!(
                "Development tokens over HTTP: {http}://{addr}{}?identity=alice&room=demo&role=speaker",
                podium_hub::DEV_TOKEN_PATH
            );
        }
        let stop = hub.shutdown_handle();
        tokio::spawn(async move {
            // SIGTERM and ctrl-c drain: with Redis and another live hub, rooms move there before this hub exits.
            shutdown_signal().await;
            stop.drain();
        });
        reload_on_sighup(hub.tls_handle())?;
        hub.run().await
    })
}

/// `podium nodes`: the node registry, one hub per line.
fn nodes(config: Option<PathBuf>, store: Option<String>) -> anyhow::Result<()> {
    let mut config = Config::load(config.as_deref())?;
    if let Some(store) = store {
        config.store.url = store;
    }
    anyhow::ensure!(!config.store.is_memory(), "the in-memory store has no node registry: give --store redis://...");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let options = podium_store::RedisOptions::default();
        let redis = podium_store::RedisStore::connect(&config.store.url, &options)
            .await
            .with_context(|| format!("connecting to {}", config.store.url))?;
        let nodes = redis.nodes(podium_hub::NODE_TTL).await.context("reading the node registry")?;
        if nodes.is_empty() {
            println!("no hubs registered");
        }
        for n in nodes {
            let state = match (n.alive, n.info.draining) {
                (true, false) => "alive",
                (true, true) => "draining",
                (false, _) => "gone",
            };
            let url = n.info.url.as_deref().unwrap_or("-");
            println!("{}  {state:<8}  seen {:>6.1} s ago  {url}", n.info.id, n.age.as_secs_f64());
        }
        Ok(())
    })
}

/// SIGHUP reloads the TLS certificate and key (after a renewal); a pair that does not load leaves the previous one
/// in use. Without TLS it does nothing (so `systemctl reload` never stops a hub).
#[cfg(unix)]
fn reload_on_sighup(tls: Option<podium_hub::TlsHandle>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let Some(tls) = &tls else {
                tracing::info!("SIGHUP: nothing to reload (no [tls])");
                continue;
            };
            // A reload that works logs itself.
            if let Err(e) = tls.reload().await {
                let error = format!("{e:#}");
                tracing::error!(error, "SIGHUP: the TLS certificate did not reload; the previous one stays in use");
            }
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn reload_on_sighup(_tls: Option<podium_hub::TlsHandle>) -> anyhow::Result<()> {
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
