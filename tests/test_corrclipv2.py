"""CorrCLIPv2: a memory bank built by tools/build_memory_bank.py from the
ADE samples with tiny random models (killed midway and resumed, equal to a
build grown from one image by two processes), the CorrCLIPv2 baseline
through tools/test.py and, from an exported checkpoint, mim test on it,
the one-line error of a bank built with another VFM; RADIO through a local
torch.hub folder and its errors; the official IVFPQ index."""
import re
import runpy
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, free_port, run_cli, run_torchrun, shared_data
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
SMALL = ['--short-side', '112', '--crop', '112', '--exact-index']


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


def build_in_process(argv, monkeypatch):
    """``tools/build_memory_bank.py argv`` run here (no start-up)."""
    monkeypatch.syspath_prepend(str(REPO / 'tools'))
    monkeypatch.setattr(sys, 'argv', ['build_memory_bank.py', *map(str, argv)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(
            str(REPO / 'tools/build_memory_bank.py'), run_name='__main__')
    assert done.value.code == 0


def test_killed_extended_and_two_process_builds_give_one_bank(
        bank, tmp_path, monkeypatch):
    """The killed-and-resumed bank equals one grown in two steps: the first
    image alone (one process), then the folder of all three by two
    processes (torch.distributed.run, --launcher pytorch, each rank with
    images to do): the first image's ids stay, and stores, manifest and
    index searches equal the build of all at once. (Each rank computes with
    as many threads as the one-process build: torch.distributed.run's
    default of one changes float16 roundings.)"""
    data, masks, root, killed = bank
    assert killed['returncode'] == -9  # SIGKILL
    assert killed['main'] and not killed['aux']
    assert 0 < sum(killed['aux_rows']) < len(killed['aux_rows'])
    first = tmp_path / 'first'
    first.mkdir()
    (first / 'ADE_val_00000001.jpg').symlink_to(
        data / 'images/validation/ADE_val_00000001.jpg')
    options = [
        '--name', NAME, '--out', tmp_path / 'bank', *SMALL, '--cfg-options',
        *TINY_V2, f'model.clip.masks.root={masks}'
    ]
    build_in_process([CONFIG, '--images', first, *options], monkeypatch)
    layout = mb.BankLayout(tmp_path / 'bank', NAME)
    one = layout.manifest.read_text()
    assert len(mb.read_images(layout)) == 1
    proc = run_torchrun(
        'tools/build_memory_bank.py',
        CONFIG,
        '--images',
        data / 'images/validation',
        *options,
        env=dict(OMP_NUM_THREADS=str(torch.get_num_threads())))
    found = re.search(r'3 images, (\d+) regions \((\d+) added', proc.stdout)
    assert found, proc.stdout[-2000:]
    assert int(found[1]) - int(found[2]) == len(one.splitlines())
    layout, reference = bank_files(tmp_path / 'bank')
    assert layout.manifest.read_text().startswith(one)  # ids kept
    resumed_layout, resumed = bank_files(root)
    for key in reference:
        assert torch.equal(resumed[key], reference[key]), key
    assert resumed_layout.manifest.read_text() == layout.manifest.read_text()
    assert mb.read_images(resumed_layout) == mb.read_images(layout)
    assert not list(root.rglob('*.npy'))  # finalised
    assert not list((tmp_path / 'bank').rglob('*.npy'))
    queries = np.random.default_rng(0).normal(
        size=(4, reference['keys'].shape[1])).astype('float32')
    assert np.array_equal(
        mb.BankIndex(resumed_layout.index('dinov2')).search(queries, 5),
        mb.BankIndex(layout.index('dinov2')).search(queries, 5))


def test_corrclipv2_through_tools_test_and_mim_test_on_the_bank(
        bank, tmp_path, monkeypatch):
    """tools/test.py on the bank; then a checkpoint exported without the
    bank (it holds CLIP, auxiliary CLIP and VFM weights), through mim test
    without the tiny models' options: the checkpoint's recorded settings
    build the model, and its metric and label maps are tools/test.py's."""
    from PIL import Image
    from test_tools import metrics
    data, masks, root, _ = bank
    where = [
        f'model.clip.masks.root={masks}',
        f'model.clip.bank.root={root}',
        f'model.clip.bank.name={NAME}',
        f'test_dataloader.dataset.data_root={data}',
        'test_dataloader.dataset.pipeline.1.scale=(2048,112)',
        'model.templates=single'  # 150 prompts, not 12000
    ]
    proc = run_cli('tools/test.py', CONFIG, '--work-dir', tmp_path / 'work',
                   '--out', tmp_path / 'pred', '--cfg-options', *TINY_V2,
                   *where)
    out = proc.stdout + proc.stderr
    assert f'memory bank {NAME}:' in out  # the bank was opened and searched
    assert re.search(r'mIoU: \d+\.\d+', out)
    files = sorted((tmp_path / 'pred').rglob('*.png'))
    labels = [np.asarray(Image.open(p)) for p in files]
    assert len(labels) == 3
    assert len(np.unique(np.concatenate([x.ravel() for x in labels]))) > 1
    ckpt = tmp_path / 'v2.pth'
    monkeypatch.setattr(sys, 'argv', [
        'export_checkpoint.py',
        str(CONFIG),
        str(ckpt), '--cfg-options', *TINY_V2
    ])
    with pytest.raises(SystemExit) as done:  # in-process: no start-up
        runpy.run_path(
            str(REPO / 'tools/export_checkpoint.py'), run_name='__main__')
    assert done.value.code == 0
    proc = run_cli('mim', 'test', 'mmseg', CONFIG, '--checkpoint', ckpt,
                   '--work-dir', tmp_path / 'mim', '--out',
                   tmp_path / 'mim_pred', '--cfg-options', *where)
    assert "aux_clip: {'name': 'hf-hub:apple/DFN2B-CLIP-ViT-B-16'} -> " \
        "{'name': 'ov-eva-tiny12'" in proc.stdout
    assert f'memory bank {NAME}:' in proc.stdout
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert metrics(tmp_path / 'mim')[key] == metrics(tmp_path /
                                                         'work')[key]
    by_mim = sorted((tmp_path / 'mim_pred').rglob('*.png'))
    assert [p.name for p in by_mim] == [p.name for p in files]
    for path, own in zip(by_mim, labels):
        assert np.array_equal(np.asarray(Image.open(path)), own), path.name


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


# a RADIO-shaped torch.hub repository: RADIO's interface as CorrCLIPv2 uses
# it (NVlabs/RADIO hubconf.py radio_model(version=...): pixels in [0, 1],
# its own input conditioner, sizes from get_nearest_supported_resolution,
# model(x, feature_fmt='NCHW') -> (summary, features))
FAKE_RADIO_HUBCONF = '''
import socket

import torch

dependencies = ['torch']


class TinyRADIO(torch.nn.Module):
    patch_size = 16

    def __init__(self, dim=48):
        super().__init__()
        self.register_buffer('mean', torch.tensor([0.5, 0.4, 0.3])[:, None,
                                                                   None])
        self.embed = torch.nn.Conv2d(3, dim, 16, 16)

    def get_nearest_supported_resolution(self, height, width):
        return tuple(max(16, round(s / 16) * 16) for s in (height, width))

    def forward(self, x, feature_fmt='NLC'):
        assert x.shape[-1] % 16 == 0 and x.shape[-2] % 16 == 0
        feats = self.embed(x - self.mean)  # the input conditioner
        summary = feats.mean((2, 3))
        if feature_fmt == 'NLC':
            feats = feats.flatten(2).transpose(1, 2)
        return summary, feats


def radio_model(version='', progress=True, adaptor_names=None, **kwargs):
    model = TinyRADIO()
    model.load_state_dict(torch.load(version, weights_only=True))
    model.socket_timeout = socket.getdefaulttimeout()  # during the load
    return model
'''


def radio_options(folder, version):
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({
        'model.clip.vfm.type': 'radiov3',
        'model.clip.vfm.name': str(folder),
        'model.clip.vfm.version': str(version)
    })
    return cfg.model.clip.vfm


def test_radio_from_a_local_torch_hub_folder(tmp_path):
    """model.clip.vfm.type=radiov3 with name a local clone and version a
    checkpoint file: loaded through torch.hub (source='local') under the
    download timeout, RADIO's features at its supported size."""
    import socket

    from ov_eva.backends.corrclipv2 import DenseVFM
    from ov_eva.hub import DOWNLOAD_TIMEOUT
    folder = tmp_path / 'RADIO'
    folder.mkdir()
    (folder / 'hubconf.py').write_text(FAKE_RADIO_HUBCONF)
    module = runpy.run_path(str(folder / 'hubconf.py'))
    torch.manual_seed(1)
    reference = module['TinyRADIO']().eval()
    torch.save(reference.state_dict(), tmp_path / 'radio.pth')
    vfm = DenseVFM(**radio_options(folder, tmp_path / 'radio.pth'))
    image = np.random.default_rng(0).integers(
        0, 256, (50, 70, 3), dtype=np.uint8)
    feats = vfm(image, torch.device('cpu'))
    assert feats.shape == (1, 48, 3, 4)  # 48 x 64 pixels, patches of 16
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    pixels = torch.nn.functional.interpolate(
        pixels, (48, 64), mode='bilinear', align_corners=False)
    assert torch.allclose(feats, reference(pixels, 'NCHW')[1], atol=1e-5)
    radio = vfm.radio()
    assert radio.socket_timeout == DOWNLOAD_TIMEOUT
    assert socket.getdefaulttimeout() is None  # restored
    assert not radio.training and not any(p.requires_grad
                                          for p in radio.parameters())


@pytest.mark.parametrize('hubconf', [None, 'raise RuntimeError("no\\nway")'])
def test_an_unloadable_radio_folder_stops_with_one_line(tmp_path, hubconf):
    from ov_eva.backends.corrclipv2 import DenseVFM
    folder = tmp_path / 'RADIO'
    folder.mkdir()
    if hubconf:
        (folder / 'hubconf.py').write_text(hubconf)
    vfm = DenseVFM(**radio_options(folder, tmp_path / 'radio.pth'))
    with pytest.raises(FileNotFoundError) as error:
        vfm.load()
    message = str(error.value)
    assert '\n' not in message
    assert f'model.clip.vfm.name={folder}' in message
    assert ('has no hubconf.py'
            if hubconf is None else 'RuntimeError: no way') in message
    assert 'clone https://github.com/NVlabs/RADIO and set ' \
        'model.clip.vfm.name to that folder' in message


def test_radio_from_the_hub_offline_fails_at_once(tmp_path, monkeypatch):
    """No torch.hub copy of NVlabs/RADIO and no network (HF_HUB_OFFLINE,
    or GitHub unreachable through a closed proxy port): an error naming the
    local-clone option, without a request."""
    from ov_eva.backends.corrclipv2 import DenseVFM
    from ov_eva.hub import GITHUB, reachable
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    with pytest.raises(FileNotFoundError) as error:
        DenseVFM(type='radiov3').load()
    assert "'NVlabs/RADIO' is not in the torch.hub cache" in str(error.value)
    assert 'model.clip.vfm.name to that folder' in str(error.value)
    monkeypatch.setenv('https_proxy', f'http://127.0.0.1:{free_port()}')
    assert not reachable(GITHUB)


def test_the_index_is_the_official_ivfpq(tmp_path):
    """As the official update_faiss_cache: IDMap2 over IVFPQ (nlist
    int(8 sqrt(N)), m 32, 8 bits) trained on the first build's keys, later
    keys only added; below 256 regions it cannot train: one line naming
    --exact-index, which gives an exact IndexFlatIP."""
    import faiss
    keys = torch.nn.functional.normalize(
        torch.randn(340, 32, generator=torch.Generator().manual_seed(0)),
        dim=1).half()
    path = tmp_path / 'bank_dinov2.faiss'
    assert mb.update_index(path, keys[:300]) == 300
    index = faiss.read_index(str(path))
    inner = faiss.downcast_index(index.index)
    assert isinstance(index, faiss.IndexIDMap2)
    assert isinstance(inner, faiss.IndexIVFPQ)
    assert (inner.nlist, inner.pq.M, inner.pq.nbits) == (138, 32, 8)
    centroids = faiss.vector_to_array(inner.pq.centroids)
    assert mb.update_index(path, keys) == 40  # extended, not retrained
    extended = mb.BankIndex(path)
    assert extended.size == 340 and extended.inner.nprobe == 138
    assert np.array_equal(
        faiss.vector_to_array(extended.inner.pq.centroids), centroids)
    # approximate: a key's own row is among its 5 nearest for nearly all
    rows = extended.search(keys.float().numpy(), 5)
    assert (rows == np.arange(340)[:, None]).any(1).mean() > 0.9
    with pytest.raises(mb.IndexTooSmall, match='--exact-index'):
        mb.update_index(tmp_path / 'small.faiss', keys[:255])
    assert not (tmp_path / 'small.faiss').exists()
    mb.update_index(tmp_path / 'small.faiss', keys[:255], exact=True)
    exact = mb.BankIndex(tmp_path / 'small.faiss')
    assert isinstance(exact.inner, faiss.IndexFlatIP)
    assert exact.search(keys[:5].float().numpy(),
                        1)[:, 0].tolist() == list(range(5))


def test_vfm_weights_a_checkpoint_brings_are_not_fetched(tmp_path):
    """A checkpoint (loaded into the whole model) holds the VFM: its
    ``vfm.pretrained``, gone since the export, is not read again."""
    from ov_eva.backends.corrclipv2 import DenseVFM
    exported = torch.nn.ModuleDict(
        dict(vfm=DenseVFM('dinov2', 'ov-eva-tiny-dinov2', pretrained=None)))
    gone = str(tmp_path / 'dinov2-folder-since-deleted')
    model = torch.nn.ModuleDict(
        dict(vfm=DenseVFM('dinov2', 'ov-eva-tiny-dinov2', pretrained=gone)))
    with pytest.raises(FileNotFoundError, match='dinov2-folder-since'):
        model['vfm'].load()  # without the checkpoint: fetched, and gone
    model.load_state_dict(exported.state_dict(), strict=True)
    image = np.random.default_rng(0).integers(
        0, 256, (42, 56, 3), dtype=np.uint8)
    assert torch.equal(model['vfm'](image, 'cpu'), exported['vfm'](image,
                                                                   'cpu'))


@pytest.mark.parametrize('size', [(30, 40), (7, 9)])  # resized, or as is
def test_region_means_are_the_official_masked_means(size):
    """The retrieval queries, as the official ``forward_slide`` writes them
    (features resized bilinearly, L2-normalised per pixel, the mean over
    each region's boolean mask), and the builder's keys
    (``normalize_pixels``); labels outside ``values`` count nowhere."""
    import torch.nn.functional as F
    torch.manual_seed(0)
    feats = torch.randn(1, 300, 7, 9)  # over two channel chunks
    labels = torch.randint(0, 6, size, dtype=torch.int32)
    values = torch.tensor([0, 2, 3, 5])  # 1 and 4: in no region
    up = F.normalize(
        F.interpolate(feats, size, mode='bilinear', align_corners=False),
        dim=1)
    nhwc = up.permute(0, 2, 3, 1)[0]
    official = torch.stack([nhwc[labels == v].mean(0) for v in values])
    ours = mb.region_means(up, labels, values)
    torch.testing.assert_close(ours, official, rtol=0, atol=1e-6)
    builder = mb.region_means(feats, labels, values, normalize_pixels=True)
    torch.testing.assert_close(builder, official, rtol=0, atol=1e-6)


def test_the_vfm_runs_in_the_precision_it_is_given():
    """The retrieval runs the VFM under the image tower's autocast (as the
    official code runs its VFM under fp16 autocast on CUDA); float32 and
    contiguous features either way."""
    from ov_eva.backends.corrclipv2 import DenseVFM
    vfm = DenseVFM('dinov2', 'ov-eva-tiny-dinov2', None)
    seen = []
    vfm.dino.register_forward_hook(
        lambda *_: seen.append(torch.is_autocast_enabled('cpu')))
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8)
    full = vfm(rgb, 'cpu')
    half = vfm(rgb, 'cpu', torch.bfloat16)
    assert seen == [False, True]
    for feats in (full, half):
        assert feats.dtype == torch.float32 and feats.is_contiguous()
    assert not torch.equal(full, half)
    torch.testing.assert_close(half, full, rtol=0.1, atol=0.1)
