"""Prefetch wall time against a loopback OpenAI-compatible server with a
fixed injected latency: sequential versus concurrent, side by side.

    python tools/benchmark_vocabulary.py --images 64 --latency 0.2 \
        --concurrency 16

Each image costs 3 requests (perceive + 2 expand rounds). The last line is
``ratio sequential/concurrent: X.XX``.
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from fake_openai import FakeOpenAIServer

import ov_eva  # noqa: F401
from ov_eva.vocabulary import OpenAIVocabulary
from ov_eva.vocabulary.prefetch import prefetch

CLASSES = [['wall'], ['floor'], ['ceiling'], ['bed'], ['window']]


def run(server, images, concurrency, cache_file):
    source = OpenAIVocabulary(
        base_url=server.base_url,
        cache_file=cache_file,
        concurrency=concurrency)
    start = time.perf_counter()
    summary = prefetch(source, images, CLASSES, progress=False)
    seconds = time.perf_counter() - start
    assert summary.new == len(images), summary.format()
    return seconds, summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=64)
    parser.add_argument('--latency', type=float, default=0.2)
    parser.add_argument('--concurrency', type=int, default=16)
    args = parser.parse_args()
    os.environ.setdefault('OPENAI_API_KEY', 'sk-benchmark')
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        for _ in range(args.images)
    ]
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(
            latency=args.latency) as server:
        seq, _ = run(server, images, 1, Path(tmp) / 'seq.sqlite')
        par, summary = run(server, images, args.concurrency,
                           Path(tmp) / 'par.sqlite')
        peak = server.max_in_flight
    requests = summary.requests
    print(f'images: {args.images}, requests: {requests}, injected latency: '
          f'{args.latency * 1000:.0f} ms')
    print(f'sequential:            {seq:7.2f} s '
          f'({args.images / seq:6.2f} images/s)')
    print(f'concurrent ({args.concurrency:2d} in flight): {par:7.2f} s '
          f'({args.images / par:6.2f} images/s, peak {peak} in flight)')
    print(f'ratio sequential/concurrent: {seq / par:.2f}')


if __name__ == '__main__':
    main()
