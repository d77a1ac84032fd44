"""A debtor on a real SIP line: a baresip user agent, run as its own process, that answers and follows a plan.

    python sip_debtor.py PORT PLAN_FILE

Each incoming call reads PLAN_FILE afresh, one step per line:
  busy        decline the call (486 Busy Here)
  PATH.wav    say this utterance (8 kHz μ-law or PCM) once the bot has spoken and been quiet for GAP_S
  dtmf:1234   press these keys at that moment
An empty plan answers and stays silent. Once its plan is done the debtor waits, silent, for the bot's BYE.
It prints one line per step; the test reads them from its log.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import baresip
import numpy as np
import soundfile
from baresip import Account, AudioNotActive, AudioRestarted, BaresipError, CallState, Config, UserAgent

GAP_S = 0.8
FRAME_S = 0.02
VOICED_RMS = 200.0


def utterance(path: str, rate: int) -> bytes:
    """The file's audio as 16-bit PCM at the call's rate."""
    pcm, file_rate = soundfile.read(path, dtype="int16")
    if file_rate != rate:
        raise SystemExit(f"{path}: {file_rate} Hz, the call runs at {rate} Hz")
    return pcm.astype("<i2").tobytes()


class BotEar:
    """Whether the bot has spoken since the debtor last answered and has now been quiet for GAP_S."""

    def __init__(self) -> None:
        self.spoke, self.last_voiced = False, 0.0

    def hear(self, pcm: bytes) -> None:
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
        if samples.size and np.sqrt(np.mean(samples**2)) > VOICED_RMS:
            self.spoke, self.last_voiced = True, time.monotonic()

    def turn(self) -> bool:
        if self.spoke and time.monotonic() - self.last_voiced > GAP_S:
            self.spoke = False
            return True
        return False


async def converse(call: baresip.Call, plan: list[str]) -> None:
    """Answer the bot, step by step, until the call closes."""
    await call.wait_established()
    rate = call.audio.info().tx_sample_rate or 8000
    ear, speech = BotEar(), b""
    while call.state is not CallState.CLOSED:
        try:
            ear.hear(call.audio.read(rate * 2))
            if speech:
                speech = speech[call.audio.write(speech[: int(rate * FRAME_S) * 2]) :]
            elif plan and ear.turn():
                step = plan.pop(0)
                print("step", Path(step).name, flush=True)
                if step.startswith("dtmf:"):
                    await call.send_dtmf(step.removeprefix("dtmf:"))
                else:
                    speech = utterance(step, rate)
        except (AudioNotActive, AudioRestarted):
            pass
        await asyncio.sleep(FRAME_S)
    print("closed", flush=True)


async def main(port: int, plan_file: Path) -> None:
    runtime = baresip.Runtime()
    await runtime.start(Config(net_interface="127.0.0.1", audio_driver="aumem",
                               extra_config_text=f"sip_listen 127.0.0.1:{port}\n"))
    ua = await UserAgent.create(runtime, Account(user="debtor", domain=f"127.0.0.1:{port}", password="",
                                                 reg_interval=0, audio_codecs=("pcmu",),
                                                 extra_params=("catchall=yes",)))
    calls: set[asyncio.Task[None]] = set()

    async def take(call: baresip.Call) -> None:
        plan = [line.strip() for line in plan_file.read_text().splitlines() if line.strip()]
        print("incoming", " ".join(Path(s).name for s in plan) or "(silent)", flush=True)
        try:
            if plan[:1] == ["busy"]:
                await call.reject()
                return
            await call.answer()
            await converse(call, plan)
        except BaresipError as e:
            print("error", type(e).__name__, e, flush=True)

    def incoming(call: baresip.Call) -> None:
        task = asyncio.create_task(take(call))
        calls.add(task)
        task.add_done_callback(calls.discard)

    ua.on_incoming(incoming)
    print("listening", port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
