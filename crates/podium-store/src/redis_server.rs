//! A throwaway `redis-server` for tests: a free port, a temporary directory, AOF with `appendfsync always`, and no
//! RDB snapshots, so what Redis acknowledged is on disk. Tests can `kill -9` it and start it again on the same port
//! and directory (it then loads the AOF). Also a one-node Redis Cluster, a replica, and a sentinel. Built for this
//! crate's tests and, with the `test-support` feature, for other crates' tests.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const MISSING: &str = "redis-server is not installed (or not on PATH); the Redis store tests need it. \
    `bash .ci/run` (through `tests/run`) installs it; by hand: `apt-get install redis-server`";

/// A running (or killed) `redis-server`; killed and its directory removed on drop.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    kind: Kind,
}

/// What a [`RedisServer`] runs as.
#[derive(Clone)]
enum Kind {
    Plain,
    Cluster,
    /// A replica of the server on this port.
    Replica(u16),
    /// A sentinel monitoring the master on this port under this name (quorum 1, down after 500 ms).
    Sentinel {
        master: u16,
        name: String,
    },
}

impl RedisServer {
    /// Starts a server on a free port in a new temporary directory and waits until it answers `PING`.
    pub fn start() -> Self {
        Self::start_with(Kind::Plain)
    }

    /// Starts a replica of `master` (AOF as for [`RedisServer::start`]); it answers once started, maybe before its
    /// first sync.
    pub fn start_replica_of(master: &Self) -> Self {
        Self::start_with(Kind::Replica(master.port))
    }

    /// Starts a sentinel (`redis-server --sentinel`) monitoring `master` as `name`, with a quorum of 1 and a master
    /// considered down after 500 ms without answers, so one sentinel fails over by itself; connect with
    /// [`RedisServer::sentinel_url`].
    pub fn start_sentinel(master: &Self, name: &str) -> Self {
        Self::start_with(Kind::Sentinel { master: master.port, name: name.to_owned() })
    }

    /// Starts a one-node Redis Cluster (the node serves every slot); connect with [`RedisServer::cluster_url`].
    pub fn start_cluster() -> Self {
        let server = Self::start_with(Kind::Cluster);
        let reply = server.inline("CLUSTER ADDSLOTSRANGE 0 16383");
        assert!(reply.starts_with("+OK"), "CLUSTER ADDSLOTSRANGE: {reply}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.inline("CLUSTER INFO").contains("cluster_state:ok") {
            assert!(Instant::now() < deadline, "the one-node cluster did not become ready within 10 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn start_with(kind: Kind) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "podium-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating the redis-server directory");
        // A cluster node also listens on its port + 10000 (the cluster bus): that one must be free and valid too.
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        let port = loop {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
            if !matches!(kind, Kind::Cluster) || port.checked_add(10_000).is_some_and(free) {
                break port;
            }
        };
        let mut server = Self { port, dir, child: None, kind };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `redis+cluster://127.0.0.1:PORT` (for [`RedisServer::start_cluster`]).
    pub fn cluster_url(&self) -> String {
        format!("redis+cluster://127.0.0.1:{}", self.port)
    }

    /// `redis+sentinel://127.0.0.1:PORT/NAME` (for [`RedisServer::start_sentinel`]).
    pub fn sentinel_url(&self) -> String {
        let name = match &self.kind {
            Kind::Sentinel { name, .. } => name.as_str(),
            _ => panic!("not a sentinel"),
        };
        format!("redis+sentinel://127.0.0.1:{}/{name}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused server dies too (SIGKILL needs no SIGCONT).
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGSTOP: the server keeps its connections open but answers nothing (a blackholed Redis).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Sends SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let Some(child) = &self.child else { panic!("redis-server is not running") };
        let status = Command::new("kill").arg(which).arg(child.id().to_string()).status().expect("running kill");
        assert!(status.success(), "kill {which} {}: {status}", child.id());
    }

    /// The server's `INFO` section `section` (empty on any error).
    pub fn info(&self, section: &str) -> String {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else { return String::new() };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(format!("INFO {section}\r\n").as_bytes()).is_err() {
            return String::new();
        }
        // A bulk string: `$LEN\r\n` then LEN bytes.
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
            let t = String::from_utf8_lossy(&text);
            if let Some((head, body)) = t.split_once("\r\n")
                && let Ok(len) = head.trim_start_matches('$').parse::<usize>()
                && body.len() >= len
            {
                return body[..len].to_owned();
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the server (again) on the same port and directory, and waits until it answers `PING` (after loading
    /// its AOF).
    pub fn restart(&mut self) {
        self.kill9();
        let mut command = Command::new("redis-server");
        if let Kind::Sentinel { master, name } = &self.kind {
            // A sentinel rewrites its configuration file: it must be a file of its own.
            let config = self.dir.join("sentinel.conf");
            if !config.exists() {
                let text = format!(
                    "sentinel monitor {name} 127.0.0.1 {master} 1\n\
                     sentinel down-after-milliseconds {name} 500\n\
                     sentinel failover-timeout {name} 5000\n"
                );
                std::fs::write(&config, text).expect("writing sentinel.conf");
            }
            command.arg(&config).arg("--sentinel");
        }
        command.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir"]).arg(&self.dir);
        if !matches!(self.kind, Kind::Sentinel { .. }) {
            command.args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""]);
        }
        command.args(["--daemonize", "no", "--logfile", "redis.log"]);
        match &self.kind {
            Kind::Plain | Kind::Sentinel { .. } => {}
            Kind::Cluster => {
                command.args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]);
            }
            Kind::Replica(master) => {
                command.args(["--replicaof", "127.0.0.1", &master.to_string()]);
            }
        }
        let spawned = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{MISSING}"),
            Err(e) => panic!("starting redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default();
                panic!("redis-server exited ({status}) on port {}:\n{log}", self.port);
            }
            assert!(Instant::now() < deadline, "redis-server on port {} did not answer PING within 10 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        // While loading the AOF, Redis answers `-LOADING ...`; ready means `+PONG`.
        self.inline("PING").starts_with("+PONG")
    }

    /// Sends one command (its arguments as given, any bytes) and returns the start of the reply (empty on any error).
    pub fn command(&self, args: &[&str]) -> String {
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.inline(request.trim_end_matches("\r\n"))
    }

    /// Sends one inline command and returns the start of the reply (empty on any error).
    fn inline(&self, command: &str) -> String {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else { return String::new() };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(format!("{command}\r\n").as_bytes()).is_err() {
            return String::new();
        }
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(_) => String::new(),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
