//! Where the summit scheduler keeps its schedules, its run state and its lease, and where stage rooms and the
//! scheduler meet (the stage control record).
//!
//! # Model
//!
//! A summit is a set of named **documents** (opaque text, JSON for the hub: the work-in-progress schedule, the
//! releases, the import's display data), each with a version that every write bumps. A write may name the version
//! it read ([`SummitStore::doc_put`] with `expect`), and is refused with [`StoreError::Conflict`] when another write
//! came first: two organisers releasing at once cannot lose each other's release.
//!
//! One hub at a time runs a summit: the holder of its **lease** ([`SummitStore::lease`], renewed; the in-memory
//! store has one hub, which always gets it). The runner's state per stage ([`SummitStore::runs_put`]) is written
//! only while the writer holds the lease, in the same atomic step as the check (**fencing**): a runner that lost
//! its lease (paused, partitioned) cannot overwrite its successor's state.
//!
//! Commands for the runner (start, end, extend, cancel, check in) go through the summit's **inbox**, a list any
//! hub appends to and the runner drains; the runner leaves each answer under the command's id
//! ([`SummitStore::result_put`]) for the hub that asked, which takes it once.
//!
//! The **stage control record** of a room ([`StageCtl`]) is how the scheduler and the room's hubs talk without
//! knowing where each other runs: the scheduler writes the room's `schedule` view and the `filler` it wants
//! played; the room's media hub writes when a real speaker was last `heard`, and plays or stops the filler to match.
//!
//! # Redis keys
//!
//! | key | type | contents |
//! |---|---|---|
//! | `podium:summits` | set | summit ids |
//! | `podium:{summit:S}:doc` | hash | `<name>` → document, `<name>#v` → its version |
//! | `podium:{summit:S}:lease` | string | node id of the hub running the summit (`PX`, renewed) |
//! | `podium:{summit:S}:run` | hash | stage id → the runner's record (opaque) |
//! | `podium:{summit:S}:inbox` | list | commands for the runner, oldest first (capped at [`INBOX_MAX`]) |
//! | `podium:{summit:S}:results` | hash | command id → answer; the hash expires [`RESULT_TTL`] after its last write |
//! | `podium:{R}:stagectl` | hash | room `R`'s `schedule`, `filler`, `heard` |
//!
//! The summit's keys share a hash tag, so its scripts stay within one Cluster slot.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::StoreError;
use crate::redis::RedisStore;
// The same lease scripts as the webhook lanes' (take or renew; give up if held).
use crate::redis::outbox::{LEASE_LUA, UNLEASE_LUA};

/// The most commands a summit's inbox holds; a push beyond is refused.
pub const INBOX_MAX: usize = 1_000;
/// How long an answer waits to be taken.
pub const RESULT_TTL: Duration = Duration::from_secs(60);
/// The set of summit ids.
pub const SUMMITS_KEY: &str = "podium:summits";

/// A document and its version (1 for the first write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// Bumped by every write.
    pub version: u64,
    /// The text.
    pub body: String,
}

/// What the scheduler and a stage room's hubs share (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageCtl {
    /// The room's `schedule` view (JSON), written by the scheduler.
    pub schedule: Option<String>,
    /// The filler file the scheduler wants played into the room now.
    pub filler: Option<String>,
    /// When a real speaker was last heard in the room (ms since the Unix epoch), written by its media hub.
    pub heard_ms: Option<u64>,
}

/// A field of the stage control record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtlField {
    /// [`StageCtl::schedule`].
    Schedule,
    /// [`StageCtl::filler`].
    Filler,
    /// [`StageCtl::heard_ms`].
    Heard,
}

impl CtlField {
    fn name(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Filler => "filler",
            Self::Heard => "heard",
        }
    }
}

/// The summit scheduler's storage. Every method is atomic.
pub trait SummitStore: Send + Sync + 'static {
    /// Every summit id, sorted.
    fn summit_ids(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// A summit's document `name`.
    fn doc_get(&self, summit: &str, name: &str) -> impl Future<Output = Result<Option<Versioned>, StoreError>> + Send;
    /// The version of document `name` (0: absent), without its text.
    fn doc_version(&self, summit: &str, name: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Writes document `name` and returns its new version. `expect`: `None` writes whatever is there; `Some(0)`
    /// only if it does not exist; `Some(v)` only if it is at version `v` (else [`StoreError::Conflict`] with what
    /// is there). Adds the summit to the set of summits.
    fn doc_put(
        &self,
        summit: &str,
        name: &str,
        body: &str,
        expect: Option<u64>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Removes a summit: its documents, run state, inbox, answers and lease.
    fn summit_delete(&self, summit: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Takes (or renews) the summit's lease for `node`; true when held for `ttl` from now.
    fn lease(&self, summit: &str, node: &str, ttl: Duration) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Gives the lease up if `node` holds it.
    fn unlease(&self, summit: &str, node: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Who holds the lease.
    fn lease_holder(&self, summit: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// The runner's records, by stage.
    fn runs_get(&self, summit: &str) -> impl Future<Output = Result<BTreeMap<String, String>, StoreError>> + Send;
    /// Writes runner records (stage, record) if `node` holds the lease; false (nothing written) otherwise.
    fn runs_put(
        &self,
        summit: &str,
        node: &str,
        records: &[(String, String)],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Appends a command to the inbox; [`StoreError::Conflict`] when it holds [`INBOX_MAX`].
    fn inbox_push(&self, summit: &str, command: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Takes up to `max` commands, oldest first.
    fn inbox_take(&self, summit: &str, max: usize) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Leaves the answer to command `id`.
    fn result_put(&self, summit: &str, id: &str, body: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Takes the answer to command `id`, if there is one.
    fn result_take(&self, summit: &str, id: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// A room's stage control record.
    fn ctl_get(&self, room: &str) -> impl Future<Output = Result<StageCtl, StoreError>> + Send;
    /// Sets (`Some`) or clears (`None`) a field of a room's stage control record.
    fn ctl_set(
        &self,
        room: &str,
        field: CtlField,
        value: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

fn doc_key(summit: &str) -> String {
    format!("podium:{{summit:{summit}}}:doc")
}
fn lease_key(summit: &str) -> String {
    format!("podium:{{summit:{summit}}}:lease")
}
fn run_key(summit: &str) -> String {
    format!("podium:{{summit:{summit}}}:run")
}
fn inbox_key(summit: &str) -> String {
    format!("podium:{{summit:{summit}}}:inbox")
}
fn results_key(summit: &str) -> String {
    format!("podium:{{summit:{summit}}}:results")
}
fn ctl_key(room: &str) -> String {
    format!("podium:{{{room}}}:stagectl")
}

/// Writes a document if its version matches. KEYS: doc. ARGV: name, body, expect (-1: any). Returns the new
/// version, or `-1 - found` on a mismatch.
const DOC_PUT_LUA: &str = r"
local v = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. '#v') or '0')
local expect = tonumber(ARGV[3])
if expect >= 0 and expect ~= v then return -1 - v end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[1] .. '#v', v + 1)
return v + 1
";

/// Writes run records if the lease is held. KEYS: lease, run. ARGV: node, stage, record, stage, record, ...
const RUNS_PUT_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
";

/// Appends to the inbox below its cap. KEYS: inbox. ARGV: command, cap.
const INBOX_PUSH_LUA: &str = r"
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
return 1
";

/// Takes up to ARGV[1] commands. KEYS: inbox.
const INBOX_TAKE_LUA: &str = r"
local n = tonumber(ARGV[1])
local items = redis.call('LRANGE', KEYS[1], 0, n - 1)
if #items > 0 then redis.call('LTRIM', KEYS[1], #items, -1) end
return items
";

/// Takes an answer. KEYS: results. ARGV: id.
const RESULT_TAKE_LUA: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then redis.call('HDEL', KEYS[1], ARGV[1]) end
return v
";

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl SummitStore for RedisStore {
    async fn summit_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut ids: Vec<String> = self.run_cmd(::redis::cmd("SMEMBERS").arg(SUMMITS_KEY).to_owned()).await?;
        ids.sort();
        Ok(ids)
    }

    async fn doc_get(&self, summit: &str, name: &str) -> Result<Option<Versioned>, StoreError> {
        let (body, version): (Option<String>, Option<u64>) = self
            .run_cmd(::redis::cmd("HMGET").arg(doc_key(summit)).arg(name).arg(format!("{name}#v")).to_owned())
            .await?;
        Ok(body.map(|body| Versioned { version: version.unwrap_or(1), body }))
    }

    async fn doc_version(&self, summit: &str, name: &str) -> Result<u64, StoreError> {
        let v: Option<u64> =
            self.run_cmd(::redis::cmd("HGET").arg(doc_key(summit)).arg(format!("{name}#v")).to_owned()).await?;
        Ok(v.unwrap_or(0))
    }

    async fn doc_put(&self, summit: &str, name: &str, body: &str, expect: Option<u64>) -> Result<u64, StoreError> {
        let expect_arg = expect.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let script = ::redis::Script::new(DOC_PUT_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(doc_key(summit)).arg(name).arg(body).arg(expect_arg);
        let v: i64 = self.run_script(invocation).await?;
        if v < 0 {
            let found = u64::try_from(-1 - v).unwrap_or(0);
            return Err(StoreError::Conflict { expected: expect.unwrap_or(0), found: (found > 0).then_some(found) });
        }
        self.run_cmd::<i64>(::redis::cmd("SADD").arg(SUMMITS_KEY).arg(summit).to_owned()).await?;
        Ok(u64::try_from(v).unwrap_or(0))
    }

    async fn summit_delete(&self, summit: &str) -> Result<(), StoreError> {
        let keys = [doc_key(summit), lease_key(summit), run_key(summit), inbox_key(summit), results_key(summit)];
        self.run_cmd::<i64>(::redis::cmd("DEL").arg(&keys).to_owned()).await?;
        self.run_cmd::<i64>(::redis::cmd("SREM").arg(SUMMITS_KEY).arg(summit).to_owned()).await?;
        Ok(())
    }

    async fn lease(&self, summit: &str, node: &str, ttl: Duration) -> Result<bool, StoreError> {
        let script = ::redis::Script::new(LEASE_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(lease_key(summit)).arg(node).arg(ms(ttl));
        let held: i64 = self.run_script(invocation).await?;
        Ok(held == 1)
    }

    async fn unlease(&self, summit: &str, node: &str) -> Result<(), StoreError> {
        let script = ::redis::Script::new(UNLEASE_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(lease_key(summit)).arg(node);
        self.run_script::<i64>(invocation).await.map(drop)
    }

    async fn lease_holder(&self, summit: &str) -> Result<Option<String>, StoreError> {
        self.run_cmd(::redis::cmd("GET").arg(lease_key(summit)).to_owned()).await
    }

    async fn runs_get(&self, summit: &str) -> Result<BTreeMap<String, String>, StoreError> {
        self.run_cmd(::redis::cmd("HGETALL").arg(run_key(summit)).to_owned()).await
    }

    async fn runs_put(&self, summit: &str, node: &str, records: &[(String, String)]) -> Result<bool, StoreError> {
        let script = ::redis::Script::new(RUNS_PUT_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(lease_key(summit)).key(run_key(summit)).arg(node);
        for (stage, record) in records {
            invocation.arg(stage).arg(record);
        }
        let ok: i64 = self.run_script(invocation).await?;
        Ok(ok == 1)
    }

    async fn inbox_push(&self, summit: &str, command: &str) -> Result<(), StoreError> {
        let script = ::redis::Script::new(INBOX_PUSH_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(inbox_key(summit)).arg(command).arg(INBOX_MAX);
        let ok: i64 = self.run_script(invocation).await?;
        if ok == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict { expected: INBOX_MAX as u64, found: Some(INBOX_MAX as u64) })
        }
    }

    async fn inbox_take(&self, summit: &str, max: usize) -> Result<Vec<String>, StoreError> {
        let script = ::redis::Script::new(INBOX_TAKE_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(inbox_key(summit)).arg(max.max(1));
        self.run_script(invocation).await
    }

    async fn result_put(&self, summit: &str, id: &str, body: &str) -> Result<(), StoreError> {
        let key = results_key(summit);
        let mut pipe = ::redis::pipe();
        pipe.atomic().hset(&key, id, body).ignore().pexpire(&key, ms(RESULT_TTL) as i64).ignore();
        self.run_pipe(pipe).await
    }

    async fn result_take(&self, summit: &str, id: &str) -> Result<Option<String>, StoreError> {
        let script = ::redis::Script::new(RESULT_TAKE_LUA);
        let mut invocation = script.prepare_invoke();
        invocation.key(results_key(summit)).arg(id);
        self.run_script(invocation).await
    }

    async fn ctl_get(&self, room: &str) -> Result<StageCtl, StoreError> {
        let (schedule, filler, heard): (Option<String>, Option<String>, Option<u64>) = self
            .run_cmd(::redis::cmd("HMGET").arg(ctl_key(room)).arg("schedule").arg("filler").arg("heard").to_owned())
            .await?;
        Ok(StageCtl { schedule, filler, heard_ms: heard })
    }

    async fn ctl_set(&self, room: &str, field: CtlField, value: Option<&str>) -> Result<(), StoreError> {
        let cmd = match value {
            Some(v) => ::redis::cmd("HSET").arg(ctl_key(room)).arg(field.name()).arg(v).to_owned(),
            None => ::redis::cmd("HDEL").arg(ctl_key(room)).arg(field.name()).to_owned(),
        };
        self.run_cmd::<i64>(cmd).await.map(drop)
    }
}

/// The summit store of the in-memory store: one process, so the lease is always this hub's.
#[derive(Default)]
pub struct MemorySummits {
    inner: Mutex<MemoryInner>,
}

#[derive(Default)]
struct MemoryInner {
    docs: BTreeMap<String, HashMap<String, Versioned>>,
    leases: HashMap<String, (String, Instant)>,
    runs: HashMap<String, BTreeMap<String, String>>,
    inbox: HashMap<String, VecDeque<String>>,
    results: HashMap<(String, String), (String, Instant)>,
    ctl: HashMap<String, StageCtl>,
}

impl MemorySummits {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl MemoryInner {
    fn holds(&self, summit: &str, node: &str) -> bool {
        self.leases.get(summit).is_some_and(|(n, until)| n == node && *until > Instant::now())
    }
}

impl SummitStore for MemorySummits {
    async fn summit_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().docs.keys().cloned().collect())
    }

    async fn doc_get(&self, summit: &str, name: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.lock().docs.get(summit).and_then(|d| d.get(name)).cloned())
    }

    async fn doc_version(&self, summit: &str, name: &str) -> Result<u64, StoreError> {
        Ok(self.lock().docs.get(summit).and_then(|d| d.get(name)).map_or(0, |d| d.version))
    }

    async fn doc_put(&self, summit: &str, name: &str, body: &str, expect: Option<u64>) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let docs = inner.docs.entry(summit.to_owned()).or_default();
        let found = docs.get(name).map_or(0, |d| d.version);
        if let Some(e) = expect
            && e != found
        {
            return Err(StoreError::Conflict { expected: e, found: (found > 0).then_some(found) });
        }
        docs.insert(name.to_owned(), Versioned { version: found + 1, body: body.to_owned() });
        Ok(found + 1)
    }

    async fn summit_delete(&self, summit: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.docs.remove(summit);
        inner.leases.remove(summit);
        inner.runs.remove(summit);
        inner.inbox.remove(summit);
        inner.results.retain(|(s, _), _| s != summit);
        Ok(())
    }

    async fn lease(&self, summit: &str, node: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.leases.get(summit) {
            Some((n, until)) if n != node && *until > now => Ok(false),
            _ => {
                inner.leases.insert(summit.to_owned(), (node.to_owned(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn unlease(&self, summit: &str, node: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.leases.get(summit).is_some_and(|(n, _)| n == node) {
            inner.leases.remove(summit);
        }
        Ok(())
    }

    async fn lease_holder(&self, summit: &str) -> Result<Option<String>, StoreError> {
        let inner = self.lock();
        Ok(inner.leases.get(summit).filter(|(_, until)| *until > Instant::now()).map(|(n, _)| n.clone()))
    }

    async fn runs_get(&self, summit: &str) -> Result<BTreeMap<String, String>, StoreError> {
        Ok(self.lock().runs.get(summit).cloned().unwrap_or_default())
    }

    async fn runs_put(&self, summit: &str, node: &str, records: &[(String, String)]) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if !inner.holds(summit, node) {
            return Ok(false);
        }
        let runs = inner.runs.entry(summit.to_owned()).or_default();
        for (stage, record) in records {
            runs.insert(stage.clone(), record.clone());
        }
        Ok(true)
    }

    async fn inbox_push(&self, summit: &str, command: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let inbox = inner.inbox.entry(summit.to_owned()).or_default();
        if inbox.len() >= INBOX_MAX {
            return Err(StoreError::Conflict { expected: INBOX_MAX as u64, found: Some(INBOX_MAX as u64) });
        }
        inbox.push_back(command.to_owned());
        Ok(())
    }

    async fn inbox_take(&self, summit: &str, max: usize) -> Result<Vec<String>, StoreError> {
        let mut inner = self.lock();
        let Some(inbox) = inner.inbox.get_mut(summit) else { return Ok(Vec::new()) };
        let n = max.max(1).min(inbox.len());
        Ok(inbox.drain(..n).collect())
    }

    async fn result_put(&self, summit: &str, id: &str, body: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.results.retain(|_, (_, until)| *until > now);
        inner.results.insert((summit.to_owned(), id.to_owned()), (body.to_owned(), now + RESULT_TTL));
        Ok(())
    }

    async fn result_take(&self, summit: &str, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().results.remove(&(summit.to_owned(), id.to_owned())).map(|(b, _)| b))
    }

    async fn ctl_get(&self, room: &str) -> Result<StageCtl, StoreError> {
        Ok(self.lock().ctl.get(room).cloned().unwrap_or_default())
    }

    async fn ctl_set(&self, room: &str, field: CtlField, value: Option<&str>) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let ctl = inner.ctl.entry(room.to_owned()).or_default();
        match field {
            CtlField::Schedule => ctl.schedule = value.map(str::to_owned),
            CtlField::Filler => ctl.filler = value.map(str::to_owned),
            CtlField::Heard => ctl.heard_ms = value.and_then(|v| v.parse().ok()),
        }
        if *ctl == StageCtl::default() {
            inner.ctl.remove(room);
        }
        Ok(())
    }
}
