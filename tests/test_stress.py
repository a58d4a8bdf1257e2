"""Issue-5 style stress: a fault storm over hundreds of images at 16-way
concurrency, and a SIGKILL among several processes sharing one cache."""
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
from conftest import REPO
from fake_openai import FakeOpenAIServer

from ov_eva.vocabulary import OpenAIVocabulary, VocabularyCache
from ov_eva.vocabulary.prefetch import prefetch

CLASSES = [['wall'], ['floor'], ['sky']]


def test_fault_storm_then_rerun_completes_exactly_the_failed(
        tmp_path, monkeypatch):
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-storm')
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 255, (8, 8, 3), dtype=np.uint8) for _ in range(240)
    ]
    cache_file = tmp_path / 'v.sqlite'
    with FakeOpenAIServer(
            fail_rate=1 / 3, hang_seconds=1.0, retry_after=0.1,
            seed=1) as server:
        source = OpenAIVocabulary(
            base_url=server.base_url,
            cache_file=cache_file,
            max_retries=0,
            timeout=0.5,
            concurrency=16,
            max_consecutive_failures=10_000)
        first = prefetch(source, images, CLASSES, progress=False)
        faults = server.count() - server.count('good')
    assert first.images == 240 and first.new + first.failed == 240
    assert first.failed > 0 and first.new > 0 and faults > 0
    assert server.max_in_flight <= 16
    cache = VocabularyCache(cache_file)
    assert len(cache) == first.new
    assert len(cache.failures()) == first.failed
    failed_keys = {key for key, *_ in cache.failures()}
    assert failed_keys.isdisjoint({e.key for e in cache})

    with FakeOpenAIServer() as good:
        source = OpenAIVocabulary(
            base_url=good.base_url, cache_file=cache_file, concurrency=16)
        second = prefetch(source, images, CLASSES, progress=False)
        assert good.count() == 3 * first.failed  # only the failed, again
    assert (second.hits, second.new, second.failed) == (first.new,
                                                        first.failed, 0)
    assert cache.failures() == [] and len(cache) == 240


def test_sigkill_among_concurrent_writers_keeps_the_cache_whole(tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(40):
        cv2.imwrite(
            str(folder / f'{i:03d}.png'),
            rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    (tmp_path / 'classes.txt').write_text('wall\nfloor\nsky\n')
    cache_file = tmp_path / 'shared.sqlite'
    env = dict(os.environ, OPENAI_API_KEY='sk-kill')
    with FakeOpenAIServer(latency=0.05) as server:
        cmd = [
            sys.executable, 'tools/build_vocabulary.py', '--images',
            str(folder), '--class-file',
            str(tmp_path / 'classes.txt'), '--cache-file',
            str(cache_file), '--concurrency', '4', '--set',
            f'base_url={server.base_url}', 'max_retries=0'
        ]
        logs = [tmp_path / f'writer{i}.log' for i in range(3)]
        procs = [
            subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env,
                stdout=log.open('w'),
                stderr=subprocess.STDOUT) for log in logs
        ]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if cache_file.exists() and len(VocabularyCache(cache_file)) >= 6:
                break
            time.sleep(0.05)
        os.kill(procs[0].pid, signal.SIGKILL)  # mid-run, mid-write maybe
        for proc, log in zip(procs[1:], logs[1:]):
            assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
        procs[0].wait()
    cache = VocabularyCache(cache_file)
    assert cache.integrity_check() == 'ok'
    assert len(cache) == 40  # the survivors finished every image
    for entry in cache:
        assert len(entry.terms) > 0 and entry.usage['requests'] == 3
