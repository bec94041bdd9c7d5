//! What a room's task does for the summit scheduler when the room is a summit stage. The scheduler and the room's
//! hubs meet in the room's stage control record (`podium_store::summit`, [`podium_store::StageCtl`]), and the
//! scheduler's runner hands the room's `schedule` frames to its local task ([`RoomMsg::Schedule`]).
//!
//! * **Schedule.** The task remembers the last `schedule` frame of its room: one handed to it (which it delivers to
//!   its connections and announces to the other hubs, outputs only), one announced by another hub (delivered, and
//!   remembered on the way), or the control record's `schedule` read once at the task's start. A room with a
//!   remembered frame is a stage. A participant who joins gets the frame right after its `join` reply (behind the
//!   events of its own join, if any), on its connection only, with `server_time_ms` made now (the view is as the
//!   runner last made it; only the clock it carries for countdowns is the moment of sending). The frame goes with
//!   the task.
//! * **Heard.** The stage's media hub writes the record's `heard` (ms since the Unix epoch) while a real
//!   participant speaks (anyone but the filler, [`podium_media::FILLER_IDENTITY`], who may publish): on an
//!   `active_speakers` change and at every reconciliation tick, at most once per [`HEARD_EVERY`], one write in
//!   flight at most, on a task of its own (the room task never waits for it).
//! * **Filler.** Every [`RECONCILE_EVERY`] the stage's media hub reads the record (one read, on a task of its own,
//!   one in flight at most) and reconciles its `filler` field, `"<token> <path>"`, with the SFU
//!   ([`filler_action`]): a value it has not acted on yet plays the Ogg Opus file at `path` (opened off the task,
//!   in `spawn_blocking`), a cleared field stops what this task started. Each value is acted on once: the SFU
//!   stops a filler by itself when a real speaker talks, and the same value never plays it again (the scheduler
//!   writes a new token for a new request); a file that cannot be played is logged once, at warn. A hub that stops
//!   being the room's media hub forgets the value it acted on (the SFU dropped the room's filler with its peers;
//!   the new media hub reconciles from the record).

use podium_media::{FILLER_IDENTITY, FillerSource};
use podium_store::{CtlField, StageCtl, SummitStore as _};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::*;

/// How a `schedule` frame starts (as `ServerMessage::to_json` writes it).
const SCHEDULE_PREFIX: &str = r#"{"type":"schedule""#;

/// How often a stage's media hub reconciles the filler with the control record (and refreshes `heard`).
pub(super) const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// The least time between two writes of `heard` for a room.
pub(super) const HEARD_EVERY: Duration = Duration::from_secs(1);

/// A room task's summit stage state (all empty for a room that is not a stage).
#[derive(Default)]
pub(super) struct Stage {
    /// The room's last `schedule` frame, if it is a stage.
    schedule: Option<Schedule>,
    /// When `heard` was last written (media hub).
    heard_at: Option<Instant>,
    /// The write of `heard` in flight, if any.
    heard_write: Option<JoinHandle<()>>,
    /// The control record's `filler` value this task last acted on (media hub; `None`: none, or forgotten).
    acted: Option<String>,
    /// This task started the SFU's filler for the room and has not stopped it (the SFU may have, for speech).
    playing: bool,
    /// The reconciliation in flight, if any: a read of the record and the file it names, opened.
    pub(super) reconcile: Option<JoinHandle<Reconciled>>,
}

/// A remembered `schedule` frame.
struct Schedule {
    /// As it came.
    frame: Arc<str>,
    /// Its view, to send a joining participant with the clock of the moment (`None`: it did not parse, and is sent
    /// as it came).
    view: Option<Box<proto::ScheduleView>>,
}

/// What a reconciliation read, and the filler file it opened.
pub(super) struct Reconciled {
    /// The record's `filler` field.
    filler: Result<Option<String>, StoreError>,
    /// The file of a new value, opened (or why not).
    source: Option<Result<FillerSource, String>>,
}

/// What to do with the SFU's filler for the control record's `filler` value.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FillerAction<'a> {
    /// Nothing: the value was acted on already (the SFU may have stopped the filler for speech since: it stays
    /// stopped), or the field is empty and nothing plays.
    Keep,
    /// A new value: play the file at this path (replacing what plays).
    Play(&'a str),
    /// A new value that is not `<token> <path>`: nothing to play (and what plays stops).
    Invalid,
    /// The field was cleared while a filler this task started may play: stop it.
    Stop,
}

/// The decision of a reconciliation: `acted` is the value last acted on, `current` the record's value, `playing`
/// whether a filler this task started may still play. Afterwards the caller takes `current` as acted on.
pub(super) fn filler_action<'a>(acted: Option<&str>, current: Option<&'a str>, playing: bool) -> FillerAction<'a> {
    match current {
        _ if current == acted => FillerAction::Keep,
        None if playing => FillerAction::Stop,
        None => FillerAction::Keep,
        Some(value) => match filler_path(value) {
            Some(path) => FillerAction::Play(path),
            None => FillerAction::Invalid,
        },
    }
}

/// The path of a `filler` value, `"<token> <path>"` (a token without spaces, then the path); `None` when either
/// is empty.
fn filler_path(value: &str) -> Option<&str> {
    let (token, path) = value.split_once(' ')?;
    (!token.is_empty() && !path.is_empty()).then_some(path)
}

/// True for a `schedule` frame: one starting as `ServerMessage::to_json` writes it, or (rarely: not written by a
/// hub) one naming its type elsewhere that parses as one.
pub(super) fn is_schedule_frame(frame: &str) -> bool {
    frame.starts_with(SCHEDULE_PREFIX)
        || (frame.contains(r#""type":"schedule""#)
            && matches!(serde_json::from_str::<proto::ServerMessage>(frame), Ok(proto::ServerMessage::Schedule(_))))
}

impl Schedule {
    /// A whole `schedule` frame.
    fn from_frame(frame: &str) -> Self {
        let view = match serde_json::from_str::<proto::ServerMessage>(frame) {
            Ok(proto::ServerMessage::Schedule(view)) => Some(view),
            _ => None,
        };
        Self { frame: Arc::from(frame), view }
    }

    /// The control record's `schedule`: a whole frame, or the view alone (made into a frame); `None` when it is
    /// neither.
    fn from_stored(text: &str) -> Option<Self> {
        if is_schedule_frame(text.trim_start()) {
            return Some(Self::from_frame(text.trim_start()));
        }
        let view: proto::ScheduleView = serde_json::from_str(text).ok()?;
        let frame = proto::ServerMessage::Schedule(Box::new(view)).to_json();
        Some(Self::from_frame(&frame))
    }

    /// The frame for a participant joining now.
    fn for_join(&self) -> String {
        match &self.view {
            Some(view) => {
                let mut view = view.clone();
                view.server_time_ms = wall_ms();
                proto::ServerMessage::Schedule(view).to_json()
            }
            None => self.frame.to_string(),
        }
    }
}

impl Stage {
    /// True when the room is a summit stage (a `schedule` frame is remembered).
    pub(super) fn is_stage(&self) -> bool {
        self.schedule.is_some()
    }

    /// Remembers a `schedule` frame (delivered here or announced by another hub).
    pub(super) fn remember(&mut self, frame: &str) {
        self.schedule = Some(Schedule::from_frame(frame));
    }

    /// This hub no longer runs the room's media: forget the filler value acted on (and the reconciliation in
    /// flight); the new media hub reconciles from the record.
    pub(super) fn media_lost(&mut self) {
        if let Some(reconcile) = self.reconcile.take() {
            reconcile.abort();
        }
        self.acted = None;
        self.playing = false;
    }
}

impl RoomTask {
    /// At the task's start: the stage control record's `schedule`, if any, is remembered. A failure to read it is
    /// not the room's (a stage's next `schedule` comes with the next change).
    pub(super) fn take_stored_stage(&mut self, ctl: Result<StageCtl, StoreError>) {
        match ctl {
            Ok(StageCtl { schedule: Some(text), .. }) => match Schedule::from_stored(&text) {
                Some(schedule) => {
                    debug!("the room is a summit stage");
                    self.stage.schedule = Some(schedule);
                }
                None => warn!("the stage control record's schedule is not a schedule; ignored"),
            },
            Ok(_) => {}
            Err(e) => debug!(error = %e, "reading the stage control record failed; ignored"),
        }
    }

    /// The runner's new `schedule` frame: remembered, delivered to this hub's connections, and announced to the
    /// other hubs'.
    pub(super) async fn on_schedule(&mut self, frame: Arc<str>) {
        if !is_schedule_frame(&frame) {
            warn!("a schedule message that is not a schedule frame; ignored");
            return;
        }
        debug!("schedule changed");
        self.stage.remember(&frame);
        self.deliver(&room::Recipients::Everyone, Utf8Bytes::from(frame.to_string()));
        self.announce_frames(vec![(room::Recipients::Everyone, frame.to_string())]).await;
    }

    /// Sends a participant who just joined the stage's `schedule`, if the room is one.
    pub(super) fn send_schedule(&mut self, who: &ParticipantId) {
        if let Some(schedule) = &self.stage.schedule {
            let frame = schedule.for_join();
            self.deliver(&room::Recipients::One(who.clone()), frame.into());
        }
    }

    /// True when this hub keeps the stage's record in step (a stage whose media runs here).
    pub(super) fn tends_stage(&self) -> bool {
        self.stage.is_stage() && self.runs_media()
    }

    /// Writes the record's `heard` now if a real participant speaks (see the module documentation).
    pub(super) fn note_heard(&mut self) {
        if !self.tends_stage() {
            return;
        }
        let real = self
            .speaking
            .iter()
            .any(|(id, _)| id != FILLER_IDENTITY && self.room.may_publish(&ParticipantId::new(id.as_str())));
        if !real {
            return;
        }
        let now = Instant::now();
        if self.stage.heard_at.is_some_and(|at| now.duration_since(at) < HEARD_EVERY)
            || self.stage.heard_write.as_ref().is_some_and(|w| !w.is_finished())
        {
            return;
        }
        self.stage.heard_at = Some(now);
        let (summits, room, at) = (self.shared.summits.clone(), self.name.clone(), wall_ms().to_string());
        let write = async move {
            if let Err(e) = summits.ctl_set(&room, CtlField::Heard, Some(&at)).await {
                debug!(error = %e, "writing when the stage was last heard failed");
            }
        };
        self.stage.heard_write = Some(tokio::spawn(write.in_current_span()));
    }

    /// The reconciliation tick of a stage's media hub: refreshes `heard`, and starts reading the record unless a
    /// read is in flight.
    pub(super) fn stage_tick(&mut self) {
        if !self.tends_stage() {
            return;
        }
        self.note_heard();
        if self.stage.reconcile.is_some() {
            return;
        }
        let (summits, room) = (self.shared.summits.clone(), self.name.clone());
        let (acted, playing) = (self.stage.acted.clone(), self.stage.playing);
        let reconcile = async move {
            let filler = summits.ctl_get(&room).await.map(|ctl| ctl.filler);
            let source = match filler.as_ref().map(|f| filler_action(acted.as_deref(), f.as_deref(), playing)) {
                Ok(FillerAction::Play(path)) => {
                    let path = path.to_owned();
                    let opened = tokio::task::spawn_blocking(move || FillerSource::open(path)).await;
                    Some(match opened {
                        Ok(Ok(source)) => Ok(source),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    })
                }
                _ => None,
            };
            Reconciled { filler, source }
        };
        self.stage.reconcile = Some(tokio::spawn(reconcile.in_current_span()));
    }

    /// Applies a finished reconciliation (see [`filler_action`]).
    pub(super) fn reconciled(&mut self, done: Result<Reconciled, tokio::task::JoinError>) {
        self.stage.reconcile = None;
        let Ok(Reconciled { filler, source }) = done else { return };
        if !self.tends_stage() {
            return;
        }
        let Some(media) = self.shared.media.clone() else { return };
        let current = match filler {
            Ok(current) => current,
            Err(e) => {
                debug!(error = %e, "reading the stage control record failed; reconciling the filler later");
                return;
            }
        };
        let stage = &mut self.stage;
        let action = filler_action(stage.acted.as_deref(), current.as_deref(), stage.playing);
        match action {
            FillerAction::Keep => {}
            FillerAction::Stop => {
                debug!(acted = ?stage.acted, "the filler field was cleared: stopping the filler");
                media.stop_filler(&self.name);
                stage.playing = false;
            }
            FillerAction::Invalid => {
                warn!(filler = ?current, "the filler field is not `<token> <path>`; nothing to play");
                if std::mem::take(&mut stage.playing) {
                    media.stop_filler(&self.name);
                }
            }
            FillerAction::Play(path) => match source {
                Some(Ok(source)) => match media.play_filler(&self.name, &source) {
                    Ok(()) => {
                        debug!(filler = ?current, "a new filler value: playing it");
                        stage.playing = true;
                    }
                    Err(e) => {
                        warn!(path, error = %e, "the SFU did not take the filler");
                        stage.playing = false;
                    }
                },
                Some(Err(e)) => {
                    warn!(path, error = %e, "the filler file cannot be played; waiting for another value");
                    if std::mem::take(&mut stage.playing) {
                        media.stop_filler(&self.name);
                    }
                }
                // Not opened: the reading was made for another state (it cannot be: one in flight, and losing the
                // media aborts it). Try again at the next tick.
                None => return,
            },
        }
        if action == FillerAction::Keep && current == stage.acted {
            return;
        }
        stage.acted = current;
    }
}

/// Waits for the task in `job`, if any (forever if none).
pub(super) async fn join_opt<T>(job: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match job {
        Some(job) => job.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_value_plays_once() {
        assert_eq!(filler_action(None, Some("t1 /f/a.ogg"), false), FillerAction::Play("/f/a.ogg"));
        // Acted on: stopped by speech or still playing, it is not played again.
        assert_eq!(filler_action(Some("t1 /f/a.ogg"), Some("t1 /f/a.ogg"), true), FillerAction::Keep);
        assert_eq!(filler_action(Some("t1 /f/a.ogg"), Some("t1 /f/a.ogg"), false), FillerAction::Keep);
        // A new token for the same file is a new request.
        assert_eq!(filler_action(Some("t1 /f/a.ogg"), Some("t2 /f/a.ogg"), false), FillerAction::Play("/f/a.ogg"));
        assert_eq!(filler_action(Some("t1 /f/a.ogg"), Some("t2 /f/b c.ogg"), true), FillerAction::Play("/f/b c.ogg"));
    }

    #[test]
    fn a_cleared_field_stops_what_plays() {
        assert_eq!(filler_action(Some("t1 /f/a.ogg"), None, true), FillerAction::Stop);
        assert_eq!(filler_action(Some("t1 /f/a.ogg"), None, false), FillerAction::Keep);
        assert_eq!(filler_action(None, None, false), FillerAction::Keep);
    }

    #[test]
    fn malformed_values_play_nothing() {
        for bad in ["t1", "t1 ", " /f/a.ogg", ""] {
            assert_eq!(filler_action(None, Some(bad), false), FillerAction::Invalid, "{bad:?}");
        }
        assert_eq!(filler_action(Some("t1"), Some("t1"), false), FillerAction::Keep);
    }

    fn view() -> proto::ScheduleView {
        proto::ScheduleView {
            summit: "s1".into(),
            stage: "main".into(),
            room: "s1-main".into(),
            backstage: "s1-main.backstage".into(),
            release: 3,
            now: None,
            next: Vec::new(),
            server_time_ms: 1,
        }
    }

    #[test]
    fn schedule_frames_are_recognised_and_stamped_at_join() {
        let frame = proto::ServerMessage::Schedule(Box::new(view())).to_json();
        assert!(is_schedule_frame(&frame), "{frame}");
        assert!(!is_schedule_frame(&proto::ServerMessage::MediaMoved { media_epoch: 1 }.to_json()));
        // Keys in another order (a frame made from a JSON map).
        let sorted = serde_json::from_str::<serde_json::Value>(&frame).unwrap().to_string();
        assert!(!sorted.starts_with(SCHEDULE_PREFIX) && is_schedule_frame(&sorted), "{sorted}");
        assert!(!is_schedule_frame(r#"{"title":"\"type\":\"schedule\""}"#));
        let before = wall_ms();
        for stored in [frame.clone(), serde_json::to_string(&view()).unwrap()] {
            let schedule = Schedule::from_stored(&stored).expect("a schedule");
            let Ok(proto::ServerMessage::Schedule(sent)) = serde_json::from_str(&schedule.for_join()) else {
                panic!("not a schedule frame: {}", schedule.for_join());
            };
            assert!(sent.server_time_ms >= before, "stamped when sent");
            assert_eq!(proto::ScheduleView { server_time_ms: 1, ..*sent }, view());
        }
        assert!(Schedule::from_stored(r#"{"type":"media_moved","media_epoch":1}"#).is_none());
        assert!(Schedule::from_stored("not json").is_none());
        // A frame that does not parse is sent as it came.
        let odd = Schedule::from_frame(r#"{"type":"schedule","x":1}"#);
        assert_eq!(odd.for_join(), r#"{"type":"schedule","x":1}"#);
    }
}
