"""Class files, benchmark datasets, base dataset configs, COCO-Object tool."""
import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_data
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.evaluation import IoUMetric
from mmseg.registry import DATASETS
from mmseg.structures import SegDataSample
from PIL import Image

import ov_eva  # registers the datasets; must precede any mmseg.datasets use
from ov_eva.datasets import COCOObjectDataset, PascalVOC20Dataset

REPO = Path(__file__).parents[1]
CLASS_DIR = REPO / 'projects' / 'ov_eva' / 'class_names'
CONFIG_DIR = REPO / 'configs' / '_base_' / 'datasets'
TOOL = REPO / 'tools' / 'dataset_converters' / 'coco_object.py'

# benchmark -> (dataset type, classes, short side of the test resize)
BENCHMARKS = {
    'ade20k': ('ADE20KDataset', 150, 448),
    'coco_stuff171': ('COCOStuffDataset', 171, 448),
    'cityscapes': ('CityscapesDataset', 19, 560),
    'context60': ('PascalContextDataset', 60, 336),
    'context59': ('PascalContextDataset59', 59, 336),
    'voc21': ('PascalVOCDataset', 21, 336),
    'voc20': ('PascalVOC20Dataset', 20, 336),
    'coco_object': ('COCOObjectDataset', 81, 336),
}
WITH_BACKGROUND = {'context60', 'voc21', 'coco_object'}


def load_tool():
    spec = importlib.util.spec_from_file_location('coco_object_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_lines(name):
    text = (CLASS_DIR / f'{name}.txt').read_text(encoding='utf-8')
    assert text.endswith('\n') and not text.endswith('\n\n'), name
    return text[:-1].split('\n')


def build_test_dataset(name, data_root):
    """The base config's test dataset, rooted at ``data_root``."""
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(CONFIG_DIR / f'{name}.py'))
    dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset_cfg.data_root = str(data_root)
    return DATASETS.build(dataset_cfg)


def check_sample(dataset, index, expected_gt, short_side):
    """Load one sample through the pipeline; compare its gt to expected."""
    sample = dataset[index]
    gt = sample['data_samples'].gt_sem_seg.data.numpy()[0]
    np.testing.assert_array_equal(gt, expected_gt)
    # Resize comes before LoadAnnotations: only the image is resized.
    assert abs(min(sample['inputs'].shape[1:]) - short_side) <= 1
    return gt


def perfect_miou(dataset, gts):
    """mIoU of predicting the ground truth itself: 100 on the classes seen."""
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dataset.metainfo
    samples = []
    for gt in gts:
        data = torch.from_numpy(gt.astype(np.int64))[None]
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=data)
        sample.pred_sem_seg = PixelData(data=data.clone())
        samples.append(sample.to_dict())
    metric.process({}, samples)
    return metric.compute_metrics(metric.results)['mIoU']


# (a) class files ------------------------------------------------------------


@pytest.mark.parametrize('name', sorted(BENCHMARKS))
def test_class_file(name):
    dataset_type, num_classes, _ = BENCHMARKS[name]
    lines = read_lines(name)
    assert len(lines) == num_classes
    assert len(lines) == len(DATASETS.get(dataset_type).METAINFO['classes'])
    owner = {}
    for number, line in enumerate(lines, 1):
        assert line == line.strip().lower(), (name, number, line)
        synonyms = [s.strip() for s in line.split(',')]
        assert all(synonyms), f'{name}:{number}: empty entry in {line!r}'
        for synonym in synonyms:
            assert synonym == ' '.join(synonym.split()), (name, synonym)
            assert owner.setdefault(synonym, number) == number, (
                f'{name}: {synonym!r} on lines {owner[synonym]} and {number}')
    assert lines[0].startswith('background') == (name in WITH_BACKGROUND)
    # what the model reads
    assert len(ov_eva.read_class_file(name)) == num_classes


def test_class_files_agree():
    voc21, coco = read_lines('voc21'), read_lines('coco_object')
    assert read_lines('voc20') == voc21[1:]
    assert read_lines('context59') == read_lines('context60')[1:]
    stuff = read_lines('coco_stuff171')
    names = [line.split(',')[0] for line in coco[1:]]
    assert names == [line.split(',')[0] for line in stuff[:80]]


# dataset classes and base configs -------------------------------------------


def test_dataset_metainfo():
    voc = DATASETS.get('PascalVOCDataset').METAINFO
    meta = PascalVOC20Dataset.METAINFO
    assert list(meta['classes']) == list(voc['classes'][1:])
    assert list(meta['palette']) == list(voc['palette'][1:])
    meta = COCOObjectDataset.METAINFO
    stuff = DATASETS.get('COCOStuffDataset').METAINFO['classes']
    assert meta['classes'] == ('background', ) + tuple(stuff[:80])
    assert len({tuple(c) for c in meta['palette']}) == 81
    assert DATASETS.get('PascalVOC20Dataset') is PascalVOC20Dataset
    assert DATASETS.get('COCOObjectDataset') is COCOObjectDataset


@pytest.mark.parametrize('name', sorted(BENCHMARKS))
def test_base_config(name):
    dataset_type, _, short_side = BENCHMARKS[name]
    cfg = Config.fromfile(str(CONFIG_DIR / f'{name}.py'))
    assert cfg.dataset_type == dataset_type
    assert cfg.test_dataloader.dataset.type == dataset_type
    assert cfg.test_dataloader.batch_size == 1
    assert not cfg.test_dataloader.sampler.shuffle
    assert cfg.val_dataloader == cfg.test_dataloader
    assert cfg.test_evaluator == dict(type='IoUMetric', iou_metrics=['mIoU'])
    assert cfg.val_evaluator == cfg.test_evaluator
    assert 'train_dataloader' not in cfg
    assert [t['type'] for t in cfg.test_pipeline] == [
        'LoadImageFromFile', 'Resize', 'LoadAnnotations', 'PackSegInputs'
    ]
    assert cfg.test_pipeline[1].scale == (2048, short_side)
    resizes = cfg.tta_pipeline[1].transforms[0]
    assert [t.scale_factor for t in resizes] == [0.75, 1.0, 1.25]


# (b) COCO-Object conversion -------------------------------------------------


def test_coco_object_mapping():
    tool = load_tool()
    stuff = np.array([[0, 1, 79], [80, 170, 255], [171, 254, 42]], np.uint8)
    expected = np.array([[1, 2, 80], [0, 0, 255], [255, 255, 43]], np.uint8)
    out = tool.to_coco_object(stuff)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)
    # int arrays (e.g. 16-bit PNGs) map the same; out-of-range ids fail
    np.testing.assert_array_equal(
        tool.to_coco_object(stuff.astype(np.int32)), expected)
    with pytest.raises(ValueError):
        tool.to_coco_object(np.array([256]))


def write_stuff_labels(root, split='val2017'):
    folder = root / 'annotations' / split
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {}
    for stem in ('000000000139', '000000000285'):
        ids = rng.choice([0, 5, 79, 80, 120, 170, 255], size=(6, 8))
        labels[stem] = ids.astype(np.uint8)
        Image.fromarray(labels[stem]).save(folder /
                                           f'{stem}_labelTrainIds.png')
    return folder, labels


def run_tool(*args):
    return subprocess.run(
        [sys.executable, str(TOOL), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300)


def test_coco_object_cli(tmp_path):
    tool = load_tool()
    folder, labels = write_stuff_labels(tmp_path)

    result = run_tool(tmp_path, '--nproc', 2)
    assert result.returncode == 0, result.stderr
    assert 'converted 2, skipped 0' in result.stdout
    for stem, label in labels.items():
        out = np.asarray(Image.open(folder / f'{stem}_instanceTrainIds.png'))
        np.testing.assert_array_equal(out, tool.COCO_OBJECT_LUT[label])
    assert not list(folder.glob('*.tmp'))

    # converted files are skipped unless --overwrite
    marker = folder / '000000000139_instanceTrainIds.png'
    Image.fromarray(np.full((6, 8), 7, np.uint8)).save(marker)
    result = run_tool(tmp_path, '--split', 'val2017', '--nproc', 1)
    assert result.returncode == 0, result.stderr
    assert 'converted 0, skipped 2' in result.stdout
    assert (np.asarray(Image.open(marker)) == 7).all()
    result = run_tool(tmp_path, '--nproc', 1, '--overwrite')
    assert result.returncode == 0, result.stderr
    assert 'converted 2, skipped 0' in result.stdout
    np.testing.assert_array_equal(
        np.asarray(Image.open(marker)),
        tool.COCO_OBJECT_LUT[labels['000000000139']])


def test_coco_object_cli_errors_without_labels(tmp_path):
    empty = tmp_path / 'annotations' / 'val2017'
    empty.mkdir(parents=True)
    (empty / 'unrelated.png').touch()
    result = run_tool(tmp_path)
    assert result.returncode != 0
    assert str(empty) in result.stderr
    assert '_labelTrainIds.png' in result.stderr
    result = run_tool(tmp_path, '--split', 'train2017')
    assert result.returncode != 0
    assert str(tmp_path / 'annotations' / 'train2017') in result.stderr


# (c) datasets through the base configs' test pipelines ----------------------


def test_voc20_real_samples():
    root = shared_data('VOCdevkit/VOC2012')
    dataset = build_test_dataset('voc20', root)
    assert len(dataset) == 14
    assert dataset.metainfo['reduce_zero_label']
    gts, background_seen = [], False
    for index in range(len(dataset)):
        path = dataset.get_data_info(index)['seg_map_path']
        raw = np.asarray(Image.open(path)).astype(np.int64)
        expected = np.where((raw == 0) | (raw == 255), 255, raw - 1)
        gt = check_sample(dataset, index, expected, 336)
        assert (gt[raw == 0] == 255).all()
        assert gt[gt != 255].max() < 20
        background_seen |= bool((raw == 0).any())
        gts.append(gt)
    assert background_seen
    assert perfect_miou(dataset, gts) == 100


def test_voc21_real_samples():
    root = shared_data('VOCdevkit/VOC2012')
    dataset = build_test_dataset('voc21', root)
    assert len(dataset) == 14
    gts = []
    for index in range(len(dataset)):
        path = dataset.get_data_info(index)['seg_map_path']
        raw = np.asarray(Image.open(path))
        gt = check_sample(dataset, index, raw, 336)
        assert gt[gt != 255].max() <= 20
        gts.append(gt)
    assert any((gt == 0).any() for gt in gts)  # background is a class here
    assert perfect_miou(dataset, gts) == 100


def test_ade20k_real_samples():
    root = shared_data('ADEChallengeData2016')
    dataset = build_test_dataset('ade20k', root)
    assert len(dataset) == 3
    for index in range(len(dataset)):
        path = dataset.get_data_info(index)['seg_map_path']
        raw = np.asarray(Image.open(path)).astype(np.int64)
        expected = np.where(raw == 0, 255, raw - 1)
        gt = check_sample(dataset, index, expected, 448)
        assert gt[gt != 255].max() < 150


def test_cityscapes_real_samples():
    root = shared_data('cityscapes')
    dataset = build_test_dataset('cityscapes', root)
    assert len(dataset) == 1
    path = dataset.get_data_info(0)['seg_map_path']
    assert path.endswith('_gtFine_labelTrainIds.png')
    raw = np.asarray(Image.open(path))
    gt = check_sample(dataset, 0, raw, 560)
    assert gt[gt != 255].max() < 19


def make_synthetic(root, image_path, label_path, label, split_file=None):
    """One random image and its label under ``root``."""
    h, w = label.shape
    rng = np.random.default_rng(0)
    for path in (image_path, label_path):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / image_path)
    Image.fromarray(label).save(root / label_path)
    if split_file:
        (root / split_file).parent.mkdir(parents=True, exist_ok=True)
        (root / split_file).write_text('2008_000002\n')


@pytest.mark.parametrize('name', ['context60', 'context59'])
def test_context_synthetic(tmp_path, name):
    label = np.zeros((32, 48), np.uint8)
    label[8:, :] = 12  # bus
    label[:, 40:] = 59  # wood
    label[0, 0] = 255
    make_synthetic(tmp_path, 'JPEGImages/2008_000002.jpg',
                   'SegmentationClassContext/2008_000002.png', label,
                   'ImageSets/SegmentationContext/val.txt')
    dataset = build_test_dataset(name, tmp_path)
    if name == 'context60':
        expected = label
    else:
        raw = label.astype(np.int64)
        expected = np.where((raw == 0) | (raw == 255), 255, raw - 1)
    check_sample(dataset, 0, expected, 336)


def test_coco_stuff_and_object_synthetic(tmp_path):
    folder, labels = write_stuff_labels(tmp_path)
    tool = load_tool()
    for stem, label in labels.items():
        make_synthetic(tmp_path, f'images/val2017/{stem}.jpg',
                       f'annotations/val2017/{stem}_labelTrainIds.png', label)
        assert tool.convert_file(str(folder / f'{stem}_labelTrainIds.png'))
    stuff = build_test_dataset('coco_stuff171', tmp_path)
    objects = build_test_dataset('coco_object', tmp_path)
    assert len(stuff) == len(objects) == 2
    for index, label in enumerate(labels.values()):
        check_sample(stuff, index, label, 448)
        gt = check_sample(objects, index, tool.COCO_OBJECT_LUT[label], 336)
        assert set(np.unique(gt)) <= {0, 1, 6, 80, 255}
