//! Replays: after a recording stops, the track files the SFU wrote (`podium_media`'s recording writer) are mixed
//! into one replay with ffmpeg, described, announced, listed and served.
//!
//! # Design
//!
//! * **Where.** Everything lives in `[recording] dir`: `<part>/` holds the track files of one recording part,
//!   `<part>.ogg` the replay and `<part>.json` its description ([`Replay`]). A part is what one hub recorded: the
//!   recording's id, or `<id>-2`, `<id>-3`, ... when that name is taken (the room's media moved to another hub
//!   mid-recording and both hubs share the directory, or this hub recorded the room again under the same id after
//!   regaining its media). Each part is its own replay (its own `recording.ready`), with `recording_id` naming the
//!   recording.
//! * **The mix** (one `ffmpeg` process): every segment is an input, delayed to its start (`adelay`), all mixed with
//!   `amix` (no normalisation: speakers keep their level) and encoded once to Opus in Ogg (`[recording]
//!   bitrate_kbps`), with an ffmetadata input for the chapters (one per speaker turn: a segment whose speaker differs
//!   from the previous chapter's). ffprobe reads Ogg chapters (`-show_chapters`).
//! * **Bounded.** At most `[recording] max_concurrent_mixes` ffmpeg processes at once (a semaphore; the others
//!   wait), each killed after `mix_timeout_s`. A failure (ffmpeg missing, non-zero exit, timeout, no audio at all)
//!   is logged once and announced with `recording.failed`; the track files are kept for a manual mix.
//! * **The description** is written when the recording stops (`state: "mixing"`) and rewritten when the mix is done
//!   (`ready` or `failed`), atomically (a temporary file renamed). The admin API lists and reads these files; it
//!   serves the replay with HTTP Range (tower-http's `ServeFile`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use podium_media::RecordedTracks;
use podium_proto::webhook::{Chapter, WebhookData};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use utoipa::ToSchema;

use crate::config::RecordingConfig;
use crate::hub::Shared;

/// A replay's description (`<dir>/<id>.json`, and the admin API's answer).
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Replay {
    /// The replay's id: the recording's id, or `<recording id>-<n>` for a later part of it.
    pub(crate) id: String,
    /// The recording it belongs to.
    pub(crate) recording_id: String,
    /// The room.
    pub(crate) room: String,
    /// The hub that recorded it.
    pub(crate) node: String,
    /// `mixing`, `ready` or `failed`.
    pub(crate) state: String,
    /// When the recording started on this hub (ms since the Unix epoch).
    pub(crate) started_at_ms: u64,
    /// Its length, in ms.
    pub(crate) duration_ms: u64,
    /// The replay file's size (0 until ready).
    pub(crate) bytes: u64,
    /// Chapters: one per speaker turn.
    #[schema(value_type = Vec<ChapterDoc>)]
    pub(crate) chapters: Vec<Chapter>,
    /// Speakers heard in it (identities).
    pub(crate) speakers: Vec<String>,
    /// Audio packets the recording could not write (full queue, too many files, write errors).
    pub(crate) dropped: u64,
    /// `failed`: what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// `ready`: where the admin API serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
}

/// A chapter of a replay (OpenAPI shape of [`Chapter`]).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct ChapterDoc {
    /// Where it starts, in ms from the start of the replay.
    start_ms: u64,
    /// The speaker's name.
    title: String,
}

/// Bounds the mixes running at once.
pub(crate) struct Mixer {
    permits: tokio::sync::Semaphore,
}

impl Mixer {
    pub(crate) fn new(config: &RecordingConfig) -> Self {
        Self { permits: tokio::sync::Semaphore::new(config.max_concurrent_mixes.max(1)) }
    }
}

/// True for an id the admin API may look up: 1-80 bytes of `[A-Za-z0-9_-]` (ids name files).
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 80 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The name of this hub's part of recording `id`: `id`, or `id-2`, `id-3`, ... when that is taken in `dir`.
pub(crate) fn part_name(dir: &Path, id: &str) -> String {
    let taken = |name: &str| dir.join(name).exists() || dir.join(format!("{name}.json")).exists();
    if !taken(id) {
        return id.to_owned();
    }
    (2..1000).map(|n| format!("{id}-{n}")).find(|name| !taken(name)).unwrap_or_else(|| format!("{id}-x"))
}

/// The replay's file.
pub(crate) fn replay_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.ogg"))
}

fn description_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Reads a replay's description.
pub(crate) fn describe(dir: &Path, id: &str) -> Option<Replay> {
    let text = std::fs::read_to_string(description_path(dir, id)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Every replay in `dir` (of `room`, when given), by start then id; at most `limit` after the one named `after`.
pub(crate) fn list(dir: &Path, room: Option<&str>, after: Option<&str>, limit: usize) -> (Vec<Replay>, bool) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (Vec::new(), false) };
    let mut all: Vec<Replay> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let id = name.strip_suffix(".json")?;
            valid_id(id).then(|| describe(dir, id)).flatten()
        })
        .filter(|r| room.is_none_or(|room| r.room == room))
        .collect();
    all.sort_by(|a, b| (a.started_at_ms, &a.id).cmp(&(b.started_at_ms, &b.id)));
    let start = after.and_then(|a| all.iter().position(|r| r.id == a).map(|i| i + 1)).unwrap_or(0);
    let mut page: Vec<Replay> = all.into_iter().skip(start).take(limit + 1).collect();
    let more = page.len() > limit;
    page.truncate(limit);
    (page, more)
}

fn write_description(dir: &Path, replay: &Replay) -> std::io::Result<()> {
    let path = description_path(dir, &replay.id);
    let tmp = dir.join(format!(".{}.json.tmp", replay.id));
    std::fs::write(&tmp, serde_json::to_vec_pretty(replay).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

/// Chapters from segments (sorted by start): a new chapter whenever the speaker changes. `name` gives a speaker's
/// display name.
pub(crate) fn chapters(tracks: &RecordedTracks, name: impl Fn(&str) -> String) -> Vec<Chapter> {
    let mut out: Vec<Chapter> = Vec::new();
    let mut last: Option<&str> = None;
    for s in &tracks.segments {
        if last == Some(s.identity.as_str()) {
            continue;
        }
        last = Some(&s.identity);
        out.push(Chapter { start_ms: s.start_ms, title: name(&s.identity) });
    }
    out
}

/// The ffmetadata text for `chapters` of a replay `duration_ms` long (RFC-less format: `;FFMETADATA1`, escaping
/// `=`, `;`, `#`, `\` and newlines with a backslash).
fn ffmetadata(title: &str, chapters: &[Chapter], duration_ms: u64) -> String {
    let esc = |s: &str| {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if matches!(c, '=' | ';' | '#' | '\\' | '\n') {
                out.push('\\');
            }
            if !c.is_control() || c == '\n' {
                out.push(c);
            }
        }
        out
    };
    let mut text = format!(";FFMETADATA1\ntitle={}\n", esc(title));
    for (i, c) in chapters.iter().enumerate() {
        let end = chapters.get(i + 1).map_or(duration_ms, |n| n.start_ms).max(c.start_ms + 1);
        text.push_str(&format!(
            "\n[CHAPTER]\nTIMEBASE=1/1000\nSTART={}\nEND={}\ntitle={}\n",
            c.start_ms,
            end,
            esc(&c.title)
        ));
    }
    text
}

/// What to mix: a stopped recording part, with the speakers' names.
pub(crate) struct MixJob {
    pub(crate) room: String,
    pub(crate) part: String,
    pub(crate) recording_id: String,
    pub(crate) tracks: RecordedTracks,
    pub(crate) names: std::collections::HashMap<String, String>,
}

/// Mixes a stopped recording part into its replay (waiting for a free mix slot), describes it, and announces it
/// (`recording.ready` or `recording.failed`). Runs on its own task.
pub(crate) async fn mix(shared: Arc<Shared>, job: MixJob) {
    let config = &shared.config.recording;
    let dir = config.dir.clone();
    let tracks = &job.tracks;
    let chapters = chapters(tracks, |id| job.names.get(id).cloned().unwrap_or_else(|| id.to_owned()));
    let mut speakers: Vec<String> = tracks.segments.iter().map(|s| s.identity.clone()).collect();
    speakers.sort();
    speakers.dedup();
    let started_at_ms = tracks
        .started_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let duration_ms = tracks.segments.iter().map(|s| s.start_ms + s.duration_ms).max().unwrap_or(0);
    let mut replay = Replay {
        id: job.part.clone(),
        recording_id: job.recording_id.clone(),
        room: job.room.clone(),
        node: shared.node_id.clone(),
        state: "mixing".into(),
        started_at_ms,
        duration_ms,
        bytes: 0,
        chapters,
        speakers,
        dropped: tracks.dropped,
        error: None,
        url: None,
    };
    if let Err(e) = write_description(&dir, &replay) {
        warn!(recording = %replay.id, error = %e, "writing the replay's description failed");
    }
    let result = match shared.mixer.permits.acquire().await {
        Ok(_permit) => run_ffmpeg(config, &dir, &replay, tracks).await,
        Err(_) => Err("the mixer is closed".to_owned()),
    };
    let kind = match result {
        Ok(bytes) => {
            replay.state = "ready".into();
            replay.bytes = bytes;
            replay.url = Some(format!("/v1/admin/recordings/{}/replay", replay.id));
            info!(recording = %replay.id, room = %replay.room, bytes, duration_ms, "replay ready");
            "recording.ready"
        }
        Err(error) => {
            warn!(recording = %replay.id, room = %replay.room, %error, "mixing the replay failed");
            replay.state = "failed".into();
            replay.error = Some(error);
            "recording.failed"
        }
    };
    if let Err(e) = write_description(&dir, &replay) {
        warn!(recording = %replay.id, error = %e, "writing the replay's description failed");
    }
    let data = WebhookData {
        recording_id: Some(replay.id.clone()),
        duration_ms: Some(replay.duration_ms),
        bytes: (kind == "recording.ready").then_some(replay.bytes),
        chapters: replay.chapters.clone(),
        url: replay.url.clone(),
        error: replay.error.clone(),
        ..WebhookData::default()
    };
    shared.hooks.recording_event(&replay.room, kind, data).await;
}

/// Runs ffmpeg for `replay`; the replay file's size on success.
async fn run_ffmpeg(
    config: &RecordingConfig,
    dir: &Path,
    replay: &Replay,
    tracks: &RecordedTracks,
) -> Result<u64, String> {
    if let Some(e) = &tracks.error
        && tracks.segments.is_empty()
    {
        return Err(format!("writing the tracks failed: {e}"));
    }
    if tracks.segments.is_empty() {
        return Err("nothing was recorded (no speaker's audio)".to_owned());
    }
    let meta = dir.join(format!(".{}.ffmetadata", replay.id));
    let title = format!("{} ({})", replay.room, replay.recording_id);
    std::fs::write(&meta, ffmetadata(&title, &replay.chapters, replay.duration_ms))
        .map_err(|e| format!("writing the chapters failed: {e}"))?;
    let out = replay_path(dir, &replay.id);
    let tmp = dir.join(format!(".{}.ogg.tmp", replay.id));
    let n = tracks.segments.len();
    let mut filter = String::new();
    for (i, s) in tracks.segments.iter().enumerate() {
        filter.push_str(&format!("[{i}:a]aresample=48000,adelay={}:all=1[a{i}];", s.start_ms));
    }
    for i in 0..n {
        filter.push_str(&format!("[a{i}]"));
    }
    filter.push_str(&format!("amix=inputs={n}:normalize=0:duration=longest:dropout_transition=0[out]"));
    let mut cmd = tokio::process::Command::new(&config.ffmpeg);
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]);
    for s in &tracks.segments {
        cmd.arg("-i").arg(&s.path);
    }
    cmd.args(["-f", "ffmetadata", "-i"]).arg(&meta);
    cmd.args(["-filter_complex", &filter, "-map", "[out]"]);
    cmd.args(["-map_metadata", &n.to_string(), "-map_chapters", &n.to_string()]);
    cmd.args(["-c:a", "libopus", "-b:a", &format!("{}k", config.bitrate_kbps), "-ac", "1", "-f", "ogg"]);
    cmd.arg(&tmp);
    cmd.kill_on_drop(true).stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
    cmd.stderr(std::process::Stdio::piped());
    let child = cmd.spawn().map_err(|e| format!("starting {} failed: {e}", config.ffmpeg.display()))?;
    let waited = tokio::time::timeout(Duration::from_secs(config.mix_timeout_s), child.wait_with_output()).await;
    let _ = std::fs::remove_file(&meta);
    let output = match waited {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("waiting for ffmpeg failed: {e}")),
        // Dropping the future kills the child (`kill_on_drop`).
        Err(_) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("ffmpeg took longer than {} s", config.mix_timeout_s));
        }
    };
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr.chars().rev().take(400).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(format!("ffmpeg failed ({}): {}", output.status, tail.trim()));
    }
    std::fs::rename(&tmp, &out).map_err(|e| format!("storing the replay failed: {e}"))?;
    std::fs::metadata(&out).map(|m| m.len()).map_err(|e| format!("reading the replay failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chapters_follow_speaker_turns_and_metadata_escapes() {
        let seg = |who: &str, start_ms: u64| podium_media::Segment {
            identity: who.into(),
            path: PathBuf::new(),
            start_ms,
            duration_ms: 1_000,
            packets: 50,
        };
        let tracks = RecordedTracks {
            id: "rec_1".into(),
            dir: PathBuf::new(),
            started_at: std::time::SystemTime::now(),
            duration_ms: 9_000,
            segments: vec![seg("a", 0), seg("a", 6_000), seg("b", 7_000), seg("a", 8_000)],
            dropped: 0,
            error: None,
        };
        let c = chapters(&tracks, |id| format!("{id}=name"));
        let starts: Vec<(u64, &str)> = c.iter().map(|c| (c.start_ms, c.title.as_str())).collect();
        assert_eq!(starts, [(0, "a=name"), (7_000, "b=name"), (8_000, "a=name")]);
        let meta = ffmetadata("r;1", &c, 9_000);
        assert!(meta.starts_with(";FFMETADATA1\ntitle=r\\;1\n"), "{meta}");
        assert!(meta.contains("START=7000\nEND=8000\ntitle=b\\=name\n"), "{meta}");
        assert!(meta.contains("START=8000\nEND=9000\n"), "{meta}");
    }

    #[test]
    fn ids_and_parts() {
        assert!(valid_id("rec_0123abcd") && valid_id("rec_1-2"));
        assert!(!valid_id("") && !valid_id("../x") && !valid_id("a.json") && !valid_id(&"a".repeat(81)));
        let dir = std::env::temp_dir().join(format!("podium-parts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("rec_1")).unwrap_or_default();
        assert_eq!(part_name(&dir, "rec_1"), "rec_1-2");
        assert_eq!(part_name(&dir, "rec_2"), "rec_2");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
