//! Podium's signaling hub: the only crate that does IO for signaling.
//!
//! It accepts websocket connections, verifies access tokens, and runs one task per room that alone owns that room's
//! [`podium_room::Room`] state machine. Connections talk to their room through its bounded inbox; the room answers
//! each request through a one-shot reply and pushes events through each connection's bounded queue of ready-made
//! JSON frames, so one serialisation serves every recipient.
//!
//! The SFU ([`podium_media`]) runs beside it on its own threads; room tasks tell it who may publish (see `media`).
//!
//! Key types: [`Hub`] (bind, run, shut down), [`Config`] (file plus environment), [`auth::TokenKeys`] (mint and
//! verify tokens).

mod admin;
mod admission;
pub mod auth;
mod bus;
pub mod config;
mod conn;
mod convert;
mod http;
mod hub;
mod leases;
mod link;
pub mod logging;
mod media;
mod metrics;
mod nodes;
mod recording;
mod relay;
mod room_task;
mod summit;
mod tls;
mod turn;
pub mod webhooks;

pub use admin::{key_hash as admin_key_hash, new_key as new_admin_key, openapi_json};
pub use config::Config;
pub use conn::WS_PATH;
pub use http::{DEMO_HTML, DEV_TOKEN_PATH, SDK_JS};
pub use hub::{Hub, ShutdownHandle};
pub use nodes::NODE_TTL;
pub use podium_proto::Role;
pub use tls::TlsHandle;
pub use webhooks::Webhooks;
