"""Secrets: an API key set in the environment appears in no log line, cache
row, exported file or exception text, checked by scanning them all.

The loopback server plays a worst-case leaky proxy (``echo_auth=True``): its
error bodies and bad answers repeat the ``Authorization`` header, so the key
comes back in every fault the source can meet. Any 10 characters of the
secret in a row, in any letter case, count as a leak, so a key cut short
or lower-cased is caught too.
"""
import json
import logging
import re
import traceback
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from conftest import run_cli
from fake_openai import FakeOpenAIServer
from mmengine.logging import MMLogger

from ov_eva.hooks import VocabularyPrefetchHook
from ov_eva.vocabulary import (FatalVocabularyError, OpenAIVocabulary,
                               VocabularyCache)
from ov_eva.vocabulary.prefetch import prefetch

KEY = 'sk-SECRET-qwzKvRtXpLmNjHgFdSaPoIuYtReWqMnBvCxZ'
SECRET = KEY[len('sk-'):]
FORMS = [KEY, SECRET, f'Bearer {KEY}'
         ] + [SECRET[i:i + 10] for i in range(len(SECRET) - 9)]
ECHO = 'Bearer ***'  # what a redacted echo of the header looks like
CLASSES = [['wall', 'brick wall'], ['floor'], ['sky']]
LOGGERS = ('openai', 'httpx', 'httpx2', 'httpcore', 'httpcore2', 'mmengine')


def stage_one(body) -> bool:
    return 'Target classes' not in json.dumps(body)


# per-request plans beyond the plain behaviours
PLANS = {
    # the 400 is handled (asked again without JSON mode); what fails next
    # must not carry it along
    'json_mode_then_error':
    lambda i, body: 'no_json_mode' if 'response_format' in body else 'error',
    'json_mode_then_hang':
    lambda i, body: 'no_json_mode' if 'response_format' in body else 'hang',
    # a stored entry whose raw answers hold an echo
    'malformed_first':
    lambda i, body: 'malformed' if stage_one(body) else 'good',
    'refuse_last':
    lambda i, body: 'refuse' if i % 3 == 2 else 'good',
}
BEHAVIOURS = [
    'auth', 'error', 'rate_limit', 'malformed', 'refuse', 'junk', 'empty',
    'no_json_mode', 'hang', 'absurd', 'good', *PLANS
]
# behaviours whose echo reaches a failure record or an answer, redacted
ECHOED = {
    'error', 'rate_limit', 'malformed', 'refuse', 'json_mode_then_error',
    'malformed_first', 'refuse_last'
}


def leaks(value) -> list:
    """The forms of the key found in text or bytes, in any letter case (terms
    are lower-cased)."""
    if isinstance(value, bytes):
        value = value.lower()
        return [f for f in FORMS if f.lower().encode() in value]
    value = value.lower()
    return [f for f in FORMS if f.lower() in value]


def image(seed=0):
    return np.random.default_rng(seed).integers(
        0, 255, (24, 32, 3), dtype=np.uint8)


class Evidence:
    """Everything a run leaves that a person or a tool could read, scanned
    at the end: exceptions, logs, console output, cache files and rows,
    exports, summaries."""

    def __init__(self, caplog, capfd):
        self.caplog, self.capfd = caplog, capfd
        self.items = []  # (where, text or bytes)

    def add(self, where, value):
        self.items.append((where, value))

    def exception(self, where, error):
        """str and repr of the error and of every error chained to it, and
        the traceback as Python prints it (causes and contexts)."""
        self.add(f'{where}: traceback',
                 ''.join(traceback.format_exception(error)))
        seen = error
        while seen is not None:
            name = type(seen).__name__
            self.add(f'{where}: str({name})', str(seen))
            self.add(f'{where}: repr({name})', repr(seen))
            seen = seen.__cause__ or (None if seen.__suppress_context__ else
                                      seen.__context__)

    def result(self, where, result):
        self.add(f'{where}: error', str(result.error))
        if result.entry is not None:
            self.add(f'{where}: entry', json.dumps(result.entry.to_json()))

    def summary(self, where, summary):
        self.add(f'{where}: format()', summary.format())
        self.add(f'{where}: to_dict()', json.dumps(summary.to_dict()))

    def cache(self, path):
        """The SQLite file and its WAL and shared-memory files as bytes, every
        failure row and entry, and a JSON Lines export."""
        for suffix in ('', '-wal', '-shm'):
            file = path.with_name(path.name + suffix)
            if file.exists():
                self.add(f'{file.name} bytes', file.read_bytes())
        cache = VocabularyCache(path)
        for row in cache.failures():
            self.add(f'{path.name} failure row', repr(row))
        for entry in cache:
            self.add(f'{path.name} raw_answers', '\n'.join(entry.raw_answers))
            self.add(f'{path.name} entry', json.dumps(entry.to_json()))
        export = path.with_suffix('.jsonl')
        cache.export_jsonl(export)
        self.add(f'{export.name} bytes', export.read_bytes())
        cache.close()

    def text(self) -> str:
        """Everything textual gathered so far (to check echoes arrived)."""
        return '\n'.join(v for _, v in self.items if isinstance(v, str))

    def check(self):
        """Gather the logs and console output, then fail naming every place
        that holds the key."""
        for record in self.caplog.records:
            self.add(f'log record {record.name}', record.getMessage())
        self.add('log text', self.caplog.text)
        out, err = self.capfd.readouterr()
        self.add('stdout', out)
        self.add('stderr', err)
        assert self.caplog.records, 'no log record was captured'
        found = [(where, leaks(value)[:2]) for where, value in self.items
                 if leaks(value)]
        assert not found, f'the API key leaked into: {found}'


@pytest.fixture
def evidence(caplog, capfd, monkeypatch):
    monkeypatch.setenv('OPENAI_API_KEY', KEY)
    monkeypatch.delenv('OPENAI_BASE_URL', raising=False)
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    mm_logger = MMLogger.get_current_instance()  # does not propagate
    level = mm_logger.level
    mm_logger.setLevel(logging.DEBUG)
    mm_logger.addHandler(caplog.handler)
    yield Evidence(caplog, capfd)
    mm_logger.removeHandler(caplog.handler)
    mm_logger.setLevel(level)


def leaky_server(behaviour='good', **kwargs):
    kwargs = dict(dict(hang_seconds=2, retry_after=0), **kwargs)
    return FakeOpenAIServer(
        behaviour=PLANS.get(behaviour, behaviour), echo_auth=True, **kwargs)


def source(url, cache_file, **kwargs):
    kwargs = dict(dict(max_retries=1, timeout=0.5, concurrency=4), **kwargs)
    return OpenAIVocabulary(base_url=url, cache_file=cache_file, **kwargs)


@pytest.mark.parametrize('behaviour', BEHAVIOURS)
def test_fetch_leaks_nothing(tmp_path, evidence, behaviour):
    cache_file = tmp_path / 'v.sqlite'
    settings = dict(max_retries=0, timeout=0.3) if 'hang' in behaviour else {}
    if behaviour == 'json_mode_then_hang':  # a timeout stops the run
        settings['max_consecutive_failures'] = 1
    with leaky_server(behaviour) as server:
        for seed, strict in enumerate((False, True)):
            vocab = source(
                server.base_url, cache_file, strict=strict, **settings)
            where = f'fetch(strict={strict})'
            try:
                evidence.result(where, vocab.fetch(image(seed), CLASSES))
            except Exception as error:
                evidence.exception(where, error)
        assert server.count() > 0
        assert all(r['auth'] == f'Bearer {KEY}' for r in server.requests)
    evidence.cache(cache_file)
    evidence.check()
    if behaviour in ECHOED:  # the echo came back, and was redacted
        assert ECHO in evidence.text()


def test_unreachable_server_leaks_nothing(tmp_path, evidence):
    with FakeOpenAIServer() as server:
        url = server.base_url  # closed: nothing listens there any more
    cache_file = tmp_path / 'v.sqlite'
    vocab = source(url, cache_file, max_consecutive_failures=3)
    evidence.result('fetch', vocab.fetch(image(0), CLASSES))
    with pytest.raises(FatalVocabularyError) as error:
        prefetch(vocab, [image(i) for i in range(1, 6)], CLASSES, 2, False)
    evidence.exception('prefetch', error.value)
    strict = source(
        url,
        cache_file,
        strict=True,
        max_retries=0,
        max_consecutive_failures=1)
    with pytest.raises(FatalVocabularyError) as error:
        strict.fetch(image(9), CLASSES)
    evidence.exception('fetch(strict=True)', error.value)
    evidence.cache(cache_file)
    evidence.check()


def test_prefetch_fault_mix_leaks_nothing(tmp_path, evidence):
    cache_file = tmp_path / 'v.sqlite'
    images = [image(i) for i in range(30)]
    with leaky_server(fail_rate=0.3, hang_seconds=1, seed=3) as server:
        vocab = source(
            server.base_url,
            cache_file,
            concurrency=8,
            max_consecutive_failures=10_000,
            prices=dict(input=2.5, output=10.0))
        summary = prefetch(vocab, images, CLASSES, progress=True)
        evidence.summary('prefetch', summary)
        assert summary.new > 0 and summary.failed > 0
        strict = source(server.base_url, cache_file, strict=True)
        try:  # retries the failed images; the first failure stops it
            evidence.summary('prefetch(strict=True)',
                             prefetch(strict, images, CLASSES, 4, False))
        except Exception as error:
            evidence.exception('prefetch(strict=True)', error)
        server.behaviour, server.fail_rate = 'auth', 0.0
        with pytest.raises(FatalVocabularyError) as error:
            prefetch(vocab, [image(99)], CLASSES, progress=False)
        evidence.exception('prefetch(auth)', error.value)
    evidence.cache(cache_file)
    evidence.check()


class FakeDataset(list):

    def get_data_info(self, index):
        return dict(img_path=self[index])


def test_prefetch_hook_logs_leak_nothing(tmp_path, evidence):
    paths = []
    for i in range(6):
        paths.append(str(tmp_path / f'{i}.png'))
        cv2.imwrite(paths[-1], image(i))
    with leaky_server(fail_rate=0.5, hang_seconds=1, seed=5) as server:
        vocab = source(
            server.base_url,
            tmp_path / 'v.sqlite',
            max_consecutive_failures=10_000)
        runner = SimpleNamespace(
            model=SimpleNamespace(
                vocabulary=vocab,
                class_bank=SimpleNamespace(fetch_classes=CLASSES)),
            test_dataloader=SimpleNamespace(dataset=FakeDataset(paths)))
        hook = VocabularyPrefetchHook(concurrency=3)
        hook.before_test(runner)
    evidence.summary('hook', hook.summary)
    assert hook.summary.images == 6 and hook.summary.failed > 0
    assert hook.summary.format() in evidence.caplog.text  # mmengine's log
    evidence.cache(tmp_path / 'v.sqlite')
    evidence.check()


def test_scan_catches_an_unredacted_key(tmp_path, evidence, monkeypatch):
    """The scan is no formality: without redaction it finds the key."""
    monkeypatch.setattr(OpenAIVocabulary, 'redact', lambda self, text: text)
    cache_file = tmp_path / 'v.sqlite'
    with leaky_server('malformed_first') as server:
        evidence.result(
            'fetch',
            source(server.base_url, cache_file).fetch(image(), CLASSES))
    evidence.cache(cache_file)
    with pytest.raises(AssertionError, match='raw_answers'):
        evidence.check()


def test_build_vocabulary_tool_leaks_nothing(tmp_path):
    """End to end through the command line, with the openai client's own
    debug log on: console output, cache files and the export."""
    folder = tmp_path / 'images'
    folder.mkdir()
    for i in range(16):
        cv2.imwrite(str(folder / f'{i:02d}.png'), image(i))
    class_file = tmp_path / 'classes.txt'
    class_file.write_text('wall, brick wall\nfloor\nsky\n')
    env = dict(OPENAI_API_KEY=KEY, OPENAI_LOG='debug')
    outputs, caches = {}, []

    def build(name, url, *settings):
        caches.append(tmp_path / f'{name}.sqlite')
        outputs[name] = run_cli(
            'tools/build_vocabulary.py',
            '--images',
            folder,
            '--class-file',
            class_file,
            '--cache-file',
            caches[-1],
            '--concurrency',
            '4',
            '--set',
            f'base_url={url}',
            'max_retries=0',
            'timeout=0.5',
            'max_consecutive_failures=1000',
            *settings,
            env=env,
            check=False)

    with leaky_server(fail_rate=0.3, hang_seconds=1, seed=2) as server:
        build('mixed', server.base_url)
        build('strict', server.base_url, 'strict=True')
        faults = server.count() - server.count('good')
        assert faults > 0 and server.count('good') > 0
        assert all(r['auth'] == f'Bearer {KEY}' for r in server.requests)
    export = tmp_path / 'export.jsonl'
    outputs['export'] = run_cli('tools/build_vocabulary.py', '--cache-file',
                                caches[0], '--export', export)

    assert outputs['mixed'].returncode == 0, outputs['mixed'].stderr[-3000:]
    counts = re.search(r'(\d+) new, (\d+) failed', outputs['mixed'].stdout)
    assert int(counts.group(1)) > 0 and int(counts.group(2)) > 0
    assert 'openai._base_client' in outputs['mixed'].stderr  # debug log on
    assert outputs['strict'].returncode != 0  # a traceback, printed
    assert 'VocabularyFailure' in outputs['strict'].stderr
    assert 'exported' in outputs['export'].stdout
    found = []
    for name, proc in outputs.items():
        found += [(f'{name} stdout', leaks(proc.stdout)),
                  (f'{name} stderr', leaks(proc.stderr))]
    for path in [export, *tmp_path.glob('*.sqlite*')]:
        found.append((path.name, leaks(path.read_bytes())))
    found = [(where, forms[:2]) for where, forms in found if forms]
    assert not found, f'the API key leaked into: {found}'
