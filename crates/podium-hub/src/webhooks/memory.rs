//! The in-memory outbox and audit log (the in-memory store): the same lanes, cursors and trimming as the Redis
//! outbox (`podium_store::redis::outbox`), bounded in all by `webhooks.memory_max_events` (the oldest events of the
//! lane being written are dropped past it, and counted), and a bounded ring of audit entries per room.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use podium_store::{EndpointPeek, LanePeek};

#[derive(Default)]
struct Lane {
    items: VecDeque<String>,
    base: u64,
    next: u64,
    dropped: u64,
    cursors: HashMap<String, u64>,
    states: HashMap<String, String>,
}

#[derive(Default)]
struct Inner {
    lanes: HashMap<String, Lane>,
    total: usize,
}

/// Queued webhook events of this hub.
#[derive(Default)]
pub(crate) struct MemoryOutbox {
    inner: Mutex<Inner>,
}

impl MemoryOutbox {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent (no panics between related writes).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `entries` on `lane`, keeping at most `cap` in the lane and `max_total` in all (the lane's oldest go).
    pub(crate) fn append(&self, lane: &str, entries: Vec<String>, cap: u64, max_total: usize) {
        let mut inner = self.lock();
        let Inner { lanes, total } = &mut *inner;
        let l = lanes.entry(lane.to_owned()).or_default();
        for entry in entries {
            l.items.push_back(entry);
            l.next += 1;
            *total += 1;
            while u64::try_from(l.items.len()).unwrap_or(u64::MAX) > cap || *total > max_total {
                if l.items.pop_front().is_none() {
                    break;
                }
                l.base += 1;
                l.dropped += 1;
                *total -= 1;
            }
        }
    }

    /// Up to `limit` lanes with queued events (or cursors not caught up), and how many there are.
    pub(crate) fn lanes(&self, limit: usize) -> (Vec<String>, u64) {
        let inner = self.lock();
        let all: Vec<&String> = inner.lanes.keys().collect();
        let total = u64::try_from(all.len()).unwrap_or(u64::MAX);
        (all.into_iter().take(limit).cloned().collect(), total)
    }

    /// Like `RedisStore::hooks_peek`: up to `window` (at least 1) events from each endpoint's cursor.
    pub(crate) fn peek(&self, lane: &str, endpoints: &[&str], window: usize) -> LanePeek {
        let inner = self.lock();
        let Some(l) = inner.lanes.get(lane) else {
            return LanePeek {
                endpoints: endpoints.iter().map(|_| EndpointPeek::default()).collect(),
                ..LanePeek::default()
            };
        };
        let endpoints = endpoints
            .iter()
            .map(|e| {
                let cursor = l.cursors.get(*e).copied().unwrap_or(l.base).max(l.base);
                let at = usize::try_from(cursor - l.base).unwrap_or(usize::MAX);
                EndpointPeek {
                    cursor,
                    state: l.states.get(*e).cloned().unwrap_or_default(),
                    events: l.items.iter().skip(at).take(window.max(1)).cloned().collect(),
                }
            })
            .collect();
        LanePeek { base: l.base, next: l.next, dropped: l.dropped, endpoints }
    }

    /// Like `RedisStore::hooks_advance` (this hub always holds its lanes).
    pub(crate) fn advance(&self, lane: &str, endpoint: &str, cursor: Option<u64>, state: &str, active: &[&str]) -> u64 {
        let mut inner = self.lock();
        let Inner { lanes, total } = &mut *inner;
        let Some(l) = lanes.get_mut(lane) else { return 0 };
        if let Some(c) = cursor {
            l.cursors.insert(endpoint.to_owned(), c);
        }
        if state.is_empty() {
            l.states.remove(endpoint);
        } else {
            l.states.insert(endpoint.to_owned(), state.to_owned());
        }
        let low =
            active.iter().map(|e| l.cursors.get(*e).copied().unwrap_or(l.base).max(l.base)).min().unwrap_or(l.next);
        while l.base < low && l.items.pop_front().is_some() {
            l.base += 1;
            *total -= 1;
        }
        l.next - low
    }

    /// Forgets `lane` when nothing is queued on it for `active` endpoints (its numbering starts over).
    pub(crate) fn forget(&self, lane: &str, active: &[&str]) {
        let mut inner = self.lock();
        if let Some(l) = inner.lanes.get(lane)
            && active.iter().all(|e| l.cursors.get(*e).copied().unwrap_or(l.base).max(l.base) >= l.next)
            && l.states.is_empty()
        {
            let n = l.items.len();
            inner.lanes.remove(lane);
            inner.total -= n;
        }
    }

    /// Events dropped past the bounds, over the lanes still known.
    pub(crate) fn dropped(&self) -> u64 {
        self.lock().lanes.values().map(|l| l.dropped).sum()
    }
}

/// Audit entries of the rooms of this hub: a ring per room, for a bounded number of rooms.
#[derive(Default)]
pub(crate) struct MemoryAudit {
    inner: Mutex<AuditInner>,
}

/// A room's audit ring: its last write (the counter then), and `(cursor, time_ms, entry)` oldest first.
type Ring = (u64, VecDeque<(u64, u64, String)>);

#[derive(Default)]
struct AuditInner {
    rooms: HashMap<String, Ring>,
    /// Entry numbers (cursors), hub-wide; also the rooms' recency.
    counter: u64,
}

impl MemoryAudit {
    fn lock(&self) -> MutexGuard<'_, AuditInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends entries of `room` at `now_ms`, keeping `max_entries` per room and entries younger than `max_age_ms`
    /// (0: any age), for at most `max_rooms` rooms (the least recently written room goes).
    pub(crate) fn append(
        &self,
        room: &str,
        entries: Vec<String>,
        now_ms: u64,
        max_entries: u64,
        max_age_ms: u64,
        max_rooms: usize,
    ) {
        let mut inner = self.lock();
        if !inner.rooms.contains_key(room) && inner.rooms.len() >= max_rooms.max(1) {
            let oldest = inner.rooms.iter().min_by_key(|(_, (recent, _))| *recent).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                inner.rooms.remove(&oldest);
            }
        }
        let AuditInner { rooms, counter } = &mut *inner;
        let (recent, ring) = rooms.entry(room.to_owned()).or_default();
        for entry in entries {
            *counter += 1;
            ring.push_back((*counter, now_ms, entry));
        }
        *recent = *counter;
        while u64::try_from(ring.len()).unwrap_or(u64::MAX) > max_entries
            || (max_age_ms > 0 && ring.front().is_some_and(|(_, at, _)| now_ms.saturating_sub(*at) > max_age_ms))
        {
            ring.pop_front();
        }
    }

    /// Up to `limit` entries of `room` after cursor `after`: `(cursor, entry)` pairs.
    pub(crate) fn read(&self, room: &str, after: Option<u64>, limit: usize) -> Vec<(String, String)> {
        let inner = self.lock();
        let Some((_, ring)) = inner.rooms.get(room) else { return Vec::new() };
        ring.iter()
            .filter(|(n, _, _)| after.is_none_or(|a| *n > a))
            .take(limit)
            .map(|(n, _, e)| (n.to_string(), e.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_bounded_trimmed_and_forgotten() {
        let o = MemoryOutbox::default();
        o.append("r", vec!["a".into(), "b".into(), "c".into()], 2, 100);
        let p = o.peek("r", &["x", "y"], 1);
        assert_eq!((p.base, p.next, p.dropped), (1, 3, 1));
        assert_eq!(p.endpoints[0], EndpointPeek { cursor: 1, state: String::new(), events: vec!["b".into()] });
        assert_eq!(o.peek("r", &["x"], 5).endpoints[0].events, ["b", "c"], "a window, at most what is queued");
        assert_eq!(o.advance("r", "x", Some(2), "", &["x", "y"]), 2);
        assert_eq!(o.advance("r", "y", Some(3), "", &["x", "y"]), 1);
        assert_eq!(o.peek("r", &["x"], 1).base, 2);
        o.forget("r", &["x", "y"]);
        assert_eq!(o.lanes(10).1, 1, "x has one left");
        assert_eq!(o.advance("r", "x", Some(3), "", &["x", "y"]), 0);
        o.forget("r", &["x", "y"]);
        assert_eq!(o.lanes(10).1, 0);
        // The hub-wide bound drops the oldest of the lane written.
        o.append("s", (0..5).map(|i| i.to_string()).collect(), 100, 3);
        assert_eq!(o.peek("s", &["x"], 1).endpoints[0].events, ["2"]);
        assert_eq!(o.dropped(), 2);
    }

    #[test]
    fn audit_rings_are_bounded_and_read_with_a_cursor() {
        let a = MemoryAudit::default();
        a.append("r", vec!["1".into(), "2".into(), "3".into()], 10, 2, 0, 10);
        let page = a.read("r", None, 1);
        assert_eq!(page, [("2".to_owned(), "2".to_owned())]);
        assert_eq!(a.read("r", Some(2), 10), [("3".to_owned(), "3".to_owned())]);
        a.append("r", vec!["4".into()], 1_000, 10, 100, 10);
        assert_eq!(a.read("r", None, 10).len(), 1, "older than the age limit");
        a.append("s", vec!["x".into()], 1_000, 10, 0, 1);
        assert!(a.read("r", None, 10).is_empty(), "one room kept");
    }
}
