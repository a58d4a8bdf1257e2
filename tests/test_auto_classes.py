"""Segmentation with no class list (``model.classes='auto'``): each image's
classes from its vocabulary, grouped into synonyms, with a background class;
on a dataset, found names matched to its classes by text similarity."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (NO_PAMR, REPO, TINY, demo_outputs, run_cli, run_demo,
                      shared_data)
from fake_openai import FakeOpenAIServer
from PIL import Image

import ov_eva  # noqa: F401
from ov_eva import scoring

ADE_IMAGE = 'images/validation/ADE_val_00000001.jpg'


def test_group_terms_merges_synonyms_caps_groups_and_drops_the_rest():
    e = F.normalize(
        torch.tensor([
            [1.0, 0.0, 0.0],  # 0 'cat': opens group A
            [0.0, 1.0, 0.0],  # 1 'sky': opens group B
            [0.95, 0.05, 0.0],  # 2 'kitten': close to A's name
            [0.1, 0.9, 0.0],  # 3 'clouds': close to B's name
            [0.0, 0.0, 1.0],  # 4 'road': unlike both, no room left
            [0.7, 0.7, 0.0],  # 5 halfway: below the threshold for both
        ]),
        dim=1)
    assert scoring.group_terms(e, 0.9, 2) == [[0, 2], [1, 3]]
    assert scoring.group_terms(e, 0.9, None) == [[0, 2], [1, 3], [4], [5]]
    # a threshold above 1 merges nothing: every term its own class
    assert scoring.group_terms(e, 1.01, 3) == [[0], [1], [2]]
    with pytest.raises(ValueError, match='max_groups'):
        scoring.group_terms(e, 0.9, 0)
    # each found class goes to its most similar target class
    sim = torch.tensor([[0.2, 0.9, 0.1], [0.8, 0.1, 0.3]])
    assert scoring.match_names(sim).tolist() == [1, 0]


def auto_model(terms, **overrides):
    from mmengine.config import Config
    from mmengine.runner import set_random_seed
    from mmseg.apis import init_model
    cfg = Config.fromfile(REPO / 'configs' / 'oveva_vitb16_ade.py')
    cfg.model.update(
        classes='auto',
        vocabulary=dict(type='StaticVocabulary', terms={'': terms}),
        pamr=None,
        auto_merge_thr=1.01,  # every term its own class: names known
        **overrides)
    cfg.model.clip.update(name='ov-eva-tiny', pretrained=None)
    cfg.test_pipeline = [
        t for t in cfg.test_dataloader.dataset.pipeline
        if 'Annotation' not in t['type']
    ]
    set_random_seed(0)
    return init_model(cfg, device='cpu')


def test_found_classes_are_matched_to_the_dataset_classes():
    from mmseg.apis import inference_model
    image = shared_data('ADEChallengeData2016') / ADE_IMAGE
    model = auto_model(['floor', 'sky', 'wall', 'background'],
                       max_auto_classes=2)
    # alone: the found classes, background first, capped, the background
    # term not repeated
    sample = inference_model(model, str(image))
    assert sample.metainfo['ov_eva_classes'] == [['background'], ['floor'],
                                                 ['sky']]
    assert 'ov_eva_class_match' not in sample.metainfo
    label = sample.pred_sem_seg.data[0]
    with Image.open(image) as picture:
        assert tuple(label.shape) == picture.size[::-1]
    assert int(label.max()) < 3
    terms = {row['term'] for row in sample.metainfo['ov_eva_vocabulary']}
    assert terms == {'floor', 'sky', 'wall', 'background'}

    # on a dataset: found names scored as their nearest dataset class
    targets = [['tree'], ['sky', 'clouds'], ['floor', 'flooring'],
               ['background']]
    model.class_bank.set_target_classes(targets)
    sample = inference_model(model, str(image))
    match = sample.metainfo['ov_eva_class_match']
    assert match == [
        dict(found='background', dataset_class='background'),
        dict(found='floor', dataset_class='floor'),
        dict(found='sky', dataset_class='sky')
    ]
    found = sample.auto_sem_seg.data
    mapped = torch.tensor([3, 2, 1])[found]
    assert torch.equal(sample.pred_sem_seg.data, mapped)
    scores = sample.seg_logits.data
    assert scores.shape[0] == 4
    assert bool(torch.isinf(scores[0]).all())  # 'tree' was not found
    agree = (scores.argmax(0) == sample.pred_sem_seg.data[0]).float().mean()
    assert float(agree) > 0.999


def test_auto_needs_a_vocabulary_and_says_so():
    from mmseg.registry import MODELS
    with pytest.raises(ValueError, match="model.vocabulary='lexicon'"):
        MODELS.build(
            dict(
                type='OVEVASegmentor',
                clip=dict(name='ov-eva-tiny', pretrained=None),
                classes='auto',
                vocabulary=None))


def test_demo_without_classes_finds_them_with_the_lexicon(tmp_path):
    image = shared_data('ADEChallengeData2016') / ADE_IMAGE
    out = tmp_path / 'out'
    proc = run_demo(
        image, '--out', out, options=[NO_PAMR, 'model.max_auto_classes=4'])
    assert 'classes found per image' in proc.stdout
    overlay_file, label_file, record_file = demo_outputs(out / image.stem)
    record = json.loads(record_file.read_text())
    assert record['classes_found'] is True
    classes = record['classes']
    assert classes[0]['synonyms'] == ['background']
    assert 2 <= len(classes) <= 5
    # every found class (and each synonym) is one of the lexicon's terms
    terms = {row['term'] for row in record['vocabulary']}
    assert len(terms) == 32  # the lexicon's top_k
    for c in classes[1:]:
        assert set(c['synonyms']) <= terms
    with Image.open(label_file) as picture:
        label = np.asarray(picture)
    assert label.max() < len(classes)
    assert {c['index']
            for c in record['present']} == set(np.unique(label).tolist())
    names = {c['name'] for c in classes}
    assert {c['name'] for c in record['present']} <= names
    assert overlay_file.is_file()


def test_demo_without_classes_from_a_loopback_mllm(tmp_path):
    """The MLLM is asked what the image holds (stage 1 only: no target
    classes to expand), and its perceived terms become the classes."""
    image = shared_data('ADEChallengeData2016') / ADE_IMAGE
    out = tmp_path / 'out'
    with FakeOpenAIServer() as server:
        run_demo(
            image,
            '--out',
            out,
            '--vocabulary',
            'openai',
            options=[
                NO_PAMR, f'model.vocabulary.base_url={server.base_url}',
                f'model.vocabulary.cache_file={tmp_path / "v.sqlite"}',
                'model.auto_merge_thr=1.01'
            ])
        assert server.count() == 1  # the perceive prompt alone
        assert 'Target classes' not in json.dumps(server.requests[0]['body'])
    record = json.loads(demo_outputs(out / image.stem)[2].read_text())
    assert [c['synonyms'] for c in record['classes']] == [['background'],
                                                          ['wooden floor'],
                                                          ['white ceiling']]
    assert record['vocabulary_source'] == 'OpenAIVocabulary'


def test_compare_reports_vocabulary_free_miou_in_its_own_column(tmp_path):
    root = shared_data('ADEChallengeData2016')
    out = tmp_path / 'table.md'
    run_cli('tools/compare.py',
            'configs/vocabulary_free/oveva_vitb16_ade_auto.py', '--work-dir',
            tmp_path / 'work', '--out', out, '--cfg-options', *TINY, NO_PAMR,
            f'test_dataloader.dataset.data_root={root}',
            'test_dataloader.dataset.indices=1')
    data = json.loads(out.with_suffix('.json').read_text())
    assert data['columns'][2] == 'mIoU'
    assert data['columns'][-1] == 'vocabulary-free mIoU****'
    row, = data['rows']
    assert row['auto_classes'] is True and row['error'] is None
    line, = [
        line for line in out.read_text().splitlines()
        if line.startswith('| oveva')
    ]
    cells = [c.strip() for c in line.strip('|').split('|')]
    assert len(cells) == len(data['columns'])
    # not the mIoU of a model given the classes: only in its own column
    assert cells[2] == '-' and cells[-1] == f"{row['mIoU']:.2f}"
    metrics = sorted(
        (tmp_path / 'work' / 'oveva_vitb16_ade_auto').glob('*/*.json'))
    assert json.loads(metrics[0].read_text())['mIoU'] == row['mIoU']
    log = (tmp_path / 'work' / 'oveva_vitb16_ade_auto' /
           'compare.stdout.log').read_text()
    assert "model.classes='auto'" in log and '150 classes' in log
    assert 'Vocabulary-free mIoU' in out.read_text()
