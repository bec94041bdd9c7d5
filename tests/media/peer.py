#!/usr/bin/env python3
"""A scripted Podium participant with real WebRTC audio (aiortc), for the end-to-end tests.

It joins a room over the hub's websocket, negotiates one RTCPeerConnection with `media_offer`, optionally publishes a
sine tone, decodes every audio track it receives and reports what it hears. Run as a subprocess; it talks JSON lines:

stdout, one JSON object per line:
  {"event": "joined", "welcome": {...}}                   the `join` result (again after each `rejoin`)
  {"event": "ws", "msg": {...}}                           every event the hub pushes (stage, you, media_tracks, ...)
  {"event": "reply", "tag": ..., "request": {...}, "msg": {...}}   the reply to a request sent for a stdin command
  {"event": "pc", "gen": 1, "state": "connected", "t": ...}
                                                          RTCPeerConnection connection state changes; `gen` counts
                                                          the peer connections this process made (1, then 2 after
                                                          `new_pc` or a renegotiation, ...)
  {"event": "negotiated", "by": "client"|"server", "mids": [...]}  after each completed offer/answer exchange
  {"event": "track", "mid": "0", "gen": 1}                a remote audio track appeared (on peer connection `gen`)
  {"event": "ready"}                                      joined, negotiated and connected (once)
  {"event": "ice", "gen": 1, "local": {"type": "relay", "host": "127.0.0.1", "port": 50002, "protocol": "udp"},
   "remote": {...}}                                       the nominated candidate pair, once connected
  {"event": "audio", "mid": "0", "gen": 1, "freq": 440.1, "rms": 5650.2, "frames": 25, "t": 1767225600.5,
   "first_loud_t": 1767225600.01, "last_loud_t": 1767225600.49, "max_loud_gap": 0.04}
                                                          per received track, every --window seconds
  {"event": "error", "message": "..."}                    something went wrong; the process goes on if it can
  {"event": "closed", "code": 1000, "reason": "leave", "dropped": false, "t": ...}
                                                          the websocket closed; the process then exits, unless
                                                          `dropped` (we dropped it: `drop_ws`), --keep-media, or
                                                          --auto-reconnect and a code worth reconnecting after
  {"event": "reconnected", "url": "ws://...", "resumed": true, "code": 4007, "attempts": 1, "t": ..., "took": 0.02}
                                                          --auto-reconnect: joined again (on `url`, after the close
                                                          `code`), `took` seconds after the close; a `joined` line
                                                          with the welcome comes just before it
  {"event": "renegotiated", "epoch": 2, "gen": 2, "attempts": 1, "started": ..., "t": ...}
                                                          --auto-reconnect: the room's media epoch changed, so the
                                                          peer connection of the old epoch was closed and a new one
                                                          (`gen`) negotiated for `epoch` (its answer applied at `t`;
                                                          `started` when the new epoch was seen; `attempts` offers)
  {"event": "offer_refused", "epoch": 2, "msg": {...}}    --auto-reconnect: a renegotiation's offer was refused (the
                                                          media hub is still moving); it is sent again shortly
  {"event": "bye"}                                        last line on a clean exit

  `t` is the Unix time (seconds) at the end of the report's window; `freq` is the dominant frequency of the window's
  samples (null when nothing arrived), `rms` their RMS on the int16 scale, `frames` how many decoded 20 ms frames
  arrived, `gen` the peer connection (see `pc`) it arrived on, `first_loud_t` and `last_loud_t` the Unix time of the
  window's first and last frame whose RMS was above --loud (null if none),
  `max_loud_gap` the longest time (seconds) between the arrivals of two consecutive loud frames of the track, for each
  loud frame of the window and the loud frame before it (possibly in an earlier window; null if the window had no loud
  frame after an earlier one).

stdin, one JSON object per line:
  {"send": {<request>}, "tag": any}    send a protocol request (an `id` is added if missing) and print its reply
  {"offer": true, "tag": any}          renegotiate: send a fresh `media_offer` and apply the answer
  {"leave": true}                      send `leave` and exit
  {"drop_ws": true, "tag": any}        drop the websocket abruptly (TCP closed, no close frame, no `leave`), keeping
                                       the peer connection and its tone; replies {"type": "ok"} once it is gone
  {"rejoin": true, "tag": any, "resume": true, "role": null}
                                       open a new websocket and `join` with the same token (and --room); `resume`
                                       (default true) sends the last welcome's `resume_token`, `role` the `role` of
                                       `join` (default: none, whatever --join-role was); replies with the join reply
                                       and prints `joined` on success. The peer connection is left alone.
  {"media_cut": true, "tag": any}      black-hole the current peer connection's network: its ICE sockets silently
                                       drop everything sent and received (no DTLS close, no ICE change visible to the
                                       SFU: as if the network died); the websocket stays; replies {"sockets": n}
  {"close_pc": true, "tag": any}       close the current peer connection (DTLS close_notify, if the network lets it
                                       through); the websocket stays
  {"new_pc": true, "tag": any}         close the current peer connection (if not already) and start a fresh one
                                       (new ICE credentials, new DTLS certificate, new tone track) with a new
                                       `media_offer`; replies with the hub's reply to the offer (watch `pc` events of
                                       the new `gen` for `connected`)
  {"stats": true, "tag": any}          the current peer connection's outbound RTP counters: replies
                                       {"type": "ok", "gen": n, "state": "...", "ice_state": "...", "dtls_state": "...",
                                        "packets_sent": n, "bytes_sent": n, "inbound_ssrcs": [n, ...]}
                                       (`inbound_ssrcs`: the SSRCs of the RTP streams received, sorted)
  {"move": true, "host": "127.0.0.2", "restart": true, "tag": any}
                                       a network change: the current peer connection's ICE moves to a new UDP socket
                                       on `host` (default 127.0.0.2: a new local address and port), from which it sends
                                       a check nominating (USE-CANDIDATE) the pair to the SFU's candidate, then makes
                                       that pair the one it sends on and closes the old socket, so the old address is
                                       gone. `restart` (default true): an ICE restart first, as PROTOCOL.md asks of a
                                       client that changes network: new local ICE credentials in a `media_offer` (the
                                       current offer with the new ufrag, password and candidate), and the check under
                                       the SFU's new credentials from the answer; false: no signaling, the nomination
                                       alone (what libwebrtc does when it switches networks by itself). aiortc has no
                                       restartIce(), so this reaches into aioice's connection, the same steps. Replies
                                       {"type": "ok", "from": [host, port], "to": [host, port], "broken_t": ..., "moved_t": ...,
                                        "offer_ms": n|null, "check_ms": n}. The old address dies first (its socket
                                       black-holed at `broken_t`, Unix time, closed at `moved_t` once the new pair is
                                       nominated): break before make, as when a phone leaves a Wi-Fi network
End of input: leave (if the websocket is up), close the peer connection and the websocket, and exit 0.

Autonomous mode, like a real app (--auto-reconnect, with --urls listing the hubs): when the websocket closes with a
code worth reconnecting after (4007 `server_shutdown`, 1006 dropped, and the other "reconnect: yes" codes of
PROTOCOL.md) and not on purpose, it connects to the next URL of --urls at once (then, while that fails, to the next
ones with a growing backoff) and sends `join` with the last welcome's `resume_token`. When the room's media epoch
(`media_moved`, or `state.media_epoch` of a welcome or `resync`) differs from the one its peer connection was
negotiated in, it closes that peer connection and negotiates a new one (a new tone track if it publishes), exactly
once per new epoch, resending the offer while the hub refuses it.

Loopback only: host candidates are gathered on 127.0.0.1 alone, and no STUN server is used.

TURN (--turn): the peer connections use the TURN servers of the welcome's `ice_servers` (the latest `ice_servers`
event's for peer connections made later), keeping only the `turn:` URLs with `?transport=` --turn-transport, or the `turns:` ones
with `--turn-transport tls` (aiortc uses the first TURN URL it is given; --ca-file names the authority its TLS
client trusts); --relay sets iceTransportPolicy "relay", so no host candidate is gathered and every
packet goes through the TURN server.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import sys
import time
from typing import Any, Optional

import aioice
import aioice.candidate
import aioice.ice
import aioice.utils
import numpy as np

# aioice skips 127.0.0.1 and gathers on every interface; the tests run on loopback only.
aioice.ice.get_host_addresses = lambda *args, **kwargs: ["127.0.0.1"]

from aiortc import (  # noqa: E402  (after the monkeypatch, on purpose)
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
import aiortc.rtcdtlstransport  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402
from av import AudioFrame  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

SAMPLE_RATE = 48_000
# Close codes after which --auto-reconnect reconnects and resumes: 4007 `server_shutdown` and a dropped connection
# (1006, or no close frame), and the other codes PROTOCOL.md says to reconnect after.
RECONNECT_CODES = {1001, 1006, 1011, 1012, 4007, 4008, 4010, 4011}
FRAME_SAMPLES = 960  # 20 ms


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def log(msg: str) -> None:
    sys.stderr.write(f"[peer {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


class ToneTrack(MediaStreamTrack):
    """A microphone that plays a continuous sine: 48 kHz mono s16, 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, freq: float, amplitude: float) -> None:
        super().__init__()
        self.freq = freq
        self.amplitude = amplitude
        self._pts = 0
        self._start: Optional[float] = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            wait = self._start + self._pts / SAMPLE_RATE - now
            if wait > 0:
                await asyncio.sleep(wait)
        n = np.arange(self._pts, self._pts + FRAME_SAMPLES, dtype=np.float64)
        samples = (self.amplitude * np.sin(2.0 * np.pi * self.freq * n / SAMPLE_RATE)).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._pts += FRAME_SAMPLES
        return frame


class BlackHole:
    """Stands in for a datagram transport: sends go nowhere; everything else goes to the real one."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def sendto(self, data: bytes, addr: Any = None) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def dominant_frequency(samples: np.ndarray, rate: int) -> Optional[float]:
    """The strongest frequency above 20 Hz, refined by parabolic interpolation over the log magnitude."""
    if samples.size < 256:
        return None
    x = samples.astype(np.float64)
    x -= x.mean()
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    bin_hz = rate / x.size
    lo = int(20 / bin_hz) + 1
    if lo >= spectrum.size - 1:
        return None
    k = lo + int(np.argmax(spectrum[lo:]))
    offset = 0.0
    if 0 < k < spectrum.size - 1:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
        denom = a - 2 * b + c
        if denom != 0:
            offset = 0.5 * (a - c) / denom
    return float((k + offset) * bin_hz)


class TrackStats:
    """What one received track delivered since the last report."""

    def __init__(self, mid: str, loud: float, gen: int = 0) -> None:
        self.mid = mid
        self.gen = gen
        self.loud = loud
        self.first_loud_t: Optional[float] = None
        self.chunks: list[np.ndarray] = []
        self.frames = 0
        self.rate = SAMPLE_RATE
        self.last_loud_t: Optional[float] = None
        # The arrival of the track's latest loud frame (kept across windows) and the window's longest gap between loud
        # frames.
        self.prev_loud_t: Optional[float] = None
        self.max_loud_gap: Optional[float] = None
        self.ended = False

    def add(self, frame: AudioFrame) -> None:
        pcm = frame.to_ndarray()
        channels = len(frame.layout.channels)
        if frame.format.is_planar:
            mono = pcm[0]
        else:
            mono = pcm.reshape(-1, channels)[:, 0] if channels > 1 else pcm.reshape(-1)
        mono = mono.astype(np.float64)
        if frame.format.name in ("flt", "fltp", "dbl", "dblp"):
            mono = mono * 32767.0
        self.rate = frame.sample_rate or SAMPLE_RATE
        self.chunks.append(mono)
        self.frames += 1
        if mono.size and float(np.sqrt(np.mean(mono * mono))) > self.loud:
            now = time.time()
            if self.first_loud_t is None:
                self.first_loud_t = now
            self.last_loud_t = now
            if self.prev_loud_t is not None:
                self.max_loud_gap = max(self.max_loud_gap or 0.0, now - self.prev_loud_t)
            self.prev_loud_t = now

    def report(self) -> dict[str, Any]:
        samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0)
        rms = float(np.sqrt(np.mean(samples * samples))) if samples.size else 0.0
        freq = dominant_frequency(samples, self.rate)
        out = {
            "event": "audio",
            "mid": self.mid,
            "gen": self.gen,
            "freq": None if freq is None else round(freq, 2),
            "rms": round(rms, 1),
            "frames": self.frames,
            "t": round(time.time(), 3),
            "first_loud_t": None if self.first_loud_t is None else round(self.first_loud_t, 3),
            "last_loud_t": None if self.last_loud_t is None else round(self.last_loud_t, 3),
            "max_loud_gap": None if self.max_loud_gap is None else round(self.max_loud_gap, 3),
        }
        self.chunks = []
        self.frames = 0
        self.first_loud_t = None
        self.last_loud_t = None
        self.max_loud_gap = None
        return out


class Peer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ws: Any = None
        self.next_id = 1
        self.pending: dict[Any, asyncio.Future] = {}
        self.pc: Optional[RTCPeerConnection] = None
        self.negotiation = asyncio.Lock()
        self.stats: dict[str, TrackStats] = {}
        self.tasks: set[asyncio.Task] = set()
        self.closed = asyncio.Event()
        self.ready = False
        self.pc_gen = 0
        self.resume_token: Optional[str] = None
        # Every websocket opened, kept so that their ids stay unique; those dropped on purpose (`drop_ws`), whose
        # end does not end the process; and an event per websocket, set once its reader saw it end.
        self.all_ws: list[Any] = []
        self.dropped: set[int] = set()
        self.ws_gone: dict[int, asyncio.Event] = {}
        # The hubs (--urls, else --url) and which one the websocket is on; --auto-reconnect moves to the next.
        self.urls: list[str] = list(args.urls)
        self.url_index = args.url_index
        self.reconnecting = False
        self.leaving = False
        # The room's media epoch as last seen, and the one the current peer connection was negotiated in.
        self.room_epoch: Optional[int] = None
        self.pc_epoch: Optional[int] = None
        self.media_started = False
        self.renegotiating: Optional[asyncio.Task] = None
        # The hub's latest `ice_servers` (the welcome's, then each event's), for --turn.
        self.ice_servers: Optional[dict[str, Any]] = None

    # ---- websocket ----

    def spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def request(self, body: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        body = dict(body)
        if "id" not in body:
            body["id"] = f"p{self.next_id}"
            self.next_id += 1
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending[body["id"]] = fut
        try:
            await self.ws.send(json.dumps(body))
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.pending.pop(body["id"], None)

    async def read_ws(self, ws: Any) -> None:
        code, reason = 1006, ""
        gone = self.ws_gone.setdefault(id(ws), asyncio.Event())
        try:
            async for raw in ws:
                if not isinstance(raw, str):
                    continue
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind in ("ok", "error") and msg.get("id") in self.pending:
                    fut = self.pending[msg["id"]]
                    if not fut.done():
                        fut.set_result(msg)
                    continue
                emit({"event": "ws", "msg": msg, "t": round(time.time(), 3)})
                if kind == "media_offer":
                    self.spawn(self.on_server_offer(msg["sdp"]))
                elif kind == "media_moved" and ws is self.ws:
                    self.on_epoch(msg.get("media_epoch"))
                elif kind == "resync" and ws is self.ws:
                    self.on_epoch((msg.get("state") or {}).get("media_epoch"))
                elif kind == "ice_servers":
                    self.ice_servers = msg
            if ws.close_code is not None:
                code, reason = ws.close_code, ws.close_reason or ""
        except ConnectionClosed as e:
            if e.rcvd is not None:
                code, reason = e.rcvd.code, e.rcvd.reason
        dropped = id(ws) in self.dropped
        emit({"event": "closed", "code": code, "reason": reason, "dropped": dropped, "t": round(time.time(), 3)})
        if ws is self.ws:
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("websocket closed"))
        gone.set()
        if self.args.auto_reconnect and not dropped:
            if ws is not self.ws or self.reconnecting:
                return  # an older socket, or one the reconnection loop is trying (it sees the failure itself)
            if code in RECONNECT_CODES and not self.leaving:
                self.spawn(self.reconnect(code))
                return
        if not dropped and not self.args.keep_media:
            self.closed.set()

    async def open_ws(self) -> None:
        self.ws = await connect(self.urls[self.url_index], max_size=2**20, open_timeout=5)
        self.all_ws.append(self.ws)
        self.spawn(self.read_ws(self.ws))

    async def reconnect(self, code: int) -> None:
        """--auto-reconnect: joins again with the resume token on the next hub of --urls (at once; then, while that
        fails, on the next ones with a growing backoff); gives up and exits after --reconnect-timeout."""
        self.reconnecting = True
        started = time.time()
        delay = 0.1
        attempts = 0
        try:
            while True:
                if attempts > 0:
                    if time.time() - started > self.args.reconnect_timeout:
                        limit = self.args.reconnect_timeout
                        emit({"event": "error", "message": f"could not reconnect within {limit} s"})
                        self.closed.set()
                        return
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                attempts += 1
                self.url_index = (self.url_index + 1) % len(self.urls)
                url = self.urls[self.url_index]
                try:
                    await self.open_ws()
                    reply = await self.join(self.resume_token, None)
                except Exception as e:
                    reply = {"type": "error", "code": "client", "message": f"{type(e).__name__}: {e}"}
                ws = self.ws
                if reply.get("type") == "ok" and not self.ws_gone.setdefault(id(ws), asyncio.Event()).is_set():
                    self.reconnecting = False
                    welcome = reply["result"]
                    emit(
                        {
                            "event": "reconnected",
                            "url": url,
                            "resumed": welcome.get("resumed"),
                            "code": code,
                            "attempts": attempts,
                            "t": round(time.time(), 3),
                            "took": round(time.time() - started, 3),
                        }
                    )
                    self.follow_epoch()
                    return
                emit({"event": "error", "message": f"reconnecting to {url} failed: {json.dumps(reply)}"})
                if ws is not None and ws.close_code is None:
                    self.dropped.add(id(ws))
                    try:
                        await asyncio.wait_for(ws.close(), 2.0)
                    except Exception:
                        pass
        finally:
            self.reconnecting = False

    async def join(self, resume: Optional[str], role: Optional[str]) -> dict[str, Any]:
        """Sends `join` on the current websocket; prints `joined` on success; returns the reply."""
        join: dict[str, Any] = {"type": "join", "token": self.args.token}
        if self.args.room:
            join["room"] = self.args.room
        if role:
            join["role"] = role
        if resume:
            join["resume"] = resume
        reply = await self.request(join)
        if reply.get("type") == "ok":
            self.resume_token = reply["result"].get("resume_token")
            if reply["result"].get("ice_servers") is not None:
                self.ice_servers = reply["result"]["ice_servers"]
            epoch = (reply["result"].get("state") or {}).get("media_epoch")
            if epoch is not None:
                self.room_epoch = epoch
            emit({"event": "joined", "welcome": reply["result"]})
        return reply

    # ---- media epochs (--auto-reconnect) ----

    def on_epoch(self, epoch: Optional[int]) -> None:
        """The room's media epoch is `epoch` now (`media_moved`, a `resync`)."""
        if epoch is None:
            return
        self.room_epoch = epoch
        self.follow_epoch()

    def follow_epoch(self) -> None:
        """Starts a renegotiation when the room's media epoch differs from the peer connection's (one at a time; it
        loops until it has caught up)."""
        if not self.args.auto_reconnect or not self.media_started or self.pc is None:
            return
        if self.room_epoch is None or self.room_epoch == self.pc_epoch:
            return
        if self.renegotiating is not None and not self.renegotiating.done():
            return
        self.renegotiating = self.spawn(self.renegotiate())

    async def renegotiate(self) -> None:
        """Closes the peer connection of the old epoch and negotiates a new one, once per new epoch."""
        while self.room_epoch is not None and self.room_epoch != self.pc_epoch:
            epoch = self.room_epoch
            self.pc_epoch = epoch
            started = time.time()
            old = self.pc
            if old is not None:
                self.spawn(old.close())
            self.pc = self.new_pc()
            answered, attempts = await self.offer_until_answered(self.pc, epoch)
            if answered:
                emit(
                    {
                        "event": "renegotiated",
                        "epoch": epoch,
                        "gen": self.pc_gen,
                        "attempts": attempts,
                        "started": round(started, 3),
                        "t": round(time.time(), 3),
                    }
                )

    async def offer_until_answered(self, pc: RTCPeerConnection, epoch: int) -> tuple[bool, int]:
        """Sends `pc`'s offer, again every 0.25 s while refused (the media hub is moving, or the websocket is down),
        until answered, the epoch changes again, or --reconnect-timeout passes."""
        async with self.negotiation:
            offer = await pc.createOffer()
            await pc.setLocalDescription(offer)
        sdp = pc.localDescription.sdp
        deadline = time.monotonic() + self.args.reconnect_timeout
        attempts = 0
        while pc is self.pc and self.room_epoch == epoch:
            attempts += 1
            try:
                async with self.negotiation:
                    reply = await self.request({"type": "media_offer", "sdp": sdp})
                    if reply.get("type") == "ok":
                        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["result"]["sdp"], type="answer"))
                        emit({"event": "negotiated", "by": "client", "mids": [t.mid for t in pc.getTransceivers()]})
                        return True, attempts
            except Exception as e:
                reply = {"type": "error", "code": "client", "message": f"{type(e).__name__}: {e}"}
            emit({"event": "offer_refused", "epoch": epoch, "msg": reply})
            if time.monotonic() > deadline:
                message = f"no answer to the offer for media epoch {epoch}: {json.dumps(reply)}"
                emit({"event": "error", "message": message})
                return False, attempts
            await asyncio.sleep(0.25)
        return False, attempts

    # ---- media ----

    def configuration(self) -> RTCConfiguration:
        """No ICE servers; with --turn the hub's TURN servers (and with --relay, relay candidates only)."""
        if not self.args.turn:
            return RTCConfiguration(iceServers=[])
        if self.ice_servers is None:
            raise RuntimeError("--turn: the hub sent no ice_servers (is [turn] configured?)")
        servers = []
        for server in self.ice_servers["servers"]:
            if self.args.turn_transport == "tls":
                urls = [u for u in server["urls"] if u.startswith("turns:")]
            else:
                want = "?transport=" + self.args.turn_transport
                urls = [u for u in server["urls"] if u.startswith("turn:") and u.endswith(want)]
            if urls:
                servers.append(RTCIceServer(urls=urls, username=server["username"], credential=server["credential"]))
        if not servers:
            raise RuntimeError(f"--turn: no TURN URL with transport {self.args.turn_transport}: {self.ice_servers}")
        policy = RTCIceTransportPolicy.RELAY if self.args.relay else RTCIceTransportPolicy.ALL
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)

    def nominated(self, pc: RTCPeerConnection) -> Optional[dict[str, Any]]:
        """The nominated candidate pair of `pc`'s (bundled) ICE transport, from aioice."""

        def side(c: Any) -> dict[str, Any]:
            return {"type": c.type, "host": c.host, "port": c.port, "protocol": c.transport}

        for t in pc.getTransceivers():
            connection = t.receiver.transport.transport._connection
            for pair in connection._nominated.values():
                return {"local": side(pair.local_candidate), "remote": side(pair.remote_candidate)}
        return None

    def new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(self.configuration())
        self.pc_gen += 1
        gen = self.pc_gen

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            emit({"event": "pc", "gen": gen, "state": pc.connectionState, "t": round(time.time(), 3)})
            if pc.connectionState == "connected":
                pair = self.nominated(pc)
                if pair is not None:
                    emit({"event": "ice", "gen": gen, **pair})

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "audio":
                return
            mid = next((t.mid for t in pc.getTransceivers() if t.receiver.track is track), None)
            mid = str(mid) if mid is not None else f"track-{len(self.stats)}"
            emit({"event": "track", "mid": mid, "gen": gen})
            self.spawn(self.consume(mid, track, gen))

        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
        if self.args.tone is not None:
            transceiver = pc.addTransceiver(ToneTrack(self.args.tone, self.args.amplitude), direction="sendrecv")
        else:
            transceiver = pc.addTransceiver("audio", direction="recvonly")
        transceiver.setCodecPreferences(opus)
        return pc

    def media_cut(self) -> int:
        """Black-holes the current peer connection's ICE sockets; returns how many."""
        assert self.pc is not None
        connections = {}
        for t in self.pc.getTransceivers():
            dtls = t.sender.transport or t.receiver.transport
            if dtls is not None:
                conn = dtls.transport._connection
                connections[id(conn)] = conn
        n = 0
        for conn in connections.values():
            for protocol in conn._protocols:
                protocol.transport = BlackHole(protocol.transport)
                protocol.datagram_received = lambda data, addr: None
                n += 1
        return n

    def ice_connection(self) -> Any:
        """The current peer connection's aioice connection (one: audio only, bundled)."""
        assert self.pc is not None
        for t in self.pc.getTransceivers():
            dtls = t.sender.transport or t.receiver.transport
            if dtls is not None:
                return dtls.transport._connection
        raise RuntimeError("no ICE transport")

    async def move(self, host: str, restart: bool) -> dict[str, Any]:
        """A network change (see the `move` command): ICE moves to a new socket on `host`; with `restart`, after an
        ICE restart through `media_offer`."""
        assert self.pc is not None
        conn = self.ice_connection()
        component = 1
        old = conn._nominated.get(component)
        if old is None:
            raise RuntimeError("no nominated pair to move from")
        # The old address is gone from now on (break before make, as when a phone leaves a Wi-Fi network): its socket
        # silently drops what is sent and received until it is closed below.
        old.protocol.transport = BlackHole(old.protocol.transport)
        old.protocol.datagram_received = lambda data, addr: None
        broken_t = time.time()
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(lambda: aioice.ice.StunProtocol(conn), local_addr=(host, 0))
        local = protocol.transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = aioice.Candidate(
            foundation=aioice.candidate.candidate_foundation("host", "udp", local[0]),
            component=component,
            transport="udp",
            priority=aioice.candidate.candidate_priority(component, "host"),
            host=local[0],
            port=local[1],
            type="host",
        )
        conn._protocols.append(protocol)
        offer_ms = None
        if restart:
            # New local credentials (RFC 8445 section 9: an ICE restart), in the current offer with the new candidate.
            conn._local_username = aioice.utils.random_string(4)
            conn._local_password = aioice.utils.random_string(22)
            candidate = f"a=candidate:{protocol.local_candidate.to_sdp()}"
            lines = []
            for line in self.pc.localDescription.sdp.splitlines():
                if line.startswith("a=ice-ufrag:"):
                    line = f"a=ice-ufrag:{conn.local_username}"
                elif line.startswith("a=ice-pwd:"):
                    line = f"a=ice-pwd:{conn.local_password}"
                elif line.startswith("a=candidate:"):
                    if candidate is None:
                        continue
                    line, candidate = candidate, None
                lines.append(line)
            started = time.monotonic()
            async with self.negotiation:
                reply = await self.request({"type": "media_offer", "sdp": "\r\n".join(lines) + "\r\n"})
            if reply.get("type") != "ok":
                return reply
            offer_ms = round((time.monotonic() - started) * 1000, 1)
            answer = reply["result"]["sdp"]
            ufrag = next(x.split(":", 1)[1] for x in answer.splitlines() if x.startswith("a=ice-ufrag:"))
            pwd = next(x.split(":", 1)[1] for x in answer.splitlines() if x.startswith("a=ice-pwd:"))
            conn.remote_username = ufrag.strip()
            conn.remote_password = pwd.strip()
        pair = aioice.ice.CandidatePair(protocol, old.remote_candidate)
        request = conn.build_request(pair, nominate=True)
        started = time.monotonic()
        await protocol.request(request, pair.remote_addr, integrity_key=conn.remote_password.encode("utf8"))
        check_ms = round((time.monotonic() - started) * 1000, 1)
        pair.nominated = True
        pair.state = aioice.ice.CandidatePair.State.SUCCEEDED
        conn._nominated[component] = pair
        if old.protocol in conn._protocols:
            conn._protocols.remove(old.protocol)
        await old.protocol.close()
        return {
            "type": "ok",
            "from": list(old.local_addr),
            "to": list(local),
            "broken_t": round(broken_t, 3),
            "moved_t": round(time.time(), 3),
            "offer_ms": offer_ms,
            "check_ms": check_ms,
        }

    async def outbound_stats(self) -> dict[str, Any]:
        assert self.pc is not None
        report = await self.pc.getStats()
        outbound = [s for s in report.values() if s.type == "outbound-rtp"]
        dtls = next((t.sender.transport for t in self.pc.getTransceivers() if t.sender.transport), None)
        return {
            "type": "ok",
            "gen": self.pc_gen,
            "state": self.pc.connectionState,
            "ice_state": self.pc.iceConnectionState,
            "dtls_state": None if dtls is None else dtls.state,
            "packets_sent": sum(s.packetsSent for s in outbound),
            "bytes_sent": sum(s.bytesSent for s in outbound),
            "inbound_ssrcs": sorted(s.ssrc for s in report.values() if s.type == "inbound-rtp"),
        }

    async def consume(self, mid: str, track: MediaStreamTrack, gen: int = 0) -> None:
        stats = TrackStats(mid, self.args.loud, gen)
        # By peer connection and mid: a new peer connection's track on the same mid is another track.
        self.stats[f"{gen}:{mid}"] = stats
        try:
            while True:
                stats.add(await track.recv())
        except MediaStreamError:
            stats.ended = True
            emit({"event": "track_ended", "mid": mid})

    async def report_loop(self) -> None:
        window = self.args.window
        next_at = time.monotonic() + window
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += window
            for stats in list(self.stats.values()):
                if stats.ended and not stats.frames:
                    continue
                emit(stats.report())

    def mids(self) -> list[Optional[str]]:
        assert self.pc is not None
        return [t.mid for t in self.pc.getTransceivers()]

    async def client_offer(self) -> dict[str, Any]:
        """Sends our offer, applies the answer; returns the hub's reply."""
        assert self.pc is not None
        async with self.negotiation:
            offer = await self.pc.createOffer()
            await self.pc.setLocalDescription(offer)  # aiortc gathers every candidate here: no trickling needed
            reply = await self.request({"type": "media_offer", "sdp": self.pc.localDescription.sdp})
            if reply.get("type") != "ok":
                emit({"event": "error", "message": f"media_offer refused: {json.dumps(reply)}"})
                return reply
            answer = reply["result"]["sdp"]
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            emit({"event": "negotiated", "by": "client", "mids": self.mids()})
            return reply

    async def on_server_offer(self, sdp: str) -> None:
        assert self.pc is not None
        try:
            async with self.negotiation:
                await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                answer = await self.pc.createAnswer()
                await self.pc.setLocalDescription(answer)
                reply = await self.request({"type": "media_answer", "sdp": self.pc.localDescription.sdp})
                if reply.get("type") != "ok":
                    emit({"event": "error", "message": f"media_answer refused: {json.dumps(reply)}"})
                    return
                emit({"event": "negotiated", "by": "server", "mids": self.mids()})
        except Exception as e:  # report and go on: the test decides whether this matters
            emit({"event": "error", "message": f"server offer: {type(e).__name__}: {e}"})

    # ---- commands ----

    async def command(self, line: str) -> bool:
        """Handles one stdin line; false means exit."""
        try:
            cmd = json.loads(line)
        except json.JSONDecodeError as e:
            emit({"event": "error", "message": f"bad command {line!r}: {e}"})
            return True
        tag = cmd.get("tag")
        if "send" in cmd:
            try:
                reply = await self.request(cmd["send"])
            except Exception as e:
                reply = {"type": "error", "code": "client", "message": f"{type(e).__name__}: {e}"}
            emit({"event": "reply", "tag": tag, "request": cmd["send"], "msg": reply})
        elif cmd.get("offer"):
            reply = await self.client_offer()
            emit({"event": "reply", "tag": tag, "request": {"type": "media_offer"}, "msg": reply})
        elif cmd.get("leave"):
            return False
        elif cmd.get("drop_ws"):
            ws = self.ws
            self.dropped.add(id(ws))
            gone = self.ws_gone.setdefault(id(ws), asyncio.Event())
            ws.transport.abort()
            await gone.wait()
            emit({"event": "reply", "tag": tag, "request": cmd, "msg": {"type": "ok"}})
        elif cmd.get("rejoin"):
            try:
                await self.open_ws()
                reply = await self.join(self.resume_token if cmd.get("resume", True) else None, cmd.get("role"))
                self.follow_epoch()
            except Exception as e:
                reply = {"type": "error", "code": "client", "message": f"{type(e).__name__}: {e}"}
            emit({"event": "reply", "tag": tag, "request": cmd, "msg": reply})
        elif cmd.get("media_cut"):
            n = self.media_cut()
            emit({"event": "reply", "tag": tag, "request": cmd, "msg": {"type": "ok", "sockets": n}})
        elif cmd.get("close_pc"):
            assert self.pc is not None
            await self.pc.close()
            emit({"event": "reply", "tag": tag, "request": cmd, "msg": {"type": "ok"}})
        elif cmd.get("new_pc"):
            if self.pc is not None:
                await self.pc.close()
            self.pc = self.new_pc()
            try:
                reply = await self.client_offer()
            except Exception as e:
                reply = {"type": "error", "code": "client", "message": f"{type(e).__name__}: {e}"}
            emit({"event": "reply", "tag": tag, "request": {"type": "media_offer"}, "msg": reply})
        elif cmd.get("move"):
            try:
                reply = await self.move(cmd.get("host", "127.0.0.2"), cmd.get("restart", True))
            except Exception as e:
                reply = {"type": "error", "code": "client", "message": f"{type(e).__name__}: {e}"}
            emit({"event": "reply", "tag": tag, "request": cmd, "msg": reply})
        elif cmd.get("stats"):
            emit({"event": "reply", "tag": tag, "request": cmd, "msg": await self.outbound_stats()})
        else:
            emit({"event": "error", "message": f"unknown command {line!r}"})
        return True

    async def stdin_loop(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                return  # EOF
            text = line.decode().strip()
            if text and not await self.command(text):
                return

    # ---- main ----

    async def run(self) -> int:
        a = self.args
        await self.open_ws()
        try:
            reply = await self.join(None, a.join_role)
            if reply.get("type") != "ok":
                emit({"event": "error", "message": f"join refused: {json.dumps(reply)}"})
                return 2
            if a.unmute:
                reply = await self.request({"type": "set_muted", "muted": False})
                emit({"event": "reply", "tag": "unmute", "request": {"type": "set_muted", "muted": False}, "msg": reply})

            if not a.no_media:
                self.pc = self.new_pc()
                self.spawn(self.report_loop())
                self.pc_epoch = self.room_epoch
                reply = await self.client_offer()
                if reply.get("type") != "ok":
                    return 3
                self.media_started = True
                self.follow_epoch()
                deadline = time.monotonic() + a.connect_timeout
                while self.pc.connectionState != "connected":
                    if self.pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
                        emit({"event": "error", "message": f"peer connection {self.pc.connectionState}"})
                        return 4
                    await asyncio.sleep(0.02)
            self.ready = True
            emit({"event": "ready"})

            stdin = self.spawn(self.stdin_loop())
            closed = self.spawn(self.closed.wait())
            await asyncio.wait({stdin, closed}, return_when=asyncio.FIRST_COMPLETED)
            self.leaving = True
            if not self.closed.is_set() and self.ws.close_code is None:
                try:
                    await self.request({"type": "leave"}, timeout=2.0)
                except Exception:
                    pass
        finally:
            await self.ws.close()
        return 0

    async def shutdown(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


SRTP_PROFILE_NAMES = {
    "aes128-cm-sha1-80": aiortc.rtcdtlstransport.SRTP_AES128_CM_SHA1_80,
    "aead-aes-128-gcm": aiortc.rtcdtlstransport.SRTP_AEAD_AES_128_GCM,
    "aead-aes-256-gcm": aiortc.rtcdtlstransport.SRTP_AEAD_AES_256_GCM,
}


async def amain(args: argparse.Namespace) -> int:
    peer = Peer(args)
    try:
        return await peer.run()
    finally:
        await peer.shutdown()
        emit({"event": "bye"})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="the hub's websocket URL, ws://127.0.0.1:PORT/v1/ws (default: the first of --urls)")
    p.add_argument(
        "--urls",
        help="comma-separated websocket URLs of every hub; --auto-reconnect rotates through them (after --url)",
    )
    p.add_argument(
        "--auto-reconnect",
        action="store_true",
        help="behave like an app: reconnect and resume after 4007 or a dropped websocket (to the next of --urls), and "
        "negotiate a new peer connection whenever the room's media epoch changes",
    )
    p.add_argument("--reconnect-timeout", type=float, default=60.0, help="seconds --auto-reconnect keeps trying")
    p.add_argument("--token", required=True, help="access token for `join`")
    p.add_argument("--room", help="`room` of `join` (needed for `*` tokens)")
    p.add_argument("--join-role", choices=["audience", "speaker", "moderator"], help="`role` of `join`")
    p.add_argument("--unmute", action="store_true", help="send set_muted false right after joining")
    p.add_argument("--tone", type=float, help="publish a sine at this frequency (Hz): a sendrecv transceiver")
    p.add_argument("--recv", action="store_true", help="receive only (the default without --tone)")
    p.add_argument("--amplitude", type=float, default=8000.0, help="tone amplitude on the int16 scale")
    p.add_argument("--window", type=float, default=0.5, help="seconds per audio report")
    p.add_argument("--loud", type=float, default=300.0, help="frame RMS above which a frame counts as loud")
    p.add_argument("--no-media", action="store_true", help="signaling only: no peer connection")
    p.add_argument(
        "--keep-media",
        action="store_true",
        help="when the hub closes the websocket, keep the peer connection (and the tone) going until stdin ends",
    )
    p.add_argument("--connect-timeout", type=float, default=15.0, help="seconds to wait for `connected`")
    p.add_argument("--turn", action="store_true", help="use the TURN servers of the hub's `ice_servers`")
    p.add_argument(
        "--turn-transport",
        choices=["udp", "tcp", "tls"],
        default="udp",
        help="with --turn, keep only the `turn:` URLs with this `?transport=` (default udp); `tls`: the `turns:` URLs "
        "(TURN over TLS over TCP)",
    )
    p.add_argument(
        "--ca-file",
        help="trust only the certificate authorities in this PEM file for TLS (TURN over TLS): sets SSL_CERT_FILE, "
        "which the default SSL context aioice's TURN client uses reads",
    )
    p.add_argument("--relay", action="store_true", help="with --turn, iceTransportPolicy relay: relay candidates only")
    p.add_argument(
        "--srtp-profile",
        choices=sorted(SRTP_PROFILE_NAMES),
        help="offer only this DTLS-SRTP protection profile (default: aiortc's list, AEAD_AES_256_GCM first)",
    )
    args = p.parse_args()
    if args.ca_file:
        os.environ["SSL_CERT_FILE"] = args.ca_file
        os.environ["SSL_CERT_DIR"] = "/nonexistent"  # no system authorities
    if args.srtp_profile:
        # aiortc reads its module-level list when it builds each DTLS context.
        aiortc.rtcdtlstransport.SRTP_PROFILES[:] = [SRTP_PROFILE_NAMES[args.srtp_profile]]
    if args.recv and args.tone is not None:
        p.error("--recv and --tone exclude each other")
    if args.relay and not args.turn:
        p.error("--relay needs --turn")
    urls = [u for u in (args.urls or "").split(",") if u]
    if args.url is None and not urls:
        p.error("give --url or --urls")
    if args.url is not None and args.url not in urls:
        urls.insert(0, args.url)
    args.url_index = urls.index(args.url) if args.url is not None else 0
    args.url = urls[args.url_index]
    args.urls = urls
    try:
        code = asyncio.run(amain(args))
    except KeyboardInterrupt:
        code = 130
    except (OSError, ConnectionClosed) as e:
        emit({"event": "error", "message": f"{type(e).__name__}: {e}"})
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
