"""TTS figures: espeak-ng synthesis RTF (Mandarin, English), prompt cache hit latency, first-audio latency of a
typical line, and how much of espeak's Mandarin Vosk hears (plumbing check, not a quality claim).

Prints one JSON line per figure. Usage: python bench/tts.py [--repeats 5] [--no-asr]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # run as a file: this file's folder must not shadow the `asr` package
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from asr.codecs import Audio, resample
from asr.metrics import character_error_rate
from asr.transcribe import transcribe_audio
from bench.figures import emit
from voicebot.config import load_config
from voicebot.tts import PHONE_RATE, EspeakSynthesizer, PromptCache

LINES = {
    "cmn": ["您好，我是受银行委托的客服专员，本次通话将被录音。", "请问您是张先生本人吗？",
            "为了核实身份，请您说一下身份证号码的后四位。", "您的信用卡账单已经逾期十五天，应还金额两千元。",
            "请问您方便在下周五之前还款吗？", "如果您有困难，我们可以为您申请分期还款。", "感谢您的接听，再见。"],
    "en": ["Hello, this is a call from Example Collections on behalf of Example Bank. This call is recorded.",
           "May I speak with John Smith, please?", "This is an attempt to collect a debt.",
           "Your payment of two hundred dollars is now fifteen days past due.",
           "Would you be able to pay by next Friday?", "Thank you for your time. Goodbye."],
}
TYPICAL = {"cmn": LINES["cmn"][3], "en": LINES["en"][3]}


def child_cpu_s() -> float:
    """CPU seconds used so far by finished child processes (espeak-ng runs as one)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bench_rtf(espeak: EspeakSynthesizer, repeats: int) -> None:
    """Synthesis real-time factor per language: wall and espeak CPU time over audio time, at the engine's rate."""
    for language, lines in LINES.items():
        audio_s = wall_s = 0.0
        cpu0 = child_cpu_s()
        for _ in range(repeats):
            for text in lines:
                started = time.perf_counter()
                pcm = espeak.synthesize(text, language)
                wall_s += time.perf_counter() - started
                audio_s += len(pcm) / espeak.sample_rate
        cpu_s = child_cpu_s() - cpu0
        emit("synthesis_rtf", wall_s / audio_s, "x", engine=espeak.name, language=language, clock="wall",
             audio_s=round(audio_s / repeats, 1), lines=len(lines))
        emit("synthesis_rtf", cpu_s / audio_s, "x", engine=espeak.name, language=language, clock="espeak-cpu")


def bench_latency(espeak: EspeakSynthesizer, repeats: int) -> None:
    """First audio of a typical line (miss: synthesise, resample to 8 kHz, store; and never-stored), then a hit."""
    with tempfile.TemporaryDirectory() as folder:
        for language, text in TYPICAL.items():
            misses, uncached = [], []
            for i in range(repeats):
                cache = PromptCache(espeak, Path(folder) / f"{language}{i}")
                started = time.perf_counter()
                pcm = cache.prompt(text, language)
                misses.append(time.perf_counter() - started)
                started = time.perf_counter()
                cache.prompt(text, language, cache=False)
                uncached.append(time.perf_counter() - started)
            hits = []
            for _ in range(200):
                started = time.perf_counter()
                cache.prompt(text, language)
                hits.append(time.perf_counter() - started)
            extra = {"language": language, "line_s": round(len(pcm) / PHONE_RATE, 2)}
            emit("first_audio_ms", statistics.median(misses) * 1000, "ms", path="cache miss (synth+store)", **extra)
            emit("first_audio_ms", statistics.median(uncached) * 1000, "ms", path="uncached (cache=False)", **extra)
            emit("cache_hit_ms", statistics.median(hits) * 1000, "ms", stat="p50", **extra)
            emit("cache_hit_ms", sorted(hits)[int(len(hits) * 0.95)] * 1000, "ms", stat="p95", **extra)


def bench_asr(espeak: EspeakSynthesizer) -> None:
    """Vosk CER on espeak's Mandarin at 8 kHz (what the phone carries) and 16 kHz (the model's own rate)."""
    from asr.vosk_engine import VoskEngine

    engine = VoskEngine.load(load_config().vosk_model)
    spoken = [espeak.synthesize(text, "cmn") for text in LINES["cmn"]]
    for rate in (PHONE_RATE, 16000):
        hyps = ["".join(t.text for t in transcribe_audio(engine, Audio((resample(pcm, espeak.sample_rate, rate),),
                                                                       rate))) for pcm in spoken]
        emit("vosk_cer_on_espeak", character_error_rate(LINES["cmn"], hyps), "ratio", language="cmn",
             sample_rate=rate, lines=len(spoken))


def main() -> None:
    """Run every figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-asr", action="store_true", help="skip the Vosk check (needs the model)")
    args = parser.parse_args()
    espeak = EspeakSynthesizer()
    bench_rtf(espeak, args.repeats)
    bench_latency(espeak, args.repeats)
    if not args.no_asr:
        bench_asr(espeak)


if __name__ == "__main__":
    main()
