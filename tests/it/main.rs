//! End-to-end tests: real websocket clients against a real hub listening on 127.0.0.1:0.

mod abuse;
mod abuse_media;
mod admin;
mod aiortc;
mod bad_input;
mod media_aiortc;
mod media_chromium;
mod media_loudest;
mod media_redis;
mod media_signaling;
mod media_turn;
mod media_webrtcrs;
mod metrics;
mod pki;
mod raw;
mod scenario;
mod summit;
mod support;
mod tls;
mod web;
mod web_browser;
mod web_drain;
mod web_summit;
mod web_tls;
mod webrtcrs;
mod ws_framing;
