"""A newcomer's mistakes with their own data, through the real entry points
(tools/test.py, mim test, tools/demo.py, the page): each ends in one
``error:`` line naming the input and the fix, exit status 2, before any
metric table; or, where the config declares it, a run that says what it
left out."""
import json
import sys

import numpy as np
import pytest
from conftest import NO_PAMR, REPO, TINY, run_cli
from PIL import Image

TEMPLATE = 'configs/custom/oveva_vitb16_my_dataset.py'
SHAPE = (48, 64)


def write_dataset(root, values=(0, 1, 2), count=3, suffix='.jpg'):
    """``count`` photos with labels: the top half ``values[0]``, the bottom
    half ``values[1]``, a corner block ``values[2]``; a class file naming
    the classes 0, 1, 2."""
    (root / 'images').mkdir(parents=True)
    (root / 'labels').mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        label = np.full(SHAPE, values[0], np.uint8)
        label[SHAPE[0] // 2:] = values[1]
        label[:8, :8 + 4 * i] = values[2]
        image = rng.integers(0, 256, SHAPE + (3, ), dtype=np.uint8)
        Image.fromarray(image).save(root / 'images' / f'photo_{i}{suffix}')
        Image.fromarray(label).save(root / 'labels' / f'photo_{i}.png')
    (root / 'classes.txt').write_text('sky\ngrass, lawn\ntree\n')
    return root


def dataset_options(root, *extra):
    """The template's settings 1-2 through --cfg-options (its top-level
    variables are consumed when the file is read)."""
    return [
        *TINY, NO_PAMR, f'test_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.class_file={root / "classes.txt"}',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False', *extra
    ]


def run_test(tmp_path, root, *extra, args=(), tool='tools/test.py'):
    return run_cli(
        tool,
        TEMPLATE,
        '--work-dir',
        tmp_path / 'work',
        *args,
        '--cfg-options',
        *dataset_options(root, *extra),
        check=False)


def assert_one_error(proc, *words):
    """Exit 2, one ``error:`` line naming ``words``, no traceback and no
    metric table."""
    log = proc.stdout + proc.stderr
    assert proc.returncode == 2, log[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), lines
    for word in words:
        assert word in lines[0], lines[0]
    # told before the Runner's environment and config dump
    assert 'System environment' not in proc.stdout
    return lines[0]


def metrics(work_dir) -> dict:
    """aAcc, mIoU and mAcc of the (only) run in ``work_dir``."""
    files = sorted(work_dir.glob('*/*.json'))
    assert len(files) == 1, files
    found = json.loads(files[0].read_text())
    return {key: found[key] for key in ('aAcc', 'mIoU', 'mAcc')}


# item 2: label values checked against the classes


def test_a_label_value_with_no_class_stops_the_run(tmp_path):
    """CamVid as 'my dataset': labels 0-2 plus its 'unlabelled' 3, a class
    file of three names."""
    root = write_dataset(tmp_path / 'data', values=(0, 3, 2))
    line = assert_one_error(
        run_test(tmp_path, root), 'label values outside the 3 classes', '3 (',
        'pixels in 3 files', 'photo_0.png', 'classes.txt', 'ignore_values=[3]')
    assert f'{SHAPE[0] // 2 * SHAPE[1] * 3:,} pixels' in line


def test_a_class_file_one_line_short_stops_the_run(tmp_path):
    root = write_dataset(tmp_path / 'data')
    (root / 'classes.txt').write_text('sky\ngrass\n')  # no line for 2
    assert_one_error(
        run_test(tmp_path, root), 'outside the 2 classes', '2 (',
        'photo_0.png, photo_1.png, photo_2.png'.replace(
            'photo', str(root / 'labels' / 'photo')))


def test_reduce_zero_label_is_applied_before_the_check(tmp_path):
    """Labels 1..3 with reduce_zero_label: classes 0..2, nothing stray;
    a 4 is reported as the 4 of the files."""
    root = write_dataset(tmp_path / 'data', values=(1, 2, 3))
    ok = run_test(tmp_path, root, 'test_dataloader.dataset.'
                  'reduce_zero_label=True')
    assert ok.returncode == 0, ok.stderr[-3000:]
    root = write_dataset(tmp_path / 'four', values=(1, 2, 4))
    assert_one_error(
        run_test(tmp_path, root,
                 'test_dataloader.dataset.reduce_zero_label=True'),
        'outside the 3 classes', ': 4 (', 'ignore_values=[4]')


def test_ignore_values_leave_the_unlabelled_value_unscored(tmp_path):
    """ignore_values=[3] scores as if the label PNGs held 255 there."""
    marked = write_dataset(tmp_path / 'marked', values=(0, 3, 2))
    proc = run_test(tmp_path / 'a', marked,
                    'test_dataloader.dataset.ignore_values=[3]')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'ignore_values: label values [3] mean "unlabelled"' in \
        proc.stdout + proc.stderr
    ignored = write_dataset(tmp_path / 'ignored', values=(0, 255, 2))
    reference = run_test(tmp_path / 'b', ignored)
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert metrics(tmp_path / 'a' / 'work') == pytest.approx(
        metrics(tmp_path / 'b' / 'work'))


def mim_test_errors(tmp_path, root, *extra):
    """``mim test`` of the template on ``root`` with a tiny checkpoint: the
    ``error:`` lines of mmseg's tools/test.py, which must exit with 2
    (mim then adds its own CalledProcessError traceback, naming that
    status)."""
    ckpt = tmp_path / 'tiny.pth'
    run_cli('tools/export_checkpoint.py', TEMPLATE, ckpt, '--cfg-options',
            *TINY)
    proc = run_cli(
        'mim',
        'test',
        'mmseg',
        TEMPLATE,
        '--checkpoint',
        ckpt,
        '--work-dir',
        tmp_path / 'work',
        '--cfg-options',
        *dataset_options(root, *extra),
        check=False)
    assert proc.returncode != 0
    assert 'non-zero exit status 2' in proc.stderr, proc.stderr[-3000:]
    assert 'per class results' not in proc.stdout
    assert 'data_checks.py' not in proc.stderr  # no traceback of ours
    return [ln for ln in proc.stderr.splitlines() if ln.startswith('error: ')]


def test_mim_test_stops_on_a_stray_label_with_one_line(tmp_path):
    root = write_dataset(tmp_path / 'data', values=(0, 3, 2))
    lines = mim_test_errors(tmp_path, root)
    assert len(lines) == 1 and 'ignore_values=[3]' in lines[0], lines


# item 4: datasets that find nothing, or a corrupt image


def test_a_wrong_image_suffix_names_what_the_folder_holds(tmp_path):
    root = write_dataset(tmp_path / 'data', suffix='.png')
    line = assert_one_error(
        run_test(tmp_path, root), f'{root / "images"}', "'.jpg'",
        "found 3 .png files: set img_suffix='.png'")
    assert 'concatenate' not in line
    # one of mmseg's own datasets (ADE20KDataset) through tools/test.py
    ade = tmp_path / 'ade' / 'images' / 'validation'
    ade.mkdir(parents=True)
    for i in range(2):
        Image.new('RGB', (8, 8)).save(ade / f'ADE_val_{i}.png')
    proc = run_cli(
        'tools/test.py',
        'configs/oveva_vitb16_ade.py',
        '--work-dir',
        tmp_path / 'work',
        '--cfg-options',
        *TINY,
        f'test_dataloader.dataset.data_root={tmp_path / "ade"}',
        check=False)
    assert_one_error(proc, f"under {ade}: found 2 .png files")


def test_an_empty_or_missing_image_folder(tmp_path):
    root = write_dataset(tmp_path / 'data', count=0)
    assert_one_error(
        run_test(tmp_path, root), str(root / 'images'), 'it is empty')
    missing = f'test_dataloader.dataset.data_root={tmp_path / "nowhere"}'
    assert_one_error(
        run_test(tmp_path, root, missing),
        str(tmp_path / 'nowhere' / 'images'), 'does not exist')


def test_mim_test_on_a_wrong_suffix(tmp_path):
    root = write_dataset(tmp_path / 'data', suffix='.png')
    lines = mim_test_errors(tmp_path, root)
    assert len(lines) == 1, lines
    assert "found 3 .png files: set img_suffix='.png'" in lines[0]


def corrupt_one(root):
    """The second image cut to its first 200 bytes."""
    path = root / 'images' / 'photo_1.jpg'
    path.write_bytes(path.read_bytes()[:200])
    return path


def test_a_corrupt_image_stops_the_run_naming_it(tmp_path):
    root = write_dataset(tmp_path / 'data')
    bad = corrupt_one(root)
    assert_one_error(
        run_test(tmp_path, root), f'{bad} is not a readable image',
        '--skip-corrupt')


def test_mim_test_on_a_corrupt_image_in_a_worker(tmp_path):
    """mmseg's tools/test.py finds it during the evaluation, in a
    DataLoader worker: one line naming the file, not the worker's
    traceback."""
    root = write_dataset(tmp_path / 'data')
    bad = corrupt_one(root)
    lines = mim_test_errors(tmp_path, root, 'test_dataloader.num_workers=2')
    assert len(lines) == 1, lines
    assert f'{bad} is not a readable image' in lines[0]
    assert 'Traceback' not in lines[0] and 'worker' not in lines[0]


def test_skip_corrupt_leaves_it_out_and_says_so_after_the_table(tmp_path):
    root = write_dataset(tmp_path / 'data')
    bad = corrupt_one(root)
    proc = run_test(tmp_path, root, args=['--skip-corrupt'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    said = log.index(f'skip_corrupt: 1 file(s) left out, the metrics above '
                     f'are without them: {bad}')
    assert log.index('per class results') < said
    # the config key does the same
    keyed = run_test(tmp_path / 'key', root,
                     'test_dataloader.dataset.skip_corrupt=True')
    assert keyed.returncode == 0, keyed.stderr[-3000:]
    assert metrics(tmp_path / 'key' / 'work') == metrics(tmp_path / 'work')


# item 6: missing weights said once


def test_demo_without_weights_offline_says_it_once(tmp_path):
    offline = dict(
        HF_HUB_OFFLINE='1',
        HF_HOME=str(tmp_path / 'empty_hub'),
        XDG_CACHE_HOME=str(tmp_path / 'empty_cache'))
    proc = run_cli(
        'tools/demo.py',
        REPO / 'demo',  # three photos
        '--classes',
        'cat',
        'dog',
        '--out',
        tmp_path / 'out',
        '--device',
        'cpu',
        env=offline,
        check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stdout.strip() == ''  # the line is the first thing said
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), lines
    assert "'ViT-B-16'" in lines[0]
    assert 'model.clip.name=ov-eva-tiny model.clip.pretrained=None' in \
        lines[0]
    assert not (tmp_path / 'out').exists()


def test_page_without_weights_offline_says_it_once(tmp_path):
    offline = dict(
        HF_HUB_OFFLINE='1',
        HF_HOME=str(tmp_path / 'empty_hub'),
        XDG_CACHE_HOME=str(tmp_path / 'empty_cache'))
    proc = run_cli(
        'tools/app.py',
        '--port',
        '7991',
        env=offline,
        check=False,
        timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), lines
    assert 'model.clip.name=ov-eva-tiny' in lines[0]
    assert 'OV-EVA page on' not in proc.stdout  # never served


# item 7: the suite in a clone with nothing beside it


def test_tests_needing_samples_skip_naming_the_variable(tmp_path):
    proc = run_cli(
        sys.executable,
        '-m',
        'pytest',
        'tests/test_datasets.py',
        '-q',
        '-rs',
        '-k',
        'real_samples',
        '-p',
        'no:cacheprovider',
        env=dict(OV_EVA_SAMPLES=str(tmp_path / 'none')),
        check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'failed' not in proc.stdout and 'skipped' in proc.stdout
    assert 'set OV_EVA_SAMPLES to a folder holding ADEChallengeData2016/' \
        in proc.stdout
