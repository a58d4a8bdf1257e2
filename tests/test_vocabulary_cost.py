"""The MLLM bill: the estimate before any request, the hard budget, the Batch
API (resumable, at batch prices) and the image detail knob, against the
loopback server through the real ``openai`` client and the real tool."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
from conftest import REPO, run_cli, shared_data
from fake_openai import FakeOpenAIServer

from ov_eva.vocabulary import OpenAIVocabulary, VocabularyCache
from ov_eva.vocabulary.prefetch import prefetch
from ov_eva.vocabulary.pricing import (PriceTable, TextCounter, image_tokens,
                                       sent_size)

KEY = 'sk-cost-SECRET-51ac'
CLASSES = [['wall', 'brick wall'], ['floor'], ['sky']]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv('OPENAI_API_KEY', KEY)
    monkeypatch.delenv('OPENAI_BASE_URL', raising=False)


def image(seed=0, size=(48, 64)):
    return np.random.default_rng(seed).integers(
        0, 255, (*size, 3), dtype=np.uint8)


def source(server, tmp_path, name='vocab.sqlite', **kwargs):
    kwargs.setdefault('max_retries', 0)
    kwargs.setdefault('timeout', 5)
    kwargs.setdefault('batch_poll_seconds', 0.05)
    return OpenAIVocabulary(
        base_url=server.base_url, cache_file=tmp_path / name, **kwargs)


def test_image_tokens_follow_the_published_rule():
    # OpenAI's worked examples (vision guide, "Calculating costs")
    assert image_tokens(1024, 1024, 'high') == 765
    assert image_tokens(2048, 4096, 'high') == 1105
    assert image_tokens(4096, 8192, 'low') == 85
    assert image_tokens(512, 512, 'auto') == 255  # auto: counted as high
    mini = PriceTable().model('gpt-4o-mini')
    assert image_tokens(1024, 1024, 'high', mini['image_base'],
                        mini['image_tile']) == 2833 + 4 * 5667
    assert PriceTable().model('gpt-4o-2024-08-06')['input'] == 2.5
    assert PriceTable().model('llava-1.5') is None
    assert sent_size(2048, 1536, 768) == (768, 576)
    assert sent_size(300, 200, 768) == (300, 200)


def test_defaults_cost_at_most_765_image_tokens_a_call(tmp_path):
    vocab = OpenAIVocabulary(
        base_url='http://127.0.0.1:9/v1', cache_file=False)
    sizes = [(w, h) for w in (100, 513, 768, 1024, 2048, 4096, 8000)
             for h in (100, 300, 513, 1000, 3000)]
    worst = max(vocab.image_tokens(w, h) for w, h in sizes)
    assert worst == 765 < 1500  # 768 px long side: at most 2x2 tiles


def test_text_counter_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv('TIKTOKEN_CACHE_DIR', str(tmp_path))  # empty
    start = time.monotonic()
    counter = TextCounter('gpt-4o')
    assert time.monotonic() - start < 2
    assert counter.method.startswith('approx. 4 characters/token')
    assert counter('x' * 41) == 11


def test_text_counter_uses_tiktoken_only_from_its_cache(tmp_path, monkeypatch):
    """With tiktoken importable, its encoding is used only when the file is
    already in tiktoken's cache (a stand-in module records the calls)."""
    import hashlib
    import types
    loaded = []
    fake = types.ModuleType('tiktoken')
    fake.get_encoding = lambda name: loaded.append(
        name) or types.SimpleNamespace(encode=lambda text: text.split())
    monkeypatch.setitem(sys.modules, 'tiktoken', fake)
    monkeypatch.setenv('TIKTOKEN_CACHE_DIR', str(tmp_path))
    counter = TextCounter('gpt-4o-mini')
    assert loaded == [] and 'o200k_base file not cached' in counter.method
    url = ('https://openaipublic.blob.core.windows.net/encodings/'
           'o200k_base.tiktoken')
    (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_text('x')
    counter = TextCounter('gpt-4o')
    assert loaded == ['o200k_base'] and counter.method == 'tiktoken o200k_base'
    assert counter('three words here') == 3


def test_prices_are_overridable_and_checked(tmp_path):
    table = tmp_path / 'prices.json'
    table.write_text(
        json.dumps(
            dict(
                date='2030-01-01',
                batch_discount=0.5,
                models={'my-model': dict(input=1.0, output=2.0)})))
    with FakeOpenAIServer() as server:
        vocab = source(server, tmp_path, model='my-model', price_file=table)
        assert vocab.price(1e6, 1e6) == 3.0
        assert vocab.price(1e6, 1e6, batch=True) == 1.5
        vocab = source(server, tmp_path, prices=dict(input=5.0, output=0.0))
        assert vocab.price(1e6, 1e6) == 5.0
        with pytest.raises(ValueError, match='max_cost needs the price'):
            source(server, tmp_path, model='llava', max_cost=1)
        bad = tmp_path / 'bad.json'
        bad.write_text('{}')
        with pytest.raises(ValueError, match='bad.json'):
            source(server, tmp_path, price_file=bad)
        with pytest.raises(ValueError, match='detail must be one of'):
            source(server, tmp_path, detail='medium')


def test_detail_is_sent_counted_and_in_the_cache_key(tmp_path):
    with FakeOpenAIServer() as server:
        low = source(server, tmp_path, detail='low')
        auto = source(server, tmp_path)
        assert low.fetch(image(), CLASSES).status == 'new'
        sent = server.requests[0]['body']['messages'][1]['content'][1]
        assert sent['image_url']['detail'] == 'low'
        assert auto.fetch(image(), CLASSES).status == 'new'  # another key
        sent = server.requests[-1]['body']['messages'][1]['content'][1]
        assert 'detail' not in sent['image_url']  # auto: as before
        big = image(size=(1000, 1500))
        assert low.estimate([big], CLASSES).image_tokens_per_call == 85
        # 1500x1000 sent as 768x512: 2x1 tiles
        assert auto.estimate([big],
                             CLASSES).image_tokens_per_call == 85 + 2 * 170


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / 'images'
    path.mkdir()
    for i in range(4):
        cv2.imwrite(str(path / f'img_{i}.png'), image(i, (40, 56)))
    (tmp_path / 'classes.txt').write_text('wall, brick wall\nfloor\nsky\n')
    return path


def tool(folder, cache, url, *more):
    return [
        'tools/build_vocabulary.py', '--images', folder, '--class-file',
        folder.parent / 'classes.txt', '--cache-file', cache, *more, '--set',
        f'base_url={url}', 'max_retries=0', 'batch_poll_seconds=0.1'
    ]


def test_dry_run_sends_nothing_and_every_run_estimates_first(tmp_path, folder):
    cache = tmp_path / 'v.sqlite'
    env = dict(OPENAI_API_KEY=KEY)
    with FakeOpenAIServer() as server:
        dry = run_cli(
            *tool(folder, cache, server.base_url, '--dry-run'), env=env)
        assert server.requests == [] and server.api_calls == []
        assert 'dry run: no request sent' in dry.stdout
        assert re.search(r'4 images, 0 cached, 4 to ask; calls <= 12',
                         dry.stdout)
        assert 'cost <= $' in dry.stdout and 'batch' in dry.stdout
        real = run_cli(*tool(folder, cache, server.base_url), env=env)
        estimate = real.stdout.index('vocabulary estimate')
        assert estimate < real.stdout.index('vocabulary prefetch')
        assert '4 new, 0 failed' in real.stdout
        assert 'vs estimated in ~' in real.stdout  # beside the reported
        asked = server.count()
        again = run_cli(
            *tool(folder, cache, server.base_url, '--dry-run'), env=env)
        assert server.count() == asked
    assert '4 images, 4 cached, 0 to ask' in again.stdout
    for out in (dry, real, again):
        assert KEY not in out.stdout + out.stderr


def test_budget_stops_within_one_request_and_a_rerun_continues(tmp_path):
    images = [image(i) for i in range(10)]
    with FakeOpenAIServer(latency=0.02) as server:
        probe = source(server, tmp_path, name='probe.sqlite')
        prefetch(probe, images[:1], CLASSES, progress=False)
        per_request = probe.cost(probe.cache.usage_stats('openai',
                                                         'gpt-4o')) / 3
        server.requests.clear()
        cap = 11.5 * per_request
        vocab = source(server, tmp_path, max_cost=cap, concurrency=3)
        summary = prefetch(vocab, images, CLASSES, progress=False)
        spent = vocab.cost(summary.to_dict())
        assert spent <= cap + per_request
        assert spent >= cap - 2 * per_request  # stopped near the cap
        assert vocab.budget.spent_cost == pytest.approx(spent)
        assert summary.skipped > 0 and summary.failed == 0
        assert summary.new + summary.skipped == 10
        assert 'BUDGET REACHED' in summary.format()
        skipped = [
            f for f in vocab.cache.failures()
            if f[2].startswith('skipped: budget reached')
        ]
        assert len(skipped) >= summary.skipped
        assert len(vocab.cache) == summary.new  # skipped: not cached
        # a rerun with a larger budget asks only what is missing
        more = source(server, tmp_path, max_cost=1.0)
        again = prefetch(more, images, CLASSES, progress=False)
        assert again.hits == summary.new and again.skipped == 0
        assert again.new == summary.skipped and len(more.cache) == 10


def test_budget_holds_against_a_server_billing_beyond_the_estimate(tmp_path):
    """The server bills 3,000 input tokens for prompts estimated at a few
    hundred: the first request calibrates, so 8 in flight still stop within
    one request of the cap."""
    per_request = (3000 * 2.5 + 700 * 10.0) / 1e6  # GPT-4o prices
    with FakeOpenAIServer(latency=0.05, bill=(3000, 700)) as server:
        vocab = source(
            server, tmp_path, max_cost=12.5 * per_request, concurrency=8)
        summary = prefetch(
            vocab, [image(i) for i in range(10)], CLASSES, progress=False)
        assert server.count() in (12, 13)
    assert vocab.budget.spent_cost == pytest.approx(server.count() *
                                                    per_request)
    assert summary.skipped > 0


def test_budget_charges_answers_without_usage_their_expectation(tmp_path):
    with FakeOpenAIServer(bill=(0, 0)) as server:
        vocab = source(server, tmp_path, max_cost=0.05, concurrency=4)
        bound = vocab.price(*vocab.request_bound((48, 64), 'x' * 400))
        summary = prefetch(
            vocab, [image(i) for i in range(10)], CLASSES, progress=False)
        assert summary.skipped > 0  # it stopped, though nothing was billed
        assert server.count() <= 0.05 / (0.8 * bound) + 1


def test_budget_through_set_and_cfg_options(tmp_path, folder):
    env = dict(OPENAI_API_KEY=KEY)
    with FakeOpenAIServer() as server:
        out = run_cli(
            *tool(folder, tmp_path / 'v.sqlite', server.base_url),
            'max_cost=0.00001',
            env=env)
        # the first request runs (its output is unknown), then none fits
        assert server.count() == 1
        assert '4 skipped by the budget' in out.stdout
        assert 'BUDGET REACHED' in out.stdout
    root = shared_data('ADEChallengeData2016')
    out = run_cli(
        'tools/build_vocabulary.py',
        '--config',
        'configs/oveva_vitb16_ade.py',
        '--dry-run',
        '--cfg-options',
        f'test_dataloader.dataset.data_root={root}',
        'model.vocabulary.type=OpenAIVocabulary',
        'model.vocabulary.base_url=http://127.0.0.1:9/v1',
        'model.vocabulary.max_cost=0.5',
        f'model.vocabulary.cache_file={tmp_path / "c.sqlite"}',
        env=env)
    assert 'budget: $0.0000 of max_cost $0.5' in out.stdout


def test_batch_mode_matches_online_at_half_price(tmp_path):
    images = [image(i) for i in range(5)] + [image(0)]  # one twice
    with FakeOpenAIServer() as server:
        online = source(server, tmp_path, name='online.sqlite')
        online_summary = prefetch(online, images, CLASSES, progress=False)
        batch = source(server, tmp_path, name='batch.sqlite', batch=True)
        server.requests.clear()
        summary = prefetch(batch, images, CLASSES, progress=False)
        ids = server.custom_ids()
    assert summary.new == 6 and summary.failed == 0 and summary.mode == 'batch'
    assert len(ids) == 3  # stage 1, then two stage-2 rounds
    assert [len(i) for i in ids] == [5, 5, 5]  # the repeated image once
    assert all(i.endswith(':0') for i in ids[0])
    for entry in batch.cache:
        twin = online.cache.get(entry.key)  # same key as online
        assert [t.text for t in twin.terms] == [t.text for t in entry.terms]
    # online asks the repeated image twice (both in flight at once)
    assert summary.requests == 15 and online_summary.requests == 18
    assert summary.prompt_tokens * 6 == online_summary.prompt_tokens * 5
    assert summary.cost == pytest.approx(online_summary.cost * 5 / 6 / 2)
    assert batch.cache.batches(open_only=True) == []
    # batch mode never asks online (that costs double): a miss falls back
    assert batch.fetch(image(99), CLASSES).status == 'failed'


def test_batch_failed_lines_and_batches_are_retried_then_recorded(tmp_path):
    images = [image(i) for i in range(4)]
    plan = {1: 'error', 2: 'refuse'}  # two stage-1 lines of the first batch
    with FakeOpenAIServer(
            behaviour=lambda i, body: plan.get(i, 'good'),
            batch_status=lambda n: 'failed' if n == 1 else 'completed',
            echo_auth=True) as server:
        vocab = source(server, tmp_path, batch=True)
        summary = prefetch(vocab, images, CLASSES, progress=False)
        ids = server.custom_ids()
    # batch 0: 4 stage-1 lines, 2 fail; batch 1 (their retry + the stage 2
    # of the other 2) fails whole: the 2 are out of retries and recorded
    # as failed, the other 2 are asked again and finish
    assert [len(i) for i in ids] == [4, 4, 2, 2]
    assert sum(i.endswith(':0') for i in ids[1]) == 2
    assert all(i.endswith(':1') for i in ids[2])
    assert summary.new == 2 and summary.failed == 2
    failures = vocab.cache.failures()
    assert len(failures) == 2 and all('Batch API' in f[2] for f in failures)
    assert all(KEY not in f[2] for f in failures)  # redacted
    assert all(KEY not in e for e in summary.errors)
    with FakeOpenAIServer() as server:  # a rerun asks them again
        vocab = source(server, tmp_path, batch=True)
        again = prefetch(vocab, images, CLASSES, progress=False)
    assert again.hits == 2 and again.new == 2


def test_batch_respects_the_budget(tmp_path):
    images = [image(i) for i in range(6)]
    with FakeOpenAIServer() as server:
        vocab = source(server, tmp_path, batch=True, max_total_tokens=0)
        summary = prefetch(vocab, images, CLASSES, progress=False)
        assert summary.skipped == 6 and server.api_calls == []


def test_batch_files_are_split_at_the_size_limit(tmp_path):
    with FakeOpenAIServer() as server:
        vocab = source(server, tmp_path, batch=True, batch_max_bytes=1)
        summary = prefetch(
            vocab, [image(i) for i in range(3)], CLASSES, progress=False)
        ids = server.custom_ids()
    assert summary.new == 3 and [len(i) for i in ids] == [1] * 9


def test_killed_batch_run_resumes_without_a_second_batch(tmp_path, folder):
    cache = tmp_path / 'v.sqlite'
    env = dict(os.environ, OPENAI_API_KEY=KEY)
    with FakeOpenAIServer(batch_seconds=600) as server:
        cmd = [sys.executable] + [
            str(a) for a in tool(folder, cache, server.base_url, '--batch')
        ]
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sum(
                c.startswith('GET /v1/batches/')
                for c in server.api_calls) < 2:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # mid-poll
        proc.wait()
        assert len(server.batches) == 1
        assert VocabularyCache(cache).batches(open_only=True)[0]['id'] == \
            server.batches[0]['id']
        server.batch_seconds = 0.3  # the batch finishes meanwhile
        out = run_cli(
            *tool(folder, cache, server.base_url, '--batch'),
            env=dict(OPENAI_API_KEY=KEY))
        ids = server.custom_ids()
    assert f'resuming batch {server.batches[0]["id"]}' in out.stdout
    assert '4 new, 0 failed' in out.stdout
    flat = [i for batch in ids for i in batch]
    assert len(flat) == len(set(flat)) == 12  # no request paid twice
    assert sum(i.endswith(':0') for i in flat) == 4
    assert len(VocabularyCache(cache)) == 4


@pytest.mark.parametrize('killed', ['after_create', 'before_create'])
def test_batch_killed_around_its_creation_is_found_or_made_once(
        tmp_path, monkeypatch, killed):
    """A run killed between creating a batch and recording its id finds it
    on the rerun by its input file; one killed before creating it makes
    it then."""
    from ov_eva.vocabulary.cache import VocabularyCache as Cache
    images = [image(i) for i in range(3)]
    with FakeOpenAIServer() as server:
        vocab = source(server, tmp_path, batch=True)
        if killed == 'after_create':
            monkeypatch.setattr(
                Cache, 'rename_batch', lambda *args:
                (_ for _ in ()).throw(KeyboardInterrupt))
        else:
            monkeypatch.setattr(
                type(vocab.client.batches), 'create', lambda *args, **kwargs:
                (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            prefetch(vocab, images, CLASSES, progress=False)
        monkeypatch.undo()
        pending = vocab.cache.batches(open_only=True)
        assert [b['id'].split(':')[0] for b in pending] == ['pending']
        assert len(server.batches) == (killed == 'after_create')
        again = prefetch(
            source(server, tmp_path, batch=True),
            images,
            CLASSES,
            progress=False)
        ids = [i for batch in server.custom_ids() for i in batch]
    assert again.new == 3
    assert len(ids) == len(set(ids)) == 9  # no request in two batches
    assert vocab.cache.batches(open_only=True) == []


def test_val_set_bills_from_the_tool(tmp_path):
    """tools/vocabulary_cost.py (the val-set table of docs/vocabulary.md),
    run from another folder: a row per benchmark, batch at half the online
    price."""
    tool = str(REPO / 'tools' / 'vocabulary_cost.py')
    proc = subprocess.run([sys.executable, tool, '--detail', 'low'],
                          cwd=tmp_path,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [
        line for line in proc.stdout.splitlines()
        if re.match(r'\| .+ \([\d,]+\) \| \d+x\d+ \|', line)
    ]
    assert len(rows) == 8, proc.stdout
    for row in rows:
        cells = [c.strip() for c in row.strip('|').split('|')]
        assert cells[2] == '85'  # detail=low: 85 tokens per image
        online, batch = (
            float(v.strip(' $').replace(',', '')) for v in cells[4].split('/'))
        assert online > 0 and batch == pytest.approx(online / 2, abs=0.01)
