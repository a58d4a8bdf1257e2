"""tools/demo.py end to end, as users run it: their own images, their own
class names, through the real command line (tiny random CLIP)."""
import json
import re
import shutil
import time

import numpy as np
import pytest
from conftest import demo_outputs, overlay_outlines, run_demo, shared_data
from PIL import Image

ADE_IMAGE = 'images/validation/ADE_val_00000001.jpg'


def test_one_image_with_the_default_lexicon_vocabulary(tmp_path):
    image = shared_data('ADEChallengeData2016') / ADE_IMAGE
    out = tmp_path / 'out'
    proc = run_demo(image, '--classes', 'wall', 'floor', 'sky, clouds',
                    'person', 'tree', '--out', out, '--compare', 'base')
    overlay_file, label_file, record_file = demo_outputs(out / image.stem)
    assert overlay_file.is_file() and label_file.is_file()
    with Image.open(image) as picture:
        rgb = np.asarray(picture.convert('RGB'))
    height, width = rgb.shape[:2]

    with Image.open(label_file) as picture:
        label = np.asarray(picture)
    assert label.dtype == np.uint8 and label.shape == (height, width)
    assert label.max() < 5

    record = json.loads(record_file.read_text())
    assert record['image'] == str(image)
    assert record['image_size'] == dict(width=width, height=height)
    names = [c['name'] for c in record['classes']]
    assert names == ['wall', 'floor', 'sky', 'person', 'tree']
    assert record['classes'][2]['synonyms'] == ['sky', 'clouds']
    present = record['present']
    assert {c['index'] for c in present} == set(np.unique(label).tolist())
    for row in present:
        assert row['pixels'] == int((label == row['index']).sum())
    assert sum(c['pixels'] for c in present) == height * width
    assert sum(c['share'] for c in present) == pytest.approx(100, abs=0.01)
    shares = [c['share'] for c in present]
    assert shares == sorted(shares, reverse=True)
    assert record['config'].endswith('configs/oveva_vitb16_ade.py')
    assert record['seconds'] > 0
    # the default vocabulary is the config's: the offline lexicon
    assert record['vocabulary_source'] == 'LexiconVocabulary'
    assert record['vocabulary']
    for row in record['vocabulary']:
        assert {'term', 'mapped_class', 'weight'} <= set(row)

    with Image.open(overlay_file) as picture:
        overlay = np.asarray(picture.convert('RGB'))
    assert overlay.shape[0] >= height and overlay.shape[1] > width
    # the image part: image and class colours blended half and half, each
    # region outlined in its colour; light colours (they lighten the photo)
    palette = np.array([c['color'] for c in record['classes']])
    expected = 0.5 * rgb + 0.5 * palette[label]
    edges = overlay_outlines(label)
    inside = ~edges
    assert np.abs(overlay[:height, :width][inside] -
                  expected[inside]).mean() < 3
    assert (overlay[:height, :width][edges] == palette[label][edges]).all()
    assert palette.max(1).min() >= 200 and palette.mean() > 150
    # the legend panel: a swatch for each class present, none for the rest
    assert len({tuple(c) for c in palette.tolist()}) == 5
    legend = overlay[:, width:]
    for k, colour in enumerate(palette):
        swatch = int(np.all(legend == colour, axis=-1).sum())
        if k in {c['index'] for c in present}:
            assert swatch >= 50, record['classes'][k]
        else:
            assert swatch == 0, record['classes'][k]

    assert f'{image} -> {overlay_file} (' in proc.stdout
    assert '1 ok, 0 failed' in proc.stdout
    check_compare_with_the_base(out / image.stem, label, proc.stdout)


def check_compare_with_the_base(prefix, label, stdout):
    """--compare base: the same config without its vocabulary segments the
    image again; a grid of image | base overlay | OV-EVA overlay, one legend,
    the pixels whose class changed outlined in magenta on the last panel."""
    record = json.loads(prefix.with_suffix('.json').read_text())
    compare = record['compare']
    assert compare['config'] == 'base'
    assert compare['vocabulary_source'] is None
    with Image.open(compare['outputs']['label']) as picture:
        base = np.asarray(picture)
    assert base.shape == label.shape and base.max() < 5
    changed = 100 * np.mean(base != label)
    assert compare['changed_share'] == pytest.approx(changed, abs=1e-3)
    assert 0 < changed < 100  # the vocabulary moved some pixels, not all
    assert f'({changed:.1f}% of the pixels changed class)' in stdout
    with Image.open(compare['outputs']['grid']) as picture:
        grid = np.asarray(picture.convert('RGB')).astype(int)
    height, width = label.shape
    assert grid.shape[1] == 3 * 320  # three panels 320 px wide
    assert grid.shape[0] > round(320 * height / width) + 44  # and a legend
    magenta = (grid[..., 0] > 200) & (grid[..., 2] > 200) & (grid[..., 1] < 90)
    base_panel, oveva_panel = (magenta[:, 320:640].sum(),
                               magenta[:, 640:].sum())
    assert oveva_panel > 100 and base_panel * 20 < oveva_panel


def test_folder_with_a_bad_file_and_no_vocabulary(tmp_path):
    voc = shared_data('VOCdevkit/VOC2012') / 'JPEGImages'
    first, second = sorted(voc.glob('*.jpg'))[:2]
    photos = tmp_path / 'photos'
    (photos / 'sub').mkdir(parents=True)
    shutil.copy(first, photos / first.name)
    shutil.copy(second, photos / 'sub' / second.name)
    (photos / 'bad.jpg').write_bytes(np.random.default_rng(0).bytes(4096))
    (photos / 'notes.txt').write_text('not an image\n')
    class_file = tmp_path / 'classes.txt'
    class_file.write_text('person\ncat, kitty\n\ngrass, lawn\nsky\n')
    out = tmp_path / 'out'
    proc = run_demo(
        photos,
        '--class-file',
        class_file,
        '--out',
        out,
        '--vocabulary',
        'none',
        check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]
    for prefix in (out / first.stem, out / 'sub' / second.stem):
        overlay_file, label_file, record_file = demo_outputs(prefix)
        assert overlay_file.is_file() and label_file.is_file()
        record = json.loads(record_file.read_text())
        assert record['vocabulary'] == []
        assert record['vocabulary_source'] is None
        assert record['classes'][1]['synonyms'] == ['cat', 'kitty']
    written = sorted(p.name for p in out.rglob('*') if p.is_file())
    assert len(written) == 6 and not any('bad' in n for n in written)
    assert not any('notes' in n for n in written)
    assert re.search(r'bad\.jpg: not a decodable image',
                     proc.stdout + proc.stderr)
    assert '2 ok, 1 failed, of 3 image(s)' in proc.stdout


@pytest.mark.parametrize(
    'args,message',
    [(['--classes', 'cat', 'Cat'], "class 'cat' appears twice"),
     (['--classes', 'cat'], 'only one class'),
     (['--classes', 'cat', 'dog,'], 'empty name'),
     (['--compare', 'base'], '--compare needs the same classes')])
def test_bad_classes_stop_before_the_model_is_built(tmp_path, args, message):
    image = shared_data('ADEChallengeData2016') / ADE_IMAGE
    proc = run_demo(image, *args, '--out', tmp_path, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and '--classes' in proc.stderr
    assert 'image(s)' not in proc.stdout  # no model was built
    assert not list(tmp_path.iterdir())


def test_missing_input_and_empty_folder_fail_fast(tmp_path):
    empty = tmp_path / 'empty'
    (empty / 'sub').mkdir(parents=True)
    (empty / 'sub' / 'readme.txt').write_text('no images here\n')
    for path, message in [(tmp_path / 'missing.jpg', 'does not exist'),
                          (empty, 'holds no images')]:
        start = time.perf_counter()
        proc = run_demo(path, '--classes', 'cat', 'dog', check=False)
        assert time.perf_counter() - start < 10
        assert proc.returncode == 2
        assert str(path) in proc.stderr and message in proc.stderr
