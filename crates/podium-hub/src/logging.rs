//! The log filter `podium serve` starts with, in one place (the binary and its log-volume test use it).
//!
//! Design: the default level is `info`, but the media dependencies are capped at `error`. str0m and its DTLS
//! stack (dimpl, through the `log` bridge) log at `warn` per datagram for input a remote peer controls (a DTLS
//! record when the receive queue is full, SRTP that does not decrypt, an SDP detail): at the default level a peer
//! could write tens of thousands of lines per second. Neither logs anything at `error`.
//!
//! Invariant: every log line a remote peer can trigger per datagram or per message is below the default level or
//! rate-limited (see `podium_media::LogLimiter`); `crates/podium/tests/log_volume.rs` checks it against the real
//! binary.
//!
//! `RUST_LOG` is applied on top of these defaults: `RUST_LOG=debug` keeps the dependency caps, while naming a
//! dependency (`RUST_LOG=info,str0m=debug`) lifts its cap.

/// The default filter directives (`EnvFilter` syntax).
pub const DEFAULT_LOG_FILTER: &str = "info,str0m=error,dimpl=error";

/// The filter directives for a `RUST_LOG` value (or none): the defaults, then `RUST_LOG`'s own directives, which win
/// where they name the same target.
pub fn log_filter(rust_log: Option<&str>) -> String {
    match rust_log.map(str::trim) {
        Some(extra) if !extra.is_empty() => format!("{DEFAULT_LOG_FILTER},{extra}"),
        _ => DEFAULT_LOG_FILTER.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_goes_after_the_defaults() {
        assert_eq!(log_filter(None), DEFAULT_LOG_FILTER);
        assert_eq!(log_filter(Some(" ")), DEFAULT_LOG_FILTER);
        assert_eq!(log_filter(Some("debug")), format!("{DEFAULT_LOG_FILTER},debug"));
    }
}
