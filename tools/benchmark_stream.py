"""Stream mode against a slow loopback MLLM: MLLM requests (counted at the
server) and ms/frame of OV-EVA beside the base (``--vocabulary none``).

    python tools/benchmark_stream.py            # 40 frames, 2 scenes, 1.5 s
    python tools/benchmark_stream.py --frames 40 --latency 1.5 \\
        --cfg-options model.clip.name=ov-eva-tiny model.clip.pretrained=None

The frames are synthetic (two scenes of 40 / 2 frames each, a little noise
per frame, a cut in the middle); targets: at most 12 requests, OV-EVA at
most 1.3x the base's time per frame.
"""
import argparse
import os
import tempfile
import time

import numpy as np
from _cli import DEFAULT_CONFIG, add_cfg_options, add_debug_flag, run
from fake_openai import FakeOpenAIServer


def synthetic_frames(count: int, size=(240, 320)):
    """Two scenes: a noise texture, then sky over grass; +-4 noise."""
    rng = np.random.default_rng(0)
    first = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    second = np.zeros((*size, 3), np.uint8)
    second[:size[0] // 2] = (70, 130, 220)
    second[size[0] // 2:] = (40, 150, 50)
    for i in range(count):
        base = first if i < count // 2 else second
        noise = rng.integers(-4, 5, base.shape)
        yield (base.astype(int) + noise).clip(0, 255).astype(np.uint8)


def timed_run(model, frames, scene_threshold):
    from ov_eva.stream import StreamSegmenter
    segmenter = StreamSegmenter(model, scene_threshold)
    for rgb in frames:
        segmenter.step(rgb)
    segmenter.close(wait=True)
    return segmenter.stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=str(DEFAULT_CONFIG))
    parser.add_argument('--frames', type=int, default=40)
    parser.add_argument('--latency', type=float, default=1.5)
    parser.add_argument('--scene-threshold', type=float, default=0.95)
    add_cfg_options(parser, 'override config settings (applied last)')
    add_debug_flag(parser)
    args = parser.parse_args()
    import ov_eva  # noqa: F401
    from ov_eva.apis import image_config, inference_model, init_model
    classes = [['sky'], ['grass'], ['wall'], ['person']]
    frames = list(synthetic_frames(args.frames))
    os.environ.setdefault('OPENAI_API_KEY', 'sk-loopback')
    with FakeOpenAIServer(latency=args.latency) as server, \
            tempfile.TemporaryDirectory() as cache:
        vocabulary = dict(
            type='OpenAIVocabulary',
            base_url=server.base_url,
            cache_file=f'{cache}/vocabulary.sqlite')
        options = dict(args.cfg_options or {})
        cfg = image_config(args.config, classes, 'openai', options)
        cfg.model.vocabulary = vocabulary
        model = init_model(cfg, 'cpu')
        inference_model(model, frames[0], terms=[])  # warm-up, no fetch
        start = time.perf_counter()
        ours = timed_run(model, frames, args.scene_threshold)
        requests = server.count()
        wall = time.perf_counter() - start
    base_model = init_model(
        image_config(args.config, classes, 'none', options), 'cpu')
    timed_run(base_model, frames[:2], args.scene_threshold)
    base = timed_run(base_model, frames, args.scene_threshold)
    ratio = ours.ms_per_frame / base.ms_per_frame
    median_ratio = ours.median_ms / base.median_ms
    print(f'frames {ours.frames}, scenes {ours.scenes}, MLLM requests at the '
          f'server {requests} (target <= 12), MLLM latency {args.latency}s')
    print(f'OV-EVA {ours.ms_per_frame:.0f} ms/frame, base (--vocabulary '
          f'none) {base.ms_per_frame:.0f} ms/frame, ratio {ratio:.2f} '
          f'(target <= 1.3); median {ours.median_ms:.0f} vs '
          f'{base.median_ms:.0f} ms/frame, ratio {median_ratio:.2f}')
    used = ', '.join(f'{k} {ours.sources.count(k)}'
                     for k in sorted(set(ours.sources)))
    print(f'wall {wall:.1f}s; frames by vocabulary: {used}')


if __name__ == '__main__':
    run(main)
