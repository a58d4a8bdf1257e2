"""CorrCLIPv2: a memory bank built by tools/build_memory_bank.py from the
ADE samples with tiny random models (killed midway and resumed), then the
CorrCLIPv2 baseline through tools/test.py on it, and the one-line error of a
bank built with another VFM."""
import re

import numpy as np
import pytest
import torch
from conftest import REPO, run_cli, shared_data
from test_corrclip import write_masks

from ov_eva import memory_bank as mb
from ov_eva.bank_builder import KILL_AFTER_ENV

CONFIG = REPO / 'configs/baselines/corrclipv2_vitb16_ade.py'
# CorrCLIP's spatial branch needs 5+ blocks (ov-eva-tiny12 for both CLIPs),
# a tiny DINOv2 as the VFM, a tiny DINO ViT/8 for the stores' correlation
TINY_V2 = [
    'model.clip.name=ov-eva-tiny12', 'model.clip.pretrained=None',
    'model.clip.aux_clip.name=ov-eva-tiny12',
    'model.clip.aux_clip.pretrained=None', 'model.clip.vfm.type=dinov2',
    'model.clip.vfm.name=ov-eva-tiny-dinov2', 'model.clip.vfm.pretrained=None',
    'model.clip.bank.store_dino.name=ov-eva-tiny-dino',
    'model.clip.bank.store_dino.pretrained=None'
]
NAME = 'ade3'
# small windows: the stores take seconds, not minutes, on two CPU cores
SMALL = ['--short-side', '112', '--crop', '112']


def build(data, masks, out, env=None, check=True):
    return run_cli(
        'tools/build_memory_bank.py',
        CONFIG,
        '--images',
        data / 'images/validation',
        '--name',
        NAME,
        '--out',
        out,
        *SMALL,
        '--cfg-options',
        *TINY_V2,
        f'model.clip.masks.root={masks}',
        env=env,
        check=check)


@pytest.fixture(scope='module')
def bank(tmp_path_factory):
    """(data, masks, root): the bank of the three ADE samples, built in one
    uninterrupted run."""
    data = shared_data('ADEChallengeData2016')
    tmp = tmp_path_factory.mktemp('corrclipv2')
    masks = tmp / 'masks'
    write_masks(masks, data, 'images/validation', 'annotations/validation')
    build(data, masks, tmp / 'bank')
    return data, masks, tmp / 'bank'


def bank_files(root):
    layout = mb.BankLayout(root, NAME)
    return layout, dict(
        main=mb.open_store(layout.clip_store('metaclip_b')),
        aux=mb.open_store(layout.clip_store('dfnclip_b')),
        keys=mb.open_store(layout.vfm_store('dinov2')))


def test_the_bank_has_the_official_files(bank):
    data, masks, root = bank
    layout, stores = bank_files(root)
    regions = sum(
        len(mb.mask_regions(np.load(p)['instance_mask']))
        for p in sorted(masks.glob('*.npz')))
    images = mb.read_images(layout)
    assert [stem for stem, _, _ in images
            ] == ['ADE_val_00000001', 'ADE_val_00000002', 'ADE_val_00000003']
    assert images[-1][1] + images[-1][2] == regions
    assert len(layout.manifest.read_text().splitlines()) == regions
    for store in stores.values():
        assert store.dtype == torch.float16 and len(store) == regions
    # CLIP values are L2-normalised region means; keys are means of
    # normalised pixels (normalised by the index, not in the store)
    norms = stores['main'].float().norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-2)
    assert not torch.equal(stores['main'], stores['aux'])
    index = mb.BankIndex(layout.index('dinov2'))
    assert index.size == regions and index.dim == stores['keys'].shape[1]
    # a region's own key finds itself first
    keys = torch.nn.functional.normalize(stores['keys'].float(), dim=1)
    rows = index.search(keys[:5].numpy(), 3)
    assert rows[:, 0].tolist() == list(range(5))


def test_a_killed_build_resumes_to_the_same_bank(bank, tmp_path):
    """SIGKILL after the first image of the auxiliary store (the main store
    done); the same command then finishes, and the files equal the
    uninterrupted build's."""
    data, masks, root = bank
    killed = build(
        data, masks, tmp_path / 'bank', env={KILL_AFTER_ENV: '4'}, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    layout = mb.BankLayout(tmp_path / 'bank', NAME)
    assert layout.clip_store('metaclip_b').exists()
    assert not layout.clip_store('dfnclip_b').exists()
    done = np.load(str(layout.clip_store('dfnclip_b'))[:-3] + '.done.npy')
    assert 0 < done.sum() < len(done)
    build(data, masks, tmp_path / 'bank')
    _, resumed = bank_files(tmp_path / 'bank')
    reference_layout, reference = bank_files(root)
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key
    assert layout.manifest.read_text() == \
        reference_layout.manifest.read_text()
    assert not list((tmp_path / 'bank').rglob('*.npy'))  # finalised
    queries = np.random.default_rng(0).normal(
        size=(4, reference['keys'].shape[1])).astype('float32')
    assert np.array_equal(
        mb.BankIndex(layout.index('dinov2')).search(queries, 5),
        mb.BankIndex(reference_layout.index('dinov2')).search(queries, 5))


def test_corrclipv2_through_tools_test_on_the_bank(bank, tmp_path):
    from PIL import Image
    data, masks, root = bank
    proc = run_cli('tools/test.py', CONFIG, '--work-dir', tmp_path / 'work',
                   '--out', tmp_path / 'pred', '--cfg-options', *TINY_V2,
                   f'model.clip.masks.root={masks}',
                   f'model.clip.bank.root={root}',
                   f'model.clip.bank.name={NAME}',
                   f'test_dataloader.dataset.data_root={data}',
                   'test_dataloader.dataset.pipeline.1.scale=(2048,112)')
    out = proc.stdout + proc.stderr
    assert f'memory bank {NAME}:' in out  # the bank was opened and searched
    assert re.search(r'mIoU: \d+\.\d+', out)
    labels = [
        np.asarray(Image.open(p))
        for p in sorted((tmp_path / 'pred').rglob('*.png'))
    ]
    assert len(labels) == 3
    assert len(np.unique(np.concatenate([x.ravel() for x in labels]))) > 1


def test_a_bank_of_another_vfm_stops_with_one_line(bank, tmp_path):
    data, masks, root = bank
    proc = run_cli(
        'tools/test.py',
        CONFIG,
        '--work-dir',
        tmp_path / 'work',
        '--cfg-options',
        *TINY_V2,
        'model.clip.vfm.name=ov-eva-tiny-dino',  # the bank has tiny-dinov2
        f'model.clip.masks.root={masks}',
        f'model.clip.bank.root={root}',
        f'model.clip.bank.name={NAME}',
        f'test_dataloader.dataset.data_root={data}',
        check=False)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith('error: memory bank ')
    for part in (NAME, "built with VFM dinov2 'ov-eva-tiny-dinov2'",
                 'model.clip.vfm.name=ov-eva-tiny-dinov2', 'rebuild the bank'):
        assert part in lines[0]
