"""tools/app.py, the web page, as users reach it: started as a process with
the tiny CLIP on a free loopback port, driven in headless Chromium (Debian's
``chromium``, which .ci/run installs) and through ``gradio_client``."""
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from conftest import NO_PAMR, REPO, TINY, free_port, run_cli, shared_data
from fake_openai import FakeOpenAIServer
from PIL import Image

ADE_IMAGE = 'images/validation/ADE_val_00000001.jpg'
CLASSES = 'wall, floor; sky (clouds); person\ntree | trees'
NAMES = {'wall', 'floor', 'sky', 'person', 'tree'}
TIMEOUT_MS = 90_000


@pytest.fixture(scope='module')
def app(tmp_path_factory):
    """The page's URL: tools/app.py started as `make app` starts it."""
    folder = tmp_path_factory.mktemp('app')
    port = free_port()
    log = open(folder / 'app.log', 'w')
    env = dict(os.environ, GRADIO_TEMP_DIR=str(folder / 'gradio'))
    env.pop('OPENAI_API_KEY', None)
    proc = subprocess.Popen([
        sys.executable, 'tools/app.py', '--port',
        str(port), '--cfg-options', *TINY, NO_PAMR
    ],
                            cwd=REPO,
                            env=env,
                            stdout=log,
                            stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise AssertionError('tools/app.py exited:\n' +
                                 (folder / 'app.log').read_text()[-3000:])
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError('tools/app.py did not answer in 180 s:\n' +
                                 (folder / 'app.log').read_text()[-3000:])
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def chromium_path() -> str:
    path = shutil.which('chromium') or shutil.which('chromium-browser')
    if path is None:
        pytest.skip('no chromium on PATH: .ci/run installs Debian\'s '
                    'chromium (apt-get install -y chromium)')
    return path


STATUS = '#status [data-testid=markdown]'
FINISHED = """before => {
    const text = document.querySelector('%s').innerText;
    const busy = document.querySelector(
        '#status [data-testid=status-tracker]:not(.hide)');
    return !busy && text !== before && /Done|Error/.test(text);
}""" % STATUS


def status_after(page, action) -> str:
    """Run ``action`` (a click), then wait until the request has ended and
    the status line shows a new finished message (Done or Error)."""
    before = page.inner_text(STATUS)
    action()
    page.wait_for_function(FINISHED, arg=before, timeout=TIMEOUT_MS)
    return page.inner_text(STATUS)


def table_rows(page, selector: str):
    """(row count, rendered rows) of a Dataframe on the page: the count
    from its grid's aria-rowcount (long tables render the rows in view
    only), each rendered data row as a list of cell texts."""
    count = int(
        page.get_attribute(f'{selector} [role=grid]',
                           'aria-rowcount')) - 1  # the header
    rows = page.eval_on_selector_all(
        f'{selector} [role=row]',
        'rows => rows.filter(r => r.getAttribute("aria-rowindex") > 1)'
        '.map(r => Array.from(r.querySelectorAll("[role=gridcell], td"))'
        '.map(td => td.innerText.trim()))')
    return count, [row for row in rows if any(row)]


PREVIEW = """name => {
    const img = document.querySelector('#photo img');
    return img && img.src.includes(name) && img.complete;
}"""


def upload(page, path):
    """Upload a file to the photo box (removing the one it holds) and wait
    for its preview."""
    remove = page.query_selector('#photo button[aria-label="Remove Image"]')
    if remove is not None:
        remove.click()
    page.set_input_files('#photo input[type=file]', str(path))
    page.wait_for_function(PREVIEW, arg=path.name, timeout=TIMEOUT_MS)


def natural_size(page, selector: str):
    return page.eval_on_selector(selector,
                                 'i => [i.naturalWidth, i.naturalHeight]')


def picture_at(page, selector: str) -> np.ndarray:
    """The RGB pixels of an <img> on the page, fetched from its URL."""
    src = page.get_attribute(selector, 'src')
    with urllib.request.urlopen(src, timeout=30) as answer:
        data = answer.read()
    import io
    with Image.open(io.BytesIO(data)) as picture:
        return np.asarray(picture.convert('RGB'))


def overlaps(a, b) -> bool:
    return not (a['x'] + a['width'] <= b['x'] or b['x'] + b['width'] <= a['x']
                or a['y'] + a['height'] <= b['y']
                or b['y'] + b['height'] <= a['y'])


def legend_swatches(page, selector: str):
    """(name, RGB) of each legend entry under an overlay."""
    entries = page.eval_on_selector_all(
        f'{selector} .ov-legend-item', 'items => items.map(i => ['
        'i.innerText.trim(), getComputedStyle(i.querySelector(".ov-swatch"))'
        '.backgroundColor])')
    return [(text.rsplit(' ', 1)[0],
             tuple(int(v) for v in re.findall(r'\d+', colour)[:3]))
            for text, colour in entries]


def check_light_legend(page):
    """The legend's colours are the overlay's (its region outlines are
    drawn in them) and all light (HSV value >= 0.88, saturation <= 0.7),
    for typed and found classes alike."""
    legend = legend_swatches(page, '#legend')
    overlay = picture_at(page, '#overlay img')
    for name, colour in legend:
        assert max(colour) >= 225 and min(colour) >= 0.3 * max(colour), \
            (name, colour)
        assert np.all(overlay == colour, axis=-1).any(), (name, colour)
    return legend


def check_legend_clear_of_toolbar(page, image: str, legend: str):
    """The legend is its own element under the picture: no toolbar button
    of the image sits on it."""
    legend_box = page.query_selector(legend).bounding_box()
    assert legend_box['height'] > 0
    picture_box = page.query_selector(f'{image} img').bounding_box()
    assert legend_box['y'] >= picture_box['y'] + picture_box['height'] - 1
    buttons = [
        b.bounding_box() for b in page.query_selector_all(f'{image} button')
        if b.is_visible() and b.get_attribute('aria-label')
    ]
    assert buttons  # the toolbar is there (fullscreen, download)
    assert not any(overlaps(legend_box, box) for box in buttons)


def test_page_in_headless_chromium(app, tmp_path):
    from playwright.sync_api import sync_playwright
    photo = shared_data('ADEChallengeData2016') / ADE_IMAGE
    with Image.open(photo) as picture:
        width, height = picture.size
    corrupt = tmp_path / 'corrupt.jpg'
    corrupt.write_bytes(b'\xff\xd8\xff\xe0' +
                        np.random.default_rng(0).bytes(2048))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True)
        try:
            page = browser.new_page(viewport=dict(width=1280, height=1400))
            page.goto(app)
            page.wait_for_selector('#run')
            # the demo photos are thumbnails; a click loads one, previewed
            thumbnails = page.query_selector_all('#demos img')
            demos = sorted((REPO / 'demo').glob('*.jpg'))
            assert len(thumbnails) == len(demos) >= 1
            page.wait_for_function(  # each thumbnail loads (and decodes)
                """() => Array.from(document.querySelectorAll('#demos img'))
                .every(i => i.complete && i.naturalWidth > 0)""",
                timeout=TIMEOUT_MS)
            thumbnails[0].click()
            page.wait_for_function(
                PREVIEW, arg=demos[0].name, timeout=TIMEOUT_MS)
            with Image.open(demos[0]) as picture:
                assert natural_size(page, '#photo img') == list(picture.size)
                demo_size = '{}x{}'.format(*picture.size)
            page.fill('#classes textarea', 'cat, wall')
            status = status_after(page, lambda: page.click('#run'))
            assert f'Done: {demo_size} photo, 2 classes' in status
            # a held-out photo with classes: previewed, not a file chip
            upload(page, photo)
            assert natural_size(page, '#photo img') == [width, height]
            assert page.is_visible('#photo img')
            page.fill('#classes textarea', CLASSES)
            status = status_after(page, lambda: page.click('#run'))
            assert f'Done: {width}x{height} photo, 5 classes' in status
            assert 'vocabulary: lexicon' in status
            overlay = page.wait_for_selector('#overlay img')
            size = natural_size(page, '#overlay img')
            assert size == [width, height]  # the legend is not in it
            count, areas = table_rows(page, '#areas')
            assert count == len(areas) >= 1
            assert {row[0] for row in areas} <= NAMES
            assert sum(int(row[2]) for row in areas) == width * height
            # the legend under the overlay, one entry per class present
            legend = check_light_legend(page)
            assert [name for name, _ in legend] == [row[0] for row in areas]
            check_legend_clear_of_toolbar(page, '#overlay', '#legend')
            count, terms = table_rows(page, '#terms')
            assert count == 32  # the lexicon's top_k
            assert len(terms) >= 10  # those in view
            for term, mapped, weight in terms:
                assert mapped in NAMES | {'(not mapped)'}
                assert 0 <= float(weight) <= 1
            mapped = [t for t in terms if t[1] != '(not mapped)']
            assert mapped and terms[:len(mapped)] == mapped  # mapped first
            # a pixel's top classes on click
            box = overlay.bounding_box()
            scale = box['width'] / size[0]
            page.mouse.click(box['x'] + width / 2 * scale,
                             box['y'] + height / 2 * scale)
            page.wait_for_function(
                'document.querySelector("#pixel textarea").value'
                '.includes("1. ")',
                timeout=TIMEOUT_MS)
            text = page.input_value('#pixel textarea')
            assert re.search(r'Pixel \(\d+, \d+\):', text)
            lines = text.splitlines()[1:]
            assert len(lines) == 3
            assert all(
                line.split('. ')[1].split(':')[0] in NAMES for line in lines)
            check_compare_view(page, width, height)
            shot = tmp_path / 'page.png'
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000

            # the same photo with no classes: found in the photo, drawn in
            # the same light palette as typed classes
            page.fill('#classes textarea', '')
            status = status_after(page, lambda: page.click('#run'))
            found = re.search(r'(\d+) classes found in the photo', status)
            assert found and 1 <= int(found[1]) <= 10, status
            count, areas = table_rows(page, '#areas')
            assert 1 <= count <= int(found[1]) + 1
            assert len(check_light_legend(page)) == count
            page.screenshot(
                path=str(tmp_path / 'page_found.png'), full_page=True)

            # a corrupt upload: a message, and the page keeps working
            upload(page, corrupt)
            status = status_after(page, lambda: page.click('#run'))
            assert 'Error' in status and 'not an image' in status
            upload(page, photo)
            # typed as in the peer demos: commas separate classes
            page.fill('#classes textarea', 'sky, road, tree')
            status = status_after(page, lambda: page.click('#run'))
            assert 'Done' in status and '3 classes' in status

            # two requests at once, from two browsers: both queue, both end
            pages = [browser.new_page() for _ in range(2)]
            for other in pages:
                other.goto(app)
                other.wait_for_selector('#run')
                upload(other, photo)
                other.fill('#classes textarea', CLASSES)
            for other in pages:
                other.click('#run')
            for other in pages:
                other.wait_for_function(FINISHED, arg='', timeout=TIMEOUT_MS)
                assert 'Done' in other.inner_text(STATUS)
                _, areas = table_rows(other, '#areas')
                assert areas and {row[0] for row in areas} <= NAMES
            page.screenshot(path=str(tmp_path / 'page_end.png'))
        finally:
            browser.close()


COMPARE_STATUS = '#compare-status [data-testid=markdown]'
COMPARED = FINISHED.replace(STATUS, COMPARE_STATUS).replace(
    '#status [data-testid=status-tracker]',
    '#compare-status [data-testid=status-tracker]')


def check_compare_view(page, width: int, height: int):
    """Compare with the base: both overlays side by side, the changed
    pixels outlined in magenta, the moves with the terms of their classes,
    one legend clear of the toolbars."""
    page.click('#compare-run')
    page.wait_for_function(COMPARED, arg='', timeout=TIMEOUT_MS)
    status = page.inner_text(COMPARE_STATUS)
    changed = re.search(r'([\d.]+)% of the pixels changed class', status)
    assert changed, status
    changed = float(changed[1])
    assert 0 < changed < 100  # the lexicon's terms moved some pixels
    base_box = page.query_selector('#compare-base img').bounding_box()
    oveva_box = page.query_selector('#compare-oveva img').bounding_box()
    assert base_box['x'] + base_box['width'] <= oveva_box['x']  # side by side
    assert abs(base_box['y'] - oveva_box['y']) < 2
    magenta = []
    for selector in ('#compare-base img', '#compare-oveva img'):
        assert natural_size(page, selector) == [width, height]
        picture = picture_at(page, selector)
        magenta.append(np.all(picture == (255, 0, 255), axis=-1))
    # the same outline on both, a small part of the changed pixels
    assert (magenta[0] == magenta[1]).all()
    assert 0 < magenta[0].mean() * 100 <= changed
    count, moves = table_rows(page, '#moves')
    assert count == len(moves) >= 1
    pixels = [int(row[2]) for row in moves]
    assert pixels == sorted(pixels, reverse=True)
    assert sum(pixels) <= round(changed / 100 * width * height) + 1
    for before, after, _, *terms in moves:
        assert before in NAMES and after in NAMES and before != after
    assert any(t != '-' for row in moves for t in row[3:])  # terms named
    legend = legend_swatches(page, '#compare-legend')
    assert {name for name, _ in legend} <= NAMES and legend
    check_legend_clear_of_toolbar(page, '#compare-oveva', '#compare-legend')


def test_api_through_gradio_client(app, tmp_path):
    """The page's function through gradio_client: a loopback MLLM names the
    classes, a dead server gives a message, the page still works."""
    from gradio_client import Client, handle_file
    photo = shared_data('ADEChallengeData2016') / ADE_IMAGE
    client = Client(app, verbose=False)
    server_kind = 'openai-compatible server'

    def segment(classes, source, url='', model='gpt-4o', base='naclip'):
        return client.predict(
            handle_file(str(photo)),
            classes,
            source,
            url,
            model,
            base,
            api_name='/segment')

    with FakeOpenAIServer() as server:
        result = segment('', server_kind, server.base_url)
        assert server.count() == 1  # what is in the photo: stage 1 alone
    # as docs/page.md shows: the page's state is not returned
    overlay, areas, terms, status, legend = result
    assert legend.count('ov-legend-item') == len(areas['data'])
    assert '2 classes found in the photo' in status, status
    assert {row[0]
            for row in areas['data']
            } <= {'background', 'wooden floor', 'white ceiling'}
    assert {row[0]
            for row in terms['data']} == {'wooden floor', 'white ceiling'}
    with Image.open(overlay) as picture, Image.open(photo) as original:
        assert picture.size == original.size  # the legend: its own output

    # another model name: the vocabulary cache (keyed by model, not URL)
    # must not answer for the dead server
    dead = dict(url=f'http://127.0.0.1:{free_port()}/v1', model='dead-model')
    start = time.monotonic()
    overlay, _, _, status = segment('', server_kind, **dead)[:4]
    assert overlay is None
    assert 'Error' in status and 'vocabulary source failed' in status
    assert time.monotonic() - start < 60
    overlay, areas, _, status = segment('wall; floor', server_kind, **dead)[:4]
    assert overlay is not None and 'class names alone' in status
    assert {row[0] for row in areas['data']} <= {'wall', 'floor'}
    overlay, areas, terms, status = segment(
        'wall; floor; sky', 'none', base='sclip')[:4]
    assert 'Done' in status and 'base sclip' in status
    assert terms['data'] == [] or terms['data'] == [['', '', '']]
    overlay, _, _, status = segment('', 'none')[:4]
    assert overlay is None and 'choose a vocabulary source' in status
    overlay, _, _, status = segment('cat; cat', 'lexicon')[:4]
    assert overlay is None and "'cat' appears twice" in status
    # the compare view asks for a vocabulary: without one there is no change
    base, oveva, _, _, status = client.predict(
        handle_file(str(photo)),
        'wall; floor',
        'none',
        '',
        'gpt-4o',
        'naclip',
        api_name='/compare')
    assert base is None and oveva is None and 'OV-EVA is its base' in status


@pytest.mark.parametrize('args,message', [
    (['--config', 'missing.py'], 'missing.py'),
    (['--port', '0'], '--port 0'),
])
def test_bad_arguments_fail_fast_before_the_model(args, message):
    start = time.monotonic()
    proc = run_cli('tools/app.py', *args, check=False, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith('error:') and message in proc.stderr
    assert 'OV-EVA page on' not in proc.stdout
    assert time.monotonic() - start < 30


def test_typed_classes_split_at_commas_synonyms_in_parentheses_or_bars():
    """``sky, road, tree`` is three classes (as in the peer demos); synonyms
    of one class go in parentheses or after ``|``."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('app', REPO / 'tools/app.py')
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    assert [c[0] for c in app.parse_class_text('sky, road, tree')] == \
        ['sky', 'road', 'tree']
    assert app.parse_class_text('wall (brick wall, stone wall); cat\ndog') \
        == [['wall', 'brick wall', 'stone wall'], ['cat'], ['dog']]
    assert app.parse_class_text('wall | brick wall, sky') == \
        [['wall', 'brick wall'], ['sky']]
    assert app.parse_class_text(' \n ') is None


def test_video_through_the_page(app, tmp_path):
    """A video uploaded to the page (the webcam is its other source) comes
    back as an overlay video the browser plays, with the stream summary;
    a file that is no video is a message, and the page goes on."""
    from playwright.sync_api import sync_playwright

    from ov_eva.stream import OverlayWriter
    video = tmp_path / 'clip.webm'
    writer = OverlayWriter(video, fps=8)
    rng = np.random.default_rng(0)
    for i in range(8):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:24], frame[24:] = (70, 130, 220), (40, 150, 50)
        writer.add((frame + rng.integers(0, 8, frame.shape)).astype(np.uint8))
    assert writer.close() == video
    not_video = tmp_path / 'notes.webm'
    not_video.write_bytes(b'no video here' * 50)
    done = """() => /Done|Error/.test(
        document.querySelector('#video-status').innerText)"""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True)
        try:
            page = browser.new_page(viewport=dict(width=1280, height=1800))
            page.goto(app)
            page.wait_for_selector('#run-video')
            assert page.query_selector(
                '#video button[aria-label="Capture from camera"]') is not None
            page.fill('#classes textarea', 'sky, grass, wall')
            page.set_input_files('#video input[type=file]', str(not_video))
            page.click('#run-video')
            page.wait_for_function(done, timeout=TIMEOUT_MS)
            status = page.inner_text('#video-status')
            assert 'Error' in status and 'not a video' in status, status
            page.click('#video button[aria-label=Clear]')
            page.set_input_files('#video input[type=file]', str(video))
            page.wait_for_selector('#video video')
            page.click('#run-video')
            page.wait_for_function(
                """() => /Done/.test(
                document.querySelector('#video-status').innerText)""",
                timeout=TIMEOUT_MS)
            status = page.inner_text('#video-status')
            assert 'stream: 8 frames' in status and 'ms/frame' in status
            # the browser decodes the overlay video: it has its size
            page.wait_for_function(
                """() => { const v = document.querySelector(
                    '#video-overlay video');
                  return v && v.readyState >= 1 && v.videoWidth > 0; }""",
                timeout=TIMEOUT_MS)
            size = page.eval_on_selector('#video-overlay video',
                                         'v => [v.videoWidth, v.videoHeight]')
            assert size == [64, 48]
            page.screenshot(path=str(tmp_path / 'video.png'), full_page=True)
        finally:
            browser.close()
