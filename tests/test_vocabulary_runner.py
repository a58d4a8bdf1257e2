"""The prefetch hook inside the real Runner (tools/test.py), with the
loopback server and the real ADE20K samples."""
import re

from conftest import TINY, run_cli, shared_data

from ov_eva.testing import FakeOpenAIServer
from ov_eva.vocabulary import VocabularyCache

CONFIG = 'configs/oveva_vitb16_ade.py'


def test_runner_prefetches_then_replays(tmp_path):
    root = shared_data('ADEChallengeData2016')
    cache = tmp_path / 'vocab.sqlite'
    env = dict(OPENAI_API_KEY='sk-runner-SECRET')
    with FakeOpenAIServer(latency=0.05) as server:
        options = [
            *TINY, f'test_dataloader.dataset.data_root={root}',
            'model.vocabulary.type=OpenAIVocabulary',
            f'model.vocabulary.base_url={server.base_url}',
            f'model.vocabulary.cache_file={cache}'
        ]
        first = run_cli('tools/test.py', CONFIG, '--work-dir',
                        tmp_path / 'w1', '--cfg-options', *options, env=env)
        assert re.search(r'3 images, 0 cache hits, 3 new, 0 failed',
                         first.stdout)
        assert 'mIoU' in first.stdout
        requests = server.count()
        assert requests == 9  # 3 images x (perceive + 2 expand rounds)
        second = run_cli('tools/test.py', CONFIG, '--work-dir',
                         tmp_path / 'w2', '--cfg-options', *options, env=env)
        assert '3 images, 3 cache hits, 0 new' in second.stdout
        assert server.count() == requests  # nothing asked again
    assert len(VocabularyCache(cache)) == 3
    for log in (first.stdout + first.stderr, second.stdout + second.stderr):
        assert 'sk-runner-SECRET' not in log
    for path in tmp_path.rglob('*'):
        if path.is_file():
            assert b'sk-runner-SECRET' not in path.read_bytes(), path

    replay = run_cli(
        'tools/test.py', CONFIG, '--work-dir', tmp_path / 'w3',
        '--cfg-options', *TINY, f'test_dataloader.dataset.data_root={root}',
        'model.vocabulary.type=CachedVocabulary',
        f'model.vocabulary.cache_file={cache}')
    assert '3 images, 3 cache hits, 0 new, 0 failed' in replay.stdout
