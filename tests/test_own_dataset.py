"""Your own dataset through configs/custom/, as docs/own_dataset.md walks
through it: a folder the test writes, the Runner, the class check."""
import numpy as np
import pytest
from conftest import NO_PAMR, REPO, TINY, run_cli
from PIL import Image

import ov_eva  # noqa: F401  (compat before mmseg)

TEMPLATE = REPO / 'configs' / 'custom' / 'oveva_vitb16_my_dataset.py'


@pytest.fixture
def my_dataset(tmp_path):
    """Three photos with labels: 0 sky (top), 1 grass (bottom), 2 tree (a
    block), 255 unlabelled; and a class file with a synonym."""
    root = tmp_path / 'my_dataset'
    (root / 'images').mkdir(parents=True)
    (root / 'labels').mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        height, width = 120 + 20 * i, 160
        label = np.zeros((height, width), np.uint8)
        label[height // 2:] = 1
        label[20:50, 30 + 10 * i:70 + 10 * i] = 2
        label[:, :4] = 255
        colours = np.array([[120, 170, 240], [60, 160, 60], [30, 90, 30]])
        image = colours[np.minimum(label, 2)] + rng.integers(
            0, 30, (height, width, 3))
        Image.fromarray(image.astype(np.uint8)).save(root / 'images' /
                                                     f'photo_{i}.jpg')
        Image.fromarray(label).save(root / 'labels' / f'photo_{i}.png')
    (root / 'classes.txt').write_text('sky\ngrass, lawn\ntree\n')
    # a user's copy of the template, its marked values set
    config = tmp_path / 'my_dataset.py'
    text = TEMPLATE.read_text().replace(
        "'../_base_/", f"'{REPO / 'configs' / '_base_'}/").replace(
            "data_root = 'data/my_dataset'", f"data_root = '{root}'").replace(
                "class_file = 'data/my_dataset/classes.txt'",
                f"class_file = '{root / 'classes.txt'}'")
    config.write_text(text)
    return config


def test_template_runs_on_a_folder_with_its_class_file(tmp_path, my_dataset):
    proc = run_cli('tools/test.py', my_dataset, '--work-dir',
                   tmp_path / 'work', '--cfg-options', *TINY, NO_PAMR)
    log = proc.stdout + proc.stderr
    assert 'model.classes: the 3 classes of the test dataset ' \
        '(ClassFileSegDataset' in log
    assert 'mIoU' in log
    for name in ('sky', 'grass', 'tree'):  # IoUMetric's per-class table
        assert f'| {name} ' in log.replace('|  ', '| ')


def test_classes_that_do_not_match_the_dataset_stop_the_run(
        tmp_path, my_dataset):
    proc = run_cli(
        'tools/test.py',
        my_dataset,
        '--work-dir',
        tmp_path / 'work',
        '--cfg-options',
        *TINY,
        NO_PAMR,
        'model.classes=[sky,grass]',
        check=False)
    assert proc.returncode != 0
    log = proc.stdout + proc.stderr
    assert "model.classes has 2 classes ('sky', 'grass')" in log
    assert "the test dataset (ClassFileSegDataset) has 3 ('sky', 'grass', " \
        "'tree')" in log
    assert 'Iter(test)' not in log  # stopped before the first image


def test_classes_from_an_mmseg_dataset_metainfo():
    """model.classes=None with one of mmseg's datasets: its metainfo names,
    each a class of one name."""
    from unittest.mock import MagicMock

    from mmseg.datasets import PascalVOCDataset
    from mmseg.registry import MODELS

    from ov_eva.hooks import DatasetClassesHook
    model = MODELS.build(
        dict(
            type='OVEVASegmentor',
            clip=dict(name='ov-eva-tiny'),
            classes=None,
            text_cache_dir=False))
    runner = MagicMock()
    runner.model = model
    runner.test_dataloader.dataset.metainfo = PascalVOCDataset.METAINFO
    del runner.test_dataloader.dataset.class_file
    DatasetClassesHook().before_test(runner)
    assert model.num_classes == 21
    assert model.classes[0] == ['background']
    assert model.class_bank.query_set().queries[1] == 'aeroplane'
