"""What the voice pipeline's latency knobs cost in accuracy, on the fixed demo utterance set.

``python -m bench.voice_tuning [--configs 600:5,400:5,300:5,600:1] [--voices ...]``
runs the accuracy measurement of ``bench.voice_accuracy`` (every utterance of
the Northwind pack's voice evaluation set in three espeak-ng voices through
μ-law, the endpointer, Whisper tiny.en with the domain prompt and the pack's
intent classifier) once per ``end_silence_ms:beam_size[:window_s]`` triple
(``full`` for Whisper's padded 30 s window; the default is the recogniser's
own) and prints one row each: intent accuracy (the 90% bar), key-word recall,
word error rate, how many phrases the endpointer split in two, and the
recogniser's mean seconds per utterance.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench import NORTHWIND
from threadline.agents import classifier_for
from threadline.business import Business, load
from threadline.channels.voice.hints import domain_hints
from threadline.channels.voice.stt import WhisperConfig, WhisperSTT
from threadline.channels.voice.vad import EndpointerConfig
from threadline.testing.voice_accuracy import measure
from threadline.testing.voice_corpus import VOICES, DemoUtterance, load_corpus

Config = tuple[int, int, float | None]


async def one(
    business: Business,
    utterances: tuple[DemoUtterance, ...],
    end_silence_ms: int,
    beam: int,
    window: float | None,
    voices: list[str],
) -> str:
    hints = domain_hints(business)
    stt = WhisperSTT(WhisperConfig(beam_size=beam, window_s=window), hints=hints)
    try:
        await stt.load()
        started = time.perf_counter()
        endpointer = EndpointerConfig(end_silence_ms=end_silence_ms)
        classifier = classifier_for(business)
        report = await measure(stt, utterances, classifier, voices=voices, endpointer=endpointer)
        elapsed = time.perf_counter() - started
    finally:
        await stt.close()
    split = sum(r.segments != 1 for r in report.results)
    shown = "30 s" if window is None else f"{window:g} s"
    return (f"| {end_silence_ms} | {beam} | {shown} | {report.intent_accuracy():.1%} | "
            f"{report.keyword_recall():.1%} | {report.word_error_rate():.1%} | "
            f"{split} of {len(report.results)} | {report.seconds_per_utterance():.3f} | "
            f"{elapsed:.0f} |")  # fmt: skip


async def main(configs: list[Config], voices: list[str]) -> None:
    print("| end silence ms | beam | window | intent accuracy | key words | WER | split "
          "| STT s/utterance | run s |")  # fmt: skip
    print("|---" * 9 + "|", flush=True)
    business, utterances = load(NORTHWIND), load_corpus(NORTHWIND)
    for end_silence_ms, beam, pad in configs:
        print(await one(business, utterances, end_silence_ms, beam, pad, voices), flush=True)


def parse(spec: str) -> Config:
    """``600:5`` or ``600:5:1.0`` or ``600:5:full``."""
    parts = spec.split(":")
    pad: float | None = WhisperConfig().window_s
    if len(parts) == 3:
        pad = None if parts[2] == "full" else float(parts[2])
    return int(parts[0]), int(parts[1]), pad


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="600:5,400:5,300:5,600:1",
                        help="end:beam[:window_s or full], comma-separated")  # fmt: skip
    parser.add_argument("--voices", default=",".join(VOICES))
    args = parser.parse_args()
    asyncio.run(main([parse(c) for c in args.configs.split(",") if c], args.voices.split(",")))
