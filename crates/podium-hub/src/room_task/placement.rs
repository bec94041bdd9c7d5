//! Where a room's media lives and how the room follows it: the lease (timers and media) with its media epoch,
//! media requests run here or relayed to the media hub (`relay`), presence (this hub's, and that of hubs that are
//! gone), and participants another hub wrongly took for gone (see ARCHITECTURE.md, "Several hubs"). What the SFU
//! says about participants is in `media_events`.

use super::*;
use crate::hub::Persistence;
use crate::media;
use crate::relay;

/// How a `media_moved` frame starts (as `ServerMessage::to_json` writes it).
const MEDIA_MOVED_PREFIX: &str = r#"{"type":"media_moved""#;

/// A reading of the node registry older than this is not trusted to say a hub is gone.
const REGISTRY_FRESH: Duration = Duration::from_secs(5);

impl RoomTask {
    /// Claims or renews the room's lease (timers and media), and follows where the room's media is. A lease is
    /// trusted until a little before it would expire, counted from before the request, so two hubs never both
    /// believe they hold it (clocks permitting). A draining hub only looks.
    pub(super) async fn renew_lease(&mut self) {
        let asked_at = tokio::time::Instant::now();
        let lease = self.ask_lease().await;
        self.apply_lease(lease, asked_at).await;
    }

    /// Claims or renews the room's lease; a draining hub only reads who holds it.
    pub(super) async fn ask_lease(&self) -> Result<podium_store::Lease, StoreError> {
        let node = &self.shared.node_id;
        if self.shared.is_draining() {
            self.shared.store.media_holder(&self.name, node).await
        } else {
            self.shared.store.claim_media(&self.name, node, LEASE).await
        }
    }

    /// Takes in the answer of `ask_lease`, asked at `asked_at`.
    pub(super) async fn apply_lease(
        &mut self,
        lease: Result<podium_store::Lease, StoreError>,
        asked_at: tokio::time::Instant,
    ) {
        match lease {
            Ok(lease) => {
                let mut gained = false;
                if lease.held && !self.shared.is_draining() {
                    if self.owner_until.is_none() {
                        info!(epoch = lease.epoch, "this hub now holds the room's lease");
                        self.note_held(true);
                        gained = true;
                    }
                    self.owner_until = Some(asked_at + LEASE - LEASE_RENEW / 2);
                } else if self.owner_until.take().is_some() {
                    info!(holder = ?lease.holder, "another hub holds the room's lease now");
                    self.note_held(false);
                }
                self.lease_holder.clone_from(&lease.holder);
                let media_came = self.follow_media(lease.holder, lease.epoch).await;
                if gained && !media_came {
                    // The room's timers are this hub's now: participants of hubs that are gone get their grace
                    // period (becoming the media hub does the same).
                    self.expire_dead_presence(None).await;
                }
            }
            // Keep what we had: the timers lapse by themselves at `owner_until`; media stays until another hub
            // takes the lease (nobody can while the store is unreachable).
            Err(e) => debug!(error = %e, "renewing the room's lease failed"),
        }
    }

    /// Gives up the room's lease (if this hub holds it or runs the room's media) and leaves this hub's list of held
    /// rooms, except when the hub shuts down: its participants stay in the room, marked connected, for their clients
    /// to resume elsewhere, and the list lets another hub adopt the room once this one is gone, to start the grace
    /// period of those who do not.
    pub(super) async fn release_lease(&mut self) {
        if self.owner_until.take().is_some() || self.runs_media() {
            self.shared.store.release_owner(&self.name, &self.shared.node_id).await;
            if !self.shutting_down {
                self.note_held(false);
            }
        }
    }

    /// Keeps this hub's list of held rooms (`podium:held:<node>`) in step with its leases, on a task of its own (the
    /// list is only read when this hub is gone, so a late or lost write costs at most a needless adoption).
    fn note_held(&self, held: bool) {
        let Persistence::Redis(store) = &self.shared.store else { return };
        let (store, node, room) = (store.clone(), self.shared.node_id.clone(), self.name.clone());
        tokio::spawn(async move {
            let result = if held { store.held_add(&node, &room).await } else { store.held_remove(&node, &room).await };
            if let Err(e) = result {
                debug!(room, error = %e, "updating this hub's list of held rooms failed");
            }
        });
    }

    /// True when, at the last reading, another hub held the room's lease and the node registry (fresh) lists that
    /// hub alive and not draining: the room is looked after without this hub's task.
    pub(super) fn held_elsewhere(&self) -> bool {
        let Some(holder) = self.lease_holder.as_deref() else { return false };
        if holder == self.shared.node_id || self.owner_until.is_some() {
            return false;
        }
        let registry = self.shared.lock_registry();
        registry.alive(REGISTRY_FRESH).is_some_and(|alive| alive.contains(holder))
            && registry.nodes.iter().any(|n| n.info.id == holder && !n.info.draining)
    }

    /// True when this hub runs the room's media.
    pub(super) fn runs_media(&self) -> bool {
        self.shared.media.is_some() && self.media_holder.as_deref() == Some(self.shared.node_id.as_str())
    }

    /// The room's media epoch as clients see it (0 without media).
    pub(super) fn client_media_epoch(&self) -> u64 {
        if self.shared.media.is_some() { self.media_epoch } else { 0 }
    }

    /// The room's media is at `holder` in `epoch` now. Becoming the media hub sets every stage member's publish
    /// permission in this SFU, tells every client of the room (`media_moved`) and starts the grace period of
    /// participants whose hub is gone; losing it drops this SFU's peers of the room. True when this hub has just
    /// become the room's media hub.
    pub(super) async fn follow_media(&mut self, holder: Option<String>, epoch: u64) -> bool {
        if !self.set_media(holder, epoch) {
            return false;
        }
        let Some(media) = self.shared.media.clone() else { return false };
        info!(epoch, "this hub now runs the room's media");
        // The other hubs' clients hear it at once (their hubs also notice at their next lease renewal).
        let frame = proto::ServerMessage::MediaMoved { media_epoch: self.media_epoch }.to_json();
        self.announce_frames(vec![(room::Recipients::Everyone, frame)]).await;
        for member in self.room.stage() {
            media.set_publish(&self.name, member.id.as_str(), self.room.may_publish(&member.id));
        }
        self.expire_dead_presence(None).await;
        true
    }

    /// Records that the room's media is at `holder` (unchanged when `None`) in `epoch`; an older epoch than the one
    /// known is a stale reading and changes nothing, so the epoch clients see never goes back. A newer epoch is
    /// told to this hub's connections (`media_moved`); losing the media drops this SFU's peers of the room (unless
    /// draining: they keep forwarding until the clients' new peer connections are up). True when this hub has just
    /// become the room's media hub.
    pub(super) fn set_media(&mut self, holder: Option<String>, epoch: u64) -> bool {
        if epoch < self.media_epoch {
            return false;
        }
        let was = self.runs_media();
        if holder.is_some() {
            self.media_holder = holder;
        }
        let now = self.runs_media();
        if was
            && !now
            && let Some(media) = &self.shared.media
        {
            info!(holder = ?self.media_holder, epoch, "the room's media moved to another hub");
            self.tracks.clear();
            self.stage.media_lost();
            if !self.shared.is_draining() {
                media.remove_room(&self.name);
            }
        }
        if epoch > self.media_epoch {
            let first = self.media_epoch == 0;
            self.media_epoch = epoch;
            if self.shared.media.is_some() && (!first || !self.conns.is_empty()) {
                let frame = proto::ServerMessage::MediaMoved { media_epoch: epoch }.to_json();
                self.deliver(&room::Recipients::Everyone, frame.into());
            }
        }
        now && !was
    }

    /// Marks a participant connected again whose connection here is alive but whom another hub disconnected (it
    /// took this hub for gone): the same transition as their resuming, so role, hand and mute state stay.
    pub(super) async fn reassert(&mut self, who: ParticipantId) {
        // Like a departure, a reassertion that loses a commit race is run again on the updated room: lost, the
        // participant's grace period would end while their connection here is alive.
        let started = tokio::time::Instant::now();
        let mut attempt = 0;
        loop {
            let Some(p) = self.room.participant(&who) else { return };
            if p.connected || !self.conns.contains_key(&who) {
                return;
            }
            let join = room::Join {
                token_id: p.token_id,
                issued_at: p.issued_at,
                ..room::Join::new(who.clone(), p.name, p.ceiling, None)
            };
            let now = self.now();
            match self.guarded(|room| room.handle_join(now, join)) {
                Some(Ok(_)) => match self.flush(Some(who.clone())).await {
                    Ok(()) => {
                        info!(identity = %who, "participant marked connected again");
                        return;
                    }
                    Err(StoreError::Conflict { .. }) if started.elapsed() < CONFLICT_RETRY_FOR => {
                        attempt += 1;
                        debug!(identity = %who, attempt, "reasserting lost a race; running it again");
                        race_backoff(attempt).await;
                    }
                    Err(_) => return,
                },
                Some(Err(e)) => {
                    debug!(identity = %who, error = %e, "reasserting a participant was refused");
                    return;
                }
                None => return,
            }
        }
    }

    /// Records that this hub holds `who`'s connection now and publishes `announcement` (a join that changed
    /// nothing: the session was taken over while connected, so there is no commit to carry the presence).
    pub(super) async fn present_here(&self, who: &ParticipantId, announcement: &str) -> Result<(), StoreError> {
        match &self.shared.store {
            Persistence::Redis(store) => {
                store.present(&self.name, who.as_str(), &self.shared.node_id, Some(announcement)).await.map(drop)
            }
            Persistence::Memory(_) => Ok(()),
        }
    }

    /// Announces frames to the other hubs' connections of the room (no transition).
    pub(super) async fn announce_frames(&self, frames: Vec<(room::Recipients, String)>) {
        if !self.shared.store.is_shared() || frames.is_empty() {
            return;
        }
        let outputs = frames.into_iter().map(|(to, frame)| Announced::Event { to, frame }).collect();
        let text = Announcement {
            node: self.shared.node_id.clone(),
            seq: self.room.seq(),
            changes: None,
            outputs,
            joined: None,
        }
        .encode();
        if let Err(e) = self.shared.store.publish(&self.name, &text).await {
            debug!(error = %e, "announcing media frames failed");
        }
    }

    /// Starts the grace period of participants the room thinks connected to a hub that is gone: one of `gone`, or
    /// (`None`) any hub the node registry does not list as alive. Only the lease holder does this.
    pub(super) async fn expire_dead_presence(&mut self, gone: Option<&HashSet<String>>) {
        if !self.shared.store.is_shared() || !self.runs_timers() {
            return;
        }
        let alive = self.shared.lock_registry().alive(REGISTRY_FRESH);
        if gone.is_none() && alive.is_none() {
            // Without a fresh reading nobody can be called gone.
            return;
        }
        let presence = match self.shared.store.presence(&self.name).await {
            Ok(p) => p,
            Err(e) => {
                debug!(error = %e, "reading the room's presence failed");
                return;
            }
        };
        let me = self.shared.node_id.as_str();
        let is_dead = |node: &str| {
            node != me
                && match gone {
                    Some(gone) => gone.contains(node),
                    None => alive.as_ref().is_some_and(|alive| !alive.contains(node)),
                }
        };
        let orphans: Vec<ParticipantId> = presence
            .iter()
            .filter(|(_, node)| is_dead(node))
            .map(|(who, _)| ParticipantId::new(who.as_str()))
            .filter(|who| !self.conns.contains_key(who) && self.room.participant(who).is_some_and(|p| p.connected))
            .collect();
        if orphans.is_empty() {
            return;
        }
        info!(count = orphans.len(), "starting the grace period of participants whose hub is gone");
        let now = self.now();
        for who in &orphans {
            self.guarded(|room| room.handle_disconnect(now, who));
        }
        let _ = self.flush(None).await;
    }

    /// Checks the sender is this room's current connection for `who`, then runs the request in the SFU on its own
    /// task (SDP work must not hold up the room), answering the connection directly. When the room's media is on
    /// another hub, the request is relayed there (see `relay`).
    pub(super) async fn on_media_request(
        &mut self,
        who: ParticipantId,
        conn_id: u64,
        request: MediaRequest,
        reply: oneshot::Sender<Result<Option<proto::Reply>, Failure>>,
    ) {
        if !self.is_current(&who, conn_id) || self.room.role(&who).is_none() {
            let _ = reply.send(Err((ErrorCode::Unauthorized, "not in this room (left, removed or taken over)".into())));
            return;
        }
        let Some(media) = self.shared.media.clone() else {
            let _ = reply.send(Err((ErrorCode::Unavailable, "media is not enabled on this hub".into())));
            return;
        };
        let request = match request {
            MediaRequest::Candidate => {
                let _ = reply.send(Ok(None));
                return;
            }
            MediaRequest::Offer(sdp) => RelayedRequest::Offer(sdp),
            MediaRequest::Answer(sdp) => RelayedRequest::Answer(sdp),
        };
        if self.media_holder.is_none() {
            // Nobody held the lease when last seen: try to take it.
            self.renew_lease().await;
        }
        if self.runs_media() {
            self.run_media_request(media, who, request, Answer::Local(reply));
            return;
        }
        let Some(holder) = self.media_holder.clone() else {
            let _ =
                reply.send(Err((ErrorCode::Unavailable, "the room's media is moving to another hub; retry".into())));
            return;
        };
        let Some((req, answer)) = self.shared.relayed.register() else {
            let _ = reply.send(Err((ErrorCode::Unavailable, "too many media requests in flight; retry".into())));
            return;
        };
        let text = NodeMessage::MediaRequest {
            from: self.shared.node_id.clone(),
            req,
            room: self.name.clone(),
            who: who.to_string(),
            request,
        }
        .encode();
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let unavailable = |message: &str| Err((ErrorCode::Unavailable, message.to_owned()));
            let result = match shared.store.send_to_node(&holder, &text).await {
                Err(e) => {
                    // The store's error stays in the log: clients get our own words only.
                    debug!(error = %e, "relaying a media request failed");
                    unavailable("the room's media hub could not be reached; retry")
                }
                Ok(_) => match tokio::time::timeout(relay::RELAY_TIMEOUT, answer).await {
                    Ok(Ok(result)) => result.map(|sdp| sdp.map(|sdp| proto::Reply::Answer { sdp })),
                    _ => unavailable("the room's media hub did not answer; retry"),
                },
            };
            shared.relayed.forget(req);
            if let Err((code, message)) = &result {
                debug!(identity = %who, ?code, %message, "relayed media request refused");
            }
            let _ = reply.send(result);
        });
    }

    /// Another hub relayed its client's media request: run it if this hub runs the room's media.
    pub(super) fn on_relayed(&mut self, from: String, req: u64, who: ParticipantId, request: RelayedRequest) {
        let refuse = |code: ErrorCode, message: &str| {
            let text = NodeMessage::MediaReply { req, sdp: None, error: Some((code, message.to_owned())) }.encode();
            let shared = Arc::clone(&self.shared);
            let from = from.clone();
            tokio::spawn(async move {
                let _ = shared.store.send_to_node(&from, &text).await;
            });
        };
        let media = match self.shared.media.clone() {
            Some(media) if self.runs_media() => media,
            _ => {
                let NodeMessage::MediaReply { error: Some((code, message)), .. } = media_moved_reply(req) else {
                    return;
                };
                refuse(code, &message);
                return;
            }
        };
        if self.room.role(&who).is_none() {
            refuse(ErrorCode::Unauthorized, "not in this room (left, removed or taken over)");
            return;
        }
        self.run_media_request(media, who, request, Answer::Relayed { to: from, req });
    }

    /// Runs a media request in this hub's SFU on a task of its own and sends the answer where it belongs.
    pub(super) fn run_media_request(
        &self,
        media: podium_media::Media,
        who: ParticipantId,
        request: RelayedRequest,
        to: Answer,
    ) {
        // The state machine's permission, in case its `Publish` output came before the peer existed.
        media.set_publish(&self.name, who.as_str(), self.room.may_publish(&who));
        let room = self.name.clone();
        let inbox = self.shared.running_room(&room).map(|h| h.inbox);
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let since = Instant::now();
            let (kind, result) = match request {
                RelayedRequest::Offer(sdp) => ("media_offer", media.offer(&room, who.as_str(), &sdp).await.map(Some)),
                RelayedRequest::Answer(sdp) => {
                    ("media_answer", media.answer(&room, who.as_str(), &sdp).await.map(|()| None))
                }
            };
            shared.metrics.sfu_answered(kind, since);
            let result = result.map_err(|e| media::failure(&e));
            if let Err((code, message)) = &result {
                debug!(identity = %who, ?code, %message, "media request refused");
            }
            match to {
                Answer::Local(reply) => {
                    let _ = reply.send(result.map(|sdp| sdp.map(|sdp| proto::Reply::Answer { sdp })));
                }
                Answer::Relayed { to, req } => {
                    let (sdp, error) = match result {
                        Ok(sdp) => (sdp, None),
                        Err(e) => (None, Some(e)),
                    };
                    let text = NodeMessage::MediaReply { req, sdp, error }.encode();
                    if let Err(e) = shared.store.send_to_node(&to, &text).await {
                        debug!(error = %e, "answering a relayed media request failed");
                    }
                }
            }
            if let Some(inbox) = inbox {
                let _ = inbox.send(RoomMsg::MediaSettled { who }).await;
            }
        });
    }
}

/// The epoch of a `media_moved` frame (`None` for any other frame).
pub(super) fn media_moved_epoch(frame: &str) -> Option<u64> {
    if !frame.starts_with(MEDIA_MOVED_PREFIX) {
        return None;
    }
    match serde_json::from_str::<proto::ServerMessage>(frame) {
        Ok(proto::ServerMessage::MediaMoved { media_epoch }) => Some(media_epoch),
        _ => None,
    }
}

/// Where a media request's answer goes.
pub(super) enum Answer {
    /// To a connection of this hub.
    Local(oneshot::Sender<Result<Option<proto::Reply>, Failure>>),
    /// Back to the hub that relayed it.
    Relayed { to: String, req: u64 },
}

/// The answer to a relayed media request when this hub does not run the room's media.
pub(crate) fn media_moved_reply(req: u64) -> NodeMessage {
    NodeMessage::MediaReply {
        req,
        sdp: None,
        error: Some((
            ErrorCode::Unavailable,
            "the room's media moved to another hub; wait for `media_moved` and offer again".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_moved_frames_are_recognised() {
        let frame = proto::ServerMessage::MediaMoved { media_epoch: 3 }.to_json();
        assert!(frame.starts_with(MEDIA_MOVED_PREFIX), "{frame}");
        assert_eq!(media_moved_epoch(&frame), Some(3));
        let other = proto::ServerMessage::MediaState { state: proto::MediaState::Connected }.to_json();
        assert!(!other.starts_with(MEDIA_MOVED_PREFIX));
        assert_eq!(media_moved_epoch(&other), None);
        assert_eq!(media_moved_epoch(r#"{"type":"media_moved","media_epoch":"x"}"#), None);
    }
}
