"""Bad and odd input through the real entry points, as users meet it: broken
and unusual image files and extreme class lists through tools/demo.py, and a
corrupt dataset image through tools/test.py (mmseg's loader), on the tiny
random CLIP. Each case ends in a correct result or a clear error that names
the file, never in a crash of the whole run."""
import json
import re
import shutil
import stat

import cv2
import numpy as np
import pytest
from conftest import (TINY, demo_outputs, overlay_outlines, run_cli, run_demo,
                      shared_data)
from PIL import Image

ADE_IMAGE = 'images/validation/ADE_val_00000001.jpg'
CORRUPT_ADE = 'images/validation/ADE_val_00000002.jpg'
CLASSES = ['wall', 'floor', 'sky']
# decodable, if unusual: each must give a label PNG of its own size
GOOD = [
    'gray.png', 'rgba.png', 'deep16.png', 'palette.png', 'one.png',
    'eight.png', 'normal.jpg', '写真 café.png'
]
BAD = ['random.jpg', 'text.png']  # not images: named and skipped
TRUNCATED = 'truncated.jpg'  # either, but never a crash


def write_odd_images(folder):
    """Write the test images; {name: expected RGB pixels} of the good ones
    (None where only the size is known: a real JPEG)."""
    rng = np.random.default_rng(0)
    ade = shared_data('ADEChallengeData2016') / ADE_IMAGE
    data = ade.read_bytes()
    (folder / TRUNCATED).write_bytes(data[:len(data) // 2])
    (folder / 'random.jpg').write_bytes(rng.bytes(4096))
    (folder / 'text.png').write_text('a note, not a picture\n')

    expected = {}
    gray = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    Image.fromarray(gray, 'L').save(folder / 'gray.png')
    expected['gray.png'] = np.repeat(gray[..., None], 3, axis=2)
    rgba = rng.integers(0, 256, (41, 29, 4), dtype=np.uint8)
    Image.fromarray(rgba, 'RGBA').save(folder / 'rgba.png')
    expected['rgba.png'] = rgba[..., :3]  # alpha dropped, not composited
    deep = rng.integers(0, 65536, (33, 47, 3), dtype=np.uint16)
    assert cv2.imwrite(str(folder / 'deep16.png'), deep)  # BGR, 16 bit
    expected['deep16.png'] = (deep[..., ::-1] // 256).astype(np.uint8)
    indices = rng.integers(0, 16, (31, 43), dtype=np.uint8)
    palette = Image.fromarray(indices, 'P')
    colours = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    palette.putpalette(colours.ravel().tolist())
    palette.save(folder / 'palette.png')
    expected['palette.png'] = colours[indices]
    for name, shape in [('one.png', (1, 1, 3)), ('eight.png', (8, 8, 3)),
                        ('写真 café.png', (12, 10, 3))]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
        expected[name] = pixels
    shutil.copy(ade, folder / 'normal.jpg')
    expected['normal.jpg'] = None
    return expected


@pytest.fixture(scope='module')
def odd_run(tmp_path_factory):
    """One demo run (one model build) over a folder of good, odd and broken
    image files."""
    root = tmp_path_factory.mktemp('odd_images')
    folder = root / 'photos'
    folder.mkdir()
    expected = write_odd_images(folder)
    out = root / 'out'
    proc = run_demo(folder, '--classes', *CLASSES, '--out', out, check=False)
    return proc, folder, out, expected


@pytest.mark.parametrize('name', GOOD)
def test_unusual_images_are_segmented_at_their_own_size(odd_run, name):
    proc, folder, out, expected = odd_run
    path = folder / name
    overlay_file, label_file, record_file = demo_outputs(out / path.stem)
    assert label_file.is_file(), (proc.stdout[-2000:], proc.stderr[-3000:])
    assert f'{path} -> {overlay_file} (' in proc.stdout
    pixels = expected[name]
    if pixels is None:
        with Image.open(path) as picture:
            height, width = picture.height, picture.width
    else:
        height, width = pixels.shape[:2]
    with Image.open(label_file) as picture:
        label = np.asarray(picture)
    assert label.dtype == np.uint8 and label.shape == (height, width)
    assert label.max() < len(CLASSES)
    record = json.loads(record_file.read_text())
    assert record['image'] == str(path)
    assert record['image_size'] == dict(width=width, height=height)
    assert sum(c['pixels'] for c in record['present']) == height * width
    with Image.open(overlay_file) as picture:
        overlay = np.asarray(picture.convert('RGB')).astype(float)
    assert overlay.shape[0] >= height and overlay.shape[1] > width
    if pixels is not None:  # decoded as the pixels written, then blended
        colours = np.array([c['color'] for c in record['classes']])
        blend = 0.5 * pixels + 0.5 * colours[label]
        inside = ~overlay_outlines(label)  # outlines: the class colour
        assert np.abs(overlay[:height, :width] - blend)[inside].max() <= 1


@pytest.mark.parametrize('name', BAD)
def test_undecodable_files_are_named_and_skipped(odd_run, name):
    proc, folder, out, _ = odd_run
    path = folder / name
    assert re.search(
        rf'error: {re.escape(str(path))}: not a decodable image \(.+\); '
        'skipped', proc.stderr), proc.stderr[-3000:]
    assert not list(out.glob(f'{path.stem}*'))


def test_truncated_jpeg_gives_a_result_or_a_named_error(odd_run):
    proc, folder, out, _ = odd_run
    path = folder / TRUNCATED
    overlay_file, label_file, record_file = demo_outputs(out / path.stem)
    if label_file.is_file():  # decoded partially: the full size
        ade = shared_data('ADEChallengeData2016') / ADE_IMAGE
        with Image.open(ade) as picture, Image.open(label_file) as label:
            assert label.size == picture.size
        assert overlay_file.is_file() and record_file.is_file()
    else:
        assert f'error: {path}: not a decodable image' in proc.stderr
        assert not list(out.glob(f'{path.stem}*'))


def test_folder_run_survives_and_counts_the_failures(odd_run):
    proc, folder, out, _ = odd_run
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    truncated_ok = (out / 'truncated_label.png').is_file()
    ok = len(GOOD) + truncated_ok
    failed = len(BAD) + (not truncated_ok)
    total = len(GOOD) + len(BAD) + 1
    assert f'{total} image(s), 3 classes' in proc.stdout
    assert f'{ok} ok, {failed} failed, of {total} image(s)' in proc.stdout
    assert len([p for p in out.rglob('*') if p.is_file()]) == 3 * ok


def test_unicode_and_very_long_class_names(tmp_path):
    image = tmp_path / 'small.png'
    pixels = np.random.default_rng(1).integers(0, 256, (16, 24, 3))
    Image.fromarray(pixels.astype(np.uint8)).save(image)
    long_name = ' '.join(f'word{i:03d}' for i in range(60))[:300].strip()
    assert len(long_name) == 300  # beyond CLIP's 77 tokens: truncated
    classes = ['日本庭園', 'café table', long_name]
    out = tmp_path / 'out'
    proc = run_demo(image, '--classes', *classes, '--out', out)
    assert '1 ok, 0 failed' in proc.stdout
    _, label_file, record_file = demo_outputs(out / 'small')
    with Image.open(label_file) as picture:
        label = np.asarray(picture)
    assert label.shape == (16, 24) and label.max() < 3
    record = json.loads(record_file.read_text(encoding='utf-8'))
    assert [c['name'] for c in record['classes']] == classes
    assert [c['synonyms'] for c in record['classes']] == [[c] for c in classes]
    names = {c['index']: c['name'] for c in record['present']}
    assert names == {k: classes[k] for k in np.unique(label).tolist()}


def test_a_thousand_classes_give_a_uint16_label(tmp_path):
    image = tmp_path / 'small.png'
    pixels = np.random.default_rng(2).integers(0, 256, (12, 20, 3))
    Image.fromarray(pixels.astype(np.uint8)).save(image)
    classes = [f'class_{k:04d}' for k in range(1, 1001)]
    class_file = tmp_path / 'classes.txt'
    class_file.write_text('\n'.join(classes) + '\n')
    out = tmp_path / 'out'
    # one template: 1,000 prompts to encode, not 80,000
    proc = run_demo(
        image,
        '--class-file',
        class_file,
        '--out',
        out,
        options=['model.templates=single'])
    assert '1 image(s), 1000 classes' in proc.stdout
    assert '1 ok, 0 failed' in proc.stdout
    _, label_file, record_file = demo_outputs(out / 'small')
    with Image.open(label_file) as picture:
        label = np.asarray(picture)
    assert label.dtype == np.uint16 and label.shape == (12, 20)
    assert label.max() < 1000
    record = json.loads(record_file.read_text())
    assert [c['name'] for c in record['classes']] == classes
    assert [c['index'] for c in record['classes']] == list(range(1000))
    colours = {tuple(c['color']) for c in record['classes']}
    assert len(colours) == 1000  # every class its own colour
    present = {c['index']: c['name'] for c in record['present']}
    assert present == {k: classes[k] for k in np.unique(label).tolist()}


def test_corrupt_dataset_image_stops_before_the_runner(tmp_path):
    """tools/test.py on a copy of the ADE samples with one image replaced by
    random bytes: one error line naming the file, before the Runner's log
    (the data check; tests/test_user_mistakes.py covers the options)."""
    data = tmp_path / 'ADEChallengeData2016'
    shutil.copytree(shared_data('ADEChallengeData2016'), data)
    for path in [data, *data.rglob('*')]:  # the samples are read-only
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    corrupt = data / CORRUPT_ADE
    corrupt.write_bytes(np.random.default_rng(3).bytes(4096))
    proc = run_cli(
        'tools/test.py',
        'configs/oveva_vitb16_ade.py',
        '--work-dir',
        tmp_path / 'work',
        '--cfg-options',
        *TINY,
        f'test_dataloader.dataset.data_root={data}',
        timeout=300,
        check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith('error: '), errors
    assert str(corrupt) in errors[0] and '--skip-corrupt' in errors[0]
    assert 'Environment' not in proc.stdout  # nothing of the Runner yet


def test_vocabulary_prefetch_gives_a_clear_reason(tmp_path):
    """The prefetch hook on a dataset holding an undecodable file (as with
    --skip-corrupt off in a custom loop): one summary line, the file named
    with a reason a user reads, no OpenCV internals."""
    from types import SimpleNamespace

    from ov_eva.apis import image_config, init_model
    from ov_eva.hooks import VocabularyPrefetchHook
    good = str(shared_data('ADEChallengeData2016') / ADE_IMAGE)
    corrupt = tmp_path / 'broken.jpg'
    corrupt.write_bytes(np.random.default_rng(3).bytes(4096))
    cfg = image_config(
        'configs/oveva_vitb16_ade.py',
        classes=[['wall'], ['floor'], ['sky']],
        vocabulary='lexicon',
        cfg_options={
            'model.clip.name': 'ov-eva-tiny',
            'model.clip.pretrained': None
        })
    model = init_model(cfg, 'cpu')
    runner = SimpleNamespace(
        model=model,
        test_dataloader=SimpleNamespace(
            dataset=_Listed([good, str(corrupt), good])))
    hook = VocabularyPrefetchHook()
    hook.before_test(runner)
    line = hook.summary.format()
    assert 'vocabulary prefetch: 3 images' in line
    assert '1 failed (class names only)' in line
    head = f"VocabularyFailure: cannot read image '{corrupt}"
    assert head in line
    # the summary may cut the reason short: compare what it kept
    reason, clear = line.split(head, 1)[1], "': not a decodable image"
    assert reason[:len(clear)] == clear[:len(reason)], reason
    assert 'OpenCV' not in line


class _Listed:
    """A dataset as the hook reads it: a length and image paths."""

    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def get_data_info(self, index):
        return dict(img_path=self.paths[index])


# Linux copies a process's RSS high-water mark into its child at fork/exec,
# so a tool started from pytest would report pytest's own peak (GBs after
# many tests) when larger than its own. This small starter process, with a
# fresh address space, starts the tool and reports the tool's peak alone.
PEAK_STARTER = """
import os, subprocess, sys
with subprocess.Popen(sys.argv[2:]) as proc:
    _, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], 'w') as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(*args):
    """Run a tool like ``run_cli``; also return its own peak RSS in GiB."""
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from conftest import REPO
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env['PATH'] = str(Path(sys.executable).parent) + os.pathsep + env['PATH']
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / 'peak'
        proc = subprocess.run(
            [sys.executable, '-c', PEAK_STARTER, peak_file, sys.executable,
             *map(str, args)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True)
        assert proc.returncode == 0, proc.stdout[-5000:]
        return proc.stdout, int(peak_file.read_text()) / 2**20


@pytest.fixture(scope='module')
def huge_photo(tmp_path_factory):
    """A 3000 x 4000 photo, a phone's 12 megapixels (and its label), in
    ADE20K's folder layout. With 150 classes, mmseg's full-resolution
    logits alone would be 7.2 GB."""
    root = tmp_path_factory.mktemp('huge')
    rng = np.random.default_rng(4)
    small = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    image = root / 'images' / 'validation' / 'huge.jpg'
    label = root / 'annotations' / 'validation' / 'huge.png'
    image.parent.mkdir(parents=True)
    label.parent.mkdir(parents=True)
    cv2.imwrite(str(image), cv2.resize(small, (4000, 3000)))
    labels = rng.integers(0, 151, (60, 80), dtype=np.uint8)
    cv2.imwrite(
        str(label),
        cv2.resize(labels, (4000, 3000), interpolation=cv2.INTER_NEAREST))
    return root, image


def test_huge_photo_through_the_demo_keeps_memory_bounded(
        huge_photo, tmp_path):
    _, image = huge_photo
    output, peak = run_measured('tools/demo.py', image, '--class-file',
                                'ade20k', '--out', tmp_path, '--device', 'cpu',
                                '--cfg-options', *TINY)
    assert '1 ok, 0 failed' in output or '-> ' in output, output[-3000:]
    with Image.open(tmp_path / 'huge_label.png') as picture:
        assert picture.size == (4000, 3000)
    print(f'demo on a 3000x4000 photo, 150 classes: peak RSS {peak:.2f} GiB')
    assert peak < 2.5, f'peak RSS {peak:.2f} GiB'


def test_huge_photo_through_the_dataset_loader_keeps_memory_bounded(
        huge_photo, tmp_path):
    root, _ = huge_photo
    output, peak = run_measured('tools/test.py', 'configs/oveva_vitb16_ade.py',
                                '--work-dir', tmp_path, '--cfg-options', *TINY,
                                f'test_dataloader.dataset.data_root={root}')
    assert re.search(r'mIoU: \d', output), output[-3000:]
    print(f'tools/test.py on a 3000x4000 photo: peak RSS {peak:.2f} GiB')
    # image, label and prediction at full size, each copied by the loader
    # and mmseg's IoUMetric (int64: 0.09 GiB a copy), but nothing of K x H x W
    assert peak < 2.5, f'peak RSS {peak:.2f} GiB'


def test_unusual_images_through_the_dataset_loader(tmp_path):
    """Grayscale, RGBA, 16-bit, palette, 8x8 and unicode-named images
    as an ADE20K-layout dataset through tools/test.py (mmcv's loader and
    mmseg's pipeline): every one is scored against a label of its size."""
    images = tmp_path / 'data' / 'images' / 'validation'
    labels = tmp_path / 'data' / 'annotations' / 'validation'
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    expected = write_odd_images(images)
    for path in images.iterdir():  # the undecodable ones are tested above
        # one.png: mmseg's LoadAnnotations squeezes a 1x1 label to a scalar
        # and fails; a 1x1 image is tested through the demo only
        if path.name not in expected or path.suffix != '.png' or \
                path.name == 'one.png':
            path.unlink()
    rng = np.random.default_rng(5)
    for path in images.iterdir():
        height, width = expected[path.name].shape[:2]
        label = rng.integers(1, 151, (height, width), dtype=np.uint8)
        Image.fromarray(label).save(labels / path.name)
    count = len(list(images.iterdir()))
    proc = run_cli(
        'tools/test.py',
        'configs/oveva_vitb16_ade.py',
        '--work-dir',
        tmp_path / 'work',
        '--cfg-options',
        *TINY,
        f'test_dataloader.dataset.data_root={tmp_path / "data"}',
        'test_dataloader.dataset.img_suffix=.png',
        timeout=300)
    assert count == 6
    assert f'Iter(test) [{count}/{count}]' in proc.stdout + proc.stderr
    assert re.search(r'mIoU: \d', proc.stdout + proc.stderr)
