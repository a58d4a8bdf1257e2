"""Single-pass region masks for CorrCLIP: EoMT through transformers (its
panoptic merge against transformers' own, a tiny random EoMT saved with
save_pretrained, loaded from a folder and from the hub cache, through
tools/test.py) and the official pre-generated mask archives' layout."""
import time

import numpy as np
import pytest
import torch
from conftest import REPO, run_cli, shared_data

from ov_eva.masks import build_mask_source

EOMT_HUB_ID = 'tue-mps/coco_panoptic_eomt_large_640'
EOMT_CONFIG = REPO / 'configs/mask_generators/corrclip_vitb16_ade_eomt.py'
TINY_CORR = [
    'model.clip.name=ov-eva-tiny12', 'model.clip.pretrained=None',
    'model.clip.dino.name=ov-eva-tiny-dino', 'model.clip.dino.pretrained=None'
]
# a random EoMT keeps no query at the official 0.8 class probability
KEEP_ALL = dict(score_thresh=0.0)


def save_tiny_eomt(folder):
    """A tiny random EoMT (5 classes, 6 queries, 64-pixel input) written
    by save_pretrained; its queries and mask head drawn wide enough that
    several queries win pixels."""
    from transformers import EomtConfig, EomtForUniversalSegmentation
    torch.manual_seed(0)
    config = EomtConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_blocks=1,
        num_queries=6,
        image_size=64,
        patch_size=16,
        num_register_tokens=1,
        mlp_ratio=2,
        id2label={i: f'class {i}'
                  for i in range(5)})
    model = EomtForUniversalSegmentation(config)
    with torch.no_grad():
        model.query.weight.normal_(0, 1)
        for param in model.mask_head.parameters():
            param.normal_(0, 0.5)
    model.save_pretrained(folder)
    return folder


def hub_cache_with(tmp_path, repo_id):
    """A Hugging Face hub cache holding a tiny EoMT as ``repo_id``."""
    cache = tmp_path / 'hub'
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / 'refs').mkdir(parents=True)
    (repo / 'refs' / 'main').write_text('0' * 40)
    save_tiny_eomt(repo / 'snapshots' / ('0' * 40))
    return cache


def test_panoptic_merge_is_transformers_and_the_official_rules():
    from transformers.models.eomt.image_processing_eomt import (
        compute_segments, remove_low_and_no_objects)

    from ov_eva.eomt_masks import panoptic_segments
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):  # random queries: transformers' merge, id for id
        masks = torch.randn(8, 13, 17, generator=gen) * 3
        classes = torch.randn(8, 6, generator=gen) * 3
        scores, labels = classes.softmax(-1).max(-1)
        kept = remove_low_and_no_objects(masks, scores, labels, 0.3, 5)
        want, _ = compute_segments(
            *kept, stuff_classes=[3, 4], overlap_mask_area_threshold=0.6)
        got = panoptic_segments(masks, classes, [3, 4], 0.3, 0.6)
        assert torch.equal(got, want)
    # written out: query 0 "no object" and 1 (probabilities 0.25) are not
    # kept; 2 and 4 are the same stuff class (one segment); 3 a thing; 5
    # wins none of its mask from 3
    logits = torch.full((6, 4, 6), -9.0)
    logits[0, 2:, 2:4] = logits[1, 2:, 2:4] = 9.0
    logits[2, :2, :4] = logits[4, 2:, :2] = logits[3, :, 4:] = 9.0
    logits[5, :, 4:] = 8.0
    classes = torch.full((6, 4), -9.0)
    classes[0, 3] = classes[2, 1] = classes[4, 1] = classes[3, 0] = 9.0
    classes[5, 2], classes[1] = 9.0, 0.0
    got = panoptic_segments(logits, classes, stuff_classes=[1])
    top, bottom = [0, 0, 0, 0, 1, 1], [0, 0, -1, -1, 1, 1]
    assert got.tolist() == [top, top, bottom, bottom]
    none = panoptic_segments(logits, torch.zeros(6, 4))  # no query kept
    assert (none == -1).all() and none.shape == (4, 6)


def test_eomt_masks_from_a_saved_folder(tmp_path):
    """A tiny EoMT from a save_pretrained folder on a real ADE image: the
    label map (image size, -1 unsegmented as the official EoMT masks) is
    what transformers' own panoptic post-processing makes of the model's
    output on the official input (PIL bilinear to fit 64 x 64, zero-padded
    bottom and right), and it is cached by image content."""
    from PIL import Image
    from transformers import EomtImageProcessor
    data = shared_data('ADEChallengeData2016')
    image_path = sorted((data / 'images/validation').glob('*.jpg'))[0]
    image = Image.open(image_path).convert('RGB')
    folder = save_tiny_eomt(tmp_path / 'eomt')
    source = build_mask_source(
        dict(
            type='eomt',
            name=str(folder),
            cache_dir=tmp_path,
            stuff_classes=[3, 4],
            overlap_thresh=0.3,
            **KEEP_ALL))
    meta = dict(img_path=str(image_path), ori_shape=image.size[::-1])
    label = source.get(meta).numpy()
    assert label.shape == (image.height, image.width)
    assert len(np.unique(label)) >= 3 and label.min() >= -1

    model = source.load()
    assert not model.attn_mask_probs.any()  # masked attention off
    pixels, resized = source.preprocess(image, (64, 64), 'cpu')
    scale = 64 / max(image.size)
    assert resized == (round(image.height * scale), round(image.width * scale))
    assert (pixels[..., resized[0]:, :] == pixels[0, :, -1:, -1:]).all()
    with torch.no_grad():
        out = model(pixel_values=pixels)
    want = EomtImageProcessor().post_process_panoptic_segmentation(
        out, [(image.height, image.width)],
        threshold=0.0,
        overlap_mask_area_threshold=0.3,
        stuff_classes=[3, 4],
        size=dict(shortest_edge=64, longest_edge=64))[0]['segmentation']
    np.testing.assert_array_equal(label, want.numpy())

    (cached, ) = (tmp_path / 'masks').glob('*.npz')
    np.testing.assert_array_equal(np.load(cached)['instance_mask'], label)
    # the official thresholds keep no query of a random EoMT: unsegmented
    strict = build_mask_source(dict(type='eomt', name=str(folder)))
    strict._model = model
    assert (strict.generate(str(image_path)) == -1).all()
    copy = tmp_path / 'copy.jpg'  # same bytes: same key
    copy.write_bytes(image_path.read_bytes())
    assert source.key(str(copy)) == source.key(str(image_path))


def test_eomt_weights_from_the_hub_cache_and_missing_ones(
        tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(tmp_path / 'none'))
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as error:
        build_mask_source('eomt').load()  # the official model, not cached
    assert time.monotonic() - start < 10
    assert EOMT_HUB_ID in str(error.value)
    assert 'local folder' in str(error.value)
    with pytest.raises(FileNotFoundError, match='nowhere.*does not exist'):
        build_mask_source(
            dict(type='eomt', pretrained=str(tmp_path / 'nowhere'))).load()
    monkeypatch.setattr(constants, 'HF_HUB_CACHE',
                        str(hub_cache_with(tmp_path, EOMT_HUB_ID)))
    model = build_mask_source('eomt').load()
    assert model.config.num_queries == 6  # the cached tiny one


def write_archive(archive, mask):
    """An official archive's layout: one folder per dataset."""
    for dataset in ('ade', 'voc', 'context'):
        (archive / dataset).mkdir(parents=True)
    np.savez_compressed(archive / 'ade' / 'ADE_val_1.npz', instance_mask=mask)
    np.savez(archive / 'voc' / 'x.npz', instance_mask=mask)


def test_official_archive_layout(tmp_path):
    """CorrCLIPv2's instance_mask.zip (EntitySeg masks) and CorrCLIP's
    region_masks.zip: one folder per dataset of <image stem>.npz; EoMT's
    int16 masks with -1 read as they are; the archive's top folder or a
    doubled one named in the error."""
    archive = tmp_path / 'instance_mask'
    mask = np.array([[-1, 0, 0], [2, 2, -1]], np.int16)
    write_archive(archive, mask)
    meta = dict(img_path='/data/images/ADE_val_1.jpg', ori_shape=(2, 3))
    source = build_mask_source(
        dict(type='files', root=str(archive), folder='ade'))
    got = source.get(meta)
    assert got.dtype == torch.int32 and got.tolist() == mask.tolist()
    top = build_mask_source(dict(type='files', root=str(archive)))
    with pytest.raises(FileNotFoundError, match=r"\['ade', 'voc'\].*folder="):
        top.get(meta)
    with pytest.raises(FileNotFoundError, match="no folder 'ade847'"):
        build_mask_source(
            dict(type='files', root=str(archive), folder='ade847')).get(meta)
    doubled = tmp_path / 'unzipped' / 'instance_mask'
    write_archive(doubled / 'instance_mask', mask)
    with pytest.raises(FileNotFoundError, match='instance_mask/instance_mask'):
        build_mask_source(dict(type='files', root=str(doubled),
                               folder='ade')).get(meta)


def test_eomt_config_is_its_row_with_eomt_masks(monkeypatch):
    """The EoMT config is CorrCLIP's ADE baseline with the masks changed,
    and tools/compare.py prints the README's EoMT number beside it (none
    once the masks are changed back)."""
    import importlib.util

    from mmengine.config import Config
    base = Config.fromfile(
        str(REPO / 'configs/baselines/corrclip_vitb16_ade.py'))
    cfg = Config.fromfile(str(EOMT_CONFIG))
    assert cfg.model.clip.masks == dict(type='eomt')
    assert cfg.model.clip.copy() == dict(
        base.model.clip, masks=dict(type='eomt'))
    assert {k: v for k, v in cfg.model.items() if k != 'clip'} == \
        {k: v for k, v in base.model.items() if k != 'clip'}
    monkeypatch.syspath_prepend(str(REPO / 'tools'))  # as python tools/...
    spec = importlib.util.spec_from_file_location('compare_tool',
                                                  REPO / 'tools/compare.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    got = tool.published_reference(cfg)
    assert got['published'] == 26.7 and 'EoMT' in got['published_source']
    cfg.merge_from_dict({'model.clip.masks': base.model.clip.masks})
    assert tool.published_reference(cfg)['published'] is None


def test_corrclip_with_eomt_masks_through_tools_test(tmp_path):
    """configs/mask_generators/corrclip_vitb16_ade_eomt.py through
    tools/test.py, its EoMT a tiny random one in the hub cache under the
    official name: the masks are generated and cached, and every EoMT
    segment but the smallest label comes out in one class (the map
    correction). Without the weights the run stops before it starts, with
    one error line."""
    from PIL import Image
    data = shared_data('ADEChallengeData2016')
    cache = tmp_path / 'cache'
    options = [
        *TINY_CORR, 'model.clip.masks.score_thresh=0.0',
        f'test_dataloader.dataset.data_root={data}',
        'test_dataloader.dataset.indices=1', 'model.templates=single'
    ]
    hub = hub_cache_with(tmp_path, EOMT_HUB_ID)
    run_cli(
        'tools/test.py',
        EOMT_CONFIG,
        '--work-dir',
        tmp_path / 'work',
        '--out',
        tmp_path / 'pred',
        '--cfg-options',
        *options,
        f'model.clip.masks.cache_dir={cache}',
        env=dict(HF_HUB_CACHE=str(hub)))
    (png, ) = sorted((tmp_path / 'pred').rglob('*.png'))
    pred = np.asarray(Image.open(png))
    (cached, ) = (cache / 'masks').glob('*.npz')
    mask = np.load(cached)['instance_mask']
    assert mask.shape == pred.shape
    values = np.unique(mask)
    assert len(values) >= 2
    for value in values[1:]:
        assert len(np.unique(pred[mask == value])) == 1, value

    failed = run_cli(
        'tools/test.py',
        EOMT_CONFIG,
        '--work-dir',
        tmp_path / 'work2',
        '--cfg-options',
        *options,
        'model.clip.masks.cache_dir=False',  # not the masks cached above
        env=dict(HF_HUB_CACHE=str(tmp_path / 'empty')),
        check=False)
    # found missing with CLIP's and DINO's weights, before the Runner
    assert failed.returncode != 0 and not failed.stdout.strip()
    (line, ) = failed.stderr.strip().splitlines()
    assert line.startswith('error: ') and EOMT_HUB_ID in line, line
