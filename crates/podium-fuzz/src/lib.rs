//! The bodies of Podium's fuzz targets: one function per target, taking the fuzzer's bytes and panicking when an
//! invariant breaks (a panic is what libFuzzer reports as a crash).
//!
//! The cargo-fuzz targets in `fuzz/fuzz_targets/` (nightly, outside the workspace) are one-line calls of these
//! functions; `tests/corpus.rs` replays every file of `fuzz/corpus/<target>/` through the same functions on the
//! stable toolchain, as part of `bash tests/run`. `docs/FUZZING.md` has the targets, commands and campaign results.
//!
//! | target | reaches | checks |
//! |---|---|---|
//! | [`client_message`] | [`podium_proto::decode_client`], the hub's decode sequence for every client text frame | never panics; `Ok` re-encodes and decodes to the same request, its kind is the frame's `type`, ids ≤ 64 bytes; `Err` codes are `too_large`/`bad_request`/`unknown_type` |
//! | [`room_commands`] | [`podium_room::Room`] driven by an arbitrary sequence of joins, disconnects, leaves, clock steps and commands from arbitrary senders with arbitrary targets | after every step everything [`podium_room::conformance`] checks (internal invariants, persistence mirrors, seq discipline, outputs, authority, hand queue) |
//! | [`sdp_offer`] | the SFU's offer path: text pre-checks, str0m's SDP parser, a real worker's accept path | never panics; the worker is idle after removing the peer |
//! | [`summit_schedule`] | the admin API's schedule inputs (pretalx/frab `schedule.json`, Podium's JSON) and what follows an accepted one: release, iCalendar export, every stage's run across its slot boundaries | never panics; Podium's JSON round trip is exact; at most one active slot per stage; run state survives JSON |
//! | [`media_datagram`] | a real worker's datagram input for a peer set up by a real offer/answer (optionally past ICE): routing, STUN, DTLS, RTP/RTCP demux, str0m's `Rtc` | never panics; bounded events; the worker is idle after removing the peer |
//!
//! Every function is deterministic in its input except the two media targets, whose worker uses the wall clock and
//! random ICE credentials (as in production).

mod media;
mod proto;
mod room;
mod summit;

pub use media::{media_datagram, sdp_offer};
pub use proto::client_message;
pub use room::room_commands;
pub use summit::summit_schedule;

/// A fuzz target's body: the fuzzer's bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// The fuzz targets by name (the directory names under `fuzz/corpus/`), with their functions.
pub const TARGETS: &[(&str, Target)] = &[
    ("client_message", client_message),
    ("room_commands", room_commands),
    ("sdp_offer", sdp_offer),
    ("media_datagram", media_datagram),
    ("summit_schedule", summit_schedule),
];
