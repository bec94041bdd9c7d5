import type { IceServers, MediaTrack, MediaTransportState, YourState } from "./protocol.js";
export interface MediaOptions {
    /** Set false for signaling only (no RTCPeerConnection). Default: true where WebRTC exists. */
    enabled?: boolean;
    /**
     * Your own ICE servers, used instead of the hub's. By default the peer connection uses the TURN servers the hub
     * hands out (the welcome's `ice_servers`, refreshed by `ice_servers` events); without them it needs none, since
     * the SFU offers its own address.
     */
    iceServers?: RTCIceServer[];
    /**
     * Relay candidates only (`iceTransportPolicy: "relay"`): every packet goes through a TURN server. For testing a
     * TURN deployment; without TURN servers no connection can be made. Default false.
     */
    forceRelay?: boolean;
    /** Offer only 127.0.0.1 candidates (for a hub on loopback, as in tests). Default false. */
    loopbackOnly?: boolean;
    /** Where the <audio> elements playing the room go. Default: a hidden element appended to document.body. */
    audioContainer?: HTMLElement;
    /** Microphone constraints for getUserMedia. Default `true`. */
    audio?: MediaTrackConstraints | boolean;
}
/** The media side as the application sees it. */
export interface MediaInfo {
    /** `new` until negotiated; then the SFU's `media_state` (`connected`, `disconnected`, `failed`), or `closed`. */
    state: "new" | "negotiating" | MediaTransportState | "closed";
    /** Downstream slots: whose audio each m-line carries. */
    tracks: MediaTrack[];
    /** True while the microphone is being sent (on stage). */
    publishing: boolean;
    /** The last media error, if any (a refused microphone, a failed negotiation). */
    error?: string;
    /** The room's media epoch the current peer connection was negotiated in (PROTOCOL.md, "Media" step 5). */
    epoch: number;
    /** ICE restarts of this session's peer connections so far (network changes, ICE failures; see `networkChanged`). */
    iceRestarts: number;
}
/** Inbound/outbound audio totals from getStats(), for diagnostics and tests. */
export interface MediaStats {
    connection: string | null;
    inbound: number;
    packetsReceived: number;
    packetsLost: number;
    totalAudioEnergy: number;
    audioLevel: number;
    packetsSent: number;
    bytesSent: number;
}
type Request = (type: string, fields?: Record<string, unknown>) => Promise<unknown>;
export declare class MediaSession {
    private readonly request;
    private readonly options;
    private readonly changed;
    private pc;
    private transceiver;
    private mic;
    private chain;
    private container;
    private players;
    /** The previous media epoch's peer connection and its players, kept until the new one connects. */
    private retiring;
    private wantPublish;
    /** The participant's last known `you.muted` (the microphone track is disabled while muted). */
    private muted;
    /** A negotiation failed because the websocket dropped. */
    private interrupted;
    private closed;
    /**
     * Bumped whenever the peer connection is replaced: queued or running steps of an older generation are dropped
     * (they belong to a dead peer connection), and the new one does not wait for them.
     */
    private generation;
    /** When the room's media last moved or the websocket last reconnected (`Date.now()`; see SETTLING_MS). */
    private settlingSince;
    /** The hub's TURN servers with this participant's latest credentials (PROTOCOL.md, "TURN"). */
    private hubIceServers;
    /** An ICE restart is queued (not yet started): a second trigger meanwhile adds nothing. */
    private restartQueued;
    /** An ICE restart's negotiation has not completed (a websocket drop cut it off: `resumed` restarts again). */
    private restarting;
    /** When the last ICE restart started (`Date.now()`), and the wait before another after a failure. */
    private lastRestartAt;
    private restartBackoff;
    /** The pending restart after ICE `disconnected`'s grace or a backoff. */
    private restartTimer;
    /** Listens for network changes (`online`, `navigator.connection` `change`) while the session runs. */
    private readonly onNetworkChange;
    private listening;
    readonly info: MediaInfo;
    constructor(request: Request, options: MediaOptions, changed: (info: MediaInfo) => void);
    /** The media epoch the current peer connection belongs to. */
    get epoch(): number;
    /**
     * Creates the peer connection and negotiates, in media epoch `epoch`; `you` decides the transceiver's direction.
     */
    start(you: YourState, epoch?: number): void;
    /** A new session after `resumed: false`: the SFU dropped the old peer; start over (the microphone too). */
    restart(you: YourState, epoch?: number): void;
    /**
     * The room's media is now in epoch `epoch` (a `media_moved` event, or a snapshot's `media_epoch`). If the peer
     * connection belongs to another epoch it is going away: negotiate a new one, keeping the microphone track when
     * still on stage (role, hand and mute are server state and do not change), and close the old one once the new
     * one is connected (it may still carry audio from a draining hub meanwhile). Returns whether it did; a second
     * notice of the same epoch (the event, then a snapshot) does nothing.
     */
    moved(you: YourState, epoch: number): boolean;
    /**
     * The hub's TURN servers and fresh credentials (a welcome's `ice_servers`, or an `ice_servers` event). The next
     * peer connection uses them, and so does the current one's next gathering (an ICE restart): they replace its ICE
     * servers with `setConfiguration`, which leaves the running connection alone. Ignored when the application gave
     * its own `iceServers`.
     */
    setIceServers(ice: IceServers | undefined): void;
    /** Follows the participant's own state: publish on stage, stop in the audience; mute the track when muted. */
    update(you: YourState): void;
    onServerOffer(sdp: string): void;
    onState(state: MediaTransportState): void;
    /**
     * The device's network changed (an `online` event, a `navigator.connection` `change`; an application that knows
     * better, e.g. a native shell's reachability callback, may call it too): restart ICE now, so the SFU learns the
     * new address with a new offer instead of waiting for the old one to time out. Role, slots and the microphone
     * are kept: it is the same peer connection (PROTOCOL.md, "Network changes").
     */
    networkChanged(): void;
    /**
     * Queues an ICE restart of the current peer connection (`restartIce()` and a new `media_offer` through the usual
     * negotiation), unless one is queued already. Nothing before the first negotiation or after `close`.
     */
    private restartIce;
    /** The browser's own view of the ICE connection: `disconnected` past a grace period, or `failed`, restarts ICE. */
    private iceStateChanged;
    /**
     * Restarts ICE after `delay` ms, and no sooner than the backoff after the last restart (which doubles each time a
     * restart is followed by another, up to ICE_RESTART_BACKOFF_MAX_MS, and resets once ICE is connected).
     */
    private scheduleRestart;
    private clearRestartTimer;
    private listenForNetworkChanges;
    private stopListening;
    onTracks(tracks: MediaTrack[]): void;
    close(): void;
    stats(): Promise<MediaStats>;
    /**
     * After the websocket resumed the session: the peer connection is kept, but a negotiation cut off by the drop, or
     * given up after `unavailable` answers, is done again.
     */
    resumed(you: YourState): void;
    /** Runs `step` after the steps queued before it (one negotiation at a time), unless its peer connection is gone. */
    private enqueue;
    private createPeer;
    /**
     * Sets the current peer connection aside (still playing) for `replacePeer`, which then makes a new one; it is
     * closed when the new one connects, or after RETIRE_MAX_MS. An older one still set aside is closed now.
     */
    private retire;
    /** Closes the peer connection set aside by `retire`, if any. */
    private dropRetiring;
    /**
     * Drops the peer connection (and with `keepMic` false the microphone) and whatever is queued for it; `start` then
     * makes a new one. The new queue does not wait for a step of the old connection still awaiting the hub.
     */
    private replacePeer;
    private teardown;
    /**
     * Sends a client offer and applies the SFU's answer, retrying after a `conflict` (an SFU offer pending) and, right
     * after a media move or a reconnect, while it is answered `unavailable` (see `sendOffer`).
     */
    private negotiate;
    /**
     * Sends `sdp` as `media_offer` and resolves with the SFU's answer. An offer sent soon after a media move or a
     * reconnect (SETTLING_MS) that is answered `unavailable` is sent again, the same offer, after 250 ms and then every
     * 250–500 ms, until it is answered or about 10 s have passed (then the error is thrown); resolves null when the peer
     * connection was replaced or closed meanwhile (PROTOCOL.md "Media" step 5).
     */
    private sendOffer;
    private publish;
    private unpublish;
    private attachAll;
    private attach;
    /** Plays the room's audio elements again (call from a click handler when the browser blocked autoplay). */
    resumeAudio(): void;
    private audioContainer;
    /** Waits until ICE gathering completes (at most 3 s), so the SDP carries the candidates (no trickling). */
    private gathered;
    private filter;
}
export {};
