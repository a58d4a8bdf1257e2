"""tools/compare.py as users run it: each config through tools/test.py (the
real Runner) on the real ADE20K samples with the tiny CLIP, one table."""
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, TINY, run_cli, shared_data
from fake_openai import FakeOpenAIServer, _prompt_text, good_answer
from PIL import Image

ONE_IMAGE = 'test_dataloader.dataset.indices=1'  # keeps the slower tests short
NACLIP = 'configs/baselines/naclip_vitb16_ade.py'
SCLIP = 'configs/baselines/sclip_vitb16_ade.py'
OVEVA = 'configs/oveva_vitb16_ade.py'
COLUMNS = [
    'config', 'vocabulary source', 'mIoU', 'mAcc', 'aAcc', 's/image*',
    'MLLM tokens**', 'published mIoU***', 'mIoU - published',
    'vocabulary-free mIoU****'
]


def compare(tmp_path, *configs, options=(), env=None, check=True, flags=()):
    root = shared_data('ADEChallengeData2016')
    out = tmp_path / 'table.md'
    proc = run_cli(
        'tools/compare.py',
        *configs,
        *flags,
        '--work-dir',
        tmp_path / 'work',
        '--out',
        out,
        '--cfg-options',
        *TINY,
        f'test_dataloader.dataset.data_root={root}',
        *options,
        env=env,
        check=check)
    return proc, read_table(out), json.loads(
        out.with_suffix('.json').read_text())


def read_table(path: Path):
    """The markdown table's header and rows, as lists of cells."""
    lines = [
        line for line in path.read_text().splitlines() if line.startswith('|')
    ]
    cells = [[
        c.strip().replace('\\|', '|')
        for c in re.split(r'(?<!\\)\|',
                          line.strip()[1:-1])
    ] for line in lines]
    assert set(''.join(cells[1])) <= set('-: ')  # the separator row
    return cells[0], [dict(zip(cells[0], row)) for row in cells[2:]]


def run_metrics(tmp_path, stem):
    """The metrics JSON tools/test.py wrote for one config."""
    files = [
        path for path in sorted((tmp_path / 'work' / stem).glob('*/*.json'))
        if path.stem == path.parent.name  # not predictions/index.json
    ]
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def test_compare_baselines_and_oveva(tmp_path):
    proc, (header, rows), data = compare(
        tmp_path, NACLIP, SCLIP, OVEVA, flags=['--figures', '2'])
    assert header == COLUMNS
    assert [r['config'] for r in rows
            ] == ['naclip_vitb16_ade', 'sclip_vitb16_ade', 'oveva_vitb16_ade']
    assert [r['vocabulary source']
            for r in rows] == ['none', 'none', 'LexiconVocabulary']
    for row in rows:
        metrics = run_metrics(tmp_path, row['config'])
        for key in ('mIoU', 'mAcc', 'aAcc'):
            value = float(row[key])
            assert 0 <= value <= 100
            assert value == round(metrics[key], 2)
        seconds = float(row['s/image*'])
        assert seconds > 0
        assert abs(seconds - metrics['time']) < 1e-3  # batch size 1
        assert row['MLLM tokens**'] == '-'  # no MLLM anywhere
    # the official code's published numbers beside the baselines' own
    published = {
        'naclip_vitb16_ade': ('19.05 [1]', 19.05),
        'sclip_vitb16_ade': ('16.45 [2]', 16.45)
    }
    for row in rows:
        if row['config'] in published:
            cell, number = published[row['config']]
            assert row['published mIoU***'] == cell
            assert row['mIoU - published'] == \
                f"{float(row['mIoU']) - number:+.2f}"
        else:  # OV-EVA: no published number to hold it against
            assert row['published mIoU***'] == row['mIoU - published'] == '-'
    text = (tmp_path / 'table.md').read_text()
    assert '[1] https://github.com/sinahmr/NACLIP#results' in text
    assert '[2] https://github.com/wangf3014/SCLIP#results' in text
    assert 'naclip on ade + vocabulary: no published number' in text
    for i, config in enumerate((NACLIP, SCLIP, OVEVA), 1):
        assert f'[{i}/3] {config}: running' in proc.stdout
        assert re.search(rf'\[{i}/3\] {re.escape(config)}: done in [\d.]+ s',
                         proc.stdout)
    assert 'Seconds per image' in (tmp_path / 'table.md').read_text()
    assert data['columns'] == COLUMNS
    assert [r['error'] for r in data['rows']] == [None] * 3
    assert [r['tokens'] for r in data['rows']] == [None] * 3
    assert data['rows'][2]['mIoU'] == run_metrics(tmp_path,
                                                  'oveva_vitb16_ade')['mIoU']
    check_figures(tmp_path, data, [r['config'] for r in rows])


def check_figures(tmp_path, data, stems):
    """--figures 2: the grids of the two images the configs disagree on
    most (recomputed here from the saved predictions), the chart, the
    links; per-class IoU from the saved predictions gives the Runner's
    mIoU, so they are the predictions it scored."""
    figures = data['figures']
    folder = tmp_path / 'table_figures'
    assert Path(figures['folder']) == folder
    runs = [tmp_path / 'work' / stem / 'predictions' for stem in stems]
    gts = sorted((runs[0] / 'gt').glob('*.png'))
    assert len(gts) == figures['images'] == 3
    disagreement = {}
    for gt_file in gts:
        gt = cv2.imread(str(gt_file), cv2.IMREAD_UNCHANGED)
        valid = gt != 255
        preds = [
            cv2.imread(str(run / 'pred' / gt_file.name),
                       cv2.IMREAD_UNCHANGED)[valid] for run in runs
        ]
        disagreement[gt_file.stem] = np.mean(
            [np.mean(pred != preds[0]) for pred in preds[1:]])
    assert len(set(disagreement.values())) == 3, disagreement  # no ties
    chosen = sorted(disagreement, key=disagreement.get, reverse=True)[:2]
    assert [g['name'] for g in figures['grids']] == chosen
    text = (tmp_path / 'table.md').read_text()
    for rank, (name, grid) in enumerate(zip(chosen, figures['grids']), 1):
        path = folder / f'grid_{rank}_{name}.png'
        assert grid['disagreement'] == pytest.approx(disagreement[name])
        assert f'[{name}](table_figures/{path.name})' in text
        with Image.open(grid['image']) as photo:
            width, height = photo.size
        with Image.open(path) as picture:
            assert list(picture.size) == grid['size']
            # image, ground truth, 3 configs, each 320 px wide; a legend
            assert picture.size[0] == 5 * 320
            assert picture.size[1] > round(320 * height / width) + 44
    for suffix in ('png', 'svg'):
        chart = folder / f'per_class_iou.{suffix}'
        assert chart.stat().st_size > 5000
        assert f'table_figures/per_class_iou.{suffix}' in text
    svg = (folder / 'per_class_iou.svg').read_text()
    assert 'sclip_vitb16_ade' in svg and 'oveva_vitb16_ade' in svg
    shown = [
        name for name, area in zip(figures['classes'], figures['label_area'])
        if area > 0
    ]
    assert shown and all(f'>{name}<' in svg for name in shown)
    for stem, row in zip(stems, data['rows']):
        iou = np.array(figures['per_class_iou'][stem], dtype=float)
        assert np.nanmean(iou) == pytest.approx(row['mIoU'], abs=0.01)


def compare_tool(monkeypatch):
    """tools/compare.py as a module."""
    import importlib.util
    monkeypatch.syspath_prepend(str(REPO / 'tools'))  # as python tools/...
    spec = importlib.util.spec_from_file_location('compare_tool',
                                                  REPO / 'tools/compare.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_figures_that_fail_leave_the_table(tmp_path, monkeypatch, capsys):
    """A run whose predictions are missing: one error line, and the table
    and its JSON are still written."""
    import argparse
    tool = compare_tool(monkeypatch)
    row = tool.empty_row(NACLIP, tmp_path / 'work')
    row.update(
        source='none',
        mIoU=1.0,
        mAcc=2.0,
        aAcc=3.0,
        seconds_per_image=0.5,
        predictions=str(tmp_path / 'missing'))
    out = tmp_path / 'table.md'
    args = argparse.Namespace(
        out=out, figures=2, cfg_options=[], launcher='none')
    assert tool.write_outputs(args, [row], 1) is True
    err = capsys.readouterr().err
    assert err.startswith('error: --figures: FileNotFoundError')
    assert 'missing/index.json is missing' in err
    assert 'naclip_vitb16_ade' in out.read_text()
    assert json.loads(out.with_suffix('.json').read_text())['figures'] is None


def test_published_number_only_for_the_protocol_as_shipped(monkeypatch):
    from mmengine.config import Config
    tool = compare_tool(monkeypatch)
    cfg = Config.fromfile(
        str(REPO / 'configs/baselines/sclip_vitb16_voc21.py'))
    cfg.merge_from_dict({'model.clip.name': 'ov-eva-tiny'})
    assert tool.published_reference(cfg)['published'] == 59.63
    for change, note in [({
            'model.logit_scale': 100
    }, 'model.logit_scale'), ({
            'model.pamr': dict(num_iter=2)
    }, 'model.pamr'), ({
            'model.clip.variant': 'naclip'
    }, 'model.clip.variant')]:
        changed = cfg.copy()
        changed.merge_from_dict(change)
        got = tool.published_reference(changed)
        assert got['published'] is None and note in got['note']
    assert tool.published_reference(Config.fromfile(str(
        REPO / OVEVA)))['published'] is None
    clear = Config.fromfile(
        str(REPO / 'configs/baselines/clearclip_vitb16_voc21.py'))
    assert tool.published_reference(clear)['note'] == (
        'clearclip on voc21: no published number')


def test_failing_config_gets_an_error_row_and_the_rest_run(tmp_path):
    broken = tmp_path / 'broken_ade.py'
    broken.write_text(f'_base_ = [{str(REPO / OVEVA)!r}]\n'
                      'model = dict(classes=[])\n')
    proc, (_, rows), data = compare(
        tmp_path, broken, NACLIP, options=[ONE_IMAGE], check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert [r['config'] for r in rows] == ['broken_ade', 'naclip_vitb16_ade']
    assert 'no class names' in rows[0]['mIoU']
    assert rows[0]['mAcc'] == rows[0]['aAcc'] == ''
    assert 'FAILED' in proc.stdout and '[2/2]' in proc.stdout
    assert float(rows[1]['mIoU']) == round(
        run_metrics(tmp_path, 'naclip_vitb16_ade')['mIoU'], 2)
    assert 'no class names' in data['rows'][0]['error']
    assert data['rows'][1]['error'] is None


def test_mllm_tokens_from_a_loopback_server(tmp_path):
    key = 'sk-test'
    with FakeOpenAIServer() as server:
        proc, (_, rows), data = compare(
            tmp_path,
            OVEVA,
            options=[
                ONE_IMAGE, 'model.vocabulary.type=OpenAIVocabulary',
                f'model.vocabulary.base_url={server.base_url}',
                f'model.vocabulary.cache_file={tmp_path / "vocab.sqlite"}'
            ],
            env=dict(OPENAI_API_KEY=key))
        requests = list(server.requests)
    assert len(requests) == 3  # 1 image x (perceive + 2 expand rounds)
    assert all(r['outcome'] == 'good' for r in requests)
    # usage as the server computes it in _respond
    expected = 0
    for record in requests:
        prompt = _prompt_text(record['body'])
        expected += len(prompt) // 4 + 85 + len(good_answer(prompt)) // 4
    (row, ) = rows
    assert row['vocabulary source'] == 'OpenAIVocabulary (gpt-4o)'
    assert int(row['MLLM tokens**']) == expected > 0
    assert data['rows'][0]['tokens'] == expected
    assert data['rows'][0]['requests'] == 3
    assert 0 <= float(row['mIoU']) <= 100
    for path in (tmp_path / 'table.md', tmp_path / 'table.json'):
        assert key not in path.read_text(), path
    assert key not in proc.stdout + proc.stderr


def test_saved_predictions_keep_wide_labels(tmp_path):
    """SavePredictionsHook beyond 255 classes (ADE20K-847): uint16 PNGs,
    class indices and the ignore index as they are, named by the image's
    path under the image folder."""
    from types import SimpleNamespace

    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from ov_eva.figures import read_index, read_label
    from ov_eva.hooks import SavePredictionsHook
    dataset = SimpleNamespace(
        data_prefix=dict(img_path='/data/images'),
        metainfo=dict(classes=[f'class {k}' for k in range(847)]))
    runner = SimpleNamespace(
        test_dataloader=SimpleNamespace(dataset=dataset),
        test_evaluator=SimpleNamespace(
            metrics=[SimpleNamespace(ignore_index=65535)]))
    pred = torch.tensor([[0, 300], [846, 5]])
    gt = torch.tensor([[0, 300], [65535, 5]])
    sample = SegDataSample(
        pred_sem_seg=PixelData(data=pred[None]),
        gt_sem_seg=PixelData(data=gt[None]))
    sample.set_metainfo(dict(img_path='/data/images/sub/a.jpg'))
    hook = SavePredictionsHook(str(tmp_path))
    hook.before_test(runner)
    hook.after_test_iter(runner, 0, outputs=[sample])
    hook.after_test_epoch(runner)
    for sub, expected in (('pred', pred), ('gt', gt)):
        label = read_label(tmp_path / sub / 'sub__a.png')
        assert label.dtype == np.uint16
        assert (label == expected.numpy()).all()
    index = read_index(tmp_path)
    assert index['ignore_index'] == 65535 and len(index['classes']) == 847
    assert index['images'] == [
        dict(name='sub__a', image='/data/images/sub/'
             'a.jpg')
    ]
