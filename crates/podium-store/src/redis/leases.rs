//! Lease work in batches per hub: one pipeline renews (or watches) the lease of every room a hub runs a task for,
//! and one pipeline carries a hub's heartbeat with its reading of the node registry. So a hub's lease traffic is
//! three round trips per second whatever its number of rooms, instead of two per room. On a Cluster a pipeline must
//! stay within one slot, so there the batch's claims are sent side by side on the multiplexed cluster connection
//! (the batch still waits about one round trip, but each claim is its own command on the wire).
//!
//! Each room's claim is still its own script ([`CLAIM_MEDIA_LUA`]) with its own keys, so a batch works unchanged on
//! a Cluster and a room's claim means exactly what [`RedisStore::claim_media`] means. A batch is not atomic and
//! need not be: claims of different rooms are independent.
//!
//! The rooms whose lease a hub holds are also listed under [`held_key`] (a set with an expiry its heartbeat renews):
//! when a hub dies, a live hub reads its list and starts a task for each of those rooms, so a room whose other hubs
//! had no connection in it (and so no task) is still taken over and its participants' grace periods run.

use std::time::Duration;

use ::redis::{ErrorKind, RedisResult, ServerErrorKind, Value};
use futures_util::future::join_all;

use super::{Lease, NODES_KEY, NodeInfo, NodeStatus, RedisStore, claims_key, media_key, owner_key};
use crate::StoreError;

/// A hub's batched renewals record its watch of each lease every this many batches (see
/// [`RedisStore::claim_media_many`]): every 30 s at one batch per 0.5 s.
pub const WATCH_EVERY: u64 = 60;

/// At most this many rooms' claims go in one pipeline (more are sent in several, one after the other).
pub const LEASE_BATCH: usize = 1024;

/// What [`CLAIM_MEDIA_LUA`](super::CLAIM_MEDIA_LUA) answers: held (1 or 0), holder, epoch.
type ClaimReply = (i64, String, u64);

/// A room's owner and media keys, as read.
type LeaseKeys = (Option<String>, Option<String>);

/// How long a hub's list of held rooms outlives its last heartbeat (each heartbeat renews it).
const HELD_TTL: Duration = Duration::from_secs(60);

/// The set of rooms whose lease hub `node` holds (or held until it died): see the module docs.
pub fn held_key(node: &str) -> String {
    format!("podium:held:{node}")
}

impl RedisStore {
    /// [`RedisStore::claim_media`] for each of `rooms` (see the module docs): one result per room, in order. A hub
    /// that has to read the script into Redis again (after a Redis restart) does so for the rooms that said so.
    /// Without `watch`, renewing a lease this node holds only extends it (three commands, see
    /// [`CLAIM_MEDIA_LUA`](super::CLAIM_MEDIA_LUA)); with it, the claim also records the node's watch, which a hub
    /// asks for every [`WATCH_EVERY`] batches so that others see it is alive.
    pub async fn claim_media_many(
        &self,
        rooms: &[&str],
        node: &str,
        lease: Duration,
        watch: bool,
    ) -> Vec<Result<Lease, StoreError>> {
        let ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let (contact, grace) = (ms * 2 / 3, ms.saturating_mul(2));
        let hash = self.claim_media_script.get_hash();
        let mut out = Vec::with_capacity(rooms.len());
        for chunk in rooms.chunks(LEASE_BATCH) {
            if self.link.is_cluster() {
                // A cluster pipeline must stay within one slot: send the claims side by side instead (the cluster
                // connection multiplexes them, so the batch still waits about one round trip).
                out.extend(
                    join_all(chunk.iter().map(|room| self.claim_media_watching(room, node, lease, watch))).await,
                );
                continue;
            }
            let mut pipe = ::redis::pipe();
            pipe.ignore_errors();
            for room in chunk {
                pipe.cmd("EVALSHA").arg(hash).arg(3).arg(owner_key(room)).arg(media_key(room)).arg(claims_key(room));
                pipe.arg(node).arg(ms).arg(contact).arg(grace).arg(u8::from(watch));
            }
            let replies: Result<Vec<RedisResult<ClaimReply>>, StoreError> =
                self.link.run(|mut conn| async move { pipe.query_async(&mut conn).await }).await;
            let replies = match replies {
                Ok(replies) => replies,
                Err(e) => {
                    out.extend(chunk.iter().map(|_| Err(e.clone())));
                    continue;
                }
            };
            let mut replies = replies.into_iter();
            for room in chunk {
                let lease_of = match replies.next() {
                    Some(Ok((held, holder, epoch))) => Ok(Lease { held: held == 1, holder: Some(holder), epoch }),
                    Some(Err(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                        // `claim_media` loads the script and runs it.
                        self.claim_media_watching(room, node, lease, watch).await
                    }
                    Some(Err(e)) => Err(super::unavailable(&e)),
                    None => Err(StoreError::Unavailable("redis answered fewer claims than were sent".into())),
                };
                out.push(lease_of);
            }
        }
        out
    }

    /// [`RedisStore::media_holder`] for each of `rooms`, in one pipeline per [`LEASE_BATCH`] rooms (a draining hub
    /// watches its rooms move).
    pub async fn media_holders(&self, rooms: &[&str], node: &str) -> Vec<Result<Lease, StoreError>> {
        let mut out = Vec::with_capacity(rooms.len());
        for chunk in rooms.chunks(LEASE_BATCH) {
            if self.link.is_cluster() {
                out.extend(join_all(chunk.iter().map(|room| self.media_holder(room, node))).await);
                continue;
            }
            let mut pipe = ::redis::pipe();
            for room in chunk {
                pipe.cmd("MGET").arg(owner_key(room)).arg(media_key(room));
            }
            let replies: Result<Vec<LeaseKeys>, StoreError> =
                self.link.run(|mut conn| async move { pipe.query_async(&mut conn).await }).await;
            match replies {
                Ok(replies) if replies.len() == chunk.len() => {
                    out.extend(replies.into_iter().map(|(holder, media)| Ok(super::lease_of(holder, media, node))));
                }
                Ok(_) => out.extend(
                    chunk
                        .iter()
                        .map(|_| Err(StoreError::Unavailable("redis answered fewer reads than were sent".into()))),
                ),
                Err(e) => out.extend(chunk.iter().map(|_| Err(e.clone()))),
            }
        }
        out
    }

    /// Records hub `info.id`'s heartbeat ([`RedisStore::heartbeat`]), renews its list of held rooms ([`held_key`]),
    /// and reads the node registry ([`RedisStore::nodes`]), in one pipeline: one round trip per second per hub.
    pub async fn heartbeat_and_nodes(&self, info: &NodeInfo, ttl: Duration) -> Result<Vec<NodeStatus>, StoreError> {
        if self.link.is_cluster() {
            // The registry and the held list are in different slots: side by side, not in one pipeline.
            let (beat, held) = tokio::join!(self.heartbeat(info), self.expire_held(&info.id));
            beat?;
            held?;
            return self.nodes(ttl).await;
        }
        let (head, limit_ms) = (super::heartbeat_head(info), super::nodes_limit_ms(ttl));
        let mut pipe = ::redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("EVALSHA").arg(self.heartbeat_script.get_hash()).arg(1).arg(NODES_KEY).arg(&info.id).arg(&head);
        pipe.cmd("PEXPIRE").arg(held_key(&info.id)).arg(duration_ms(HELD_TTL));
        pipe.cmd("EVALSHA").arg(self.nodes_script.get_hash()).arg(1).arg(NODES_KEY).arg(limit_ms);
        let replies: Vec<RedisResult<Value>> =
            self.link.run(|mut conn| async move { pipe.query_async(&mut conn).await }).await?;
        let mut replies = replies.into_iter();
        let (beat, _, listed) = (replies.next(), replies.next(), replies.next());
        let no_script = |r: &Option<RedisResult<Value>>| matches!(r, Some(Err(e)) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript));
        if no_script(&beat) || no_script(&listed) {
            // After a Redis restart the scripts are gone: the one-by-one calls load them.
            self.heartbeat(info).await?;
            return self.nodes(ttl).await;
        }
        let missing = || StoreError::Unavailable("redis answered fewer commands than were sent".into());
        beat.ok_or_else(missing)?.map_err(|e| super::unavailable(&e))?;
        let listed = listed.ok_or_else(missing)?.map_err(|e| super::unavailable(&e))?;
        let (now_ms, entries): (u64, Vec<String>) = ::redis::from_redis_value(listed)
            .map_err(|e| StoreError::Unavailable(format!("unreadable node registry: {e}")))?;
        Ok(super::node_statuses(now_ms, &entries, ttl))
    }

    /// Adds `room` to hub `node`'s list of held rooms ([`held_key`]).
    pub async fn held_add(&self, node: &str, room: &str) -> Result<(), StoreError> {
        let mut pipe = ::redis::pipe();
        pipe.cmd("SADD").arg(held_key(node)).arg(room).ignore();
        pipe.cmd("PEXPIRE").arg(held_key(node)).arg(duration_ms(HELD_TTL)).ignore();
        self.link.run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await }).await
    }

    async fn expire_held(&self, node: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("PEXPIRE");
        cmd.arg(held_key(node)).arg(duration_ms(HELD_TTL));
        self.link.run(|mut conn| async move { cmd.query_async::<i64>(&mut conn).await }).await.map(drop)
    }

    /// Removes `room` from hub `node`'s list of held rooms.
    pub async fn held_remove(&self, node: &str, room: &str) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("SREM");
        cmd.arg(held_key(node)).arg(room);
        self.link.run(|mut conn| async move { cmd.query_async::<i64>(&mut conn).await }).await.map(drop)
    }

    /// How many rooms' leases hub `node` holds (its list of held rooms, [`held_key`]).
    pub async fn held_count(&self, node: &str) -> Result<u64, StoreError> {
        let mut cmd = ::redis::cmd("SCARD");
        cmd.arg(held_key(node));
        self.link.run(|mut conn| async move { cmd.query_async(&mut conn).await }).await
    }

    /// The rooms whose lease hub `node` held at its last heartbeat (within [`HELD_TTL`] of it; empty after).
    pub async fn held_rooms(&self, node: &str) -> Result<Vec<String>, StoreError> {
        let mut cmd = ::redis::cmd("SMEMBERS");
        cmd.arg(held_key(node));
        self.link.run(|mut conn| async move { cmd.query_async(&mut conn).await }).await
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RedisOptions;
    use crate::redis_server::RedisServer;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    /// A batch claims exactly what one claim per room would, in order; a claim of a room held by another node is
    /// refused in the same batch as claims that succeed; after `SCRIPT FLUSH` (as after a Redis restart) the batch
    /// loads the script again; draining hubs read the same leases in a batch.
    async fn batches(store: &RedisStore, server: &RedisServer) {
        let lease = Duration::from_secs(5);
        let lease_of = |held, holder: &str, epoch| Ok(Lease { held, holder: Some(holder.to_owned()), epoch });
        assert_eq!(store.claim_media("b", "n2", lease).await, lease_of(true, "n2", 1));
        let rooms: Vec<String> = (0..50).map(|i| format!("room-{i}")).chain(["b".to_owned()]).collect();
        let names: Vec<&str> = rooms.iter().map(String::as_str).collect();
        let claimed = store.claim_media_many(&names, "n1", lease, true).await;
        assert_eq!(claimed.len(), names.len());
        assert!(claimed[..50].iter().all(|l| *l == lease_of(true, "n1", 1)), "{claimed:?}");
        assert_eq!(claimed[50], lease_of(false, "n2", 1));
        // Renewing keeps the epoch; the individual claim agrees.
        let watch_of = |room: &str| server.command(&["HGET", &claims_key(room), "n1"]);
        let watched = watch_of("room-0");
        let renewed = store.claim_media_many(&names[..3], "n1", lease, false).await;
        assert_eq!(renewed, vec![lease_of(true, "n1", 1); 3]);
        assert_eq!(watch_of("room-0"), watched, "a renewal without the watch writes nothing but the lease");
        let pttl: i64 =
            server.command(&["PTTL", &owner_key("room-0")]).trim().trim_start_matches(':').parse().expect("PTTL");
        assert!(pttl > 4_000, "the lease was extended: {pttl} ms left");
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.claim_media_many(&names[..1], "n1", lease, true).await, vec![lease_of(true, "n1", 1)]);
        assert_ne!(watch_of("room-0"), watched, "with the watch, it is recorded");
        // Another node's claim without the watch still records its watch (only a holder's renewal skips it).
        let others = store.claim_media_many(&["room-1"], "n3", lease, false).await;
        assert_eq!(others, vec![lease_of(false, "n1", 1)]);
        assert!(server.command(&["HGET", &claims_key("room-1"), "n3"]).contains(' '), "n3's watch is recorded");
        assert_eq!(store.claim_media("room-7", "n1", lease).await, lease_of(true, "n1", 1));

        server.command(&["SCRIPT", "FLUSH"]);
        assert_eq!(store.claim_media_many(&names[..2], "n1", lease, false).await, vec![lease_of(true, "n1", 1); 2]);

        let read = store.media_holders(&["room-1", "b", "nothing"], "n1").await;
        assert_eq!(
            read,
            vec![lease_of(true, "n1", 1), lease_of(false, "n2", 1), Ok(Lease { held: false, holder: None, epoch: 0 })]
        );
        assert!(store.claim_media_many(&[], "n1", lease, false).await.is_empty());
    }

    /// The heartbeat pipeline records the beat, reads the registry, and keeps the node's list of held rooms alive;
    /// after `SCRIPT FLUSH` it still works.
    async fn heartbeats_and_held_rooms(store: &RedisStore, server: &RedisServer) {
        let ttl = Duration::from_secs(3);
        let me = NodeInfo { id: "n1".into(), url: None, draining: false };
        store.held_add("n1", "a").await.expect("add");
        store.held_add("n1", "b").await.expect("add");
        store.held_remove("n1", "a").await.expect("remove");
        assert_eq!(store.held_rooms("n1").await, Ok(vec!["b".to_owned()]));
        assert_eq!(store.held_rooms("n2").await, Ok(Vec::new()));
        assert_eq!((store.held_count("n1").await, store.held_count("n2").await), (Ok(1), Ok(0)));
        let nodes = store.heartbeat_and_nodes(&me, ttl).await.expect("heartbeat");
        assert_eq!(nodes.len(), 1);
        assert!(nodes[0].alive && nodes[0].info == me, "{nodes:?}");
        let ttl_ms: i64 =
            server.command(&["PTTL", &held_key("n1")]).trim().trim_start_matches(':').parse().expect("PTTL");
        assert!(ttl_ms > 50_000, "the heartbeat renews the held list's expiry: {ttl_ms}");
        server.command(&["SCRIPT", "FLUSH"]);
        let other = NodeInfo { id: "n2".into(), url: Some("ws://x".into()), draining: true };
        let nodes = store.heartbeat_and_nodes(&other, ttl).await.expect("heartbeat after a flush");
        assert_eq!(nodes.iter().map(|n| n.info.id.as_str()).collect::<Vec<_>>(), ["n1", "n2"]);
    }

    #[test]
    fn lease_batches_on_one_server() {
        let server = RedisServer::start();
        runtime().block_on(async {
            let store = RedisStore::connect(&server.url(), &RedisOptions::default()).await.expect("connect");
            batches(&store, &server).await;
            heartbeats_and_held_rooms(&store, &server).await;
        });
    }

    #[test]
    fn lease_batches_on_a_cluster() {
        let server = RedisServer::start_cluster();
        runtime().block_on(async {
            let store = RedisStore::connect(&server.cluster_url(), &RedisOptions::default()).await.expect("connect");
            batches(&store, &server).await;
            heartbeats_and_held_rooms(&store, &server).await;
        });
    }
}
