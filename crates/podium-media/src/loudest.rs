//! Loudest-N: which publishers of a room a worker forwards to its listeners ([`crate::MediaConfig::loudest`]).
//!
//! # Design
//!
//! A worker keeps one [`Loudest`] per room and calls [`Loudest::observe`] once for every audio packet of the room
//! it fans out (its own publishers' and those forwarded by other workers), before writing it to any listener. The
//! answer says whether the packet's source is *selected* (its packets go to the listeners) and which source, if
//! any, it just displaced (the worker frees that source's downstream slots at once, so the newcomer gets them).
//! A listener thus receives at most `n` publishers at a time, the loudest ones, on at most `n` slots.
//!
//! * **Level.** Each packet's RFC 6464 level (str0m's `audio_level`: 0 loudest .. -127 silence, in -dBov) becomes a
//!   loudness `127 - dBov` (0 silence .. 127 loudest), smoothed per source by an exponential average over packets
//!   (weight 1/8: with 20 ms packets a time constant of about 160 ms), in fixed point (1/256 dB) so every worker
//!   computes exactly the same numbers. A source's first packet sets its level outright. A packet **without** an
//!   audio level counts as silence (loudness 0) and never as speech: such a source (a client that does not send
//!   the extension, the filler) can still fill a free place, but never displaces anyone and yields its place to
//!   the first speaking newcomer once it has held it for [`QUIET_HOLD`].
//! * **Speech.** A packet is speech by the active-speaker rule ([`is_speech`]): louder than -50 dBov, or flagged
//!   voice activity and louder than -70 dBov. A source is *speaking* while its last speech packet is less than
//!   [`QUIET_HOLD`] old.
//! * **Places.** There are `n` places. A packet of an unselected source takes, in this order of preference:
//!   1. a **free** place (fewer than `n` selected): at once, whoever it is;
//!   2. the place of a **stale** selected source (no packet for [`STALE`]: it stopped sending, muted, left
//!      without a [`Loudest::remove`] yet), at once, whoever it is; the stalest first;
//!   3. if the newcomer is speaking, the place of a **quiet** selected source (no speech for [`QUIET_HOLD`] since
//!      it last spoke or took its place), at once; the quietest first;
//!   4. otherwise (all places held by live, recently speaking sources) a speaking newcomer **challenges** the
//!      quietest selected source: it replaces it once it has been louder by at least [`MARGIN_DB`] on every one
//!      of its packets for [`SUSTAIN`], and the incumbent has held its place for [`MIN_HOLD`]. A packet not louder
//!      by the margin (or not speaking) restarts the count.
//!
//!   In cases 1-3 the newcomer yields if another unselected source, live (a packet within [`STALE`]) and entitled
//!   to that same place (for a quiet place: speaking), is louder than it by [`MARGIN_DB`]: the louder one takes it
//!   with its own next packet. So when a place frees, the loudest waiting source gets it, not whoever's packet
//!   came first.
//!
//!   Selection happens on packets only: a stale or quiet place is given up when someone else wants it, not on a
//!   timer. A stopped source therefore stays "selected" until then (harmless: it sends nothing) and gets its place
//!   back if it resumes first.
//! * **Hysteresis.** The margin, the sustain time and the minimum hold keep two sources of near-equal level from
//!   flapping: a source within [`MARGIN_DB`] of the quietest selected one never displaces it, and a switch needs
//!   [`SUSTAIN`] of sustained advantage after the incumbent's [`MIN_HOLD`].
//! * **Agreement between workers.** Every worker of a room sees the same packets (its own publishers' and the
//!   forwarded ones). [`Loudest::observe`] is a pure function of the sequence of calls (sources, levels, times;
//!   no randomness, no dependence on hash-map iteration order: ties go to the earlier place, or the packet that
//!   came first). Pass the packet's receipt time on the worker where it arrived (the frame's `network_time`), not
//!   the local clock, and workers differ only in how packets of different sources interleave: they agree on the
//!   selection except for a packet or two around a switch. Times need not be monotonic (all differences saturate).
//!
//! # Invariants
//!
//! * At most `n` sources are selected (`n == 0`: no limit, every packet is selected and nothing is stored).
//! * A source stops being selected only by [`Loudest::remove`] or by being reported in [`Observed::deselected`] of
//!   the call that displaced it, exactly once; a call displaces at most one source (the one place its source took).
//!   So a caller that tracks selections from the answers always agrees with [`Loudest::is_selected`].
//! * `observe` allocates nothing once a source is known (hash lookups, an `Arc` clone on a switch); a new source
//!   costs one hash-map entry, freed by [`Loudest::remove`]. Per packet of an unselected source it looks at the `n`
//!   selected ones; only when a free, stale or quiet place is about to be taken does it scan all sources.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A selected source with no packet for this long has stopped: anyone may take its place.
pub(crate) const STALE: Duration = Duration::from_millis(400);
/// A source is speaking while its last speech packet is younger than this; a selected source that has not spoken
/// for this long (since it last spoke or took its place) is quiet, and any speaking newcomer may take its place.
pub(crate) const QUIET_HOLD: Duration = Duration::from_secs(1);
/// A speaking selected source keeps its place at least this long against louder challengers.
pub(crate) const MIN_HOLD: Duration = Duration::from_secs(1);
/// How much louder (smoothed) than the quietest selected source a challenger must be, in dB.
pub(crate) const MARGIN_DB: i32 = 6;
/// How long a challenger must stay louder by [`MARGIN_DB`] to displace the quietest selected source.
pub(crate) const SUSTAIN: Duration = Duration::from_millis(300);

/// Fixed point of smoothed levels: 1/256 dB.
const FRAC: i32 = 256;
/// Weight of a new packet in the smoothed level: 1/SMOOTH.
const SMOOTH: i32 = 8;
/// [`MARGIN_DB`] in fixed point.
const MARGIN: i32 = MARGIN_DB * FRAC;

/// Whether a packet counts as speech (the active-speaker rule): louder than -50 dBov, or flagged voice activity
/// and louder than -70 dBov. `level` is str0m's (0 loudest .. -127 silence); no level is never speech.
pub(crate) fn is_speech(level: Option<i8>, voice_activity: Option<bool>) -> bool {
    let Some(level) = level else { return false };
    let dbov = level.unsigned_abs().min(127);
    dbov <= 50 || (voice_activity == Some(true) && dbov <= 70)
}

/// Loudness of a packet: 0 (silence or unknown) ..= 127 (0 dBov).
fn loudness(level: Option<i8>) -> i32 {
    level.map_or(0, |l| 127 - i32::from(l.unsigned_abs().min(127)))
}

/// What [`Loudest::observe`] decided for one packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Observed {
    /// The packet's source is selected: forward the packet to the listeners.
    pub(crate) selected: bool,
    /// The source this packet's source just displaced (reported once): free its slots now.
    pub(crate) deselected: Option<Arc<str>>,
}

/// What one source sounds like, as far as the selection is concerned.
#[derive(Debug)]
struct Source {
    /// Smoothed loudness in 1/256 dB above silence: 0 ..= 127 × 256.
    level: i32,
    last_packet: Instant,
    last_speech: Option<Instant>,
    /// When it took its place; `None` while not selected.
    selected_since: Option<Instant>,
    /// While not selected: since when every packet of it was louder than the quietest selected source by the
    /// margin.
    louder_since: Option<Instant>,
}

impl Source {
    fn speaking(&self, now: Instant) -> bool {
        self.last_speech.is_some_and(|t| now.saturating_duration_since(t) < QUIET_HOLD)
    }

    fn live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_packet) < STALE
    }

    /// A selected source that has not spoken for [`QUIET_HOLD`] since it last spoke or took its place.
    fn quiet(&self, now: Instant) -> bool {
        // `None` < `Some`: the later of the two that are known.
        let since = self.last_speech.max(self.selected_since).unwrap_or(self.last_packet);
        now.saturating_duration_since(since) >= QUIET_HOLD
    }
}

/// A place an unselected source may take without a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vacancy {
    Free,
    Stale(usize),
    Quiet(usize),
}

/// The loudest-N selection of one room, as seen by one worker (see the module docs).
#[derive(Debug)]
pub(crate) struct Loudest {
    n: usize,
    /// Every source heard and not removed, selected or not.
    sources: HashMap<Arc<str>, Source>,
    /// The selected sources (at most `n`), by place.
    selected: Vec<Arc<str>>,
}

impl Loudest {
    /// A selection of at most `n` sources; `n == 0` selects everyone.
    pub(crate) fn new(n: usize) -> Self {
        Self { n, sources: HashMap::new(), selected: Vec::with_capacity(n) }
    }

    /// The selected sources, by place (empty when unlimited).
    #[cfg(test)]
    pub(crate) fn selected(&self) -> &[Arc<str>] {
        &self.selected
    }

    /// Whether `source` is selected (always true when unlimited).
    #[cfg(test)]
    pub(crate) fn is_selected(&self, source: &str) -> bool {
        self.n == 0 || self.selected.iter().any(|s| **s == *source)
    }

    /// Takes note of one packet of `source` with its RFC 6464 `level` (str0m's: 0 loudest .. -127 silence; `None`
    /// when the packet has no audio level) and voice-activity flag, received at `now`; says whether to forward it
    /// and whom it displaced.
    pub(crate) fn observe(
        &mut self,
        source: &Arc<str>,
        level: Option<i8>,
        voice_activity: Option<bool>,
        now: Instant,
    ) -> Observed {
        if self.n == 0 {
            return Observed { selected: true, deselected: None };
        }
        let sample = loudness(level) * FRAC;
        let speech = is_speech(level, voice_activity);
        let s = match self.sources.get_mut(&**source) {
            Some(s) => {
                s.level += (sample - s.level) / SMOOTH;
                s.last_packet = now;
                if speech {
                    s.last_speech = Some(now);
                }
                s
            }
            None => self.sources.entry(source.clone()).or_insert(Source {
                level: sample,
                last_packet: now,
                last_speech: speech.then_some(now),
                selected_since: None,
                louder_since: None,
            }),
        };
        if s.selected_since.is_some() {
            return Observed { selected: true, deselected: None };
        }
        let (level, speaking) = (s.level, s.speaking(now));
        if let Some(vacancy) = self.vacancy(speaking, now) {
            self.set_louder_since(source, None);
            if self.louder_waiting(source, level, vacancy, now) {
                return Observed::default();
            }
            return match vacancy {
                Vacancy::Free => self.take(None, source, now),
                Vacancy::Stale(i) | Vacancy::Quiet(i) => self.take(Some(i), source, now),
            };
        }
        // Every place is held by a live, recently speaking source: challenge the quietest.
        let challenge = match self.quietest(|_| true) {
            Some((i, v_level, v_since)) if speaking && level >= v_level + MARGIN => Some((i, v_since)),
            _ => None,
        };
        let Some((i, v_since)) = challenge else {
            self.set_louder_since(source, None);
            return Observed::default();
        };
        let since = self.sources.get_mut(&**source).map_or(now, |s| *s.louder_since.get_or_insert(now));
        if now.saturating_duration_since(since) >= SUSTAIN && now.saturating_duration_since(v_since) >= MIN_HOLD {
            return self.take(Some(i), source, now);
        }
        Observed::default()
    }

    /// Forgets `source` (it stopped publishing or left); returns whether it was selected (its place is free now).
    pub(crate) fn remove(&mut self, source: &str) -> bool {
        self.sources.remove(source);
        match self.selected.iter().position(|s| **s == *source) {
            Some(i) => {
                self.selected.remove(i);
                true
            }
            None => false,
        }
    }

    /// The place an unselected source (speaking or not) may take at once, if any.
    fn vacancy(&self, speaking: bool, now: Instant) -> Option<Vacancy> {
        if self.selected.len() < self.n {
            return Some(Vacancy::Free);
        }
        let mut stalest: Option<(usize, Instant)> = None;
        for (i, name) in self.selected.iter().enumerate() {
            let Some(p) = self.sources.get(name) else { continue };
            if !p.live(now) && stalest.is_none_or(|(_, t)| p.last_packet < t) {
                stalest = Some((i, p.last_packet));
            }
        }
        if let Some((i, _)) = stalest {
            return Some(Vacancy::Stale(i));
        }
        if speaking {
            return self.quietest(|p| p.quiet(now)).map(|(i, _, _)| Vacancy::Quiet(i));
        }
        None
    }

    /// The selected source with the lowest smoothed level among those matching `filter` (ties: the earlier
    /// place): its place, level and since when it holds it.
    fn quietest(&self, filter: impl Fn(&Source) -> bool) -> Option<(usize, i32, Instant)> {
        let mut best: Option<(usize, i32, Instant)> = None;
        for (i, name) in self.selected.iter().enumerate() {
            let Some(p) = self.sources.get(name) else { continue };
            if filter(p) && best.is_none_or(|(_, l, _)| p.level < l) {
                best = Some((i, p.level, p.selected_since.unwrap_or(p.last_packet)));
            }
        }
        best
    }

    /// Whether another unselected, live source entitled to `vacancy` is louder than `level` by the margin.
    fn louder_waiting(&self, source: &Arc<str>, level: i32, vacancy: Vacancy, now: Instant) -> bool {
        self.sources.iter().any(|(name, p)| {
            p.selected_since.is_none()
                && p.level >= level + MARGIN
                && p.live(now)
                && (!matches!(vacancy, Vacancy::Quiet(_)) || p.speaking(now))
                && **name != **source
        })
    }

    /// Gives `source` a free place (`None`) or place `i`; reports whom it displaced.
    fn take(&mut self, place: Option<usize>, source: &Arc<str>, now: Instant) -> Observed {
        let deselected = match place {
            Some(i) => {
                let old = std::mem::replace(&mut self.selected[i], source.clone());
                if let Some(p) = self.sources.get_mut(&old) {
                    p.selected_since = None;
                    p.louder_since = None;
                }
                Some(old)
            }
            None => {
                self.selected.push(source.clone());
                None
            }
        };
        if let Some(s) = self.sources.get_mut(&**source) {
            s.selected_since = Some(now);
            s.louder_since = None;
        }
        Observed { selected: true, deselected }
    }

    fn set_louder_since(&mut self, source: &str, since: Option<Instant>) {
        if let Some(s) = self.sources.get_mut(source) {
            s.louder_since = since;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A test clock: milliseconds after a fixed start.
    struct Clock(Instant);

    impl Clock {
        fn new() -> Self {
            Self(Instant::now())
        }
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn names(k: usize) -> Vec<Arc<str>> {
        (0..k).map(|i| Arc::from(format!("s{i}"))).collect()
    }

    /// Feeds one 20 ms packet per source in `sources` (name, dBov level) for `ms` milliseconds from `start`;
    /// returns every deselection seen and the time after the last round.
    fn talk(l: &mut Loudest, c: &Clock, start: u64, ms: u64, sources: &[(&Arc<str>, i8)]) -> (Vec<Arc<str>>, u64) {
        let mut gone = Vec::new();
        let mut t = start;
        while t < start + ms {
            for (name, level) in sources {
                let o = l.observe(name, Some(*level), None, c.at(t));
                gone.extend(o.deselected);
            }
            t += 20;
        }
        (gone, t)
    }

    fn sorted(l: &Loudest) -> Vec<String> {
        let mut v: Vec<String> = l.selected().iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn speech_rule_matches_active_speakers() {
        assert!(is_speech(Some(-50), None));
        assert!(!is_speech(Some(-51), None));
        assert!(is_speech(Some(-70), Some(true)));
        assert!(!is_speech(Some(-71), Some(true)));
        assert!(!is_speech(None, Some(true)));
        assert_eq!(loudness(Some(0)), 127);
        assert_eq!(loudness(Some(-127)), 0);
        assert_eq!(loudness(Some(i8::MIN)), 0);
        assert_eq!(loudness(None), 0);
    }

    #[test]
    fn unlimited_selects_everyone_and_stores_nothing() {
        let c = Clock::new();
        let mut l = Loudest::new(0);
        for (i, s) in names(20).iter().enumerate() {
            assert_eq!(l.observe(s, Some(-90), None, c.at(i as u64)), Observed { selected: true, deselected: None });
            assert!(l.is_selected(s));
        }
        assert!(l.sources.is_empty());
        assert!(!l.remove("s1"));
    }

    #[test]
    fn free_places_are_taken_at_once_and_no_more() {
        let c = Clock::new();
        let s = names(4);
        let mut l = Loudest::new(3);
        assert!(l.observe(&s[0], None, None, c.at(0)).selected, "no level still fills a free place");
        assert!(l.observe(&s[1], Some(-127), None, c.at(0)).selected, "silence still fills a free place");
        assert!(l.observe(&s[2], Some(-30), None, c.at(0)).selected);
        assert_eq!(l.observe(&s[3], Some(-30), None, c.at(0)), Observed::default());
        assert_eq!(sorted(&l), ["s0", "s1", "s2"]);
    }

    #[test]
    fn louder_newcomer_replaces_quietest_after_sustain_and_min_hold() {
        let c = Clock::new();
        let s = names(4);
        let mut l = Loudest::new(3);
        // s0..s2 talk at -30, -35, -40; s3 arrives at 200 ms, at -20 dBov.
        let (gone, t) = talk(&mut l, &c, 0, 200, &[(&s[0], -30), (&s[1], -35), (&s[2], -40)]);
        assert!(gone.is_empty());
        let mut switched_at = None;
        let mut t = t;
        while t < 3000 {
            for (name, level) in [(&s[0], -30), (&s[1], -35), (&s[2], -40), (&s[3], -20)] {
                let o = l.observe(name, Some(level), None, c.at(t));
                if let Some(d) = o.deselected {
                    assert_eq!(&*d, "s2", "the quietest goes");
                    assert_eq!(name, &s[3]);
                    assert!(switched_at.is_none(), "reported once");
                    switched_at = Some(t);
                }
            }
            t += 20;
        }
        // s2 took its place at 0: the switch waits for MIN_HOLD (1 s) and SUSTAIN (300 ms from 200 ms).
        let at = switched_at.expect("s3 got in");
        assert!((1000..1100).contains(&at), "switched at {at}");
        assert_eq!(sorted(&l), ["s0", "s1", "s3"]);
    }

    #[test]
    fn a_short_burst_does_not_switch() {
        let c = Clock::new();
        let s = names(3);
        let mut l = Loudest::new(2);
        let (_, t) = talk(&mut l, &c, 0, 2000, &[(&s[0], -30), (&s[1], -30)]);
        // s2 is much louder for 60 ms, then quieter: its smoothed level is above the margin for less than SUSTAIN.
        let (gone, t) = talk(&mut l, &c, t, 60, &[(&s[0], -30), (&s[1], -30), (&s[2], -5)]);
        assert!(gone.is_empty());
        let (gone, _) = talk(&mut l, &c, t, 3000, &[(&s[0], -30), (&s[1], -30), (&s[2], -35)]);
        assert!(gone.is_empty(), "{gone:?}");
        assert_eq!(sorted(&l), ["s0", "s1"]);
    }

    #[test]
    fn near_equal_sources_do_not_flap() {
        let c = Clock::new();
        let s = names(2);
        let mut l = Loudest::new(1);
        // Alternating phrases: each source is 5 dB louder than the other half of the time.
        let mut t = 0;
        for round in 0..50 {
            let (a, b) = if round % 2 == 0 { (-25, -30) } else { (-30, -25) };
            let (gone, next) = talk(&mut l, &c, t, 700, &[(&s[0], a), (&s[1], b)]);
            assert!(gone.is_empty(), "round {round}: {gone:?}");
            t = next;
        }
        assert_eq!(sorted(&l), ["s0"]);
    }

    #[test]
    fn a_stopped_source_is_replaced_at_once_by_the_loudest_waiting() {
        let c = Clock::new();
        let s = names(5);
        let mut l = Loudest::new(2);
        let (_, t) = talk(&mut l, &c, 0, 2000, &[(&s[0], -10), (&s[1], -20), (&s[2], -35), (&s[3], -28)]);
        assert_eq!(sorted(&l), ["s0", "s1"]);
        // s0 stops sending. s2 (quieter) sends first each round, but s3 is louder by the margin: s3 gets it.
        let mut got = None;
        let mut t = t;
        while t < 4000 && got.is_none() {
            for (name, level) in [(&s[2], -35), (&s[1], -20), (&s[3], -28)] {
                let o = l.observe(name, Some(level), None, c.at(t));
                if let Some(d) = o.deselected {
                    assert_eq!(&*d, "s0");
                    assert_eq!(name, &s[3], "the loudest waiting source takes the stale place");
                    got = Some(t);
                }
            }
            t += 20;
        }
        let at = got.expect("s0 was replaced") - 1980;
        assert!(at <= STALE.as_millis() as u64 + 20, "after {at} ms");
        assert_eq!(sorted(&l), ["s1", "s3"]);
        // s0 comes back: it is a newcomer now, and louder: it challenges s3.
        let (gone, _) = talk(&mut l, &c, t, 2000, &[(&s[0], -10), (&s[1], -20), (&s[2], -35), (&s[3], -28)]);
        assert_eq!(gone.iter().map(|g| g.to_string()).collect::<Vec<_>>(), ["s3"]);
    }

    #[test]
    fn a_silent_source_yields_to_a_speaking_one_after_the_quiet_hold() {
        let c = Clock::new();
        let s = names(3);
        let mut l = Loudest::new(1);
        let (_, t) = talk(&mut l, &c, 0, 500, &[(&s[0], -20)]);
        // s0 keeps sending, but murmurs below the speech threshold; s1 sends silence (never takes the place); s2
        // speaks from quiet_from + 600, too softly to challenge s0 (less than the margin louder).
        let quiet_from = t;
        let (gone, t) = talk(&mut l, &c, t, 600, &[(&s[0], -55), (&s[1], -127)]);
        assert!(gone.is_empty());
        let mut got = None;
        let mut t = t;
        while t < 5000 && got.is_none() {
            for (name, level) in [(&s[0], -55), (&s[1], -127), (&s[2], -50)] {
                let o = l.observe(name, Some(level), None, c.at(t));
                if let Some(d) = o.deselected {
                    assert_eq!((&*d, &**name), ("s0", "s2"));
                    got = Some(t);
                }
            }
            t += 20;
        }
        let at = got.expect("s2 got in");
        // s0 last spoke at quiet_from - 20.
        assert!(at >= quiet_from - 20 + QUIET_HOLD.as_millis() as u64, "at {at}");
        assert!(at <= quiet_from + QUIET_HOLD.as_millis() as u64 + 20, "at {at}");
    }

    #[test]
    fn unknown_levels_fill_free_places_but_never_displace() {
        let c = Clock::new();
        let s = names(3);
        let mut l = Loudest::new(1);
        // s0 has no audio level: takes the free place; s1 (no level either) never displaces it.
        let mut t = 0;
        for _ in 0..200 {
            assert!(l.observe(&s[0], None, None, c.at(t)).selected);
            assert_eq!(l.observe(&s[1], None, Some(true), c.at(t)), Observed::default());
            t += 20;
        }
        // A speaking source takes it at once: s0 never spoke and has held the place longer than QUIET_HOLD.
        let o = l.observe(&s[2], Some(-40), None, c.at(t));
        assert_eq!(o, Observed { selected: true, deselected: Some(s[0].clone()) });
    }

    #[test]
    fn a_new_place_holder_keeps_it_for_the_min_hold() {
        let c = Clock::new();
        let s = names(2);
        let mut l = Loudest::new(1);
        // s0 speaks quietly; s1 is far louder from the start: it must wait for MIN_HOLD after s0 took the place.
        let mut switched = None;
        let mut t = 0;
        while t < 3000 {
            assert!(l.observe(&s[0], Some(-45), None, c.at(t)).selected || switched.is_some());
            if l.observe(&s[1], Some(-3), None, c.at(t)).deselected.is_some() {
                switched = Some(t);
                break;
            }
            t += 20;
        }
        assert_eq!(switched, Some(MIN_HOLD.as_millis() as u64));
    }

    #[test]
    fn remove_frees_the_place() {
        let c = Clock::new();
        let s = names(3);
        let mut l = Loudest::new(2);
        let (_, t) = talk(&mut l, &c, 0, 200, &[(&s[0], -20), (&s[1], -20), (&s[2], -20)]);
        assert_eq!(sorted(&l), ["s0", "s1"]);
        assert!(l.remove("s0"));
        assert!(!l.remove("s0"));
        assert!(!l.remove("s2"), "known but not selected");
        assert_eq!(l.observe(&s[1], Some(-20), None, c.at(t)), Observed { selected: true, deselected: None });
        // s2 was forgotten too: it starts over as a new source and takes the free place, displacing nobody.
        assert_eq!(l.observe(&s[2], Some(-20), None, c.at(t)), Observed { selected: true, deselected: None });
        assert_eq!(sorted(&l), ["s1", "s2"]);
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let c = Clock::new();
        let s = names(3);
        let mut l = Loudest::new(1);
        l.observe(&s[0], Some(-20), None, c.at(5000));
        l.observe(&s[1], Some(-3), None, c.at(0));
        l.observe(&s[2], Some(-3), None, c.at(100));
        l.observe(&s[0], Some(-20), None, c.at(10));
        assert_eq!(sorted(&l), ["s0"]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Source, level (None: no extension), voice activity, milliseconds since the previous op.
        Packet(usize, Option<i8>, Option<bool>, u64),
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            20 => (0..6usize, proptest::option::weighted(0.9, -127i8..=0), proptest::option::of(any::<bool>()), 0..60u64)
                .prop_map(|(s, l, v, dt)| Op::Packet(s, l, v, dt)),
            1 => (0..6usize).prop_map(Op::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// At most n selected; the caller's view built from the answers (selected / deselected / remove) always
        /// matches the selection, so each deselection is reported exactly once; the same input gives the same
        /// answers.
        #[test]
        fn answers_track_the_selection(n in 0..4usize, ops in proptest::collection::vec(op(), 1..600)) {
            let c = Clock::new();
            let s = names(6);
            let mut l = Loudest::new(n);
            let mut twin = Loudest::new(n);
            let mut view: Vec<Arc<str>> = Vec::new();
            let mut t = 0;
            for op in ops {
                match op {
                    Op::Packet(i, level, vad, dt) => {
                        t += dt;
                        let o = l.observe(&s[i], level, vad, c.at(t));
                        prop_assert_eq!(&o, &twin.observe(&s[i], level, vad, c.at(t)));
                        prop_assert_eq!(o.selected, l.is_selected(&s[i]));
                        if n == 0 {
                            prop_assert!(o.selected && o.deselected.is_none());
                            continue;
                        }
                        if let Some(d) = &o.deselected {
                            prop_assert!(*d != s[i]);
                            let at = view.iter().position(|v| v == d);
                            prop_assert!(at.is_some(), "deselected {} was not selected", d);
                            view.retain(|v| v != d);
                        }
                        if o.selected && !view.contains(&s[i]) {
                            view.push(s[i].clone());
                        }
                    }
                    Op::Remove(i) => {
                        let was = l.remove(&s[i]);
                        prop_assert_eq!(was, twin.remove(&s[i]));
                        prop_assert_eq!(was, n > 0 && view.contains(&s[i]));
                        view.retain(|v| *v != s[i]);
                    }
                }
                if n > 0 {
                    prop_assert!(l.selected().len() <= n);
                    let mut a: Vec<&Arc<str>> = view.iter().collect();
                    let mut b: Vec<&Arc<str>> = l.selected().iter().collect();
                    a.sort();
                    b.sort();
                    prop_assert_eq!(a, b);
                }
            }
        }

        /// Steady speakers: the selection settles on the n loudest when the levels are spread by more than the
        /// margin, and when a selected one stops, the loudest of the others takes its place within STALE.
        #[test]
        fn settles_on_the_loudest_and_replaces_a_stopped_one(
            n in 1..4usize,
            k in 2..7usize,
            order in Just((0..6usize).collect::<Vec<_>>()).prop_shuffle(),
            stop in 0..3usize,
        ) {
            let c = Clock::new();
            let s = names(6);
            // Levels -8, -16, .. (8 dB apart), in a random order of arrival.
            let level = |i: usize| -8 * (i as i8 + 1);
            let speakers: Vec<usize> = order.into_iter().filter(|&i| i < k).collect();
            let mut l = Loudest::new(n);
            let mut t = 0;
            while t < 6000 {
                for &i in &speakers {
                    l.observe(&s[i], Some(level(i)), None, c.at(t));
                }
                t += 20;
            }
            let expect: Vec<String> = (0..n.min(k)).map(|i| format!("s{i}")).collect();
            prop_assert_eq!(sorted(&l), expect);
            if k <= n {
                return Ok(());
            }
            // One of the selected stops; the others go on.
            let stopped = stop % n;
            let mut replaced = None;
            let start = t;
            while t < start + 2000 {
                for &i in speakers.iter().filter(|&&i| i != stopped) {
                    let o = l.observe(&s[i], Some(level(i)), None, c.at(t));
                    if let Some(d) = o.deselected {
                        prop_assert_eq!(d.to_string(), format!("s{stopped}"));
                        prop_assert_eq!(i, n, "the loudest of the others");
                        prop_assert!(replaced.is_none());
                        replaced = Some(t - start);
                    }
                }
                t += 20;
            }
            let after = replaced.expect("replaced");
            prop_assert!(after <= STALE.as_millis() as u64 + 20, "after {} ms", after);
        }

        /// Two sources whose smoothed levels stay within the margin never swap, whatever the noise.
        #[test]
        fn no_flapping_within_the_margin(
            base in -60i8..=-10,
            diff in -3i8..=3,
            noise in proptest::collection::vec((-1i8..=1, -1i8..=1), 50..400),
        ) {
            let c = Clock::new();
            let s = names(2);
            let mut l = Loudest::new(1);
            for (j, (a, b)) in noise.into_iter().enumerate() {
                let t = c.at(j as u64 * 20);
                prop_assert!(l.observe(&s[0], Some(base + a), Some(true), t).deselected.is_none());
                prop_assert!(l.observe(&s[1], Some(base + diff + b), Some(true), t).deselected.is_none());
            }
            prop_assert_eq!(sorted(&l), ["s0"]);
        }
    }
}
