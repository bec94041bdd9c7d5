//! Allocation-free looks at raw datagrams (STUN USERNAME, RTP/RTCP demux) and the cheap SDP pre-checks.

use crate::MediaError;

/// STUN magic cookie (RFC 5389).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// STUN attribute type USERNAME.
const ATTR_USERNAME: u16 = 0x0006;

/// Whether the datagram looks like STUN (RFC 7983 demux: first byte 0..=3, plus the magic cookie).
pub(crate) fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= 20 && buf[0] < 4 && buf[4..8] == MAGIC_COOKIE
}

/// The local (server-side) ufrag of a STUN binding request: the part of USERNAME before the colon.
///
/// Returns `None` for anything that is not well-formed enough; never panics and never allocates.
pub(crate) fn stun_local_ufrag(buf: &[u8]) -> Option<&str> {
    if !is_stun(buf) {
        return None;
    }
    let body_len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let end = 20usize.checked_add(body_len)?;
    let body = buf.get(20..end)?;
    let mut i = 0usize;
    while i + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[i], body[i + 1]]);
        let len = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
        let value = body.get(i + 4..i + 4 + len)?;
        if typ == ATTR_USERNAME {
            let name = std::str::from_utf8(value).ok()?;
            return name.split(':').next().filter(|s| !s.is_empty());
        }
        // Attributes are padded to 4 bytes.
        i += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// Whether the datagram is an RTP (not RTCP) packet, by RFC 5761/7983 demultiplexing.
pub(crate) fn is_rtp(buf: &[u8]) -> bool {
    if buf.len() < 12 || !(128..=191).contains(&buf[0]) {
        return false;
    }
    // RTCP packet types 192..=223 fall in 64..=95 once the marker bit is masked off.
    !(64..=95).contains(&(buf[1] & 0x7f))
}

/// Cheap, text-level checks of an offer before it is parsed: size, audio present, Opus offered.
pub(crate) fn precheck_offer(sdp: &str, max_bytes: usize) -> Result<(), MediaError> {
    if sdp.len() > max_bytes {
        return Err(MediaError::TooLarge);
    }
    precheck_media(sdp, "offer")
}

/// Text-level checks shared by offers and answers: at least one audio m-line with Opus.
pub(crate) fn precheck_media(sdp: &str, what: &str) -> Result<(), MediaError> {
    let mut audio = 0usize;
    let mut video = 0usize;
    let mut opus = false;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("m=") {
            if rest.starts_with("audio ") {
                audio += 1;
            } else if rest.starts_with("video ") {
                video += 1;
            }
        } else if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            let codec = rest.split_whitespace().nth(1).unwrap_or("");
            // Bytes, not `&codec[..5]`: byte 5 need not be a char boundary (a fuzzer found that panic).
            if codec.as_bytes().get(..5).is_some_and(|p| p.eq_ignore_ascii_case(b"opus/")) {
                opus = true;
            }
        }
    }
    if !sdp.trim_start().starts_with("v=") {
        return Err(MediaError::BadSdp(format!("unparsable SDP {what}: it must start with \"v=\"")));
    }
    if audio == 0 && video > 0 {
        return Err(MediaError::BadSdp(format!("video-only SDP {what}: Podium carries audio only")));
    }
    if audio == 0 {
        return Err(MediaError::BadSdp(format!("SDP {what} has no audio m-line")));
    }
    if !opus {
        return Err(MediaError::BadSdp(format!("SDP {what} offers no Opus codec (Podium carries Opus only)")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let mut b = vec![0x00, 0x01, 0, 0];
        b.extend_from_slice(&MAGIC_COOKIE);
        b.extend_from_slice(&[7; 12]);
        let mut attrs = Vec::new();
        // A PRIORITY attribute first, to walk past it.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        b[2..4].copy_from_slice(&(attrs.len() as u16).to_be_bytes());
        b.extend_from_slice(&attrs);
        b
    }

    #[test]
    fn parses_username() {
        assert_eq!(stun_local_ufrag(&binding_request(b"srv1:cli22")), Some("srv1"));
        assert_eq!(stun_local_ufrag(&binding_request(b":cli")), None);
    }

    #[test]
    fn garbage_is_not_stun() {
        assert_eq!(stun_local_ufrag(b""), None);
        assert_eq!(stun_local_ufrag(&[0u8; 19]), None);
        let mut b = binding_request(b"a:b");
        b[3] = 200; // claims a longer body than present
        assert_eq!(stun_local_ufrag(&b), None);
        let mut b = binding_request(b"a:b");
        let n = b.len();
        b[n - 5] = 0xff; // attribute length runs past the end
        let _ = stun_local_ufrag(&b);
        for seed in 0u32..2000 {
            let v: Vec<u8> = (0..(seed % 64)).map(|i| (seed.wrapping_mul(31).wrapping_add(i * 17)) as u8).collect();
            let _ = stun_local_ufrag(&v);
            let _ = is_rtp(&v);
        }
    }

    #[test]
    fn rtp_rtcp_demux() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[1] = 111;
        assert!(is_rtp(&rtp));
        rtp[1] = 200; // SR
        assert!(!is_rtp(&rtp));
        rtp[1] = 0x80 | 111; // marker bit set
        assert!(is_rtp(&rtp));
    }

    #[test]
    fn sdp_prechecks() {
        assert!(matches!(precheck_offer("v=0\r\n", 3), Err(MediaError::TooLarge)));
        assert!(matches!(precheck_offer("hello", 100), Err(MediaError::BadSdp(_))));
        let video = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert!(matches!(precheck_offer(video, 1000), Err(MediaError::BadSdp(m)) if m.contains("video-only")));
        let pcmu = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n";
        assert!(matches!(precheck_offer(pcmu, 1000), Err(MediaError::BadSdp(m)) if m.contains("Opus")));
        // A multi-byte character across byte 5 of the codec name must not panic.
        let split = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opu\u{e9}/48000\r\n";
        assert!(matches!(precheck_offer(split, 1000), Err(MediaError::BadSdp(m)) if m.contains("Opus")));
        let ok = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(precheck_offer(ok, 1000).is_ok());
    }
}
