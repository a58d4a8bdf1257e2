"""CorrCLIP: its math against the formulas written out here (as the official
CorrCLIPv1 code states them, loop by loop), the mask sources, and the
baseline through tools/test.py on real samples with tiny random models."""
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, run_cli, shared_data
from mmengine.config import Config

from ov_eva.backends import corrclip
from ov_eva.backends.corrclip import (dbscan_labels, map_correction,
                                      merge_regions, region_token_mask,
                                      scope_attention)
from ov_eva.masks import FileMasks, build_mask_source

TINY_CORR = [
    'model.clip.name=ov-eva-tiny12', 'model.clip.pretrained=None',
    'model.clip.dino.name=ov-eva-tiny-dino', 'model.clip.dino.pretrained=None'
]


def random_masks(gen, shape=(12, 14), labels=(0, 3, 5, 9, 12)):
    values = torch.tensor(labels, dtype=torch.int32)
    return values[torch.randint(len(labels), shape, generator=gen)]


def closure_labels(distance, eps):
    """DBSCAN with min_samples=1 on a symmetric distance: the connected
    components of the graph d <= eps, numbered by their smallest index."""
    near = (distance <= eps).float()
    reach = near
    for _ in range(len(near)):
        reach = ((reach @ near + reach) > 0).float()
    first = reach.argmax(dim=1)  # each point's smallest reachable index
    order = {int(f): k for k, f in enumerate(sorted(set(first.tolist())))}
    return torch.tensor([order[int(f)] for f in first])


def test_dbscan_is_the_connected_components_of_the_eps_graph():
    gen = torch.Generator().manual_seed(0)
    for n in (1, 2, 7, 30):
        feats = F.normalize(torch.randn(n, 4, generator=gen), dim=1)
        sim = feats @ feats.T
        distance = sim.max() - sim
        for eps in (0.05, 0.2, 0.6):
            assert dbscan_labels(distance, eps).tolist() == closure_labels(
                distance, eps).tolist()


def test_dbscan_equals_scikit_learn():
    sklearn_cluster = pytest.importorskip('sklearn.cluster')
    gen = torch.Generator().manual_seed(1)
    for n in (2, 9, 40, 120):
        feats = F.normalize(torch.randn(n, 8, generator=gen), dim=1)
        sim = feats @ feats.T
        distance = (sim.max() - sim).numpy()
        for eps, min_samples in ((0.2, 1), (0.5, 1), (0.5, 3)):
            want = sklearn_cluster.DBSCAN(
                metric='precomputed', eps=eps,
                min_samples=min_samples).fit_predict(distance)
            got = dbscan_labels(torch.from_numpy(distance), eps, min_samples)
            assert got.tolist() == want.tolist()


def test_merge_regions_is_the_official_loop():
    gen = torch.Generator().manual_seed(2)
    masks = random_masks(gen)
    base = torch.randn(5, 6, generator=gen)
    # regions 3 and 9 share a direction: they must merge
    base[3] = base[1] + 0.01
    feats = base[torch.unique(masks, return_inverse=True)[1]] + \
        0.001 * torch.randn(*masks.shape, 6, generator=gen)
    # the official mask merging, written out
    want = masks.clone()
    values = torch.unique(masks)
    regions = [v == masks for v in values]
    means = torch.stack([feats[r].mean(dim=0) for r in regions])
    means = F.normalize(means, dim=1)[1:]
    sim = means @ means.T
    cluster = closure_labels(sim.max() - sim, 0.2)
    for idx, c in enumerate(cluster, start=1):
        if c != -1:
            want[regions[idx]] = c + 10000
    got = merge_regions(masks, feats)
    assert torch.equal(got, want)
    assert len(torch.unique(got)) < len(values)  # something merged
    # two labels or fewer: nothing to merge
    two = (masks > 5).int()
    assert torch.equal(merge_regions(two, feats), two)


def test_scope_attention_is_the_official_formula():
    gen = torch.Generator().manual_seed(3)
    masks = random_masks(gen, (6, 7))
    feats = F.normalize(torch.randn(42, 5, generator=gen), dim=1)
    sim = feats @ feats.T
    regions = [(v == masks).view(-1) for v in torch.unique(masks)]
    allowed = torch.zeros(42, 42, dtype=torch.bool)
    for r in regions[1:]:
        allowed |= torch.outer(r, r)
    r0 = regions[0]
    allowed |= (r0[None] | r0[:, None]) & (sim > sim.mean())
    want = (sim.masked_fill(~allowed, float('-inf')) * 4).softmax(dim=-1)
    got = scope_attention(sim, masks)
    assert torch.allclose(got, want, atol=0, rtol=0)
    assert (got[~allowed] == 0).all() and (got[allowed] > 0).any()


def test_region_token_mask():
    regions = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 0]], dtype=torch.bool)
    mask = region_token_mask(regions)
    assert mask.shape == (7, 7)
    allowed = mask == 0
    # image tokens (class token + 4 patches) see every image token only
    assert allowed[2:, 2:].all() and not allowed[2:, :2].any()
    # region token r sees the class token and its own patches
    assert allowed[:2, 2].all() and not allowed[:2, :2].any()
    assert torch.equal(allowed[:2, 3:], regions)
    assert (mask[~allowed] == float('-inf')).all()


def test_map_correction_is_the_mode_per_region():
    gen = torch.Generator().manual_seed(4)
    masks = random_masks(gen, (20, 22), labels=(2, 4, 6, 8))
    pred = torch.randint(0, 5, (20, 22), generator=gen)
    pred[:3, :3] = 3  # ties and clear winners alike
    want = pred.clone()
    values = torch.unique(masks)
    for v in values[1:]:  # the official loop: torch.mode in each region
        region = masks == v
        want[region] = torch.mode(pred[region])[0]
    got = map_correction(pred, masks)
    assert torch.equal(got, want)
    assert torch.equal(got[masks == 2], pred[masks == 2])  # first: as is
    tie = torch.tensor([[1, 1, 2, 2]])
    assert torch.equal(
        map_correction(tie, torch.tensor([[0, 1, 1, 1]])),
        torch.tensor([[1, 2, 2, 2]]))  # the first region stays as is


def test_num_spatial_layers():
    assert [corrclip.num_spatial_layers(n)
            for n in (12, 24, 32, 6)] == [5, 12, 28, 2]


def write_masks(folder, data, image_dir, label_dir):
    """Region masks like SAM2's pre-generated ones: connected areas of the
    ground truth as regions, label 0 unsegmented."""
    from PIL import Image
    from scipy import ndimage
    folder.mkdir()
    for label_file in sorted((data / label_dir).glob('*.png')):
        gt = np.asarray(Image.open(label_file)).astype(int)
        mask = np.zeros(gt.shape, np.int64)
        next_id = 1
        for value in np.unique(gt):
            parts, count = ndimage.label(gt == value)
            for k in range(1, count + 1):
                if value not in (0, 255):
                    mask[parts == k] = next_id
                    next_id += 1
        np.savez(folder / f'{label_file.stem}.npz', instance_mask=mask)


def test_corrclip_runs_through_the_runner_with_map_correction(tmp_path):
    """configs/baselines/corrclip_vitb16_ade.py through tools/test.py with a
    tiny CLIP and DINO and a `files` mask folder in the official archives'
    layout (<root>/ade/<stem>.npz, `folder`): every region but the
    unsegmented one comes out in one class (the map correction)."""
    from PIL import Image
    data = shared_data('ADEChallengeData2016')
    archive = tmp_path / 'instance_mask'  # CorrCLIPv2's instance_mask.zip
    masks = archive / 'ade'
    archive.mkdir()
    write_masks(masks, data, 'images/validation', 'annotations/validation')
    run_cli('tools/test.py', REPO / 'configs/baselines/corrclip_vitb16_ade.py',
            '--work-dir', tmp_path / 'work', '--out', tmp_path / 'pred',
            '--cfg-options', *TINY_CORR, f'model.clip.masks.root={archive}',
            'model.clip.masks.folder=ade',
            f'test_dataloader.dataset.data_root={data}',
            'test_dataloader.dataset.indices=1')
    (png, ) = sorted((tmp_path / 'pred').rglob('*.png'))
    pred = np.asarray(Image.open(png))
    mask = np.load(masks / f'{png.stem}.npz')['instance_mask']
    assert pred.shape == mask.shape
    for value in np.unique(mask)[1:]:
        assert len(np.unique(pred[mask == value])) == 1, value
    assert len(np.unique(pred[mask == 0])) > 1  # left as predicted
    # the same masks read by the data pipeline (LoadRegionMasks in the
    # dataloader, PackOVEVAInputs) instead of the backend: the same labels
    cfg = Config.fromfile(REPO / 'configs/baselines/corrclip_vitb16_ade.py')
    pipeline = cfg.test_dataloader.dataset.pipeline
    load = [t['type'] for t in pipeline].index('LoadImageFromFile')
    pipeline.insert(load + 1,
                    dict(type='LoadRegionMasks', source=dict(
                        type='files', root=str(masks))))
    pipeline[-1] = dict(type='PackOVEVAInputs')
    cfg.test_dataloader.dataset.pipeline = pipeline
    cfg.model.clip.masks = None  # only the pipeline has them
    cfg.dump(tmp_path / 'pipeline_masks.py')
    run_cli('tools/test.py', tmp_path / 'pipeline_masks.py', '--work-dir',
            tmp_path / 'work2', '--out', tmp_path / 'pred2', '--cfg-options',
            *TINY_CORR, f'test_dataloader.dataset.data_root={data}',
            'test_dataloader.dataset.indices=1')
    (png2, ) = sorted((tmp_path / 'pred2').rglob('*.png'))
    assert np.array_equal(np.asarray(Image.open(png2)), pred)


def test_file_masks_errors(tmp_path):
    nowhere = FileMasks(str(tmp_path / 'nowhere'))  # built: no image yet
    with pytest.raises(FileNotFoundError, match='nowhere.* not a folder'):
        nowhere.get(dict(img_path='/x/img_1.jpg', ori_shape=(4, 5)))
    source = build_mask_source(dict(type='files', root=str(tmp_path)))
    meta = dict(img_path='/x/img_1.jpg', ori_shape=(4, 5))
    with pytest.raises(FileNotFoundError, match='img_1.npz'):
        source.get(meta)
    np.savez(tmp_path / 'img_1.npz', instance_mask=np.zeros((4, 6), int))
    with pytest.raises(ValueError, match='original image size'):
        source.get(meta)
    np.savez(tmp_path / 'img_1.npz', instance_mask=np.ones((4, 5), int))
    assert source.get(meta).shape == (4, 5)
    with pytest.raises(ValueError, match='unknown model.clip.masks type'):
        build_mask_source(dict(type='sam3'))


def test_offline_dino_without_weights_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HOME', str(tmp_path))
    from mmseg.registry import MODELS
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as error:
        MODELS.build(
            dict(
                type='CorrCLIPEncoder',
                name='ov-eva-tiny12',
                dino=dict(
                    name='facebook/dino-vitb8',
                    pretrained='facebook/dino-vitb8')))
    assert time.monotonic() - start < 10
    assert 'facebook/dino-vitb8' in str(error.value)
    assert 'local folder' in str(error.value)


def test_corrclip_class_files_keep_semicolon_synonyms():
    from ov_eva.class_lists import load_classes
    voc = load_classes(
        dict(file='corrclip/voc21', verbatim=True, separator='; '))
    assert len(voc) == 21 and voc[0][:3] == ['sky', 'wall', 'tree']
    assert voc[1] == ['aeroplane']
    shipped = (REPO / 'projects/ov_eva/class_names/corrclip/voc21.txt')
    assert len(voc[0]) == shipped.read_text().splitlines()[0].count('; ') + 1


def test_box_nms_is_greedy_suppression():
    from ov_eva.masks import box_nms
    gen = torch.Generator().manual_seed(5)
    corner = torch.rand(40, 2, generator=gen) * 12
    boxes = torch.cat(
        [corner, corner + 20 + torch.rand(40, 2, generator=gen) * 10], dim=1)
    scores = torch.rand(40, generator=gen)

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        return w * h / (area(a) + area(b) - w * h)

    want = []
    for i in sorted(range(40), key=lambda i: -float(scores[i])):
        if all(iou(boxes[i].tolist(), boxes[j].tolist()) <= 0.7 for j in want):
            want.append(i)
    assert box_nms(boxes, scores, 0.7) == want
    assert len(want) < 40


def test_sam2_masks_through_the_runner_are_cached(tmp_path):
    """The VOC21 CorrCLIP config with masks from a tiny random SAM2
    (transformers' Sam2Model, built from a config dict) through
    tools/test.py: the masks are generated once, cached by model, settings
    and image content, and read back by the next run."""
    data = shared_data('VOCdevkit/VOC2012')
    cache = tmp_path / 'cache'
    options = [
        *TINY_CORR,
        'model.clip.masks.type=sam2',
        'model.clip.masks.name=ov-eva-tiny-sam2',
        'model.clip.masks.pretrained=None',
        f'model.clip.masks.cache_dir={cache}',
        'model.clip.masks.pred_iou_thresh=-1e9',  # random SAM2: keep masks
        'model.clip.masks.stability_score_thresh=-1e9',
        f'test_dataloader.dataset.data_root={data}',
        'test_dataloader.dataset.indices=1'
    ]
    config = REPO / 'configs/baselines/corrclip_vitb16_voc21.py'
    first = run_cli('tools/test.py', config, '--work-dir', tmp_path / 'w1',
                    '--cfg-options', *options)
    (cached, ) = (cache / 'masks').glob('*.npz')
    mask = np.load(cached)['instance_mask']
    assert mask.shape == (513, 513) and mask.max() >= 1
    stamp = cached.stat().st_mtime_ns
    second = run_cli('tools/test.py', config, '--work-dir', tmp_path / 'w2',
                     '--cfg-options', *options)
    assert cached.stat().st_mtime_ns == stamp  # read, not generated again
    assert 'mask model' in first.stdout + first.stderr
    assert 'mask model' not in second.stdout + second.stderr


def test_offline_sam2_without_weights_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HOME', str(tmp_path))
    source = build_mask_source(dict(type='sam2', cache_dir=False))
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as error:
        source.load()
    assert time.monotonic() - start < 10
    assert 'facebook/sam2-hiera-large' in str(error.value)
    assert 'local folder' in str(error.value)


def test_oveva_on_corrclip_through_mim(tmp_path):
    """export_checkpoint + mim test of OV-EVA on CorrCLIP (lexicon
    vocabulary) on a real VOC sample, tiny CLIP and DINO, masks from files:
    the checkpoint brings the DINO weights (clip.dino.*)."""
    import json
    config = 'configs/oveva_corrclip_vitb16_voc20.py'
    data = shared_data('VOCdevkit/VOC2012')
    masks = tmp_path / 'masks'
    write_masks(masks, data, 'JPEGImages', 'SegmentationClass')
    ckpt = tmp_path / 'corr.pth'
    options = [*TINY_CORR, f'model.clip.masks.root={masks}']
    run_cli('tools/export_checkpoint.py', config, ckpt, '--cfg-options',
            *options)
    state = torch.load(ckpt, map_location='cpu', weights_only=True)
    assert any(k.startswith('clip.dino.') for k in state['state_dict'])
    run_cli('mim', 'test', 'mmseg', config, '--checkpoint', ckpt, '--work-dir',
            tmp_path / 'mim', '--cfg-options', *options,
            f'test_dataloader.dataset.data_root={data}',
            'test_dataloader.dataset.indices=1')
    result = json.loads(next((tmp_path / 'mim').glob('*/*.json')).read_text())
    # random tiny weights: the numbers only have to be well-formed
    assert 0 <= result['mIoU'] <= 100 and 0 <= result['aAcc'] <= 100


def test_checkpoints_bring_the_dino():
    from mmseg.registry import MODELS
    cfg = dict(
        type='CorrCLIPEncoder',
        name='ov-eva-tiny12',
        pretrained=None,
        autocast='fp32')
    encoder = MODELS.build(
        dict(cfg, dino=dict(name='ov-eva-tiny-dino', pretrained=None)))
    state = encoder.state_dict()
    assert any(k.startswith('dino.embeddings.') for k in state)
    later = MODELS.build(
        dict(
            cfg, dino=dict(name='ov-eva-tiny-dino',
                           pretrained='/nonexistent')))
    assert not later.dino_loaded
    later.load_state_dict(state)
    assert later.dino_loaded  # never reads /nonexistent
    image = torch.randn(1, 3, 112, 112)
    masks = torch.zeros(1, 1, 112, 112, dtype=torch.int32)
    masks[..., :50, :] = 4
    with torch.no_grad():
        torch.testing.assert_close(later(image, masks), encoder(image, masks))


def official_forward(enc, image, dino_feats, grid, masks):
    """CorrCLIPv1's VisionTransformer.forward for one window, written out
    (its loops, boolean masks and nn.MultiheadAttention called directly)."""
    visual = enc.model.visual
    blocks = visual.transformer.resblocks

    def block(blk, x, attn_mask):  # open_clip's residual block, bool mask
        h = blk.ln_1(x)
        x = x + blk.ls_1(
            blk.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0])
        return x + blk.ls_2(blk.mlp(blk.ln_2(x)))

    x = visual.conv1(image)
    tokens = tuple(x.shape[-2:])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(1, 1, -1), x], dim=1)
    x = visual.ln_pre(x + enc.positional_embedding(tokens))
    similarity = dino_feats @ dino_feats.T
    masks = F.interpolate(masks.float(), size=grid, mode='nearest').int()[0, 0]
    feats = dino_feats.reshape(*grid, -1)
    values = torch.unique(masks)
    if len(values) > 2:
        regions = [v == masks for v in values]
        means = F.normalize(
            torch.stack([feats[r].mean(0) for r in regions]), dim=1)[1:]
        sim = means @ means.T
        cluster = closure_labels(sim.max() - sim, 0.2)
        for idx, c in enumerate(cluster, start=1):
            masks[regions[idx]] = int(c) + 10000
    regions = [(v == masks).view(-1) for v in torch.unique(masks)]
    allowed = torch.zeros_like(similarity).bool()
    for r in regions[1:]:
        allowed += torch.outer(r, r)
    allowed += (regions[0][None] + regions[0][:, None]) * (
        similarity > similarity.mean())
    similarity[~allowed] = float('-inf')
    attn = (similarity * 4).softmax(-1)
    masks = F.interpolate(
        masks.float()[None, None], size=tokens, mode='nearest').int()[0, 0]
    regions = torch.stack([v == masks for v in torch.unique(masks)])
    r = len(regions)
    x = torch.cat([x[:, :1].repeat(1, r, 1), x], dim=1)
    attn_mask = torch.zeros(x.shape[1], x.shape[1]).bool()
    attn_mask[r:, r:] = True
    attn_mask[:r, r] = True
    attn_mask[:r, r + 1:] = regions.view(r, -1)
    attn_mask = ~attn_mask
    spatial = []
    for idx, blk in enumerate(blocks[:-1]):
        x = block(blk, x, attn_mask)
        if 12 - 2 - 5 <= idx <= 12 - 3:
            spatial.append(x[:, r:])
    last = blocks[-1]
    both = torch.cat([x[:, r:], torch.stack(spatial).mean(0)])
    width = both.shape[-1]
    v = F.linear(
        last.ln_1(both), last.attn.in_proj_weight[2 * width:],
        last.attn.in_proj_bias[2 * width:])[:, 1:]
    v = v.transpose(1, 2).unflatten(2, tokens)
    v = F.interpolate(v, size=grid, mode='bilinear', align_corners=False)
    mixed = last.attn.out_proj(attn @ v.flatten(2).transpose(1, 2))
    mct = block(last, x, attn_mask)[0, :r]
    expand = F.interpolate(
        regions[:, None].float(), size=grid, mode='nearest').flatten(1)
    out = visual.ln_post(torch.cat([mixed, (expand.T @ mct)[None]]))
    return (out[0] + out[1] + 0.5 * out[2]) @ visual.proj


def test_corrclip_features_are_the_official_forward():
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    enc = MODELS.build(
        dict(
            type='CorrCLIPEncoder',
            name='ov-eva-tiny12',
            pretrained=None,
            autocast='fp32',
            dino=dict(name='ov-eva-tiny-dino', pretrained=None)))
    image = torch.randn(1, 3, 112, 168)  # whole multiples of 56: no padding
    masks = torch.zeros(1, 1, 112, 168, dtype=torch.int32)
    masks[..., :40, :60] = 7
    masks[..., 60:, 20:] = 3
    masks[..., 70:100, 100:150] = 12
    masks[..., :30, 120:] = 5
    with torch.no_grad():
        got = enc(image, masks)
        dino_images = (image * enc_std() + enc_mean()) / 1.0
        feats, grid = corrclip.dino_qk_features(enc.dino, dino_images)
        want = official_forward(enc, image, feats[0], grid, masks)
    want = F.normalize(want, dim=-1).T.reshape(1, -1, *grid)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def enc_std():
    """CLIP -> ImageNet normalisation: x * std_c + mean_c, then
    (. - mean_in) / std_in, as a scale ..."""
    clip_std = torch.tensor(corrclip.CLIP_STD)[:, None, None]
    in_std = torch.tensor(corrclip.IMAGENET_STD)[:, None, None]
    return clip_std / in_std


def enc_mean():
    """... and a shift."""
    clip_mean = torch.tensor(corrclip.CLIP_MEAN)[:, None, None]
    in_mean = torch.tensor(corrclip.IMAGENET_MEAN)[:, None, None]
    in_std = torch.tensor(corrclip.IMAGENET_STD)[:, None, None]
    return (clip_mean - in_mean) / in_std


def test_every_corrclip_config_builds_with_tiny_models():
    """Each shipped CorrCLIP config (ViT-B/16, L/14, H/14 baselines and
    OV-EVA on them, eight datasets) names DINO ViT-B/8 and pre-generated
    masks; those of ADE and Cityscapes build their segmentor with the tiny
    CLIP and DINO. ADE, VOC21 and VOC20 ones run through tools/test.py or
    mim above."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from ov_eva.backends import CorrCLIPEncoder
    from ov_eva.masks import FileMasks
    paths = sorted([
        *(REPO / 'configs/baselines').glob('corrclip_*.py'),
        *(REPO / 'configs').glob('oveva_corrclip_*.py')
    ])
    datasets = Config.fromfile(str(REPO / 'configs/_base_/protocols.py'))
    # six configs (baselines and OV-EVA) per protocol dataset
    assert len(paths) == 6 * len(datasets.protocol.corrclip)
    init_default_scope('mmseg')
    for path in paths:
        cfg = Config.fromfile(str(path))
        assert cfg.model.clip.type == 'CorrCLIPEncoder'
        assert cfg.model.clip.dino.name == 'facebook/dino-vitb8', path
        assert cfg.model.clip.masks.type == 'files', path
        if not path.name.endswith(('_ade.py', '_cityscapes.py')):
            continue  # the others differ from these in protocol keys only
        cfg.merge_from_dict({
            'model.clip.name': 'ov-eva-tiny12',
            'model.clip.pretrained': None,
            'model.clip.dino.name': 'ov-eva-tiny-dino',
            'model.clip.dino.pretrained': None
        })
        model = MODELS.build(cfg.model)
        assert isinstance(model.clip, CorrCLIPEncoder), path
        assert model.clip.pad_multiple == 56 and model.clip.correction
        assert isinstance(model.clip.mask_source, FileMasks)
        assert str(
            model.clip.mask_source.root).startswith('data/region_masks/')
        assert (model.vocabulary is not None) == path.name.startswith('oveva_')


@pytest.mark.parametrize('kind,name', [('sam2', 'ov-eva-tiny-sam2'),
                                       ('sam', 'ov-eva-tiny-sam')])
def test_sam_and_sam2_sources_label_every_kept_mask(tmp_path, kind, name):
    """Tiny random SAM2 and SAM (transformers, from config dicts) on a real
    VOC image: a label map of the image's size with the kept masks as
    regions, cached per image content."""
    data = shared_data('VOCdevkit/VOC2012')
    image = data / 'JPEGImages' / 'sample_0000.jpg'
    source = build_mask_source(
        dict(
            type=kind,
            name=name,
            pretrained=None,
            cache_dir=tmp_path,
            pred_iou_thresh=-1e9,
            stability_score_thresh=-1e9))
    meta = dict(img_path=str(image), ori_shape=(513, 513))
    label = source.get(meta)
    assert label.shape == (513, 513) and int(label.max()) >= 1
    (cached, ) = (tmp_path / 'masks').glob('*.npz')
    assert np.array_equal(np.load(cached)['instance_mask'], label.numpy())
    copy = tmp_path / 'copy.jpg'  # same bytes, other name: same key
    copy.write_bytes(image.read_bytes())
    assert source.key(str(copy)) == source.key(str(image))


def test_region_masks_follow_the_tta_flip():
    """Under ``--tta`` the image arrives flipped after resizing: its region
    masks (read unflipped from the source) must be flipped the same way
    before the windows are cut, or the scopes cover the wrong patches."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from ov_eva.windows import masks_at_input
    mask = torch.arange(12, dtype=torch.int32).reshape(3, 4)
    samples = []
    for meta in [
            dict(img_shape=(3, 4)),
            dict(img_shape=(3, 4), flip=True, flip_direction='horizontal'),
            dict(img_shape=(3, 4), flip=True, flip_direction='vertical')
    ]:
        sample = SegDataSample(metainfo=meta)
        sample.region_masks = PixelData(data=mask[None])
        samples.append(sample)
    guides = masks_at_input(samples, torch.zeros(3, 3, 5, 6))
    assert guides.shape == (3, 1, 5, 6)
    assert torch.equal(guides[0, 0, :3, :4], mask)
    assert torch.equal(guides[1, 0, :3, :4], mask.flip(-1))
    assert torch.equal(guides[2, 0, :3, :4], mask.flip(-2))
    # the decision's stay unflipped, at the original size
    assert torch.equal(samples[1].region_masks.data[0], mask)
