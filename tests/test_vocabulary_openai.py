"""OpenAIVocabulary against a real loopback HTTP server through the real
``openai`` client: answers, faults, retries, fallbacks, secrets."""
import base64
import json
import time

import cv2
import numpy as np
import pytest
from fake_openai import FakeOpenAIServer

from ov_eva.vocabulary import (FatalVocabularyError, OpenAIVocabulary,
                               VocabularyFailure)
from ov_eva.vocabulary.prefetch import prefetch

KEY = 'sk-test-SECRET-7f3a9c'
CLASSES = [['wall', 'brick wall'], ['floor'], ['sky']]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv('OPENAI_API_KEY', KEY)
    monkeypatch.delenv('OPENAI_BASE_URL', raising=False)


def image(seed=0, size=(48, 64)):
    return np.random.default_rng(seed).integers(
        0, 255, (*size, 3), dtype=np.uint8)


def source(server, tmp_path, **kwargs):
    kwargs.setdefault('max_retries', 2)
    kwargs.setdefault('timeout', 5)
    return OpenAIVocabulary(
        base_url=server.base_url,
        cache_file=tmp_path / 'vocab.sqlite',
        **kwargs)


def test_two_stage_answers_become_terms(tmp_path):
    with FakeOpenAIServer() as server:
        vocab = source(server, tmp_path)
        result = vocab.fetch(image(), CLASSES)
    assert result.status == 'new'
    terms = {(t.text, t.suggested_class) for t in result.terms}
    assert ('wall variant 0', 'wall') in terms
    assert ('floor close-up', 'floor') in terms
    assert ('sky variant 1', 'sky') in terms  # second round adds one more
    assert ('wooden floor', None) in terms  # stage 1, cleaned
    assert ('white ceiling', None) in terms
    assert len(terms) == 11
    # perceive, expand, expand again (which added terms), then stop
    assert server.count() == 3
    entry = result.entry
    assert entry.usage['requests'] == 3 and entry.usage['prompt_tokens'] > 0
    assert len(entry.raw_answers) == 3 and entry.model == 'gpt-4o'
    first = server.requests[0]['body']
    assert first['response_format'] == {'type': 'json_object'}
    url = first['messages'][1]['content'][1]['image_url']['url']
    assert url.startswith('data:image/jpeg;base64,')


def test_cache_hit_and_resume(tmp_path):
    with FakeOpenAIServer() as server:
        vocab = source(server, tmp_path)
        vocab.fetch(image(), CLASSES)
        again = source(server, tmp_path).fetch(image(), CLASSES)
        assert again.status == 'hit' and server.count() == 3
        other_classes = vocab.fetch(image(), CLASSES[:2])
        assert other_classes.status == 'new'  # class set is in the key


def test_image_is_resized_before_sending(tmp_path):
    with FakeOpenAIServer() as server:
        source(
            server, tmp_path,
            max_image_side=32).fetch(image(size=(100, 200)), CLASSES)
        url = server.requests[0]['body']['messages'][1]['content'][1][
            'image_url']['url']
    data = np.frombuffer(base64.b64decode(url.split(',', 1)[1]), np.uint8)
    assert cv2.imdecode(data, cv2.IMREAD_COLOR).shape[:2] == (16, 32)


@pytest.mark.parametrize('fault',
                         ['malformed', 'refuse', 'empty', 'junk', 'absurd'])
def test_bad_answers_fall_back_and_are_not_cached(tmp_path, fault):
    with FakeOpenAIServer(behaviour=fault) as server:
        vocab = source(server, tmp_path)
        result = vocab.fetch(image(), CLASSES)
        assert result.status == 'failed' and result.terms == []
        assert len(vocab.cache) == 0
        assert len(vocab.cache.failures()) == 1
        server.behaviour = 'good'  # a rerun tries again, and succeeds
        assert vocab.fetch(image(), CLASSES).status == 'new'
        assert vocab.cache.failures() == []
        with pytest.raises(VocabularyFailure):
            server.behaviour = fault
            source(server, tmp_path, strict=True).fetch(image(1), CLASSES)


def test_retries_honour_retry_after_then_succeed(tmp_path):
    plan = {0: 'rate_limit', 2: 'error'}
    with FakeOpenAIServer(
            behaviour=lambda i, body: plan.get(i, 'good'),
            retry_after=1) as server:
        start = time.monotonic()
        result = source(server, tmp_path).fetch(image(), CLASSES)
        elapsed = time.monotonic() - start
    assert result.status == 'new'
    assert server.count('rate_limit') == 1 and server.count('error') == 1
    assert elapsed >= 1.0  # waited for Retry-After


def test_hang_times_out_then_falls_back(tmp_path):
    with FakeOpenAIServer(behaviour='hang', hang_seconds=3) as server:
        start = time.monotonic()
        result = source(
            server, tmp_path, timeout=0.5,
            max_retries=1).fetch(image(), CLASSES)
        assert time.monotonic() - start < 5
    assert result.status == 'failed' and 'Timeout' in result.error


def test_server_without_json_mode(tmp_path):
    with FakeOpenAIServer(behaviour='no_json_mode') as server:
        vocab = source(server, tmp_path)
        assert vocab.fetch(image(), CLASSES).status == 'new'
        assert vocab.json_mode is False
        assert 'response_format' not in server.requests[-1]['body']


def test_dead_server_stops_the_run_fast(tmp_path):
    with FakeOpenAIServer() as server:
        url = server.base_url
    vocab = OpenAIVocabulary(
        base_url=url,
        cache_file=tmp_path / 'v.sqlite',
        max_retries=1,
        timeout=2,
        max_consecutive_failures=4)
    start = time.monotonic()
    with pytest.raises(FatalVocabularyError, match='could not reach'):
        prefetch(
            vocab, [image(i) for i in range(20)], CLASSES, 2, progress=False)
    assert time.monotonic() - start < 30


def test_rejected_key_stops_the_run(tmp_path):
    with FakeOpenAIServer(behaviour='auth') as server:
        vocab = source(server, tmp_path)
        with pytest.raises(FatalVocabularyError, match='OPENAI_API_KEY'):
            vocab.fetch(image(), CLASSES)


def test_key_comes_from_environment_only(tmp_path, monkeypatch):
    monkeypatch.delenv('OPENAI_API_KEY')
    with pytest.raises(ValueError, match='OPENAI_API_KEY'):
        OpenAIVocabulary(cache_file=False)
    monkeypatch.setenv('MY_KEY', 'sk-other')
    with FakeOpenAIServer() as server:
        monkeypatch.setenv('OPENAI_BASE_URL', server.base_url)
        vocab = OpenAIVocabulary(api_key_env='MY_KEY', cache_file=False)
        assert vocab.fetch(image(), CLASSES).status == 'new'
        assert server.requests[0]['auth'] == 'Bearer sk-other'


def test_concurrency_is_bounded_and_key_never_stored(tmp_path):
    with FakeOpenAIServer(latency=0.05) as server:
        vocab = source(server, tmp_path, concurrency=4)
        summary = prefetch(
            vocab, [image(i) for i in range(12)], CLASSES, progress=False)
        assert server.requests[0]['auth'] == f'Bearer {KEY}'
    assert summary.new == 12 and summary.failed == 0
    assert 1 < server.max_in_flight <= 4
    assert summary.requests == server.count() == 36
    export = tmp_path / 'export.jsonl'
    assert vocab.cache.export_jsonl(export) == 12
    for path in (export, tmp_path / 'vocab.sqlite'):
        assert KEY.encode() not in path.read_bytes()
    assert KEY not in json.dumps(summary.to_dict())
