"""ADE20K-847 and PASCAL Context-459: the official class files, uint16
labels (values above 255, 65535 ignored) through the base dataset configs."""
import copy
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.evaluation import IoUMetric
from mmseg.registry import DATASETS
from mmseg.structures import SegDataSample
from PIL import Image

import ov_eva  # noqa: F401  registers the datasets and LoadWideAnnotations

REPO = Path(__file__).parents[1]
CLASS_DIR = REPO / 'projects' / 'ov_eva' / 'class_names'
# byte-identical copies of zdk258/CorrCLIP@103bc18
# CorrCLIPv2/configs/cls_ade20k847.txt and cls_context459.txt
OFFICIAL = {
    'ade847': ('ADE20K847Dataset', 847, 448,
               '5d6612d2a2f9778fc7270baf0db7bc800b054d1a'
               'a1f107e323197e8c54e33e26'),
    'context459': ('PascalContext459Dataset', 459, 336,
                   'c9fe8ff7083d2572021691666a700755d8f4e1c6'
                   '34585ba9919a3f3a2c834538'),
}


@pytest.mark.parametrize('name', sorted(OFFICIAL))
def test_official_class_file(name):
    dataset_type, count, _, sha256 = OFFICIAL[name]
    data = (CLASS_DIR / f'{name}.txt').read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha256
    # official files repeat names (ADE's two 'screen'): read verbatim, as
    # the protocol rows do
    assert len(ov_eva.read_class_file(name, verbatim=True)) == count
    classes = DATASETS.get(dataset_type).METAINFO['classes']
    assert len(classes) == count
    assert classes[0] == ('wall' if name == 'ade847' else 'accordion')


def write_sample(root, image_path, label_path, label):
    for path in (image_path, label_path):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    h, w = label.shape
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / image_path)
    Image.fromarray(label).save(root / label_path)  # uint16 -> 16-bit tif


def wide_label(count):
    label = np.full((40, 56), 3, np.uint16)
    label[10:, :20] = 300  # a class above 255
    label[:, 50:] = count - 1
    label[0, :] = 65535  # unlabelled
    return label


@pytest.mark.parametrize('name', sorted(OFFICIAL))
def test_wide_labels_through_the_base_config(tmp_path, name):
    dataset_type, count, short_side, _ = OFFICIAL[name]
    label = wide_label(count)
    cfg = Config.fromfile(str(REPO / f'configs/_base_/datasets/{name}.py'))
    dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    prefix = dataset_cfg.data_prefix
    write_sample(tmp_path, f'{prefix.img_path}/img_0001.jpg',
                 f'{prefix.seg_map_path}/img_0001.tif', label)
    if dataset_cfg.get('ann_file'):
        (tmp_path / dataset_cfg.ann_file).parent.mkdir(parents=True)
        (tmp_path / dataset_cfg.ann_file).write_text('img_0001\n')
    dataset_cfg.data_root = str(tmp_path)
    init_default_scope('mmseg')
    dataset = DATASETS.build(dataset_cfg)
    assert type(dataset).__name__ == dataset_type
    sample = dataset[0]
    gt = sample['data_samples'].gt_sem_seg.data.numpy()[0]
    np.testing.assert_array_equal(gt, label.astype(np.int64))
    assert min(sample['inputs'].shape[1:]) == short_side

    # the evaluator of the base config: 65535 ignored, 300 a class
    metric = IoUMetric(**{
        k: v
        for k, v in cfg.test_evaluator.items() if k != 'type'
    })
    metric.dataset_meta = dataset.metainfo
    data = torch.from_numpy(gt.astype(np.int64))[None]
    pred = data.clone()
    pred[pred == 65535] = 5  # never scored
    pred[0, 20:, :10] = 3  # a third of class 300's pixels wrong
    result = SegDataSample()
    result.gt_sem_seg = PixelData(data=data)
    result.pred_sem_seg = PixelData(data=pred)
    metric.process({}, [result.to_dict()])
    ious = metric.results[0]
    area_intersect, area_union = ious[0], ious[1]
    assert area_union[300] > area_intersect[300] > 0
    assert area_intersect[count - 1] == area_union[count - 1] > 0
    assert area_union[5] == 0


# the synthetic sample of each in its prepared layout: image, label, split
LAYOUTS = {
    'ade847': ('images_detectron2/validation/ADE_val_1.jpg',
               'annotations_detectron2/validation/ADE_val_1.tif', None),
    'context459': ('JPEGImages/2008_000001.jpg',
                   'annotations_detectron2/pc459_val/2008_000001.tif',
                   'ImageSets/SegmentationContext/val.txt'),
}


@pytest.mark.parametrize('name,tta', [('ade847', False), ('context459', True)])
def test_wide_dataset_through_tools_test(tmp_path, name, tta):
    """tools/test.py on a synthetic ADE-847 / Context-459 folder with the
    tiny CLIP (Context-459 under --tta, its dataset base's tta_pipeline):
    the uint16 labels reach the metric (all classes, 65535 ignored)."""
    from conftest import NO_PAMR, TINY, run_cli
    dataset_type, count, _, _ = OFFICIAL[name]
    image, label_file, split = LAYOUTS[name]
    write_sample(tmp_path, image, label_file, wide_label(count))
    if split:
        (tmp_path / split).parent.mkdir(parents=True)
        (tmp_path / split).write_text(Path(image).stem + '\n')
    out = run_cli(
        'tools/test.py', f'configs/baselines/naclip_vitb16_{name}.py',
        '--work-dir', tmp_path / 'work', *(['--tta'] if tta else []),
        '--cfg-options', *TINY, NO_PAMR,
        f'test_dataloader.dataset.data_root={tmp_path}',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
        "model.templates=['a photo of a {}.']")  # not 80 prompts a class
    text = out.stdout + out.stderr
    assert 'mIoU' in text
    # the last class scored (its pixels exist), an unseen class is nan
    classes = DATASETS.get(dataset_type).METAINFO['classes']
    assert len(classes) == count
    assert re.search(rf'\|\s+{re.escape(classes[-1])}\s+\|\s+[0-9.]+\s+\|',
                     text)
    assert re.search(rf'\|\s+{re.escape(classes[100])}\s+\|\s+nan\s+\|',
                     text)
