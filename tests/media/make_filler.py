#!/usr/bin/env python3
"""Writes an Ogg Opus file (48 kHz mono, 20 ms packets) holding a sine tone: a summit stage's filler audio for the
end-to-end tests (crates/podium/tests/summit_day.rs). Uses PyAV's libopus (installed with aiortc).

usage: make_filler.py OUT.ogg [--freq HZ] [--seconds S] [--amplitude A]
"""

from __future__ import annotations

import argparse

import av
import numpy as np

RATE = 48_000
FRAME = 960  # 20 ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--freq", type=float, default=880.0)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--amplitude", type=float, default=8000.0)
    a = p.parse_args()
    container = av.open(a.out, mode="w", format="ogg")
    stream = container.add_stream("libopus", rate=RATE)
    stream.layout = "mono"
    stream.codec_context.options = {"frame_duration": "20", "application": "audio"}
    total = int(a.seconds * RATE / FRAME)
    for i in range(total):
        n = np.arange(i * FRAME, (i + 1) * FRAME, dtype=np.float64)
        samples = (a.amplitude * np.sin(2.0 * np.pi * a.freq * n / RATE)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = i * FRAME
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()


if __name__ == "__main__":
    main()
