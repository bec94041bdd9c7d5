import type { MediaTrack, MediaTransportState, YourState } from "./protocol.js";
export interface MediaOptions {
    /** Set false for signaling only (no RTCPeerConnection). Default: true where WebRTC exists. */
    enabled?: boolean;
    /** ICE servers; the SFU is ICE-lite with host candidates, so none are needed on a LAN. */
    iceServers?: RTCIceServer[];
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
    private wantPublish;
    /** A negotiation failed because the websocket dropped. */
    private interrupted;
    private closed;
    readonly info: MediaInfo;
    constructor(request: Request, options: MediaOptions, changed: (info: MediaInfo) => void);
    /** Creates the peer connection and negotiates; `you` decides the transceiver's direction. */
    start(you: YourState): void;
    /** A new session after `resumed: false`: the SFU dropped the old peer; start over. */
    restart(you: YourState): void;
    /** Follows the participant's own state: publish on stage, stop in the audience; mute the track when muted. */
    update(you: YourState): void;
    onServerOffer(sdp: string): void;
    onState(state: MediaTransportState): void;
    onTracks(tracks: MediaTrack[]): void;
    close(): void;
    stats(): Promise<MediaStats>;
    /**
     * After the websocket resumed the session: the peer connection is kept, but a negotiation cut off by the drop is
     * done again.
     */
    resumed(you: YourState): void;
    private enqueue;
    private createPeer;
    private teardown;
    /** Sends a client offer and applies the SFU's answer, retrying after a `conflict` (an SFU offer pending). */
    private negotiate;
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
