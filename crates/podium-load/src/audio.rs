//! The speaker's audio and its check on the listeners' side.
//!
//! A speaker sends a 440 Hz tone encoded with libopus, 20 ms per frame. Every frame carries its send time in **Opus
//! padding** (RFC 6716 §3.2.5): the encoder's single-frame packet (code 0) is rewritten as a code 3 packet with one
//! CBR frame and 16 bytes of padding, `PDLM` + the frame number (u32) + the send time (u64, µs since the run's
//! base instant, big-endian). A decoder ignores padding, so the packet is still a valid Opus packet carrying the
//! same audio; the SFU forwards payloads untouched (it rewrites only the RTP header), so the marker arrives as sent.
//! Since the speaker and the listeners run in the same process, send and receive times come from one clock: the
//! end-to-end delay needs no clock synchronisation, even against a remote hub.
//!
//! A sampled listener decrypts (through its str0m `Rtc`), reads the marker, and decodes the frame with libopus: a
//! frame counts as the tone when its zero crossings match 440 Hz (17.6 per 20 ms, ±4) and it is not silent.

use anyhow::Context as _;

/// The marker's magic bytes.
const MAGIC: &[u8; 4] = b"PDLM";
/// Bytes of padding carrying the marker.
const PAD: usize = 16;
/// Samples per 20 ms frame at 48 kHz.
pub(crate) const FRAME: usize = 960;

/// A 440 Hz tone encoded with libopus, one 20 ms frame at a time, with the send-time marker.
pub(crate) struct Tone {
    encoder: opus::Encoder,
    pcm: Box<[i16; FRAME]>,
    out: Box<[u8; 512]>,
    /// Frames encoded so far.
    pub(crate) frame: u64,
}

impl Tone {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let encoder = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).context("opus")?;
        Ok(Self { encoder, pcm: Box::new([0; FRAME]), out: Box::new([0; 512]), frame: 0 })
    }

    /// The next frame, stamped with `sent_us`. The returned `Vec` is what str0m's writer takes (its API owns it).
    pub(crate) fn next_frame(&mut self, sent_us: u64) -> anyhow::Result<Vec<u8>> {
        let start = self.frame * FRAME as u64;
        for (i, s) in self.pcm.iter_mut().enumerate() {
            let t = (start + i as u64) as f64 / 48_000.0;
            *s = ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16;
        }
        let n = self.encoder.encode(&self.pcm[..], &mut self.out[..]).context("opus encode")?;
        let packet = mark(&self.out[..n], self.frame as u32, sent_us).context("the encoder's packet")?;
        self.frame += 1;
        Ok(packet)
    }
}

/// Rewrites a code 0 Opus packet (one frame) as code 3 with one CBR frame and the marker as padding.
fn mark(packet: &[u8], frame: u32, sent_us: u64) -> Option<Vec<u8>> {
    let (&toc, data) = packet.split_first()?;
    if toc & 0x03 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(packet.len() + 3 + PAD);
    // TOC with code 3; frame count byte: v = 0 (CBR), p = 1 (padding), M = 1; one padding length byte (< 255).
    out.extend_from_slice(&[toc | 0x03, 0x40 | 1, PAD as u8]);
    out.extend_from_slice(data);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&frame.to_be_bytes());
    out.extend_from_slice(&sent_us.to_be_bytes());
    Some(out)
}

/// The marker of a packet made by [`Tone`]: (frame number, send time in µs), or `None` when it has none.
pub(crate) fn marker(packet: &[u8]) -> Option<(u32, u64)> {
    if packet.len() < 3 + PAD || packet[0] & 0x03 != 0x03 || packet[1] & 0x40 == 0 || packet[2] != PAD as u8 {
        return None;
    }
    let pad = &packet[packet.len() - PAD..];
    if &pad[..4] != MAGIC {
        return None;
    }
    let frame = u32::from_be_bytes([pad[4], pad[5], pad[6], pad[7]]);
    let mut t = [0u8; 8];
    t.copy_from_slice(&pad[8..]);
    Some((frame, u64::from_be_bytes(t)))
}

/// A sampled listener's decoder and what it found.
pub(crate) struct Check {
    decoder: opus::Decoder,
    pcm: Box<[i16; FRAME * 6]>,
    /// Frames decoded.
    pub(crate) decoded: u64,
    /// Of those, frames that were the tone.
    pub(crate) tone: u64,
    /// Packets without the marker, or that libopus refused.
    pub(crate) bad: u64,
    /// The highest speaker frame number seen, and the frame numbers skipped below it: frames the SFU dropped
    /// before numbering them (a slot's sequence numbers count only what it sends, so this loss is invisible to
    /// the counting listeners) or lost on the way.
    pub(crate) last_frame: Option<u32>,
    pub(crate) frames_missing: u64,
}

impl Check {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let decoder = opus::Decoder::new(48_000, opus::Channels::Mono).context("opus decoder")?;
        Ok(Self {
            decoder,
            pcm: Box::new([0; FRAME * 6]),
            decoded: 0,
            tone: 0,
            bad: 0,
            last_frame: None,
            frames_missing: 0,
        })
    }

    /// Notes a speaker frame number (one speaker per run).
    pub(crate) fn frame(&mut self, frame: u32) {
        match self.last_frame {
            Some(last) if frame > last => {
                self.frames_missing += u64::from(frame - last - 1);
                self.last_frame = Some(frame);
            }
            Some(_) => {}
            None => self.last_frame = Some(frame),
        }
    }

    /// Decodes one packet and checks it is the tone.
    pub(crate) fn check(&mut self, packet: &[u8]) {
        let Ok(n) = self.decoder.decode(packet, &mut self.pcm[..], false) else {
            self.bad += 1;
            return;
        };
        self.decoded += 1;
        let pcm = &self.pcm[..n];
        let crossings = pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        let loud = pcm.iter().any(|s| s.unsigned_abs() > 1000);
        // 440 Hz over n samples at 48 kHz crosses zero 2 × 440 × n / 48000 times (17.6 per 20 ms).
        let expected = 880.0 * n as f64 / 48_000.0;
        if loud && (crossings as f64 - expected).abs() <= 4.0 {
            self.tone += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_frame_decodes_as_the_tone_and_carries_its_time() {
        let mut tone = Tone::new().expect("encoder");
        let mut check = Check::new().expect("decoder");
        for i in 0..20u64 {
            let p = tone.next_frame(1_000 + i).expect("frame");
            assert_eq!(marker(&p), Some((i as u32, 1_000 + i)));
            check.check(&p);
        }
        assert_eq!((check.decoded, check.bad), (20, 0));
        // The first frames are the encoder's ramp-up.
        assert!(check.tone >= 15, "{} of 20 frames were the tone", check.tone);
        assert_eq!(marker(&[0x78, 1, 2, 3]), None);
    }
}
