#!/usr/bin/env python3
"""The aiortc side of the compressed summit day (crates/podium/tests/summit_day.rs): one process that runs every
scheduled speaker and a few listeners with real WebRTC audio, driven by JSON lines on stdin.

stdin, one JSON object per line:
  {"listener": NAME, "url": WS_URL, "token": T, "window": 0.25}
      a listener: joins as audience with a recvonly transceiver; reports what it decodes.
  {"speaker": NAME, "url": WS_URL, "stage_token": T, "back_token": T, "tone": 440, "silent": false}
      a scheduled speaker: joins the stage room as audience and the backstage room (checking in), each with its own
      peer connection publishing a sine at `tone` Hz. On the backstage stage (mic check) it unmutes there. When the
      handover puts it on the stage room's stage (`you` with role speaker or moderator) it unmutes on the stage
      connection (unless `silent`) and leaves the backstage; when it is moved back to the audience it leaves.

stdout, one JSON object per line (`t`: Unix seconds):
  {"event": "audio", "who": NAME, "mid": ..., "gen": n, "freq": ..., "rms": ..., "frames": n, "t": ...,
   "first_loud_t": ..., "last_loud_t": ..., "max_loud_gap": ...}     a listener's report per track and window
  {"event": "tracks", "who": NAME, "tracks": [...], "t": ...}        a listener's `media_tracks`
  {"event": "ready", "who": NAME, "conn": "stage"|"back", "t": ...}   joined, negotiated, connected
  {"event": "role", "who": NAME, "conn": ..., "role": ..., "t": ...}  `you` with a new role
  {"event": "unmuted", "who": NAME, "conn": ..., "t": ..., "ok": bool}
  {"event": "left", "who": NAME, "conn": ..., "t": ...}
  {"event": "closed", "who": NAME, "conn": ..., "code": n, "t": ...}  the hub closed a websocket we did not close
  {"event": "renegotiated", "who": NAME, "conn": ..., "epoch": n, "t": ...}  after `media_moved`
  {"event": "error", "who": NAME, "message": ...}
End of input: everyone leaves; exit 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peer import ToneTrack, TrackStats, emit  # noqa: E402  (peer.py patches aioice for loopback on import)

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

TASKS: set[asyncio.Task] = set()


def spawn(coro: Any) -> asyncio.Task:
    task = asyncio.ensure_future(coro)
    TASKS.add(task)
    task.add_done_callback(TASKS.discard)
    return task


def now() -> float:
    return round(time.time(), 3)


class Conn:
    """One websocket in one room with one peer connection (publishing a tone, or receive-only)."""

    def __init__(self, who: str, conn: str, url: str, token: str, tone: Optional[float], window: float = 0.0):
        self.who, self.conn, self.url, self.token, self.tone, self.window = who, conn, url, token, tone, window
        self.ws: Any = None
        self.pc: Optional[RTCPeerConnection] = None
        self.gen = 0
        self.next_id = 1
        self.pending: dict[str, asyncio.Future] = {}
        self.negotiation = asyncio.Lock()
        self.role: Optional[str] = None
        self.epoch: Optional[int] = None
        self.stats: dict[str, TrackStats] = {}
        self.on_role: Any = None
        self.leaving = False
        self.gone = asyncio.Event()

    def emit(self, event: str, **fields: Any) -> None:
        emit({"event": event, "who": self.who, "conn": self.conn, **fields})

    async def request(self, body: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        body = dict(body)
        body["id"] = f"r{self.next_id}"
        self.next_id += 1
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.pending[body["id"]] = fut
        try:
            await self.ws.send(json.dumps(body))
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.pending.pop(body["id"], None)

    async def start(self) -> None:
        self.ws = await connect(self.url, max_size=2**22, open_timeout=10)
        spawn(self.read())
        deadline = time.monotonic() + 20
        while True:
            reply = await self.request({"type": "join", "token": self.token, "role": "audience"})
            if reply.get("type") == "ok":
                break
            if reply.get("code") != "unavailable" or time.monotonic() > deadline:
                raise RuntimeError(f"join refused: {json.dumps(reply)}")
            await asyncio.sleep(0.2)
        state = reply["result"].get("state") or {}
        self.epoch = state.get("media_epoch")
        you = state.get("you") or {}
        await self.negotiate()
        if you.get("role") and you.get("role") != self.role:
            self.set_role(you["role"])
        self.emit("ready", t=now())

    def new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.gen += 1
        gen = self.gen

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind != "audio":
                return
            mid = next((t.mid for t in pc.getTransceivers() if t.receiver.track is track), None)
            spawn(self.consume(str(mid), track, gen))

        opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
        if self.tone is not None:
            transceiver = pc.addTransceiver(ToneTrack(self.tone, 8000.0), direction="sendrecv")
        else:
            transceiver = pc.addTransceiver("audio", direction="recvonly")
        transceiver.setCodecPreferences(opus)
        return pc

    async def negotiate(self) -> None:
        """A new peer connection (closing the old one), offered until answered (the media hub may be moving)."""
        if self.pc is not None:
            await self.pc.close()
        self.pc = pc = self.new_pc()
        deadline = time.monotonic() + 15
        async with self.negotiation:
            offer = await pc.createOffer()
            await pc.setLocalDescription(offer)
            while True:
                reply = await self.request({"type": "media_offer", "sdp": pc.localDescription.sdp})
                if reply.get("type") == "ok":
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["result"]["sdp"], type="answer"))
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"media_offer refused: {json.dumps(reply)}")
                await asyncio.sleep(0.25)
        deadline = time.monotonic() + 15
        while pc.connectionState != "connected":
            if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
                raise RuntimeError(f"peer connection {pc.connectionState}")
            await asyncio.sleep(0.02)

    async def on_server_offer(self, sdp: str) -> None:
        pc = self.pc
        if pc is None:
            return
        try:
            async with self.negotiation:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
                reply = await self.request({"type": "media_answer", "sdp": pc.localDescription.sdp})
                if reply.get("type") != "ok":
                    self.emit("error", message=f"media_answer refused: {json.dumps(reply)}")
        except Exception as e:
            self.emit("error", message=f"server offer: {type(e).__name__}: {e}")

    async def renegotiate(self, epoch: int) -> None:
        try:
            await self.negotiate()
            self.emit("renegotiated", epoch=epoch, t=now())
        except Exception as e:
            if not self.leaving:  # a speaker that left the stage meanwhile closed its peer connection
                self.emit("error", message=f"renegotiation for epoch {epoch}: {type(e).__name__}: {e}")

    def set_role(self, role: str) -> None:
        old, self.role = self.role, role
        self.emit("role", role=role, old=old, t=now())
        if self.on_role is not None:
            spawn(self.on_role(self, role))

    async def read(self) -> None:
        code = 1006
        try:
            async for raw in self.ws:
                if not isinstance(raw, str):
                    continue
                msg = json.loads(raw)
                kind = msg.get("type")
                if kind in ("ok", "error") and msg.get("id") in self.pending:
                    fut = self.pending[msg["id"]]
                    if not fut.done():
                        fut.set_result(msg)
                    continue
                if kind == "you":
                    role = (msg.get("you") or {}).get("role")
                    if role and role != self.role:
                        self.set_role(role)
                elif kind == "media_offer":
                    spawn(self.on_server_offer(msg["sdp"]))
                elif kind == "media_moved":
                    epoch = msg.get("media_epoch")
                    if epoch is not None and epoch != self.epoch:
                        self.epoch = epoch
                        spawn(self.renegotiate(epoch))
                elif kind == "media_tracks" and self.window:
                    emit({"event": "tracks", "who": self.who, "msg": msg, "t": now()})
                elif kind == "resync":
                    self.emit("resync", t=now())
            if self.ws.close_code is not None:
                code = self.ws.close_code
        except ConnectionClosed as e:
            if e.rcvd is not None:
                code = e.rcvd.code
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("websocket closed"))
        if not self.leaving:
            self.emit("closed", code=code, t=now())
        self.gone.set()

    async def consume(self, mid: str, track: Any, gen: int) -> None:
        stats = TrackStats(mid, 300.0, gen) if self.window else None
        if stats is not None:
            self.stats[f"{gen}:{mid}"] = stats
        try:
            while True:
                frame = await track.recv()
                if stats is not None:
                    stats.add(frame)
        except MediaStreamError:
            if stats is not None:
                stats.ended = True

    async def report_loop(self) -> None:
        next_at = time.monotonic() + self.window
        while not self.gone.is_set():
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += self.window
            for stats in list(self.stats.values()):
                if stats.ended and not stats.frames:
                    continue
                report = stats.report()
                report["who"] = self.who
                emit(report)

    async def unmute(self) -> None:
        try:
            reply = await self.request({"type": "set_muted", "muted": False})
            self.emit("unmuted", ok=reply.get("type") == "ok", reply=reply, t=now())
        except Exception as e:
            self.emit("error", message=f"unmute: {type(e).__name__}: {e}")

    async def leave(self) -> None:
        if self.leaving:
            return
        self.leaving = True
        try:
            await self.request({"type": "leave"}, timeout=3.0)
        except Exception:
            pass
        try:
            await self.ws.close()
        except Exception:
            pass
        if self.pc is not None:
            await self.pc.close()
        self.emit("left", t=now())


class Speaker:
    def __init__(self, cmd: dict[str, Any]) -> None:
        self.name = cmd["speaker"]
        self.silent = bool(cmd.get("silent"))
        tone = float(cmd["tone"])
        self.stage = Conn(self.name, "stage", cmd["url"], cmd["stage_token"], tone)
        self.back = Conn(self.name, "back", cmd["url"], cmd["back_token"], tone)
        self.stage.on_role = self.on_stage_role
        self.back.on_role = self.on_back_role
        self.was_on_stage = False

    async def run(self) -> None:
        try:
            await self.stage.start()
            await self.back.start()
        except Exception as e:
            emit({"event": "error", "who": self.name, "message": f"start: {type(e).__name__}: {e}"})

    async def on_back_role(self, conn: Conn, role: str) -> None:
        if role in ("speaker", "moderator") and not self.was_on_stage:
            await conn.unmute()  # the mic check, heard backstage only

    async def on_stage_role(self, conn: Conn, role: str) -> None:
        if role in ("speaker", "moderator"):
            if not self.was_on_stage:
                self.was_on_stage = True
                if not self.silent:
                    await conn.unmute()
                await self.back.leave()
        elif role == "audience" and self.was_on_stage:
            await conn.leave()
            await self.back.leave()

    async def close(self) -> None:
        await self.back.leave()
        await self.stage.leave()


async def amain() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    speakers: list[Speaker] = []
    listeners: list[Conn] = []
    while True:
        line = await reader.readline()
        if not line:
            break
        text = line.decode().strip()
        if not text:
            continue
        try:
            cmd = json.loads(text)
        except json.JSONDecodeError as e:
            emit({"event": "error", "who": "-", "message": f"bad command {text!r}: {e}"})
            continue
        if "listener" in cmd:
            lis = Conn(cmd["listener"], "stage", cmd["url"], cmd["token"], None, float(cmd.get("window", 0.25)))
            listeners.append(lis)

            async def start(lis: Conn = lis) -> None:
                try:
                    await lis.start()
                    spawn(lis.report_loop())
                except Exception as e:
                    emit({"event": "error", "who": lis.who, "message": f"start: {type(e).__name__}: {e}"})

            spawn(start())
        elif "speaker" in cmd:
            spk = Speaker(cmd)
            speakers.append(spk)
            spawn(spk.run())
        else:
            emit({"event": "error", "who": "-", "message": f"unknown command {text!r}"})
    for spk in speakers:
        await spk.close()
    for lis in listeners:
        await lis.leave()
    for task in list(TASKS):
        task.cancel()
    await asyncio.gather(*TASKS, return_exceptions=True)
    emit({"event": "bye"})
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(amain()))
