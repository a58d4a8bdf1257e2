"""The vocabulary cache: durability, sharing, foreign files, export/import,
replay; with real processes killed and running side by side."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from conftest import REPO, run_cli
from fake_openai import FakeOpenAIServer

from ov_eva.vocabulary import (CachedVocabulary, CacheError, Term,
                               VocabularyCache, VocabularyEntry,
                               VocabularyFailure)

CLASSES = [['wall', 'brick wall'], ['floor'], ['sky']]


def entry(key='k1', image='img1', terms=('oak floor', )):
    return VocabularyEntry(
        key=key,
        image=image,
        source='openai',
        model='gpt-4o',
        prompt_version='v1',
        classes='c1',
        params=dict(k=5),
        terms=[Term(t, 'floor') for t in terms],
        raw_answers=['{"floor": ["oak floor"]}'],
        usage=dict(prompt_tokens=10, completion_tokens=5))


def test_put_get_failures(tmp_path):
    cache = VocabularyCache(tmp_path / 'v.sqlite')
    assert cache.get('k1') is None and len(cache) == 0
    cache.record_failure('k1', 'img1', 'boom')
    cache.record_failure('k1', 'img1', 'boom again')
    assert cache.failures() == [('k1', 'img1', 'boom again', 2)]
    cache.put(entry())
    got = cache.get('k1')
    assert got.terms == [Term('oak floor', 'floor')
                         ] and got.usage['prompt_tokens'] == 10
    assert cache.failures() == []  # success clears the failure record
    assert cache.integrity_check() == 'ok'


def test_foreign_and_broken_files_are_left_untouched(tmp_path):
    foreign = tmp_path / 'foreign.sqlite'
    conn = sqlite3.connect(foreign)
    conn.execute('CREATE TABLE people (name TEXT)')
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    with pytest.raises(CacheError, match='not an OV-EVA vocabulary cache'):
        VocabularyCache(foreign)
    assert foreign.read_bytes() == before

    garbage = tmp_path / 'garbage.sqlite'
    garbage.write_bytes(b'this is not a database at all' * 100)
    with pytest.raises(CacheError, match='left untouched'):
        VocabularyCache(garbage)
    assert garbage.read_bytes() == b'this is not a database at all' * 100

    newer = tmp_path / 'newer.sqlite'
    VocabularyCache(newer)
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE meta SET value = '99' WHERE name = 'version'")
    conn.commit()
    conn.close()
    with pytest.raises(CacheError, match='newer OV-EVA'):
        VocabularyCache(newer)


def _open_cache(path, barrier, results):
    barrier.wait()  # every process opens the new file at the same moment
    try:
        VocabularyCache(path).put(entry(f'k{os.getpid()}'))
        results.put('ok')
    except Exception as error:  # reported to the parent, asserted there
        results.put(f'{type(error).__name__}: {error}')


def test_processes_creating_one_new_file_at_once_all_succeed(tmp_path):
    # an empty database (what a peer holds between creating the file and
    # committing the schema) is new, not foreign
    half_made = tmp_path / 'half.sqlite'
    conn = sqlite3.connect(half_made)
    conn.execute('PRAGMA journal_mode=WAL')
    conn.close()
    VocabularyCache(half_made).put(entry())
    assert VocabularyCache(half_made).get('k1') is not None

    import multiprocessing
    context = multiprocessing.get_context('fork')
    for trial in range(5):
        path = tmp_path / f'race{trial}.sqlite'
        barrier, results = context.Barrier(6), context.Queue()
        procs = [
            context.Process(target=_open_cache, args=(path, barrier, results))
            for _ in range(6)
        ]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert outcomes == ['ok'] * 6, outcomes
        assert len(VocabularyCache(path)) == 6


def test_export_import_and_exact_replay(tmp_path):
    cache = VocabularyCache(tmp_path / 'a.sqlite')
    cache.put(entry('k1', 'img1', ('oak floor', 'rug')))
    cache.put(entry('k2', 'img2', ('tiles', )))
    assert cache.export_jsonl(tmp_path / 'v.jsonl') == 2
    other = VocabularyCache(tmp_path / 'b.sqlite')
    assert other.import_jsonl(tmp_path / 'v.jsonl') == 2
    assert [e.to_json() for e in other] == [e.to_json() for e in cache]

    bad = tmp_path / 'bad.jsonl'
    bad.write_text('{"key": "x"}\n')
    with pytest.raises(CacheError, match='bad.jsonl, line 1'):
        other.import_jsonl(bad)


def test_cached_source_replays_and_never_calls(tmp_path, monkeypatch):
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-x')
    img = np.full((20, 30, 3), 7, np.uint8)
    with FakeOpenAIServer() as server:
        from ov_eva.vocabulary import OpenAIVocabulary
        made = OpenAIVocabulary(
            base_url=server.base_url,
            cache_file=tmp_path / 'made.sqlite').fetch(img, CLASSES)
    VocabularyCache(tmp_path / 'made.sqlite').export_jsonl(tmp_path / 'v.jl')
    VocabularyCache(tmp_path / 'replay.sqlite').import_jsonl(tmp_path / 'v.jl')
    replay = CachedVocabulary(cache_file=tmp_path / 'replay.sqlite')
    got = replay.fetch(img, CLASSES)
    assert got.status == 'hit' and got.terms == made.terms
    missing = replay.fetch(img + 1, CLASSES)
    assert missing.status == 'failed' and 'no cached vocabulary' in \
        missing.error
    assert len(replay.cache.failures()) == 0  # replay writes nothing
    strict = CachedVocabulary(
        cache_file=tmp_path / 'replay.sqlite', on_missing='error')
    with pytest.raises(VocabularyFailure):
        strict.fetch(img + 1, CLASSES)


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(30):
        cv2.imwrite(
            str(folder / f'img_{i:03d}.png'),
            rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    (tmp_path / 'classes.txt').write_text('wall, brick wall\nfloor\nsky\n')
    return folder


def build_vocabulary_cmd(folder, cache, url, concurrency=4):
    return [
        sys.executable, 'tools/build_vocabulary.py', '--images', folder,
        '--class-file', folder.parent / 'classes.txt', '--vocabulary',
        'openai', '--cache-file', cache, '--concurrency',
        str(concurrency), '--set', f'base_url={url}', 'max_retries=0'
    ]


def test_killed_prefetch_keeps_entries_and_rerun_resumes(
        tmp_path, image_folder):
    cache_file = tmp_path / 'v.sqlite'
    env = dict(os.environ, OPENAI_API_KEY='sk-kill-test')
    with FakeOpenAIServer(latency=0.1) as server:
        proc = subprocess.Popen([
            str(a) for a in build_vocabulary_cmd(image_folder, cache_file,
                                                 server.base_url)
        ],
                                cwd=REPO,
                                env=env,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if cache_file.exists() and len(VocabularyCache(cache_file)) >= 5:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        cache = VocabularyCache(cache_file)
        kept = len(cache)
        assert 5 <= kept < 30 and cache.integrity_check() == 'ok'
        for item in cache:
            assert len(item.terms) == 11  # every kept entry is whole
        before = server.count()
        out = run_cli(
            *build_vocabulary_cmd(image_folder, cache_file,
                                  server.base_url)[1:],
            env=dict(OPENAI_API_KEY='sk-kill-test'))
        assert f'{kept} cache hits, {30 - kept} new, 0 failed' in out.stdout
        assert server.count() - before == 3 * (30 - kept)
    assert len(VocabularyCache(cache_file)) == 30


def test_processes_share_one_cache(tmp_path, image_folder):
    cache_file = tmp_path / 'shared.sqlite'
    env = dict(os.environ, OPENAI_API_KEY='sk-many')
    with FakeOpenAIServer(latency=0.02) as server:
        procs = [
            subprocess.Popen([
                str(a) for a in build_vocabulary_cmd(image_folder, cache_file,
                                                     server.base_url, 2)
            ],
                             cwd=REPO,
                             env=env,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             text=True) for _ in range(3)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-2000:]
        assert '0 failed' in out
    cache = VocabularyCache(cache_file)
    assert len(cache) == 30 and cache.integrity_check() == 'ok'
    assert cache.failures() == []
