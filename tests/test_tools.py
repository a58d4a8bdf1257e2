"""End to end as users run it: tools/test.py and mim test, through the real
Runner, mmseg loaders and IoUMetric, on the real samples in ../shared/data."""
import json
import re
import sys
import time
from pathlib import Path

import pytest
from conftest import NO_PAMR, TINY, run_cli, shared_data

ADE = ('configs/oveva_vitb16_ade.py', 'ADEChallengeData2016', 3)
VOC = ('configs/oveva_vitb16_voc21.py', 'VOCdevkit/VOC2012', 14)
CITY = ('configs/oveva_vitb16_cityscapes.py', 'cityscapes', 1)


def metrics(work_dir: Path) -> dict:
    """The metrics mmengine's Runner dumped for the (only) test run."""
    files = sorted(work_dir.glob('*/*.json'))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def evaluate(config, data, work_dir, *extra, options=()):
    run_cli('tools/test.py', config, '--work-dir', work_dir, *extra,
            '--cfg-options', *TINY,
            f'test_dataloader.dataset.data_root={shared_data(data)}', *options)
    return metrics(work_dir)


@pytest.mark.parametrize('config,data,count', [ADE, VOC, CITY])
def test_tools_test_on_real_samples(tmp_path, config, data, count):
    result = evaluate(config, data, tmp_path / 'work', '--show-dir',
                      tmp_path / 'show')
    assert {'aAcc', 'mIoU', 'mAcc'} <= set(result)
    # random tiny weights: the numbers only have to be well-formed
    assert 0 <= result['mIoU'] <= 100 and 0 <= result['aAcc'] <= 100
    pictures = sorted((tmp_path / 'show').rglob('*.png'))
    assert len(pictures) == count
    # one picture per image, named after it, in the folder given
    assert all(p.parent == tmp_path / 'show' for p in pictures)
    for picture in pictures:
        assert not re.search(r'\.jpg|^test_|\.png_\d+', picture.name)
    assert not (tmp_path / 'show' / 'vis_data').exists()
    from PIL import Image
    with Image.open(pictures[0]) as picture:  # ground truth | prediction
        assert picture.width >= 2 * picture.height * 0.5


def test_batch_of_two_and_tta_through_runner(tmp_path):
    config, data, _ = VOC
    one = evaluate(config, data, tmp_path / 'b1', options=[NO_PAMR])
    two = evaluate(
        config,
        data,
        tmp_path / 'b2',
        options=['test_dataloader.batch_size=2', NO_PAMR])
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert two[key] == pytest.approx(one[key], abs=0.02)
    tta = evaluate(config, data, tmp_path / 'tta', '--tta', options=[NO_PAMR])
    assert {'aAcc', 'mIoU'} <= set(tta) and tta != one


def predictions(folder: Path) -> dict:
    """The label maps ``tools/test.py --out`` wrote, by file name."""
    import numpy as np
    from PIL import Image
    files = sorted(folder.rglob('*.png'))
    assert files, f'no predictions in {folder}'
    return {f.name: np.asarray(Image.open(f)) for f in files}


def test_pamr_from_its_config_and_from_the_command_line(tmp_path):
    """The no-PAMR ablation config, and PAMR switched off by --cfg-options
    in a config with it (NACLIP's protocol), predict the same labels, which
    differ from PAMR on."""
    config, data, count = ADE
    runs = {
        'ablation': ('configs/ablations/oveva_vitb16_ade_4_no_pamr.py',
                     ['model.vocabulary=lexicon']),
        'switched_off': (config, ['model.pamr=None']),
        'on': (config, ['model.pamr.num_iter=2']),
    }
    labels = {}
    for name, (path, options) in runs.items():
        evaluate(
            path,
            data,
            tmp_path / name,
            '--out',
            tmp_path / f'{name}_out',
            options=options)
        labels[name] = predictions(tmp_path / f'{name}_out')
        assert len(labels[name]) == count
    for image, off in labels['switched_off'].items():
        assert (off == labels['ablation'][image]).all()
    assert any((off != labels['on'][image]).any()
               for image, off in labels['switched_off'].items())


def test_mim_test_with_exported_checkpoint(tmp_path):
    config, data, _ = ADE
    ckpt = tmp_path / 'ov_eva_tiny.pth'
    out = run_cli('tools/export_checkpoint.py', config, ckpt, '--cfg-options',
                  *TINY)
    assert ckpt.is_file() and 'wrote' in out.stdout
    root = f'test_dataloader.dataset.data_root={shared_data(data)}'
    run_cli('mim', 'test', 'mmseg', config, '--checkpoint', ckpt, '--work-dir',
            tmp_path / 'mim', '--cfg-options', *TINY, root, NO_PAMR)
    by_mim = metrics(tmp_path / 'mim')
    # the same checkpoint through our tool, and the seeded build without it
    own = evaluate(
        config,
        data,
        tmp_path / 'own',
        '--checkpoint',
        ckpt,
        options=[NO_PAMR])
    seeded = evaluate(config, data, tmp_path / 'seeded', options=[NO_PAMR])
    for key in ('aAcc', 'mIoU', 'mAcc'):
        assert by_mim[key] == own[key] == seeded[key]


def error_lines(proc):
    """The lines a user reads about a failure: stderr without mmengine's
    log lines."""
    return [
        line for line in proc.stderr.splitlines()
        if line.strip() and not re.match(r'^\d\d/\d\d \d\d:', line)
        and 'import time:' not in line and 'Warning' not in line
        and not line.startswith(('  warnings.warn', 'WARNING'))
    ]


OFFLINE = {'HF_HUB_OFFLINE': '1'}
ADE_CONFIG = 'configs/oveva_vitb16_ade.py'
# mistakes caught before torch is imported: (command, expected message)
EARLY = [
    (['tools/test.py', 'configs/oveva_vitb16_ad.py'],
     "config 'configs/oveva_vitb16_ad.py' does not exist (did you mean "
     'configs/oveva_vitb16_ade.py'),
    (['tools/test.py', ADE_CONFIG, '--cfg-options', 'modle.classes=x'],
     "the config has no key 'modle' (did you mean model?)"),
    (['tools/test.py', ADE_CONFIG, '--checkpoint',
      'no.pth'], "--checkpoint 'no.pth' does not exist"),
    (['tools/demo.py', 'demo', '--classes', 'cat',
      'Cat'], "class 'cat' appears twice"),
    (['tools/demo.py', 'demo', '--classes', 'cat', ','], 'empty name'),
    (['tools/demo.py', 'demo', '--classes', 'cat'], 'only one class'),
    (['tools/app.py', '--config', 'configs/oveva_vitb16_ad.py'],
     "config 'configs/oveva_vitb16_ad.py' does not exist"),
    (['tools/demo.py', 'no_such_photo.jpg', '--classes', 'a',
      'b'], "'no_such_photo.jpg' does not exist"),
    (['tools/compare.py', ADE_CONFIG,
      'configs/baselines/naclip_vitb16_ad.py'], 'naclip_vitb16_ade.py'),
    (['tools/export_checkpoint.py', 'nope.py',
      'x.pth'], "config 'nope.py' does not exist"),
    ([
        'tools/build_vocabulary.py', '--images', 'demo', '--class-file',
        'no_such_classes.txt'
    ], "cannot read class file 'no_such_classes.txt'"),
]


@pytest.mark.parametrize('command,message', EARLY)
def test_mistakes_answer_in_one_line_before_torch(command, message):
    proc = run_cli(sys.executable, '-X', 'importtime', *command, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith('error: '), lines
    assert message in lines[0]
    imported = re.findall(r'\|\s+(\S+)$', proc.stderr, re.M)
    assert 'torch' not in imported and 'ov_eva' not in imported


# mistakes found when the model is built: one line all the same
LATE = [
    (['model.clip.varient=sclip'],
     "model.clip.varient: DenseCLIPEncoder has no setting 'varient' (did "
     'you mean variant?)'),
    (['model.clip.variant=sclipp'],
     "unknown model.clip.variant 'sclipp' (did you mean 'sclip'?)"),
    (['model.type=OVEVASegmentorr'],
     "type 'OVEVASegmentorr' is not registered in mmseg::model (did you mean"
     ' OVEVASegmentor?)'),
    (['model.classes=[]'], 'model.classes: no class names'),
]


@pytest.mark.parametrize('options,message', LATE)
def test_setting_mistakes_answer_in_one_line(tmp_path, options, message):
    proc = run_cli(
        'tools/test.py',
        ADE_CONFIG,
        '--work-dir',
        tmp_path,
        '--cfg-options',
        *TINY,
        *options,
        check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith('error: '), lines
    assert message in lines[0]


def test_clear_errors_from_the_command_line(tmp_path):
    config, data, _ = ADE
    root = f'test_dataloader.dataset.data_root={shared_data(data)}'
    bad = run_cli(
        'tools/test.py',
        config,
        '--work-dir',
        tmp_path / 'a',
        '--cfg-options',
        *TINY,
        root,
        f'model.classes={tmp_path / "missing.txt"}',
        check=False)
    assert bad.returncode == 2
    assert 'cannot read class file' in bad.stderr
    assert 'missing.txt' in bad.stderr
    assert 'Traceback' not in bad.stderr
    debug = run_cli(
        'tools/test.py',
        config,
        '--work-dir',
        tmp_path / 'a',
        '--debug',
        '--cfg-options',
        *TINY,
        root,
        f'model.classes={tmp_path / "missing.txt"}',
        check=False)
    assert 'Traceback' in debug.stderr and 'missing.txt' in debug.stderr

    start = time.monotonic()
    offline = run_cli(
        'tools/test.py',
        config,
        '--work-dir',
        tmp_path / 'b',
        '--cfg-options',
        root,
        check=False,
        env=OFFLINE)
    assert offline.returncode == 2
    assert time.monotonic() - start < 60
    lines = error_lines(offline)
    assert len(lines) == 1, lines
    assert "'ViT-B-16'" in lines[0] and "'openai'" in lines[0]
    assert 'local weights file' in lines[0]


def test_mim_test_offline_from_a_checkpoint_alone(tmp_path):
    """A checkpoint holding the CLIP weights is all `mim test` needs: the
    config names the 'openai' tag, which is not cached, and the hub is
    off. (Random ViT-B/16 weights stand in for OpenAI's.)"""
    import torch
    config = 'configs/baselines/naclip_vitb16_cityscapes.py'
    ckpt = tmp_path / 'vitb16.pth'
    run_cli('tools/export_checkpoint.py', config, ckpt, '--cfg-options',
            'model.clip.pretrained=None')
    meta = torch.load(ckpt, map_location='cpu', weights_only=True)['meta']
    assert 'needs neither the pretrained tag' in meta['holds']
    assert meta['clip']['name'] == 'ViT-B-16'
    assert meta['clip']['weights_fingerprint']
    offline = dict(
        HF_HUB_OFFLINE='1',
        HF_HOME=str(tmp_path / 'empty_hub'),
        XDG_CACHE_HOME=str(tmp_path / 'empty_cache'))
    root = f'test_dataloader.dataset.data_root={shared_data("cityscapes")}'
    fast = ['model.templates=single', NO_PAMR]
    run_cli(
        'mim',
        'test',
        'mmseg',
        config,
        '--checkpoint',
        ckpt,
        '--work-dir',
        tmp_path / 'mim',
        '--cfg-options',
        root,
        *fast,
        env=offline)
    assert 0 <= metrics(tmp_path / 'mim')['mIoU'] <= 100
    # without the checkpoint the same run stops at once, saying what to do
    failed = run_cli(
        'tools/test.py',
        config,
        '--work-dir',
        tmp_path / 'own',
        '--cfg-options',
        root,
        *fast,
        env=offline,
        check=False)
    assert failed.returncode != 0
    assert 'not in the local cache' in failed.stderr + failed.stdout


@pytest.mark.parametrize('tool', [
    'tools/test.py', 'tools/demo.py', 'tools/compare.py',
    'tools/build_vocabulary.py', 'tools/export_checkpoint.py',
    'tools/vocabulary_cost.py', 'tools/app.py'
])
def test_help_imports_no_torch_and_keeps_its_examples(tool):
    proc = run_cli(sys.executable, '-X', 'importtime', tool, '--help')
    imported = re.findall(r'\|\s+(\S+)$', proc.stderr, re.M)
    assert 'torch' not in imported and 'ov_eva' not in imported
    assert '--debug' in proc.stdout
    # examples keep their line continuations (a plain docstring would join
    # "... ade.py \<newline>        --cfg-options" into one line)
    for line in proc.stdout.splitlines():
        assert not re.search(r'\S {5,}--', line), line


def test_random_weights_are_said_once(tmp_path):
    proc = run_cli('tools/demo.py', 'demo/cat.jpg', '--classes', 'cat', 'dog',
                   '--out', tmp_path, '--device', 'cpu', '--cfg-options',
                   *TINY)
    log = proc.stdout + proc.stderr
    assert log.count('random weights') == 1
    assert 'No pretrained weights loaded' not in log  # open_clip's own


def test_build_vocabulary_help_names_every_short_source(monkeypatch):
    """Its --help lists the sources without importing them (no torch):
    the list must stay the registry's."""
    import importlib.util

    from ov_eva.registry import VOCABULARY_SHORT_NAMES
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / 'tools'))
    spec = importlib.util.spec_from_file_location(
        'build_vocabulary_tool',
        Path(__file__).parents[1] / 'tools' / 'build_vocabulary.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert set(tool.SOURCES.split(', ')) == set(VOCABULARY_SHORT_NAMES)
