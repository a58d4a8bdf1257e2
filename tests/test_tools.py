"""End to end as users run it: tools/test.py and mim test, through the real
Runner, mmseg loaders and IoUMetric, on the real samples in ../shared/data."""
import json
import time
from pathlib import Path

import pytest
from conftest import NO_PAMR, TINY, run_cli, shared_data

ADE = ('configs/oveva_vitb16_ade.py', 'ADEChallengeData2016', 3)
VOC = ('configs/oveva_vitb16_voc21.py', 'VOCdevkit/VOC2012', 14)
CITY = ('configs/oveva_vitb16_cityscapes.py', 'cityscapes', 1)


def metrics(work_dir: Path) -> dict:
    """The metrics mmengine's Runner dumped for the (only) test run."""
    files = sorted(work_dir.glob('*/*.json'))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def evaluate(config, data, work_dir, *extra, options=()):
    run_cli('tools/test.py', config, '--work-dir', work_dir, *extra,
            '--cfg-options', *TINY,
            f'test_dataloader.dataset.data_root={shared_data(data)}', *options)
    return metrics(work_dir)


@pytest.mark.parametrize('config,data,count', [ADE, VOC, CITY])
def test_tools_test_on_real_samples(tmp_path, config, data, count):
    result = evaluate(config, data, tmp_path / 'work', '--show-dir',
                      tmp_path / 'show')
    assert {'aAcc', 'mIoU', 'mAcc'} <= set(result)
    # random tiny weights: the numbers only have to be well-formed
    assert 0 <= result['mIoU'] <= 100 and 0 <= result['aAcc'] <= 100
    pictures = sorted((tmp_path / 'show').rglob('*.png'))
    assert len(pictures) == count
    from PIL import Image
    with Image.open(pictures[0]) as picture:  # ground truth | prediction
        assert picture.width >= 2 * picture.height * 0.5


def test_batch_of_two_and_tta_through_runner(tmp_path):
    config, data, _ = VOC
    one = evaluate(config, data, tmp_path / 'b1', options=[NO_PAMR])
    two = evaluate(
        config,
        data,
        tmp_path / 'b2',
        options=['test_dataloader.batch_size=2', NO_PAMR])
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert two[key] == pytest.approx(one[key], abs=0.02)
    tta = evaluate(config, data, tmp_path / 'tta', '--tta', options=[NO_PAMR])
    assert {'aAcc', 'mIoU'} <= set(tta) and tta != one


def predictions(folder: Path) -> dict:
    """The label maps ``tools/test.py --out`` wrote, by file name."""
    import numpy as np
    from PIL import Image
    files = sorted(folder.rglob('*.png'))
    assert files, f'no predictions in {folder}'
    return {f.name: np.asarray(Image.open(f)) for f in files}


def test_pamr_from_its_config_and_from_the_command_line(tmp_path):
    """The no-PAMR ablation config, and PAMR switched off by --cfg-options
    in a config with it (NACLIP's protocol), predict the same labels, which
    differ from PAMR on."""
    config, data, count = ADE
    runs = {
        'ablation': ('configs/ablations/oveva_vitb16_ade_4_no_pamr.py',
                     ['model.vocabulary=lexicon']),
        'switched_off': (config, ['model.pamr=None']),
        'on': (config, ['model.pamr.num_iter=2']),
    }
    labels = {}
    for name, (path, options) in runs.items():
        evaluate(
            path,
            data,
            tmp_path / name,
            '--out',
            tmp_path / f'{name}_out',
            options=options)
        labels[name] = predictions(tmp_path / f'{name}_out')
        assert len(labels[name]) == count
    for image, off in labels['switched_off'].items():
        assert (off == labels['ablation'][image]).all()
    assert any((off != labels['on'][image]).any()
               for image, off in labels['switched_off'].items())


def test_mim_test_with_exported_checkpoint(tmp_path):
    config, data, _ = ADE
    ckpt = tmp_path / 'ov_eva_tiny.pth'
    out = run_cli('tools/export_checkpoint.py', config, ckpt, '--cfg-options',
                  *TINY)
    assert ckpt.is_file() and 'wrote' in out.stdout
    root = f'test_dataloader.dataset.data_root={shared_data(data)}'
    run_cli('mim', 'test', 'mmseg', config, '--checkpoint', ckpt, '--work-dir',
            tmp_path / 'mim', '--cfg-options', *TINY, root, NO_PAMR)
    by_mim = metrics(tmp_path / 'mim')
    # the same checkpoint through our tool, and the seeded build without it
    own = evaluate(
        config,
        data,
        tmp_path / 'own',
        '--checkpoint',
        ckpt,
        options=[NO_PAMR])
    seeded = evaluate(config, data, tmp_path / 'seeded', options=[NO_PAMR])
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert by_mim[key] == own[key] == seeded[key]


def test_clear_errors_from_the_command_line(tmp_path):
    config, data, _ = ADE
    root = f'test_dataloader.dataset.data_root={shared_data(data)}'
    bad = run_cli(
        'tools/test.py',
        config,
        '--work-dir',
        tmp_path / 'a',
        '--cfg-options',
        *TINY,
        root,
        f'model.classes={tmp_path / "missing.txt"}',
        check=False)
    assert bad.returncode != 0
    assert 'cannot read class file' in bad.stderr
    assert 'missing.txt' in bad.stderr

    start = time.monotonic()
    offline = run_cli(
        'tools/test.py',
        config,
        '--work-dir',
        tmp_path / 'b',
        '--cfg-options',
        root,
        check=False,
        env={'HF_HUB_OFFLINE': '1'})
    assert offline.returncode != 0
    assert time.monotonic() - start < 60
    assert "'ViT-B-16'" in offline.stderr and "'openai'" in offline.stderr
    assert 'local weights file' in offline.stderr


def test_mim_test_offline_from_a_checkpoint_alone(tmp_path):
    """A checkpoint holding the CLIP weights is all `mim test` needs: the
    config names the 'openai' tag, which is not cached, and the hub is
    off. (Random ViT-B/16 weights stand in for OpenAI's.)"""
    import torch
    config = 'configs/baselines/naclip_vitb16_cityscapes.py'
    ckpt = tmp_path / 'vitb16.pth'
    run_cli('tools/export_checkpoint.py', config, ckpt, '--cfg-options',
            'model.clip.pretrained=None')
    meta = torch.load(ckpt, map_location='cpu', weights_only=True)['meta']
    assert 'needs neither the pretrained tag' in meta['holds']
    assert meta['clip']['name'] == 'ViT-B-16'
    assert meta['clip']['weights_fingerprint']
    offline = dict(
        HF_HUB_OFFLINE='1',
        HF_HOME=str(tmp_path / 'empty_hub'),
        XDG_CACHE_HOME=str(tmp_path / 'empty_cache'))
    root = f'test_dataloader.dataset.data_root={shared_data("cityscapes")}'
    fast = ['model.templates=single', NO_PAMR]
    run_cli('mim', 'test', 'mmseg', config, '--checkpoint', ckpt, '--work-dir',
            tmp_path / 'mim', '--cfg-options', root, *fast, env=offline)
    assert 0 <= metrics(tmp_path / 'mim')['mIoU'] <= 100
    # without the checkpoint the same run stops at once, saying what to do
    failed = run_cli(
        'tools/test.py',
        config,
        '--work-dir',
        tmp_path / 'own',
        '--cfg-options',
        root,
        *fast,
        env=offline,
        check=False)
    assert failed.returncode != 0
    assert 'not in the local cache' in failed.stderr + failed.stdout
