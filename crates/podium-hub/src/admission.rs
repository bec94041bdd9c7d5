//! Admission: per-source limits on what is not yet authenticated, and the client address they are counted by.
//!
//! Two limits apply to each *source* (an IPv4 address, or an IPv6 /64 prefix, since one IPv6 host usually holds a
//! whole /64):
//! - **pending**: connections that have not joined yet (no valid `join`), at most `limits.pending_per_source` at a
//!   time. A connection holds a [`Ticket`] from admission until it joins or ends; joined connections do not count.
//! - **rate**: new connections (websocket handshakes and plain HTTP requests), a token bucket of
//!   `limits.connects_per_source_per_second` with bursts of `limits.connect_burst_per_source`.
//!
//! A refused connection gets `429 Too Many Requests` (with `Retry-After`) and is closed; nothing else is read. The
//! defaults are far above what real clients behind one carrier NAT produce (a join completes in milliseconds, so even
//! thousands of listeners joining at once from one address rarely have more than a few pending at a time), and far
//! below what pins a hub's memory.
//!
//! The source of a connection is its TCP peer address, except when that peer is one of `server.trusted_proxies`:
//! then it is the address the proxy recorded in the header `server.proxy_header` names (`X-Forwarded-For`, or
//! `Forwarded` of RFC 7239), read from the right, skipping trusted proxies. Only that one header is read: a client can
//! send either header itself, and only the one the proxy appends to is trustworthy. Connections through a trusted proxy are admitted when the
//! websocket handshake's headers have been read (plain HTTP requests through a proxy are not counted).
//!
//! Failed authentication is counted per source and logged as one summary line per interval
//! ([`Admission::sweep`], every [`SWEEP_INTERVAL`]), never one line per attempt; so are refused connections and
//! failed accepts (out of descriptors).
//!
//! Invariants: the map holds an entry for every source with a pending connection (its count equals the number of
//! live tickets), plus sources seen within one sweep interval; `sweep` removes the others, so its size is bounded by
//! the connections in flight and the connection rate. The lock is held for a map lookup and a few arithmetic
//! operations, never across an await.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::warn;

use crate::config::{LimitsConfig, ProxyHeader};

/// How often counters are summarised in the log and idle entries forgotten.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// What a connection is counted as: an IPv4 address or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Source(IpAddr);

impl Source {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Self(IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
                }
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Too many connections from this source have not joined yet.
    TooManyPending,
    /// This source opens connections faster than its rate.
    TooFast,
}

impl Refusal {
    /// The body of the `429` response.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::TooManyPending => "too many connections from your address have not joined yet",
            Self::TooFast => "too many new connections from your address; slow down",
        }
    }

    /// The plain HTTP response sent before closing a refused connection.
    pub(crate) fn http_response(self) -> String {
        let body = self.message();
        format!(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}\n",
            body.len() + 1
        )
    }
}

#[derive(Debug)]
struct Entry {
    /// Live tickets.
    pending: u32,
    /// Token bucket for new connections.
    tokens: f64,
    at: Instant,
    /// Failed `join`s since the last sweep.
    auth_failures: u32,
}

#[derive(Default)]
struct Counters {
    refused_pending: u64,
    refused_rate: u64,
    refused_capacity: u64,
    auth_failures: u64,
    accept_errors: u64,
    last_accept_error: Option<std::io::ErrorKind>,
}

/// The per-source limits of one hub.
pub(crate) struct Admission {
    pending_max: u32,
    rate: f64,
    burst: f64,
    trusted: Vec<IpNet>,
    state: Mutex<(HashMap<Source, Entry>, Counters)>,
}

impl Admission {
    pub(crate) fn new(limits: &LimitsConfig, trusted: Vec<IpNet>) -> Arc<Self> {
        Arc::new(Self {
            pending_max: limits.pending_per_source,
            rate: f64::from(limits.connects_per_source_per_second),
            burst: f64::from(limits.connect_burst_per_source),
            trusted,
            state: Mutex::new((HashMap::new(), Counters::default())),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashMap<Source, Entry>, Counters)> {
        // Every critical section leaves the map consistent (single-entry updates), so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True when `ip` is one of the configured trusted proxies.
    pub(crate) fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Admits a new connection from `ip`, or says why not.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        self.admit_at(ip, Instant::now())
    }

    fn admit_at(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Ticket, Refusal> {
        let source = Source::of(ip);
        let mut guard = self.lock();
        let (map, counters) = &mut *guard;
        let entry = map.entry(source).or_insert(Entry { pending: 0, tokens: self.burst, at: now, auth_failures: 0 });
        let elapsed = now.saturating_duration_since(entry.at).as_secs_f64();
        entry.at = now;
        entry.tokens = (entry.tokens + elapsed * self.rate).min(self.burst);
        if entry.pending >= self.pending_max {
            counters.refused_pending += 1;
            return Err(Refusal::TooManyPending);
        }
        if entry.tokens < 1.0 {
            counters.refused_rate += 1;
            return Err(Refusal::TooFast);
        }
        entry.tokens -= 1.0;
        entry.pending += 1;
        Ok(Ticket { admission: Arc::clone(self), source, ip })
    }

    /// Counts a connection refused because the hub is at `server.max_connections`.
    pub(crate) fn refused_at_capacity(&self) {
        self.lock().1.refused_capacity += 1;
    }

    /// Counts a failed `accept` (typically: out of file descriptors); the first of a sweep interval is logged at once,
    /// the rest in the summary.
    pub(crate) fn accept_failed(&self, error: &std::io::Error) {
        let first = {
            let mut guard = self.lock();
            let c = &mut guard.1;
            c.accept_errors += 1;
            c.last_accept_error = Some(error.kind());
            c.accept_errors == 1
        };
        if first {
            warn!(%error, "accept failed (further failures are counted in a summary)");
        }
    }

    /// Counts a refused token from `ip` (logged in the next summary).
    pub(crate) fn auth_failed(&self, ip: IpAddr) {
        let mut guard = self.lock();
        let (map, counters) = &mut *guard;
        counters.auth_failures += 1;
        if let Some(entry) = map.get_mut(&Source::of(ip)) {
            entry.auth_failures = entry.auth_failures.saturating_add(1);
        }
    }

    fn release(&self, source: Source) {
        if let Some(entry) = self.lock().0.get_mut(&source) {
            entry.pending = entry.pending.saturating_sub(1);
        }
    }

    /// Logs what was refused since the last sweep (one line, only when something was) and forgets sources with no
    /// pending connection whose bucket is full again.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let refill = Duration::from_secs_f64(self.burst / self.rate.max(f64::MIN_POSITIVE));
        let mut guard = self.lock();
        let (map, counters) = &mut *guard;
        let worst = map.iter().filter(|(_, e)| e.auth_failures > 0).max_by_key(|(_, e)| e.auth_failures);
        let worst = worst.map(|(s, e)| (*s, e.auth_failures));
        let failing_sources = map.values().filter(|e| e.auth_failures > 0).count();
        let c = std::mem::take(counters);
        for entry in map.values_mut() {
            entry.auth_failures = 0;
        }
        map.retain(|_, e| e.pending > 0 || now.saturating_duration_since(e.at) < refill);
        drop(guard);
        if c.auth_failures > 0 {
            let (source, n) = worst.map_or_else(|| ("-".to_owned(), 0), |(s, n)| (s.to_string(), n));
            warn!(
                failures = c.auth_failures,
                sources = failing_sources,
                top_source = %source,
                top_failures = n,
                "tokens refused in the last {} s",
                SWEEP_INTERVAL.as_secs()
            );
        }
        if c.accept_errors > 1 {
            warn!(
                failures = c.accept_errors,
                last = ?c.last_accept_error,
                "accept failed in the last {} s",
                SWEEP_INTERVAL.as_secs()
            );
        }
        if c.refused_pending + c.refused_rate + c.refused_capacity > 0 {
            warn!(
                too_many_pending = c.refused_pending,
                too_fast = c.refused_rate,
                at_capacity = c.refused_capacity,
                "connections refused in the last {} s",
                SWEEP_INTERVAL.as_secs()
            );
        }
    }

    /// Sources currently tracked (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().0.len()
    }
}

/// One admitted connection that has not joined yet; dropping it (at join or when the connection ends) frees its
/// place.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    source: Source,
    ip: IpAddr,
}

impl Ticket {
    /// The client's address (after trusted proxies).
    pub(crate) fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.release(self.source);
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ticket({})", self.source)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The client's address of a request that came from a trusted proxy: the rightmost address in the configured
/// header (`kind`; every line of it, in order) that is not a trusted proxy. Rightmost, because what a client sends in
/// that header itself comes first and the proxies append. `None` when the header names none (then the proxy's own
/// address counts).
pub(crate) fn forwarded_client<'a>(
    admission: &Admission,
    kind: ProxyHeader,
    values: impl Iterator<Item = &'a str>,
) -> Option<IpAddr> {
    let hops: Vec<IpAddr> = match kind {
        ProxyHeader::Forwarded => values.flat_map(|h| h.split(',')).filter_map(forwarded_for).collect(),
        ProxyHeader::XForwardedFor => values.flat_map(|h| h.split(',')).filter_map(|s| parse_node(s.trim())).collect(),
    };
    hops.iter().rev().copied().map(canonical).find(|ip| !admission.is_trusted_proxy(*ip))
}

/// The address in one `Forwarded` element's `for=` parameter (RFC 7239 section 4), if it is an IP address
/// (obfuscated identifiers and `unknown` are not).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim().eq_ignore_ascii_case("for").then(|| parse_node(value.trim().trim_matches('"')))?
    })
}

/// An address with an optional port: `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.parse().ok().or_else(|| node.rsplit_once(':')?.0.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(pending: u32, rate: u32, burst: u32, trusted: &[&str]) -> Arc<Admission> {
        let limits = LimitsConfig {
            pending_per_source: pending,
            connects_per_source_per_second: rate,
            connect_burst_per_source: burst,
            ..LimitsConfig::default()
        };
        Admission::new(&limits, trusted.iter().map(|t| t.parse().expect("cidr")).collect())
    }

    #[test]
    fn pending_connections_are_limited_per_source_and_freed_by_tickets() {
        let a = admission(2, 1000, 1000, &[]);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t1 = a.admit(ip).unwrap();
        let _t2 = a.admit(ip).unwrap();
        assert_eq!(a.admit(ip).unwrap_err(), Refusal::TooManyPending);
        // Another source is not affected.
        let _other = a.admit("192.0.2.8".parse().unwrap()).unwrap();
        drop(t1);
        let _t3 = a.admit(ip).unwrap();
    }

    #[test]
    fn connection_rate_is_a_token_bucket_per_source() {
        let a = admission(100, 10, 5, &[]);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            drop(a.admit_at(ip, t0).unwrap());
        }
        assert_eq!(a.admit_at(ip, t0).unwrap_err(), Refusal::TooFast);
        // 100 ms later: one more token.
        drop(a.admit_at(ip, t0 + Duration::from_millis(100)).unwrap());
        assert_eq!(a.admit_at(ip, t0 + Duration::from_millis(100)).unwrap_err(), Refusal::TooFast);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a = admission(1, 1000, 1000, &[]);
        let _t = a.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(a.admit("2001:db8:1:2:ffff::9".parse().unwrap()).is_err());
        let _u = a.admit("2001:db8:1:3::1".parse().unwrap()).unwrap();
        let _v = a.admit("::ffff:192.0.2.1".parse().unwrap()).unwrap();
        assert!(a.admit("192.0.2.1".parse().unwrap()).is_err());
    }

    #[test]
    fn sweep_forgets_idle_sources_only() {
        let a = admission(10, 1_000_000, 1, &[]);
        let held = a.admit("192.0.2.1".parse().unwrap()).unwrap();
        drop(a.admit("192.0.2.2".parse().unwrap()).unwrap());
        a.auth_failed("192.0.2.1".parse().unwrap());
        std::thread::sleep(Duration::from_millis(5));
        a.sweep();
        assert_eq!(a.tracked(), 1, "the source with a pending connection stays");
        drop(held);
        a.sweep();
        assert_eq!(a.tracked(), 0);
    }

    #[test]
    fn client_address_behind_trusted_proxies() {
        let a = admission(1, 1, 1, &["10.0.0.0/8", "2001:db8:ffff::/48"]);
        assert!(a.is_trusted_proxy("10.1.2.3".parse().unwrap()));
        assert!(a.is_trusted_proxy("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!a.is_trusted_proxy("192.0.2.1".parse().unwrap()));
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let xff = |lines: &[&'static str]| forwarded_client(&a, ProxyHeader::XForwardedFor, lines.iter().copied());
        let fwd = |lines: &[&'static str]| forwarded_client(&a, ProxyHeader::Forwarded, lines.iter().copied());
        // The rightmost untrusted hop: a client cannot forge what the proxy appended.
        assert_eq!(xff(&["203.0.113.9, 198.51.100.4, 10.0.0.2"]), ip("198.51.100.4"));
        assert_eq!(xff(&["203.0.113.9", "198.51.100.4"]), ip("198.51.100.4"));
        // Quoted IPv6 with a port, several header lines, other parameters, case-insensitive names.
        assert_eq!(
            fwd(&["for=192.0.2.60;proto=http;by=203.0.113.43", "For=\"[2001:db8:cafe::17]:4711\""]),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(fwd(&["for=192.0.2.43:8080, for=10.9.9.9"]), ip("192.0.2.43"));
        // Nothing usable: obfuscated, unknown, garbage, all trusted, absent.
        assert_eq!(fwd(&["for=_hidden, for=unknown"]), None);
        assert_eq!(xff(&["not an address"]), None);
        assert_eq!(xff(&["10.0.0.1, 2001:db8:ffff::1"]), None);
        assert_eq!(xff(&[]), None);
    }
}
