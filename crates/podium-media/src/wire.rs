//! Allocation-free looks at raw datagrams (STUN USERNAME, RTP/RTCP demux), the cheap SDP pre-checks, and the clean
//! errors for SDP that str0m refuses.
//!
//! Invariants: the datagram functions never allocate and never panic, whatever the bytes. The SDP pre-checks run
//! once per offer or answer (not per packet), in one pass; an offer's check keeps two lists bounded by the limits it
//! enforces. No message built here contains a dependency's error text: str0m's goes to the debug log.

use crate::{MAX_CANDIDATES, MediaError};

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

/// Which SDP a message talks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SdpKind {
    Offer,
    Answer,
}

impl SdpKind {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Answer => "answer",
        }
    }
}

/// What the text-level look at an offer found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OfferShape {
    /// m-lines of any kind (audio, video, application, ...).
    pub(crate) mlines: usize,
}

/// Cheap, text-level checks of an offer before str0m parses it (one pass; it allocates two small bounded lists):
/// size, SDP line grammar, the counts of what costs the SFU memory per peer (m-lines; distinct SSRCs, at most one
/// per m-line allowed; distinct ICE candidates, at most [`MAX_CANDIDATES`]), audio with Opus present, the DTLS
/// fingerprint and ICE credentials present, not ICE-lite. Everything it refuses gets a clean message of our own; what passes can still fail str0m's parse,
/// which then gets a fixed message too (see [`parse_failed`]).
pub(crate) fn precheck_offer(sdp: &str, max_bytes: usize, max_mlines: usize) -> Result<OfferShape, MediaError> {
    let what = SdpKind::Offer.name();
    if sdp.len() > max_bytes {
        return Err(MediaError::TooLarge { max: max_bytes });
    }
    check_grammar(sdp, SdpKind::Offer)?;
    let mut audio = 0usize;
    let mut video = 0usize;
    let mut mlines = 0usize;
    let mut opus = false;
    let (mut fingerprint, mut ufrag, mut pwd, mut lite) = (false, false, false, false);
    // str0m keeps a receive stream per declared SSRC (~4 KiB) and a pair per remote candidate: bounded here.
    let max_ssrcs = max_mlines;
    let mut ssrcs: Vec<&str> = Vec::new();
    let mut candidates: Vec<&str> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("a=ssrc:") {
            let id = rest.split(' ').next().unwrap_or(rest);
            if !ssrcs.contains(&id) {
                ssrcs.push(id);
                if ssrcs.len() > max_ssrcs {
                    return Err(MediaError::TooMany { what: "distinct SSRCs (a=ssrc)", max: max_ssrcs });
                }
            }
        } else if let Some(rest) = line.strip_prefix("a=candidate:") {
            if !candidates.contains(&rest) {
                candidates.push(rest);
                if candidates.len() > MAX_CANDIDATES {
                    return Err(MediaError::TooMany {
                        what: "distinct ICE candidates (a=candidate)",
                        max: MAX_CANDIDATES,
                    });
                }
            }
        } else if let Some(rest) = line.strip_prefix("m=") {
            mlines += 1;
            if mlines > max_mlines {
                return Err(MediaError::TooMany { what: "m-lines", max: max_mlines });
            }
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
        } else if line.starts_with("a=fingerprint:") {
            fingerprint = true;
        } else if line.starts_with("a=ice-ufrag:") {
            ufrag = true;
        } else if line.starts_with("a=ice-pwd:") {
            pwd = true;
        } else if line == "a=ice-lite" {
            lite = true;
        }
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
    if !fingerprint {
        return Err(MediaError::BadSdp(format!("SDP {what} has no a=fingerprint (DTLS-SRTP is required)")));
    }
    if !ufrag || !pwd {
        return Err(MediaError::BadSdp(format!("SDP {what} lacks a=ice-ufrag or a=ice-pwd")));
    }
    if lite {
        return Err(MediaError::BadSdp(format!(
            "SDP {what} is ICE-lite: the SFU is ICE-lite, so the client must run full ICE"
        )));
    }
    Ok(OfferShape { mlines })
}

/// Cheap checks of an answer to the SFU's offer: size and SDP line grammar (str0m checks that it fits the offer).
pub(crate) fn precheck_answer(sdp: &str, max_bytes: usize) -> Result<(), MediaError> {
    if sdp.len() > max_bytes {
        return Err(MediaError::TooLarge { max: max_bytes });
    }
    check_grammar(sdp, SdpKind::Answer)
}

/// Every SDP line is `<letter>=<value>` (RFC 8866 §5), the first one `v=`. Blank lines are tolerated.
fn check_grammar(sdp: &str, kind: SdpKind) -> Result<(), MediaError> {
    let what = kind.name();
    if !sdp.trim_start().starts_with("v=") {
        return Err(MediaError::BadSdp(format!("the {what} is not valid SDP: it must start with \"v=\"")));
    }
    for (n, line) in sdp.lines().enumerate() {
        let b = line.trim().as_bytes();
        if b.is_empty() {
            continue;
        }
        if b.len() < 2 || !b[0].is_ascii_lowercase() || b[1] != b'=' {
            return Err(MediaError::BadSdp(format!(
                "the {what} is not valid SDP: line {} is not of the form <letter>=<value>",
                n + 1
            )));
        }
    }
    Ok(())
}

/// The error for an SDP that passed the pre-checks but not str0m's parser. The parser's own text is not passed on
/// (it carries internals such as heap addresses); it is logged at debug level for operators.
pub(crate) fn parse_failed(kind: SdpKind, detail: &dyn std::fmt::Display) -> MediaError {
    tracing::debug!(error = %detail, "SDP {} did not parse", kind.name());
    MediaError::BadSdp(format!(
        "the {} is not valid SDP: a line's value is malformed (check the m=, a=rtpmap, a=fmtp, a=extmap, \
         a=ssrc and a=candidate lines)",
        kind.name()
    ))
}

/// The error for an SDP that parsed but that str0m would not apply (inconsistent m-lines, mids or BUNDLE, a DTLS
/// role or fingerprint that does not fit the session, an answer that does not answer the pending offer). As with
/// [`parse_failed`], str0m's text goes to the debug log only.
pub(crate) fn apply_failed(kind: SdpKind, detail: &dyn std::fmt::Display) -> MediaError {
    tracing::debug!(error = %detail, "SDP {} refused", kind.name());
    let message = match kind {
        SdpKind::Offer => {
            "the offer was refused: its m-lines, mids, BUNDLE group or DTLS setup are inconsistent, or it does not \
             continue the previous negotiation of this peer connection (a new peer connection needs a new \
             a=fingerprint)"
        }
        SdpKind::Answer => {
            "the answer was refused: it does not answer the SFU's pending offer (same m-lines, in the same order, \
             with the same mids)"
        }
    };
    MediaError::BadSdp(message.to_owned())
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
        assert!(matches!(precheck_offer("v=0\r\n", 3, 4), Err(MediaError::TooLarge { max: 3 })));
        assert!(matches!(precheck_offer("hello", 100, 4), Err(MediaError::BadSdp(_))));
        let bad_line = "v=0\r\ns=-\r\nhello\r\n";
        assert!(matches!(precheck_offer(bad_line, 100, 4), Err(MediaError::BadSdp(m)) if m.contains("line 3")));
        let video = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert!(matches!(precheck_offer(video, 1000, 4), Err(MediaError::BadSdp(m)) if m.contains("video-only")));
        let pcmu = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n";
        assert!(matches!(precheck_offer(pcmu, 1000, 4), Err(MediaError::BadSdp(m)) if m.contains("Opus")));
        // A multi-byte character across byte 5 of the codec name must not panic.
        let split = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opu\u{e9}/48000\r\n";
        assert!(matches!(precheck_offer(split, 1000, 4), Err(MediaError::BadSdp(m)) if m.contains("Opus")));
        let creds = "a=fingerprint:sha-256 00:11\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\n";
        let audio = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        let ok = format!("v=0\r\n{creds}{audio}");
        assert_eq!(precheck_offer(&ok, 1000, 4).ok(), Some(OfferShape { mlines: 1 }));
        let no_fp = ok.replace("a=fingerprint:sha-256 00:11\r\n", "");
        assert!(matches!(precheck_offer(&no_fp, 1000, 4), Err(MediaError::BadSdp(m)) if m.contains("fingerprint")));
        let lite = format!("{ok}a=ice-lite\r\n");
        assert!(matches!(precheck_offer(&lite, 1000, 4), Err(MediaError::BadSdp(m)) if m.contains("ICE-lite")));
        let many = format!("v=0\r\n{creds}{}", audio.repeat(5));
        assert!(matches!(precheck_offer(&many, 1000, 4), Err(MediaError::TooMany { what: "m-lines", max: 4 })));
        assert!(precheck_offer(&many, 1000, 5).is_ok());
        // Video m-lines count too (they cost the SFU as much as audio ones).
        let mixed = format!("{ok}{}", "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n".repeat(4));
        assert!(matches!(precheck_offer(&mixed, 1000, 4), Err(MediaError::TooMany { what: "m-lines", .. })));
        let ssrcs: String = (0..5).map(|i| format!("a=ssrc:{i} cname:x\r\na=ssrc:{i} msid:y\r\n")).collect();
        let e = precheck_offer(&format!("{ok}{ssrcs}"), 1000, 4);
        assert!(matches!(e, Err(MediaError::TooMany { max: 4, .. })), "{e:?}");
        assert!(precheck_offer(&format!("{ok}{ssrcs}"), 1000, 5).is_ok(), "repeated SSRCs count once");
        let cands: String =
            (0..=MAX_CANDIDATES).map(|i| format!("a=candidate:{i} 1 udp 1 10.0.0.1 {i} typ host\r\n")).collect();
        let e = precheck_offer(&format!("{ok}{cands}"), 10_000, 4);
        assert!(matches!(e, Err(MediaError::TooMany { max: MAX_CANDIDATES, .. })), "{e:?}");
        assert!(precheck_answer(&ok, 1000).is_ok());
        assert!(matches!(precheck_answer(&ok, 10), Err(MediaError::TooLarge { max: 10 })));
        assert!(matches!(precheck_answer("v=0\r\n\0\0\r\n", 100), Err(MediaError::BadSdp(_))));
    }
}
