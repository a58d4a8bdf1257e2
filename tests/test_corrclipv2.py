"""CorrCLIPv2: a memory bank built by tools/build_memory_bank.py from the
ADE samples with tiny random models (killed midway and resumed, equal to a
build without a break), the CorrCLIPv2 baseline through tools/test.py on
it, and the one-line error of a bank built with another VFM."""
import re
import runpy
import sys

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
    """(data, masks, root, killed): the bank of the three ADE samples,
    built by the CLI killed (SIGKILL) after the first image of the
    auxiliary store (the main store done), then resumed by the same
    command; ``killed``: what the kill left."""
    data = shared_data('ADEChallengeData2016')
    tmp = tmp_path_factory.mktemp('corrclipv2')
    masks = tmp / 'masks'
    write_masks(masks, data, 'images/validation', 'annotations/validation')
    root = tmp / 'bank'
    proc = build(data, masks, root, env={KILL_AFTER_ENV: '4'}, check=False)
    layout = mb.BankLayout(root, NAME)
    aux = layout.clip_store('dfnclip_b')
    killed = dict(
        returncode=proc.returncode,
        main=layout.clip_store('metaclip_b').exists(),
        aux=aux.exists(),
        aux_rows=np.load(str(aux)[:-3] + '.done.npy').tolist())
    build(data, masks, root)
    return data, masks, root, killed


def bank_files(root):
    layout = mb.BankLayout(root, NAME)
    return layout, dict(
        main=mb.open_store(layout.clip_store('metaclip_b')),
        aux=mb.open_store(layout.clip_store('dfnclip_b')),
        keys=mb.open_store(layout.vfm_store('dinov2')))


def test_the_bank_has_the_official_files(bank):
    data, masks, root, _ = bank
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


def test_a_killed_build_resumes_to_the_same_bank(bank, tmp_path, monkeypatch):
    """The killed-and-resumed bank equals one built without a break (the
    same CLI, run here in-process to spare a start-up)."""
    data, masks, root, killed = bank
    assert killed['returncode'] == -9  # SIGKILL
    assert killed['main'] and not killed['aux']
    assert 0 < sum(killed['aux_rows']) < len(killed['aux_rows'])
    monkeypatch.syspath_prepend(str(REPO / 'tools'))
    monkeypatch.setattr(sys, 'argv', [
        'build_memory_bank.py',
        str(CONFIG), '--images',
        str(data / 'images/validation'), '--name', NAME, '--out',
        str(tmp_path / 'bank'), *SMALL, '--cfg-options', *TINY_V2,
        f'model.clip.masks.root={masks}'
    ])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(
            str(REPO / 'tools/build_memory_bank.py'), run_name='__main__')
    assert done.value.code == 0
    layout, reference = bank_files(tmp_path / 'bank')
    resumed_layout, resumed = bank_files(root)
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key
    assert resumed_layout.manifest.read_text() == layout.manifest.read_text()
    assert not list(root.rglob('*.npy'))  # finalised
    queries = np.random.default_rng(0).normal(
        size=(4, reference['keys'].shape[1])).astype('float32')
    assert np.array_equal(
        mb.BankIndex(resumed_layout.index('dinov2')).search(queries, 5),
        mb.BankIndex(layout.index('dinov2')).search(queries, 5))


def test_corrclipv2_through_tools_test_on_the_bank(bank, tmp_path):
    from PIL import Image
    data, masks, root, _ = bank
    proc = run_cli('tools/test.py', CONFIG, '--work-dir', tmp_path / 'work',
                   '--out', tmp_path / 'pred', '--cfg-options', *TINY_V2,
                   f'model.clip.masks.root={masks}',
                   f'model.clip.bank.root={root}',
                   f'model.clip.bank.name={NAME}',
                   f'test_dataloader.dataset.data_root={data}',
                   'test_dataloader.dataset.pipeline.1.scale=(2048,112)',
                   'model.templates=single')  # 150 prompts, not 12000
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
    data, masks, root, _ = bank
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
