//! Filler audio: an Ogg Opus file demuxed once, at load, into shared Opus packets that a worker plays into a room
//! as a virtual publisher (see the crate docs, "Filler").

use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::Arc;

use crate::MediaError;

/// Largest filler file accepted, in bytes (64 MiB: over an hour of 64 kbit/s Opus). The whole file is read into
/// memory once, so this bounds what a load costs.
pub const MAX_FILLER_BYTES: u64 = 64 * 1024 * 1024;
/// Largest Opus packet accepted in a filler file: one packet is sent as one RTP packet, which must fit a datagram.
pub const MAX_FILLER_PACKET: usize = 1200;
/// The identity the filler publishes under: what [`MediaEvent::Tracks`](crate::MediaEvent::Tracks) names as the
/// source of a slot carrying it. The leading `~` keeps it apart from participant identities.
pub const FILLER_IDENTITY: &str = "~filler";

/// One Opus packet of a filler file.
#[derive(Debug, Clone)]
pub(crate) struct FillerPacket {
    pub(crate) data: Arc<[u8]>,
    /// Duration in 48 kHz ticks (a multiple of 120: 2.5 ms).
    pub(crate) ticks: u32,
}

/// A demuxed Ogg Opus file, ready to play: cheap to clone (the packets are shared), loaded once and played as often
/// as wanted.
#[derive(Debug, Clone)]
pub struct FillerSource {
    pub(crate) packets: Arc<[FillerPacket]>,
}

impl FillerSource {
    /// Reads and demuxes an Ogg Opus file (blocking file IO: from async code, call it in `spawn_blocking`). Files
    /// larger than [`MAX_FILLER_BYTES`] are refused before they are read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MediaError> {
        let file = std::fs::File::open(path.as_ref())?;
        let len = file.metadata()?.len();
        if len > MAX_FILLER_BYTES {
            return Err(bad(format!("the filler file is larger than {MAX_FILLER_BYTES} bytes")));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        // The file may grow meanwhile: never read past the bound.
        file.take(MAX_FILLER_BYTES + 1).read_to_end(&mut bytes)?;
        Self::from_ogg(&bytes)
    }

    /// Demuxes an Ogg Opus file held in memory: the first logical stream must be Opus (an `OpusHead` packet, mono
    /// or stereo: channel mapping family 0), its `OpusTags` packet is skipped, and every further packet of that
    /// stream must be a well-formed Opus packet (RFC 6716 §3: TOC byte, frame count, at most 120 ms) of at most
    /// [`MAX_FILLER_PACKET`] bytes. Other logical streams are ignored.
    pub fn from_ogg(bytes: &[u8]) -> Result<Self, MediaError> {
        if bytes.len() as u64 > MAX_FILLER_BYTES {
            return Err(bad(format!("the filler file is larger than {MAX_FILLER_BYTES} bytes")));
        }
        // The demuxer is a dependency: whatever it does on a hostile file, it must not take the caller down.
        std::panic::catch_unwind(|| demux(bytes))
            .unwrap_or_else(|_| Err(bad("the filler file is not a readable Ogg stream".to_owned())))
    }

    /// Number of Opus packets.
    pub fn packets(&self) -> usize {
        self.packets.len()
    }

    /// The Opus packets, in order (for tests and tools).
    pub fn packet_data(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.packets.iter().map(|p| &*p.data)
    }

    /// Duration of one pass through the file.
    pub fn duration(&self) -> std::time::Duration {
        let ticks: u64 = self.packets.iter().map(|p| u64::from(p.ticks)).sum();
        std::time::Duration::from_micros(ticks * 1_000_000 / 48_000)
    }
}

fn bad(msg: String) -> MediaError {
    MediaError::BadFiller(msg)
}

fn demux(bytes: &[u8]) -> Result<FillerSource, MediaError> {
    let mut reader = ogg::PacketReader::new(Cursor::new(bytes));
    let mut serial = None;
    let mut tags_seen = false;
    let mut packets = Vec::new();
    loop {
        let packet = match reader.read_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(_) if serial.is_none() => {
                return Err(bad("the filler file is not an Ogg stream".to_owned()));
            }
            Err(_) => {
                return Err(bad(format!("the filler file's Ogg stream is malformed after {} packets", packets.len())));
            }
        };
        let Some(s) = serial else {
            check_head(&packet.data)?;
            serial = Some(packet.stream_serial());
            continue;
        };
        if packet.stream_serial() != s {
            continue;
        }
        if !tags_seen && packets.is_empty() && packet.data.starts_with(b"OpusTags") {
            tags_seen = true;
            continue;
        }
        let n = packets.len() + 1;
        let ticks =
            opus_ticks(&packet.data).ok_or_else(|| bad(format!("Opus packet {n} of the filler is malformed")))?;
        if packet.data.len() > MAX_FILLER_PACKET {
            return Err(bad(format!("Opus packet {n} of the filler is larger than {MAX_FILLER_PACKET} bytes")));
        }
        packets.push(FillerPacket { data: Arc::from(packet.data), ticks });
    }
    if serial.is_none() {
        return Err(bad("the filler file is not an Ogg stream".to_owned()));
    }
    if packets.is_empty() {
        return Err(bad("the filler file has no Opus audio packets".to_owned()));
    }
    Ok(FillerSource { packets: packets.into() })
}

/// Checks the Opus identification header (RFC 7845 §5.1).
fn check_head(head: &[u8]) -> Result<(), MediaError> {
    if !head.starts_with(b"OpusHead") {
        return Err(bad("the filler file is not Ogg Opus (no OpusHead header)".to_owned()));
    }
    if head.len() < 19 {
        return Err(bad("the filler file's OpusHead header is truncated".to_owned()));
    }
    if head[8] >> 4 != 0 {
        return Err(bad(format!("the filler file's Opus version {} is not supported", head[8])));
    }
    let channels = head[9];
    if !(1..=2).contains(&channels) || head[18] != 0 {
        return Err(bad(format!(
            "the filler file must be mono or stereo Opus (mapping family 0); it has {channels} channels, family {}",
            head[18]
        )));
    }
    Ok(())
}

/// Duration of an Opus packet in 48 kHz ticks from its TOC byte (RFC 6716 §3.1), or `None` when malformed.
pub(crate) fn opus_ticks(packet: &[u8]) -> Option<u32> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1)? & 0x3f),
    };
    let total = frame * frames;
    (frames > 0 && total <= 5760).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_durations() {
        assert_eq!(opus_ticks(&[31 << 3, 0xff, 0xfe]), Some(960)); // CELT FB 20 ms, the classic silence frame
        assert_eq!(opus_ticks(&[16 << 3]), Some(120)); // CELT 2.5 ms
        assert_eq!(opus_ticks(&[(3 << 3) | 1]), Some(5760)); // SILK 60 ms ×2
        assert_eq!(opus_ticks(&[(13 << 3) | 2, 1]), Some(1920)); // hybrid 20 ms ×2
        assert_eq!(opus_ticks(&[(19 << 3) | 3, 6]), Some(5760)); // CELT 20 ms ×6
        assert_eq!(opus_ticks(&[(19 << 3) | 3, 7]), None); // 140 ms
        assert_eq!(opus_ticks(&[(19 << 3) | 3, 0]), None);
        assert_eq!(opus_ticks(&[(19 << 3) | 3]), None);
        assert_eq!(opus_ticks(&[]), None);
    }

    #[test]
    fn refuses_garbage() {
        for b in [&b""[..], b"OggS", b"not an ogg file at all", &[0u8; 100]] {
            assert!(matches!(FillerSource::from_ogg(b), Err(MediaError::BadFiller(_))));
        }
    }
}
