//! The summit store of this hub: the in-memory one or Redis, behind one type.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use podium_store::{CtlField, MemorySummits, RedisStore, StageCtl, StoreError, SummitStore, Versioned};

/// The summit store the hub's store config names (see `podium_store::summit`).
#[derive(Clone)]
pub(crate) enum Summits {
    /// In this process (the in-memory store: one hub).
    Memory(Arc<MemorySummits>),
    /// In Redis, shared by the hubs.
    Redis(Box<RedisStore>),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Self::Memory($s) => $e,
            Self::Redis($s) => $e,
        }
    };
}

impl SummitStore for Summits {
    async fn summit_ids(&self) -> Result<Vec<String>, StoreError> {
        dispatch!(self, s => s.summit_ids().await)
    }
    async fn doc_get(&self, summit: &str, name: &str) -> Result<Option<Versioned>, StoreError> {
        dispatch!(self, s => s.doc_get(summit, name).await)
    }
    async fn doc_version(&self, summit: &str, name: &str) -> Result<u64, StoreError> {
        dispatch!(self, s => s.doc_version(summit, name).await)
    }
    async fn doc_put(&self, summit: &str, name: &str, body: &str, expect: Option<u64>) -> Result<u64, StoreError> {
        dispatch!(self, s => s.doc_put(summit, name, body, expect).await)
    }
    async fn summit_delete(&self, summit: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.summit_delete(summit).await)
    }
    async fn lease(&self, summit: &str, node: &str, ttl: Duration) -> Result<bool, StoreError> {
        dispatch!(self, s => s.lease(summit, node, ttl).await)
    }
    async fn unlease(&self, summit: &str, node: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.unlease(summit, node).await)
    }
    async fn lease_holder(&self, summit: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.lease_holder(summit).await)
    }
    async fn runs_get(&self, summit: &str) -> Result<BTreeMap<String, String>, StoreError> {
        dispatch!(self, s => s.runs_get(summit).await)
    }
    async fn runs_put(&self, summit: &str, node: &str, records: &[(String, String)]) -> Result<bool, StoreError> {
        dispatch!(self, s => s.runs_put(summit, node, records).await)
    }
    async fn inbox_push(&self, summit: &str, command: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.inbox_push(summit, command).await)
    }
    async fn inbox_take(&self, summit: &str, max: usize) -> Result<Vec<String>, StoreError> {
        dispatch!(self, s => s.inbox_take(summit, max).await)
    }
    async fn result_put(&self, summit: &str, id: &str, body: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.result_put(summit, id, body).await)
    }
    async fn result_take(&self, summit: &str, id: &str) -> Result<Option<String>, StoreError> {
        dispatch!(self, s => s.result_take(summit, id).await)
    }
    async fn ctl_get(&self, room: &str) -> Result<StageCtl, StoreError> {
        dispatch!(self, s => s.ctl_get(room).await)
    }
    async fn ctl_set(&self, room: &str, field: CtlField, value: Option<&str>) -> Result<(), StoreError> {
        dispatch!(self, s => s.ctl_set(room, field, value).await)
    }
}
