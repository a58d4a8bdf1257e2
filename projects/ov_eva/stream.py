"""Stream mode: segment the frames of a video (or a folder of frames) with a
vocabulary per scene that never holds a frame back.

A scene is a run of frames whose global CLIP image embedding stays within
``scene_threshold`` (cosine) of the scene's first frame. A new scene asks the
model's vocabulary source in a background thread; frames go on with the last
vocabulary (the offline lexicon for the first scene) and switch when the
answer arrives. The source's own cache and budget (``max_cost``) apply: a
scene is one fetch, keyed by its first frame.
"""
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

FRAME_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
VIDEO_EXTRA = ('reading a video needs PyAV: pip install "ov-eva[video]" '
               '(or pip install av), or give a folder of frames')


def read_frames(
        path,
        max_frames: Optional[int] = None) -> Iterator[Tuple[str, np.ndarray]]:
    """(name, RGB uint8 array) of each frame: a folder's images in name
    order, or a video file decoded with PyAV. Raises ValueError for a
    folder without frames or a file that is not a readable video."""
    path = Path(path)
    count = 0
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix.lower() in FRAME_SUFFIXES)
        if not files:
            raise ValueError(f'folder {str(path)!r} holds no frames '
                             f'({", ".join(FRAME_SUFFIXES)})')
        from .vocabulary.base import read_rgb
        for file in files[:max_frames]:
            try:
                rgb = read_rgb(file)
            except ValueError as error:
                raise ValueError(f'frame {str(file)!r}: {error}; replace or '
                                 'remove it and run again') from None
            yield file.stem, rgb
        return
    try:
        import av
    except ImportError:
        raise ImportError(VIDEO_EXTRA) from None
    try:
        container = av.open(str(path))
    except Exception as error:
        raise ValueError(
            f'{str(path)!r} is not a readable video '
            f'({type(error).__name__}); give a video file '
            '(mp4, mkv, webm, ...) or a folder of frames') from None
    with container:
        for frame in container.decode(video=0):
            if max_frames is not None and count >= max_frames:
                break
            yield f'frame_{count:06d}', frame.to_ndarray(format='rgb24')
            count += 1
    if count == 0:
        raise ValueError(f'{str(path)!r} holds no video frames')


def count_frames(path) -> Optional[int]:
    """How many frames ``read_frames(path)`` will give, where known without
    decoding them (a folder; a video whose header says), else None."""
    path = Path(path)
    if path.is_dir():
        return sum(p.suffix.lower() in FRAME_SUFFIXES for p in path.iterdir())
    try:
        import av
        with av.open(str(path)) as container:
            return container.streams.video[0].frames or None
    except Exception:  # noqa: B902 (unknown: the progress counts up)
        return None


class OverlayWriter:
    """Overlay frames into an mp4 (H.264 via PyAV), a webm (VP9, which
    every browser plays) or, without PyAV or for a ``.gif`` path, an
    animated GIF. Video frames are encoded as they come, so a long video
    never sits in memory and an interrupted stream keeps the frames written
    so far (``close`` in a ``finally``); a GIF holds its frames until
    ``close``, palette-coded and at most ``GIF_SIDE`` pixels on the longer
    side. Frames of another size than the first are resized to it."""

    GIF_SIDE = 640

    def __init__(self, path, fps: float = 10.0):
        self.path, self.fps = Path(path), fps
        self.size: Optional[Tuple[int, int]] = None  # (width, height)
        self._container = self._stream = None
        try:
            import av
        except ImportError:
            av = None
        self._gif = [] if av is None or self.path.suffix == '.gif' else None
        if self._gif is not None:
            self.path = self.path.with_suffix('.gif')

    def _fit(self, rgb: np.ndarray) -> np.ndarray:
        """``rgb`` at the writer's size (the first frame's, even sides for
        the video codecs, at most GIF_SIDE for a GIF)."""
        from PIL import Image
        height, width = rgb.shape[:2]
        if self.size is None:
            if self._gif is not None:
                scale = min(1.0, self.GIF_SIDE / max(height, width))
                width, height = (
                    max(1, round(s * scale)) for s in (width, height))
            else:
                width, height = max(2, width - width % 2), max(
                    2, height - height % 2)
            self.size = (width, height)
        if rgb.shape[1::-1] == self.size:
            return np.ascontiguousarray(rgb)
        if self._gif is None and rgb.shape[0] >= self.size[1] \
                and rgb.shape[1] >= self.size[0]:  # an odd side: crop it
            return np.ascontiguousarray(rgb[:self.size[1], :self.size[0]])
        return np.asarray(Image.fromarray(rgb).resize(self.size))

    def _open(self):
        import av
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), 'w')
        codec = 'libvpx-vp9' if self.path.suffix == '.webm' else 'libx264'
        self._stream = self._container.add_stream(codec, rate=round(self.fps))
        self._stream.width, self._stream.height = self.size
        self._stream.pix_fmt = 'yuv420p'

    def add(self, rgb: np.ndarray):
        rgb = self._fit(rgb)
        if self._gif is not None:
            from PIL import Image
            self._gif.append(Image.fromarray(rgb).quantize(256))
            return
        import av
        if self._container is None:
            self._open()
        frame = av.VideoFrame.from_ndarray(rgb, format='rgb24')
        self._container.mux(self._stream.encode(frame))

    def close(self) -> Optional[Path]:
        """Finish the file; its path (None when no frame came)."""
        if self._gif is not None:
            if not self._gif:
                return None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._gif[0].save(
                self.path,
                save_all=True,
                append_images=self._gif[1:],
                duration=int(1000 / self.fps),
                loop=0)
            self._gif = []
            return self.path
        if self._container is None:  # no frame came (or closed already)
            return None
        self._container.mux(self._stream.encode())  # flush the encoder
        self._container.close()
        self._container = None
        return self.path


@dataclass
class StreamStats:
    frames: int = 0
    scenes: int = 0
    requests: int = 0
    seconds: float = 0.0
    frame_seconds: List[float] = field(default_factory=list)
    # per frame, the origin of the vocabulary it was segmented with:
    # 'lexicon' (before the MLLM's answer arrived), 'mllm' or 'none'
    sources: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    def by_vocabulary(self) -> Dict[str, List[float]]:
        """Per vocabulary origin (``sources``), the seconds of the frames
        segmented with it, in frame order."""
        seconds: Dict[str, List[float]] = {}
        for origin, spent in zip(self.sources, self.frame_seconds):
            seconds.setdefault(origin, []).append(spent)
        return seconds

    @property
    def ms_per_frame(self) -> float:
        return 1000 * self.seconds / max(self.frames, 1)

    @property
    def median_ms(self) -> float:
        return 1000 * float(np.median(self.frame_seconds or [0]))


class SceneTracker:
    """Where scenes start: a frame whose global CLIP embedding (the whole
    frame at the CLIP's input size, one pass of the backend's CLIP) has a
    cosine below ``threshold`` to the first frame of the current scene
    starts a new one. Stream mode and the vocabulary prefetch of a video
    share it, so that both ask about the same frames."""

    def __init__(self, model, threshold: float = 0.85):
        from .vocabulary.lexicon import LexiconVocabulary
        self.threshold = threshold
        self.embedder = LexiconVocabulary(window_grid=0, cache_file=False)
        self.embedder.bind(model.clip)
        self.anchor = self.previous = None
        self.similarities: List[Optional[float]] = []  # to the anchor

    def embed(self, rgb: np.ndarray):
        return self.embedder.image_embeddings(rgb)[0]

    def update(self, rgb: np.ndarray) -> Tuple[bool, Optional[float]]:
        """(does this frame start a scene, its cosine to the frame
        before)."""
        embedding = self.embed(rgb)
        to_anchor = None if self.anchor is None else float(
            embedding @ self.anchor)
        to_previous = None if self.previous is None else float(
            embedding @ self.previous)
        self.similarities.append(to_anchor)
        self.previous = embedding
        new_scene = to_anchor is None or to_anchor < self.threshold
        if new_scene:
            self.anchor = embedding
        return new_scene, to_previous


def scene_starts(model,
                 path,
                 threshold: float = 0.85) -> Iterator[Tuple[str, np.ndarray]]:
    """(name, RGB) of each frame of ``path`` that starts a scene: the frames
    stream mode asks its vocabulary source about (their answers are cached
    by the frame's pixels, so a prefetch of these serves the stream)."""
    tracker = SceneTracker(model, threshold)
    for name, rgb in read_frames(path):
        if tracker.update(rgb)[0]:
            yield name, rgb


class StreamSegmenter:
    """Segments frames in order with a vocabulary per scene.

    Args:
        model: an OV-EVA segmentor (``ov_eva.apis.init_model``).
        scene_threshold: cosine similarity of a frame's embedding to the
            scene's first frame below which a new scene starts.
        reuse_threshold: temporal-stability knob, off (None) by default: a
            frame this similar (cosine) to the previous one reuses its
            label map instead of being segmented again.
        classes: lists of synonyms for this stream (default: the model's),
            passed with each frame as ``inference_model`` takes them.
        source: the vocabulary source (default: the model's; None: the
            base alone).
    """

    def __init__(self,
                 model,
                 scene_threshold: float = 0.85,
                 reuse_threshold: Optional[float] = None,
                 classes: Optional[list] = None,
                 source='model'):
        self.model = model
        self.scene_threshold = scene_threshold
        self.reuse_threshold = reuse_threshold
        self.classes = classes
        if source == 'model':
            source = model.vocabulary if model.uses_vocabulary else None
        self.source = source
        self.lexicon = self._lexicon() if self.source is not None else None
        self.scenes = SceneTracker(model, scene_threshold)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix='ov-eva-mllm')
        self.pending: Optional[Future] = None
        self.terms: Optional[list] = None
        self.origin = 'none'  # where the current terms came from
        self.label = None
        self.stats = StreamStats()
        self._said_failure = False

    @property
    def similarities(self) -> List[Optional[float]]:
        """Per frame its cosine to its scene's first frame."""
        return self.scenes.similarities

    def _lexicon(self):
        from .vocabulary.lexicon import LexiconVocabulary
        if isinstance(self.source, LexiconVocabulary):
            return self.source  # answers at once: no thread needed
        lexicon = LexiconVocabulary(cache_file=False)
        lexicon.bind(self.model.clip)
        return lexicon

    def _fetch(self, source, rgb):
        """The terms of ``source`` for this frame; None (said once) when the
        source failed, so that the frames keep the vocabulary they have."""
        try:
            result = source.fetch(
                rgb, self.classes or self.model.class_bank.fetch_classes)
        except Exception as error:  # a dead server: FatalVocabularyError
            result = None
            message = f'{type(error).__name__}: {error}'
        else:
            message = result.error
        if result is not None and result.status == 'new' \
                and source is not self.lexicon:
            self.stats.requests += 1
        if message:
            if not self._said_failure:
                self._said_failure = True
                self.stats.notes.append(
                    f'the vocabulary source failed ({message}); frames go '
                    'on with the lexicon or the last vocabulary')
            return None
        return [(t.text, t.suggested_class) for t in result.terms]

    def _new_scene(self, rgb):
        self.stats.scenes += 1
        if self.source is None:
            return
        if self.terms is None or self.source is self.lexicon:
            # first scene (or a lexicon source): the lexicon, at once
            self.terms, self.origin = self._fetch(self.lexicon, rgb), 'lexicon'
        if self.source is not self.lexicon:
            # a query still queued for an earlier scene is stale: drop it
            # (one already running finishes, and its answer is cached)
            if self.pending is not None:
                self.pending.cancel()
            self.pending = self.pool.submit(self._fetch, self.source, rgb)

    def _take_answer(self):
        if self.pending is not None and self.pending.done():
            terms = self.pending.result()
            self.pending = None
            if terms:  # a failure keeps the last vocabulary
                self.terms, self.origin = terms, 'mllm'

    def step(self, rgb: np.ndarray):
        """(label map, source of the frame's terms) for the next frame."""
        from .apis import inference_model
        start = time.perf_counter()
        new_scene, similar = self.scenes.update(rgb)
        if new_scene:
            self._new_scene(rgb)
        self._take_answer()
        used = self.origin
        if self.reuse_threshold is not None and self.label is not None \
                and similar is not None and similar >= self.reuse_threshold:
            label = self.label
        else:
            # no terms yet: the class names alone, never the model's own
            # source (it would hold the frame back)
            sample = inference_model(
                self.model, rgb, terms=self.terms or [], classes=self.classes)
            label = sample.pred_sem_seg.data[0].cpu().numpy()
        self.label = label
        self.stats.frames += 1
        self.stats.frame_seconds.append(time.perf_counter() - start)
        self.stats.seconds += self.stats.frame_seconds[-1]
        self.stats.sources.append(used)
        return label, used

    def close(self, wait: bool = True):
        self.pool.shutdown(wait=wait)

    def summary(self) -> str:
        s = self.stats
        return (f'stream: {s.frames} frames, {s.scenes} scenes, '
                f'{s.requests} MLLM requests, {s.ms_per_frame:.0f} ms/frame')


def check_stream_input(path) -> None:
    """Raise ValueError (or ImportError naming the extra) for an input that
    stream mode cannot read, before any model is built."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f'{str(path)!r} does not exist; give a video file '
                         'or a folder of frames')
    next(read_frames(path, max_frames=1))


def blend(rgb: np.ndarray, label: np.ndarray, palette: np.ndarray,
          opacity: float) -> np.ndarray:
    """The frame with the prediction blended in (fixed size: no legend)."""
    colours = palette[label % len(palette)].astype(np.float32)
    mixed = rgb.astype(np.float32) * (1 - opacity) + colours * opacity
    return mixed.round().clip(0, 255).astype(np.uint8)


def segment_stream(model,
                   path,
                   out,
                   palette,
                   opacity: float = 0.5,
                   scene_threshold: float = 0.85,
                   reuse_threshold: Optional[float] = None,
                   fps: float = 10.0,
                   say=print,
                   classes: Optional[list] = None,
                   source='model',
                   progress=None,
                   max_frames: Optional[int] = None,
                   video_name: str = 'overlay.mp4') -> StreamStats:
    """Segment every frame of ``path``, writing per frame
    ``<name>_overlay.png``, ``<name>_label.png`` and ``<name>.json`` in
    ``out``, and ``overlay.mp4`` (or ``.gif`` without PyAV). ``classes``
    and ``source`` as ``StreamSegmenter`` takes them; ``progress(frames)``
    is called after each frame; ``max_frames`` stops early."""
    import json

    from PIL import Image
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    segmenter = StreamSegmenter(model, scene_threshold, reuse_threshold,
                                classes, source)
    video = OverlayWriter(out / video_name, fps)
    finished = False
    try:
        for name, rgb in read_frames(path, max_frames):
            label, used = segmenter.step(rgb)
            overlay = blend(rgb, label, palette, opacity)
            video.add(overlay)
            Image.fromarray(overlay).save(out / f'{name}_overlay.png')
            dtype = np.uint8 if len(palette) < 256 else np.uint16
            Image.fromarray(label.astype(dtype)).save(out /
                                                      f'{name}_label.png')
            record = dict(
                frame=name,
                scene=segmenter.stats.scenes,
                vocabulary=used,
                terms=[t for t, _ in segmenter.terms or []])
            (out / f'{name}.json').write_text(json.dumps(record, indent=2))
            for note in segmenter.stats.notes:
                say(f'note: {note}')
            segmenter.stats.notes.clear()
            if progress is not None:
                progress(segmenter.stats.frames)
        finished = True
    finally:
        # an interrupted stream keeps its frames: the video holds them too
        segmenter.close(wait=False)
        segmenter.stats.video = video.close()
        if not finished and segmenter.stats.frames:
            say(f'note: stopped after {segmenter.stats.frames} frames; '
                f'their outputs and the overlay video '
                f'{segmenter.stats.video} are in {out}')
    say(segmenter.summary() + f'; overlay video {segmenter.stats.video}')
    return segmenter.stats
