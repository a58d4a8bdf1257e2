"""The prefetch hook inside the real Runner (tools/test.py), with the
loopback server and the real ADE20K samples."""
import re

from conftest import NO_PAMR, TINY, run_cli, run_torchrun, shared_data
from fake_openai import FakeOpenAIServer

from ov_eva.vocabulary import VocabularyCache

CONFIG = 'configs/oveva_vitb16_ade.py'


def test_runner_prefetches_then_replays(tmp_path):
    root = shared_data('ADEChallengeData2016')
    cache = tmp_path / 'vocab.sqlite'
    env = dict(OPENAI_API_KEY='sk-runner-SECRET')
    with FakeOpenAIServer(latency=0.05) as server:
        options = [
            *TINY, NO_PAMR, f'test_dataloader.dataset.data_root={root}',
            'model.vocabulary.type=OpenAIVocabulary',
            f'model.vocabulary.base_url={server.base_url}',
            f'model.vocabulary.cache_file={cache}'
        ]
        first = run_cli(
            'tools/test.py',
            CONFIG,
            '--work-dir',
            tmp_path / 'w1',
            '--cfg-options',
            *options,
            env=env)
        assert re.search(r'3 images, 0 cache hits, 3 new, 0 failed',
                         first.stdout)
        # the hook's first line is the estimate, made before any request
        estimate = re.search(r'vocabulary estimate \(gpt-4o\): 3 images, 0 '
                             r'cached, 3 to ask; calls <= 9', first.stdout)
        assert estimate is not None
        assert estimate.start() < first.stdout.index('vocabulary prefetch')
        assert 'mIoU' in first.stdout
        requests = server.count()
        assert requests == 9  # 3 images x (perceive + 2 expand rounds)
        second = run_cli(
            'tools/test.py',
            CONFIG,
            '--work-dir',
            tmp_path / 'w2',
            '--cfg-options',
            *options,
            env=env)
        assert '3 images, 3 cache hits, 0 new' in second.stdout
        assert server.count() == requests  # nothing asked again
    assert len(VocabularyCache(cache)) == 3
    for log in (first.stdout + first.stderr, second.stdout + second.stderr):
        assert 'sk-runner-SECRET' not in log
    for path in tmp_path.rglob('*'):
        if path.is_file():
            assert b'sk-runner-SECRET' not in path.read_bytes(), path

    replay = run_cli('tools/test.py', CONFIG, '--work-dir', tmp_path / 'w3',
                     '--cfg-options', *TINY, NO_PAMR,
                     f'test_dataloader.dataset.data_root={root}',
                     'model.vocabulary.type=CachedVocabulary',
                     f'model.vocabulary.cache_file={cache}')
    assert '3 images, 3 cache hits, 0 new, 0 failed' in replay.stdout


def test_two_process_launch_shards_prefetch_and_matches_one(tmp_path):
    """mmengine's pytorch launcher with two CPU (gloo) processes: each rank
    prefetches its shard into the one shared cache, and the metric equals a
    single-process run."""
    import json
    root = shared_data('VOCdevkit/VOC2012')
    config = 'configs/oveva_vitb16_voc21.py'
    env = dict(OPENAI_API_KEY='sk-dist')
    with FakeOpenAIServer(latency=0.02) as server:
        options = [
            *TINY, NO_PAMR, f'test_dataloader.dataset.data_root={root}',
            'model.vocabulary.type=OpenAIVocabulary',
            f'model.vocabulary.base_url={server.base_url}',
            f'model.vocabulary.cache_file={tmp_path / "v.sqlite"}'
        ]
        dist = run_torchrun(
            'tools/test.py',
            config,
            '--work-dir',
            tmp_path / 'dist',
            '--cfg-options',
            *options,
            'model.vocabulary.max_cost=10',
            env=env)
        assert '14 images, 0 cache hits, 14 new, 0 failed' in dist.stdout
        # each rank holds half of the budget
        assert dist.stdout.count('of max_cost $5') >= 2
        assert server.count() == 42  # no image fetched twice
        single = run_cli(
            'tools/test.py',
            config,
            '--work-dir',
            tmp_path / 'one',
            '--cfg-options',
            *options,
            env=env)
        assert '14 images, 14 cache hits' in single.stdout

    def metric(path):
        return json.loads(next(path.glob('*/*.json')).read_text())

    two, one = metric(tmp_path / 'dist'), metric(tmp_path / 'one')
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert two[key] == one[key]


def test_build_tool_from_config_export_import_replay(tmp_path):
    """The tool fills a cache from a config, exports it; someone else imports
    it and replays it exactly with CachedVocabulary in the Runner."""
    root = shared_data('ADEChallengeData2016')
    made, shared = tmp_path / 'made.sqlite', tmp_path / 'shared.jsonl'
    with FakeOpenAIServer() as server:
        out = run_cli(
            'tools/build_vocabulary.py',
            '--config',
            CONFIG,
            '--cfg-options',
            *TINY,
            NO_PAMR,
            f'test_dataloader.dataset.data_root={root}',
            'model.vocabulary.type=OpenAIVocabulary',
            f'model.vocabulary.base_url={server.base_url}',
            '--cache-file',
            made,
            env=dict(OPENAI_API_KEY='sk-tool'))
        assert '3 images, 0 cache hits, 3 new, 0 failed' in out.stdout
    out = run_cli('tools/build_vocabulary.py', '--cache-file', made,
                  '--export', shared)
    assert 'exported 3 entries' in out.stdout
    replica = tmp_path / 'replica.sqlite'
    run_cli('tools/build_vocabulary.py', '--cache-file', replica, '--import',
            shared)
    replay = run_cli('tools/test.py', CONFIG, '--work-dir', tmp_path / 'w',
                     '--cfg-options', *TINY, NO_PAMR,
                     f'test_dataloader.dataset.data_root={root}',
                     'model.vocabulary.type=CachedVocabulary',
                     'model.vocabulary.on_missing=error',
                     f'model.vocabulary.cache_file={replica}')
    assert '3 images, 3 cache hits, 0 new, 0 failed' in replay.stdout
    assert [e.to_json() for e in VocabularyCache(replica)
            ] == [e.to_json() for e in VocabularyCache(made)]


def test_runner_with_lexicon_vocabulary(tmp_path):
    root = shared_data('ADEChallengeData2016')
    options = [
        *TINY, NO_PAMR, f'test_dataloader.dataset.data_root={root}',
        'model.vocabulary.type=LexiconVocabulary',
        f'model.vocabulary.cache_file={tmp_path / "v.sqlite"}'
    ]
    first = run_cli('tools/test.py', CONFIG, '--work-dir', tmp_path / 'a',
                    '--cfg-options', *options)
    assert '3 images, 0 cache hits, 3 new, 0 failed' in first.stdout
    second = run_cli('tools/test.py', CONFIG, '--work-dir', tmp_path / 'b',
                     '--cfg-options', *options)
    assert '3 images, 3 cache hits' in second.stdout
    entries = list(VocabularyCache(tmp_path / 'v.sqlite'))
    assert len(entries) == 3 and all(len(e.terms) == 32 for e in entries)
