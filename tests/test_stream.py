"""tools/demo.py --stream end to end: a short clip of two scenes against a
slow loopback MLLM (requests counted at the server), a folder of frames
with a dead server, and a file that is no video (tiny random CLIP)."""
import json
import time

import numpy as np
import pytest
from conftest import TINY, run_cli, run_demo
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
        line for line in proc.stdout.splitlines() if line.startswith('stream:')
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
        decoded = [
            f.to_ndarray(format='rgb24') for f in container.decode(video=0)
        ]
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
    assert '12/12' in proc.stderr  # the progress bar counted every frame


def test_a_file_that_is_no_video_is_one_error_line(tmp_path):
    bad = tmp_path / 'clip.mp4'
    bad.write_bytes(b'not a video at all' * 10)
    proc = run_demo(bad, *CLASSES, '--stream', check=False)
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ')
    assert 'not a readable video' in lines[0] and 'clip.mp4' in lines[0]


@pytest.fixture(scope='module')
def tiny_model():
    from conftest import REPO
    from mmengine.config import Config
    from mmengine.runner import set_random_seed

    from ov_eva.apis import init_model
    cfg = Config.fromfile(REPO / 'configs' / 'oveva_vitb16_ade.py')
    cfg.model.update(
        classes=['sky', 'grass', 'wall'], vocabulary=None, pamr=None)
    cfg.model.clip.update(name='ov-eva-tiny', pretrained=None)
    cfg.test_pipeline = [
        t for t in cfg.test_dataloader.dataset.pipeline
        if 'Annotation' not in t['type']
    ]
    set_random_seed(0)
    return init_model(cfg, device='cpu')


def test_reuse_threshold_skips_near_identical_frames(tiny_model, monkeypatch):
    """--reuse-threshold: a frame as similar as the threshold to the one
    before reuses its label map (the model is not called); off by default,
    every frame is segmented."""
    import ov_eva.apis
    from ov_eva.stream import StreamSegmenter
    frames = list(clip_frames(count=6))
    calls = []
    segment = ov_eva.apis.inference_model

    def counted(*args, **kwargs):
        calls.append(1)
        return segment(*args, **kwargs)

    monkeypatch.setattr(ov_eva.apis, 'inference_model', counted)
    every = StreamSegmenter(tiny_model, scene_threshold=0.95)
    labels = [every.step(rgb)[0] for rgb in frames]
    every.close()
    assert len(calls) == 6 and every.stats.scenes == 2
    calls.clear()
    reusing = StreamSegmenter(
        tiny_model, scene_threshold=0.95, reuse_threshold=0.99)
    reused = [reusing.step(rgb)[0] for rgb in frames]
    reusing.close()
    # one frame per scene segmented: the noisy copies reuse its labels
    assert len(calls) == 2, reusing.similarities
    assert (reused[0] == labels[0]).all() and (reused[3] == labels[3]).all()
    assert all(reused[i] is reused[0] for i in (1, 2))
    assert all(reused[i] is reused[3] for i in (4, 5))


def test_overlay_falls_back_to_a_gif_without_pyav(tmp_path, monkeypatch):
    import sys

    from ov_eva.stream import OverlayWriter
    frames = list(clip_frames(count=4, size=(20, 30)))
    monkeypatch.setitem(sys.modules, 'av', None)  # import av fails
    writer = OverlayWriter(tmp_path / 'overlay.mp4', fps=5)
    for rgb in frames:
        writer.add(rgb)
    path = writer.close()
    assert path == tmp_path / 'overlay.gif'
    assert not (tmp_path / 'overlay.mp4').exists()
    with Image.open(path) as gif:
        assert gif.n_frames == 4 and gif.size == (30, 20)
        assert gif.info['duration'] == 200


def test_overlay_video_holds_no_frames_in_memory(tmp_path):
    """Frames are encoded as they come: a long drive sequence does not pile
    up in memory (30 VGA frames would hold 27 MB), and a frame of another
    size is fitted to the first."""
    import tracemalloc
    av = pytest.importorskip('av')
    from ov_eva.stream import OverlayWriter
    rng = np.random.default_rng(0)
    writer = OverlayWriter(tmp_path / 'overlay.mp4', fps=10)
    tracemalloc.start()
    try:
        for i in range(30):
            size = (480, 640, 3) if i else (481, 641, 3)  # odd: cropped
            writer.add(rng.integers(0, 255, size, dtype=np.uint8))
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 5e6, f'{held / 1e6:.1f} MB held after 30 frames'
    assert writer.close() == tmp_path / 'overlay.mp4'
    with av.open(str(tmp_path / 'overlay.mp4')) as container:
        shapes = [
            f.to_ndarray(format='rgb24').shape
            for f in container.decode(video=0)
        ]
    assert shapes == [(480, 640, 3)] * 30


def test_a_gif_is_palette_coded_and_bounded(tmp_path):
    from ov_eva.stream import OverlayWriter
    writer = OverlayWriter(tmp_path / 'overlay.gif', fps=5)
    for rgb in clip_frames(count=2, size=(500, 1000)):
        writer.add(rgb)
    with Image.open(writer.close()) as gif:
        assert gif.n_frames == 2 and gif.size == (640, 320)


def test_an_interrupted_stream_keeps_its_frames_and_video(
        tiny_model, tmp_path, frame_folder):
    """Ctrl-C after three frames: their files stay, the overlay video is
    finished with those three frames, and a note says where they are."""
    av = pytest.importorskip('av')
    from ov_eva.stream import segment_stream
    from ov_eva.visualization import class_palette

    def stop_after_three(frames):
        if frames == 3:
            raise KeyboardInterrupt

    said = []
    with pytest.raises(KeyboardInterrupt):
        segment_stream(
            tiny_model,
            frame_folder,
            tmp_path,
            class_palette(3),
            say=said.append,
            progress=stop_after_three)
    assert len(list(tmp_path.glob('*_label.png'))) == 3
    assert len(records(tmp_path)) == 3
    with av.open(str(tmp_path / 'overlay.mp4')) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3
    assert any('stopped after 3 frames' in line for line in said), said


def test_ctrl_c_on_the_command_line_keeps_the_frames_done(tmp_path):
    """SIGINT to tools/demo.py --stream mid-clip: exit 130 with `error:
    interrupted` last, a note saying where the frames are, every recorded
    frame's files there and the overlay video holding them."""
    import os
    import signal
    import subprocess
    import sys

    from conftest import REPO
    av = pytest.importorskip('av')
    folder, out = tmp_path / 'frames', tmp_path / 'out'
    folder.mkdir()
    for i, rgb in enumerate(clip_frames(count=60)):
        Image.fromarray(rgb).save(folder / f'{i:03d}.png')
    proc = subprocess.Popen([
        sys.executable, 'tools/demo.py', folder, *CLASSES, '--stream',
        '--device', 'cpu', '--out', out, '--cfg-options', *TINY
    ],
                            cwd=REPO,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED='1'))
    try:
        deadline = time.time() + 300
        while len(list(out.glob('*.json'))) < 2 and time.time() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == 'error: interrupted'
    assert 'note: stopped after' in stdout and str(out) in stdout, stdout
    done = records(out)
    assert 2 <= len(done) < 60
    for record in done:
        assert (out / f"{record['frame']}_label.png").exists()
    with av.open(str(out / 'overlay.mp4')) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert len(done) <= frames <= len(done) + 1


def test_a_corrupt_frame_is_one_line_naming_it(tmp_path, frame_folder):
    """A frame that does not decode stops the stream with one `error:` line
    naming the file; the frames before it keep their files and video."""
    import shutil
    folder = tmp_path / 'frames'
    shutil.copytree(frame_folder, folder)
    (folder / '003.png').write_bytes(b'not a png')
    out = tmp_path / 'out'
    proc = run_demo(folder, *CLASSES, '--stream', '--out', out, check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: frame ') and '003.png' in last, last
    assert 'replace or remove it' in last
    assert [r['frame'] for r in records(out)] == ['000', '001', '002']
    assert (out / 'overlay.mp4').stat().st_size > 0


def test_a_query_still_queued_for_an_earlier_scene_is_dropped(tiny_model):
    """Scenes that follow each other faster than the MLLM answers do not
    queue one request each: a query not yet started when the next scene
    begins is cancelled; the running one and the newest are made."""
    import threading
    from types import SimpleNamespace

    from ov_eva.stream import StreamSegmenter
    asked, answer = [], threading.Event()

    class SlowSource:

        def fetch(self, rgb, classes):
            asked.append(int(rgb[0, 0, 0]))
            answer.wait(10)  # the MLLM answers when the test says
            term = SimpleNamespace(text='blue sky', suggested_class='sky')
            return SimpleNamespace(status='new', error=None, terms=[term])

    stream = StreamSegmenter(
        tiny_model, scene_threshold=1.01, source=SlowSource())
    frames = [np.full((32, 32, 3), 10 * i, np.uint8) for i in range(1, 5)]
    stream.step(frames[0])  # every frame a scene (cosine <= 1 < 1.01)
    for _ in range(100):  # until the first scene's query is running
        if asked:
            break
        time.sleep(0.05)
    for rgb in frames[1:]:
        stream.step(rgb)
    answer.set()
    stream.close()  # waits for the queries made
    assert stream.stats.scenes == 4
    assert asked == [10, 40], asked  # not 20 and 30: cancelled in the queue
    assert stream.stats.requests == 2


def test_prefetched_scenes_serve_the_stream(tmp_path, frame_folder,
                                            monkeypatch):
    """tools/build_vocabulary.py --videos asks about the frames that start
    a scene, as stream mode will: the stream then sends no request."""
    monkeypatch.setenv('OPENAI_API_KEY', 'sk-test-stream')
    cache = tmp_path / 'v.sqlite'
    with FakeOpenAIServer() as server:
        proc = run_cli('tools/build_vocabulary.py', '--videos', frame_folder,
                       *CLASSES, *SCENE, '--cfg-options', *TINY,
                       *openai_options(server.base_url, cache))
        prefetched = server.count()
    assert f'{frame_folder}: 2 scene(s)' in proc.stdout, proc.stdout
    assert 2 <= prefetched <= 8  # two scenes, a short dialogue each
    out = tmp_path / 'out'
    with FakeOpenAIServer() as server:
        proc = run_demo(
            frame_folder,
            *CLASSES,
            *SCENE,
            '--stream',
            '--vocabulary',
            'openai',
            '--out',
            out,
            options=openai_options(server.base_url, cache))
        assert server.count() == 0
    assert 'stream: 12 frames, 2 scenes, 0 MLLM requests' in proc.stdout
    assert records(out)[-1]['vocabulary'] == 'mllm'  # from the cache
