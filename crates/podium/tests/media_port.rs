//! `podium serve --media-port` puts the SFU's first UDP socket on that port (issue 10, item 8).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};

#[test]
fn media_port_flag_sets_the_sfu_port() {
    // A port that was free a moment ago.
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_podium"))
        .args(["serve", "--listen", "127.0.0.1:0", "--media-port", &port.to_string()])
        .env_remove("PODIUM_CONFIG")
        .env("PODIUM_MEDIA__PORT", "1") // the flag overrides the environment and the file
        .env("PODIUM_MEDIA__WORKERS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start podium serve");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let media = stdout.lines().map_while(Result::ok).find_map(|l| {
        l.strip_prefix("Media (WebRTC audio, UDP): ").map(|m| m.trim().parse::<SocketAddr>().expect("one address"))
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(media.map(|a| a.port()), Some(port));
}
