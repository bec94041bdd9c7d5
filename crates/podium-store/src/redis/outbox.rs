//! The webhook outbox and the audit log in Redis.
//!
//! # Keys
//!
//! A *lane* is a room name (or `@nodes`, for hub events); its keys carry its hash tag, so the commit script writes
//! them with the room's other keys:
//!
//! | key                        | type   | contents                                                                  |
//! |----------------------------|--------|---------------------------------------------------------------------------|
//! | `podium:{L}:hooks`         | list   | queued events, oldest first: `"<id> <type> <created_ms> <body>"`          |
//! | `podium:{L}:hookstate`     | hash   | `next` (events ever queued), `base` (number of the list's head), `dropped` (trimmed past the cap), `cur:<endpoint>` (number of the next event for it), `st:<endpoint>` (its retry state, JSON, opaque here), `dlv:<endpoint>` and `ok:<endpoint>` (deliveries and the last one's time, ms, not yet added to the shared counters) |
//! | `podium:{L}:hooklease`     | string | node id of the hub delivering the lane's events (`PX`, renewed)           |
//! | `podium:{R}:audit`         | stream | room `R`'s audit entries (field `e`, JSON), capped by `MAXLEN ~` / `MINID ~` |
//! | `podium:hooks:lanes`       | zset   | lanes that may have queued events → when a hub last wrote one (ms)        |
//! | `podium:hooks:endpoints`   | hash   | per endpoint counters and last results: `<endpoint>:delivered`, `:failed`, `:given_up`, `:last_error`, `:last_error_ms`, `:last_success_ms`, `:disabled` |
//!
//! Event number `n` of a lane sits at list index `n - base`. An endpoint's cursor below `base` (events trimmed
//! past the cap) counts as `base`; an endpoint without a cursor starts at `base`.
//!
//! # Counting deliveries
//!
//! A deliverer moves a cursor over a run of delivered events with one script ([`RedisStore::hooks_advance`]), which
//! also counts them (`dlv:<endpoint>`, `ok:<endpoint>` in the lane's hash): so a run of successes costs one write.
//! The shared counters live in another Cluster slot than the lane, so the script cannot add to them; the deliverer
//! moves the lane's counts there now and then ([`RedisStore::hooks_take_delivered`], then
//! [`RedisStore::hooks_record`]). A crash between those two loses the counts taken (never events).
//!
//! # The index and crashes
//!
//! The lane index is one key of its own (another Cluster slot than the rooms'), so it cannot be written by the
//! commit script. A writer adds the lane to it *before* the commit that queues events ([`RedisStore::hooks_touch`],
//! at least every [`TOUCH_EVERY`] while it keeps writing), so a crash between the two leaves at worst an index
//! entry without events. A deliverer removes a lane from the index only when its queue is empty and the entry has
//! not been touched for [`FORGET_AFTER`] ([`RedisStore::hooks_forget`], a conditional `ZREM`): a writer that
//! touched it less than that ago has already committed, so no queued event is ever left out of the index.

use std::time::Duration;

use super::{RedisStore, StoreError};

/// The index of lanes with (possibly) queued events.
pub const LANES_KEY: &str = "podium:hooks:lanes";
/// Per-endpoint delivery counters, shared by the hubs.
pub const ENDPOINTS_KEY: &str = "podium:hooks:endpoints";
/// A writer re-adds its lane to the index at least this often while it queues events.
pub const TOUCH_EVERY: Duration = Duration::from_secs(10);
/// An index entry untouched for this long, whose lane's queue is empty, may be removed.
pub const FORGET_AFTER: Duration = Duration::from_secs(60);

/// The outbox list of `lane`.
pub fn hooks_key(lane: &str) -> String {
    format!("podium:{{{lane}}}:hooks")
}

/// The outbox state hash of `lane`.
pub fn hookstate_key(lane: &str) -> String {
    format!("podium:{{{lane}}}:hookstate")
}

/// The delivery lease of `lane`.
pub fn hooklease_key(lane: &str) -> String {
    format!("podium:{{{lane}}}:hooklease")
}

/// The audit stream of `room`.
pub fn audit_key(room: &str) -> String {
    format!("podium:{{{room}}}:audit")
}

/// What a commit writes besides the transition: the room's webhook events and audit entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitExtras {
    /// Outbox entries, in order (`"<id> <type> <created_ms> <body>"`).
    pub hooks: Vec<String>,
    /// Most events the room's outbox keeps; the oldest beyond are dropped (and counted).
    pub hooks_cap: u64,
    /// Audit entries (JSON), in order.
    pub audit: Vec<String>,
    /// The audit stream's approximate length cap (`MAXLEN ~`).
    pub audit_max_len: u64,
    /// The audit stream's retention in ms (0: by count only).
    pub audit_max_age_ms: u64,
}

impl CommitExtras {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty() && self.audit.is_empty()
    }

    /// The commit script's trailing ARGV (see `COMMIT_LUA`).
    pub(super) fn args(&self) -> Vec<String> {
        let mut args = Vec::with_capacity(5 + self.hooks.len() + self.audit.len());
        args.push(self.hooks.len().to_string());
        args.push(self.hooks_cap.max(1).to_string());
        args.extend(self.hooks.iter().cloned());
        args.push(self.audit.len().to_string());
        args.push(self.audit_max_len.max(1).to_string());
        args.push(self.audit_max_age_ms.to_string());
        args.extend(self.audit.iter().cloned());
        args
    }
}

/// A lane's queue as one endpoint list sees it ([`RedisStore::hooks_peek`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LanePeek {
    /// Number of the oldest queued event.
    pub base: u64,
    /// Number the next queued event will get (events queued in all).
    pub next: u64,
    /// Events dropped past the cap, in all.
    pub dropped: u64,
    /// Per endpoint asked, in order.
    pub endpoints: Vec<EndpointPeek>,
}

/// One endpoint's place in a lane ([`LanePeek`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointPeek {
    /// Number of the next event for it.
    pub cursor: u64,
    /// Its retry state for the event at the cursor (opaque; empty when none).
    pub state: String,
    /// The events from its cursor on, oldest first, at most the window asked for (none when it is caught up).
    pub events: Vec<String>,
}

/// What [`RedisStore::hooks_advance`] stores for one endpoint of a lane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaneAdvance<'a> {
    /// The endpoint.
    pub endpoint: &'a str,
    /// Its new cursor (`None`: unchanged).
    pub cursor: Option<u64>,
    /// Its retry state for the event at the (new) cursor; `""` clears it.
    pub state: &'a str,
    /// Events delivered to it since the last advance (counted with the lane).
    pub delivered: u64,
    /// Now, ms since the epoch: the last success's time when `delivered > 0`.
    pub now_ms: u64,
}

/// Queue and trim a lane outside a commit. KEYS: hooks, hookstate. ARGV: cap, entries...
const APPEND_LUA: &str = r"
local cap = tonumber(ARGV[1])
for j = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[j]) end
local tail = redis.call('HINCRBY', KEYS[2], 'next', #ARGV - 1)
local base = tonumber(redis.call('HGET', KEYS[2], 'base') or '0')
if tail - base > cap then
  redis.call('LTRIM', KEYS[1], tail - base - cap, -1)
  redis.call('HSET', KEYS[2], 'base', tail - cap)
  redis.call('HINCRBY', KEYS[2], 'dropped', tail - base - cap)
end
return tail
";

/// KEYS: hooks, hookstate. ARGV: window (most events returned per endpoint), endpoint names. Returns `{base, next,
/// dropped}`, then per endpoint `{cursor, state, n, event1, ..., eventn}` (`''` for no state).
const PEEK_LUA: &str = r"
local base = tonumber(redis.call('HGET', KEYS[2], 'base') or '0')
local tail = tonumber(redis.call('HGET', KEYS[2], 'next') or '0')
local window = tonumber(ARGV[1])
local out = {tostring(base), tostring(tail), redis.call('HGET', KEYS[2], 'dropped') or '0'}
for j = 2, #ARGV do
  local c = tonumber(redis.call('HGET', KEYS[2], 'cur:' .. ARGV[j]) or base)
  if c < base then c = base end
  local items = {}
  if c < tail then
    local stop = c + window - 1
    if stop > tail - 1 then stop = tail - 1 end
    items = redis.call('LRANGE', KEYS[1], c - base, stop - base)
  end
  out[#out + 1] = string.format('%d', c)
  out[#out + 1] = redis.call('HGET', KEYS[2], 'st:' .. ARGV[j]) or ''
  out[#out + 1] = tostring(#items)
  for k = 1, #items do out[#out + 1] = items[k] end
end
return out
";

/// Moves one endpoint's cursor and/or sets its retry state and counts its deliveries, if this node still holds the
/// lane's lease, then trims what every active endpoint has passed. KEYS: hooks, hookstate, hooklease. ARGV: node,
/// endpoint, new cursor ('' for unchanged), state ('' to clear), delivered, now (ms), then the active endpoints.
/// Returns -1 without the lease, else the events still queued for the slowest active endpoint.
const ADVANCE_LUA: &str = r"
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return -1 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], 'cur:' .. ARGV[2], ARGV[3]) end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], 'st:' .. ARGV[2], ARGV[4])
else
  redis.call('HDEL', KEYS[2], 'st:' .. ARGV[2])
end
if tonumber(ARGV[5]) > 0 then
  redis.call('HINCRBY', KEYS[2], 'dlv:' .. ARGV[2], ARGV[5])
  redis.call('HSET', KEYS[2], 'ok:' .. ARGV[2], ARGV[6])
end
local base = tonumber(redis.call('HGET', KEYS[2], 'base') or '0')
local tail = tonumber(redis.call('HGET', KEYS[2], 'next') or '0')
local low = tail
for j = 7, #ARGV do
  local c = tonumber(redis.call('HGET', KEYS[2], 'cur:' .. ARGV[j]) or base)
  if c < base then c = base end
  if c < low then low = c end
end
if low > base then
  redis.call('LTRIM', KEYS[1], low - base, -1)
  redis.call('HSET', KEYS[2], 'base', string.format('%d', low))
end
return tail - low
";

/// Takes (reads and clears) the deliveries counted with a lane. KEYS: hookstate. ARGV: endpoint names. Returns
/// `{delivered1, ok1, ...}` (`'0'` when none).
const TAKE_LUA: &str = r"
local out = {}
for j = 1, #ARGV do
  out[#out + 1] = redis.call('HGET', KEYS[1], 'dlv:' .. ARGV[j]) or '0'
  out[#out + 1] = redis.call('HGET', KEYS[1], 'ok:' .. ARGV[j]) or '0'
  redis.call('HDEL', KEYS[1], 'dlv:' .. ARGV[j], 'ok:' .. ARGV[j])
end
return out
";

/// Takes or renews a lane's delivery lease. KEYS: hooklease. ARGV: node, ms. 1 when held.
pub(crate) const LEASE_LUA: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]); return 1 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]); return 1 end
return 0
";

/// Gives a lane's lease up if held. KEYS: hooklease. ARGV: node.
pub(crate) const UNLEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Removes a lane from the index if its entry is older than ARGV[2] (ms). KEYS: the index. ARGV: lane, limit.
const FORGET_LUA: &str = r"
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) < tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
";

impl RedisStore {
    /// Adds `lane` to the index of lanes with queued events, stamped `now_ms` (before queueing events: see the
    /// module documentation). One `ZADD`.
    pub async fn hooks_touch(&self, lane: &str, now_ms: u64) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("ZADD");
        cmd.arg(LANES_KEY).arg(now_ms).arg(lane);
        self.link.run(|mut conn| async move { cmd.query_async::<i64>(&mut conn).await }).await.map(drop)
    }

    /// Queues `entries` on `lane` outside a transition (hub events): touches the index, then one script.
    pub async fn hooks_append(&self, lane: &str, entries: &[String], cap: u64, now_ms: u64) -> Result<(), StoreError> {
        self.hooks_touch(lane, now_ms).await?;
        let script = ::redis::Script::new(APPEND_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(hooks_key(lane)).key(hookstate_key(lane)).arg(cap.max(1));
        for entry in entries {
            invocation.arg(entry);
        }
        self.link.run(|mut conn| async move { invocation.invoke_async::<i64>(&mut conn).await }).await.map(drop)
    }

    /// Up to `limit` lanes of the index, oldest entry first, with their stamps, and how many there are in all.
    pub async fn hooks_lanes(&self, limit: usize) -> Result<(Vec<(String, u64)>, u64), StoreError> {
        let stop = i64::try_from(limit).unwrap_or(i64::MAX).max(1) - 1;
        let mut pipe = ::redis::pipe();
        pipe.cmd("ZRANGE").arg(LANES_KEY).arg(0).arg(stop).arg("WITHSCORES").cmd("ZCARD").arg(LANES_KEY);
        let (lanes, total): (Vec<(String, f64)>, u64) =
            self.link.run(|mut conn| async move { pipe.query_async(&mut conn).await }).await?;
        // Stamps are milliseconds written as integers: exact in a double.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let lanes = lanes.into_iter().map(|(lane, score)| (lane, score.max(0.0) as u64)).collect();
        Ok((lanes, total))
    }

    /// Takes (or renews) `lane`'s delivery lease for `node`; true when held for `lease` from now.
    pub async fn hooks_lease(&self, lane: &str, node: &str, lease: Duration) -> Result<bool, StoreError> {
        let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let script = ::redis::Script::new(LEASE_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(hooklease_key(lane)).arg(node).arg(ms);
        let held: i64 = self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(held == 1)
    }

    /// Gives `lane`'s delivery lease up if `node` holds it.
    pub async fn hooks_unlease(&self, lane: &str, node: &str) -> Result<(), StoreError> {
        let script = ::redis::Script::new(UNLEASE_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(hooklease_key(lane)).arg(node);
        self.link.run(|mut conn| async move { invocation.invoke_async::<i64>(&mut conn).await }).await.map(drop)
    }

    /// `lane`'s queue as `endpoints` see it, with up to `window` (at least 1) events from each one's cursor: one
    /// script.
    pub async fn hooks_peek(&self, lane: &str, endpoints: &[&str], window: usize) -> Result<LanePeek, StoreError> {
        let script = ::redis::Script::new(PEEK_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(hooks_key(lane)).key(hookstate_key(lane)).arg(window.max(1));
        for e in endpoints {
            invocation.arg(*e);
        }
        let reply: Vec<String> =
            self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        let corrupt = |what: &str| StoreError::Corrupt(format!("outbox of {lane:?}: {what}"));
        let num = |s: &str| s.parse::<u64>().map_err(|_| corrupt("not a number"));
        let (head, mut rest) = reply.split_at_checked(3).ok_or_else(|| corrupt("short reply"))?;
        let mut peeked = Vec::with_capacity(endpoints.len());
        for _ in endpoints {
            let [cursor, state, n, tail @ ..] = rest else { return Err(corrupt("short reply")) };
            let n = usize::try_from(num(n)?).map_err(|_| corrupt("count"))?;
            let (events, tail) = tail.split_at_checked(n).ok_or_else(|| corrupt("short reply"))?;
            peeked.push(EndpointPeek { cursor: num(cursor)?, state: state.clone(), events: events.to_vec() });
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(corrupt("reply length"));
        }
        Ok(LanePeek { base: num(&head[0])?, next: num(&head[1])?, dropped: num(&head[2])?, endpoints: peeked })
    }

    /// Stores `advance` (an endpoint's cursor when given, its retry state, its deliveries since the last advance)
    /// on `lane`, then trims what all `active` endpoints have passed; only while `node` holds the lane's lease. One
    /// script. `None` when it does not hold it, else how many events the slowest active endpoint still has queued.
    pub async fn hooks_advance(
        &self,
        lane: &str,
        node: &str,
        advance: &LaneAdvance<'_>,
        active: &[&str],
    ) -> Result<Option<u64>, StoreError> {
        let script = ::redis::Script::new(ADVANCE_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(hooks_key(lane)).key(hookstate_key(lane)).key(hooklease_key(lane));
        invocation
            .arg(node)
            .arg(advance.endpoint)
            .arg(advance.cursor.map(|c| c.to_string()).unwrap_or_default())
            .arg(advance.state)
            .arg(advance.delivered)
            .arg(advance.now_ms);
        for e in active {
            invocation.arg(*e);
        }
        let left: i64 = self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(u64::try_from(left).ok())
    }

    /// Takes the deliveries counted with `lane` for `endpoints` (clearing them): per endpoint, in order, how many
    /// and the last one's time (ms; 0 when none). One script; the caller adds them to the shared counters.
    pub async fn hooks_take_delivered(&self, lane: &str, endpoints: &[&str]) -> Result<Vec<(u64, u64)>, StoreError> {
        let script = ::redis::Script::new(TAKE_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(hookstate_key(lane));
        for e in endpoints {
            invocation.arg(*e);
        }
        let reply: Vec<String> =
            self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        if reply.len() != 2 * endpoints.len() {
            return Err(StoreError::Corrupt(format!("outbox of {lane:?}: reply length")));
        }
        // A non-number (never written so) counts as none rather than failing the lane's delivery.
        Ok(reply.chunks_exact(2).map(|c| (c[0].parse().unwrap_or(0), c[1].parse().unwrap_or(0))).collect())
    }

    /// Removes `lane` from the index if its entry was last touched before `before_ms` (the caller saw its queue
    /// empty). True when removed.
    pub async fn hooks_forget(&self, lane: &str, before_ms: u64) -> Result<bool, StoreError> {
        let script = ::redis::Script::new(FORGET_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(LANES_KEY).arg(lane).arg(before_ms);
        let removed: i64 = self.link.run(|mut conn| async move { invocation.invoke_async(&mut conn).await }).await?;
        Ok(removed == 1)
    }

    /// Adds to an endpoint's counters (`field` → increment) and sets its text fields, in the shared endpoints hash.
    pub async fn hooks_record(
        &self,
        endpoint: &str,
        counters: &[(&str, i64)],
        fields: &[(&str, String)],
    ) -> Result<(), StoreError> {
        let mut pipe = ::redis::pipe();
        for (name, by) in counters {
            pipe.cmd("HINCRBY").arg(ENDPOINTS_KEY).arg(format!("{endpoint}:{name}")).arg(*by).ignore();
        }
        for (name, value) in fields {
            pipe.cmd("HSET").arg(ENDPOINTS_KEY).arg(format!("{endpoint}:{name}")).arg(value).ignore();
        }
        self.link.run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await }).await
    }

    /// Clears an endpoint's text field (such as `disabled`).
    pub async fn hooks_clear(&self, endpoint: &str, field: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("HDEL");
        cmd.arg(ENDPOINTS_KEY).arg(format!("{endpoint}:{field}"));
        self.link.run(|mut conn| async move { cmd.query_async::<i64>(&mut conn).await }).await.map(drop)
    }

    /// The shared endpoints hash: `<endpoint>:<field>` → value.
    pub async fn hooks_endpoints(&self) -> Result<std::collections::HashMap<String, String>, StoreError> {
        let mut cmd = ::redis::cmd("HGETALL");
        cmd.arg(ENDPOINTS_KEY);
        self.link.run(|mut conn| async move { cmd.query_async(&mut conn).await }).await
    }

    /// Up to `limit` entries of `room`'s audit stream after the entry `after` (from the start when `None`): `(id,
    /// entry)` pairs, oldest first. One `XRANGE`.
    pub async fn audit(
        &self,
        room: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut cmd = ::redis::cmd("XRANGE");
        cmd.arg(audit_key(room)).arg(after.map_or_else(|| "-".to_owned(), |a| format!("({a}"))).arg("+");
        cmd.arg("COUNT").arg(limit.max(1));
        let entries: Vec<(String, Vec<String>)> =
            self.link.run(|mut conn| async move { cmd.query_async(&mut conn).await }).await?;
        Ok(entries
            .into_iter()
            .filter_map(|(id, fields)| {
                let at = fields.iter().position(|f| f == "e")?;
                Some((id, fields.get(at + 1)?.clone()))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_keys_share_the_room_hash_tag() {
        assert_eq!(hooks_key("demo"), "podium:{demo}:hooks");
        assert_eq!(hookstate_key("demo"), "podium:{demo}:hookstate");
        assert_eq!(hooklease_key("demo"), "podium:{demo}:hooklease");
        assert_eq!(audit_key("demo"), "podium:{demo}:audit");
    }

    #[test]
    fn extras_args_follow_the_script() {
        let extras = CommitExtras {
            hooks: vec!["a".into(), "b".into()],
            hooks_cap: 10,
            audit: vec!["x".into()],
            audit_max_len: 100,
            audit_max_age_ms: 0,
        };
        assert_eq!(extras.args(), ["2", "10", "a", "b", "1", "100", "0", "x"]);
    }
}
