"""tools/demo.py --stream end to end: a short clip of two scenes against a
slow loopback MLLM (requests counted at the server), a folder of frames
with a dead server, and a file that is no video (tiny random CLIP)."""
import json
import time

import numpy as np
import pytest
from conftest import run_demo
from fake_openai import FakeOpenAIServer
from PIL import Image

CLASSES = ('--classes', 'sky', 'grass', 'wall')
SCENE = ('--scene-threshold', '0.95')  # the tiny random CLIP's cut: ~0.89


def clip_frames(count=12, size=(48, 64)):
    """Two scenes (noise, then sky over grass), a little noise per frame."""
    rng = np.random.default_rng(0)
    first = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    second = np.zeros((*size, 3), np.uint8)
    half = size[0] // 2
    second[:half], second[half:] = (70, 130, 220), (40, 150, 50)
    for i in range(count):
        base = first if i < count // 2 else second
        noise = rng.integers(-4, 5, base.shape)
        yield (base.astype(int) + noise).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def frame_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp('frames')
    for i, rgb in enumerate(clip_frames()):
        Image.fromarray(rgb).save(folder / f'{i:03d}.png')
    return folder


def openai_options(url, cache):
    return [
        f'model.vocabulary.base_url={url}',
        f'model.vocabulary.cache_file={cache}',
        'model.vocabulary.max_retries=0', 'model.vocabulary.timeout=5'
    ]


def records(out):
    return [json.loads(p.read_text()) for p in sorted(out.glob('*.json'))]


def test_video_against_a_slow_mllm(tmp_path, monkeypatch):
    av = pytest.importorskip('av')
    video = tmp_path / 'clip.mp4'
    from ov_eva.stream import OverlayWriter
    writer = OverlayWriter(video, fps=12)
    for rgb in clip_frames():
        writer.add(rgb)
    writer.close()
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-test-stream')
    out = tmp_path / 'out'
    with FakeOpenAIServer(latency=1.5) as server:
        proc = run_demo(
            video,
            *CLASSES,
            *SCENE,
            '--stream',
            '--vocabulary',
            'openai',
            '--out',
            out,
            options=openai_options(server.base_url, tmp_path / 'v.sqlite'))
        time.sleep(0.1)
        requests = server.count()
    summary = [
        line for line in proc.stdout.splitlines()
        if line.startswith('stream:')
    ]
    assert len(summary) == 1, proc.stdout
    assert '12 frames, 2 scenes' in summary[0]
    assert 'ms/frame' in summary[0]
    # two scenes, each a two-stage dialogue at most: never one per frame
    assert 2 <= requests <= 8
    frames = records(out)
    assert len(frames) == 12
    # the first frames did not wait 1.5 s for the MLLM: the lexicon
    assert frames[0]['vocabulary'] == 'lexicon'
    assert frames[0]['terms']
    assert [f['scene'] for f in frames] == [1] * 6 + [2] * 6
    with av.open(str(out / 'overlay.mp4')) as container:
        decoded = [f.to_ndarray(format='rgb24') for f in container.decode(
            video=0)]
    assert len(decoded) == 12 and decoded[0].shape == (48, 64, 3)
    label = np.asarray(Image.open(out / 'frame_000000_label.png'))
    assert label.shape == (48, 64) and label.max() < 3


def test_folder_with_a_dead_server_uses_the_lexicon(tmp_path, frame_folder,
                                                    monkeypatch):
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-test-stream')
    with FakeOpenAIServer() as server:
        url = server.base_url  # closed on leaving: nothing answers
    out = tmp_path / 'out'
    proc = run_demo(
        frame_folder,
        *CLASSES,
        *SCENE,
        '--stream',
        '--vocabulary',
        'openai',
        '--out',
        out,
        options=openai_options(url, tmp_path / 'v.sqlite'))
    notes = [
        line for line in proc.stdout.splitlines()
        if 'vocabulary source failed' in line
    ]
    assert len(notes) == 1, proc.stdout
    assert 'stream: 12 frames, 2 scenes, 0 MLLM requests' in proc.stdout
    frames = records(out)
    assert [f['frame'] for f in frames] == [f'{i:03d}' for i in range(12)]
    assert {f['vocabulary'] for f in frames} == {'lexicon'}
    assert (out / 'overlay.mp4').stat().st_size > 0


def test_a_file_that_is_no_video_is_one_error_line(tmp_path):
    bad = tmp_path / 'clip.mp4'
    bad.write_bytes(b'not a video at all' * 10)
    proc = run_demo(bad, *CLASSES, '--stream', check=False)
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ')
    assert 'not a readable video' in lines[0] and 'clip.mp4' in lines[0]
