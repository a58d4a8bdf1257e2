"""Stream mode against a slow loopback MLLM: MLLM requests (counted at the
server) and ms/frame of OV-EVA beside the base (``--vocabulary none``).

    python tools/benchmark_stream.py            # 40 frames, 2 scenes, 1.5 s
    python tools/benchmark_stream.py --frames 40 --latency 1.5 \\
        --cfg-options model.clip.name=ov-eva-tiny model.clip.pretrained=None

The frames are synthetic (two scenes of 40 / 2 frames each, a little noise
per frame, a cut in the middle); targets: at most 12 requests, OV-EVA at
most 1.3x the base's time per frame. Both run first on two frames (the
lexicon's text embeddings are then cached, as on a machine that ran the
page or a stream before), then ``--rounds`` times in turn, OV-EVA with an
empty vocabulary cache each round; the medians over the rounds are
compared.
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


def timed_run(model, frames, scene_threshold, source='model'):
    from ov_eva.stream import StreamSegmenter
    segmenter = StreamSegmenter(model, scene_threshold, source=source)
    for rgb in frames:
        segmenter.step(rgb)
    segmenter.close(wait=True)
    return segmenter.stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=str(DEFAULT_CONFIG))
    parser.add_argument('--frames', type=int, default=40)
    parser.add_argument('--latency', type=float, default=1.5)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--scene-threshold', type=float, default=0.95)
    add_cfg_options(parser, 'override config settings (applied last)')
    add_debug_flag(parser)
    args = parser.parse_args()
    import ov_eva  # noqa: F401
    from ov_eva.apis import image_config, init_model
    from ov_eva.registry import build_vocabulary
    classes = [['sky'], ['grass'], ['wall'], ['person']]
    frames = list(synthetic_frames(args.frames))
    os.environ.setdefault('OPENAI_API_KEY', 'sk-loopback')
    options = dict(args.cfg_options or {})
    model = init_model(
        image_config(args.config, classes, 'none', options), 'cpu')
    rows = []
    with FakeOpenAIServer(latency=args.latency) as server, \
            tempfile.TemporaryDirectory() as cache:

        def fresh_source(name):  # an empty cache: every scene is asked
            source = build_vocabulary(
                dict(
                    type='OpenAIVocabulary',
                    base_url=server.base_url,
                    cache_file=f'{cache}/{name}.sqlite'))
            source.bind(model.clip)
            return source

        timed_run(model, frames[:2], args.scene_threshold,
                  fresh_source('warm-up'))
        timed_run(model, frames[:2], args.scene_threshold, None)
        for round_ in range(args.rounds):
            before = server.count()
            ours = timed_run(model, frames, args.scene_threshold,
                             fresh_source(f'round{round_}'))
            time.sleep(0.2)  # the last answer reaches the server's count
            requests = server.count() - before
            base = timed_run(model, frames, args.scene_threshold, None)
            rows.append((ours, base, requests))
            print(f'round {round_ + 1}: {ours.frames} frames, {ours.scenes} '
                  f'scenes, {requests} MLLM requests; OV-EVA '
                  f'{ours.ms_per_frame:.0f} ms/frame, base '
                  f'{base.ms_per_frame:.0f} ms/frame, ratio '
                  f'{ours.ms_per_frame / base.ms_per_frame:.2f}')
    ours_ms = float(np.median([o.ms_per_frame for o, _, _ in rows]))
    base_ms = float(np.median([b.ms_per_frame for _, b, _ in rows]))
    most = max(r for _, _, r in rows)
    print(f'frames {args.frames}, MLLM latency {args.latency}s, '
          f'{args.rounds} rounds: at most {most} MLLM requests per run '
          '(target <= 12)')
    print(f'OV-EVA {ours_ms:.0f} ms/frame, base (--vocabulary none) '
          f'{base_ms:.0f} ms/frame (medians), ratio {ours_ms / base_ms:.2f} '
          '(target <= 1.3)')
    last = rows[-1][0]
    used = ', '.join(f'{k} {last.sources.count(k)}'
                     for k in sorted(set(last.sources)))
    print(f'frames by vocabulary (last round): {used}')
    print(by_vocabulary_line([o for o, _, _ in rows]))


def by_vocabulary_line(runs) -> str:
    """OV-EVA's frames of every run split by the vocabulary they were
    segmented with: the lexicon until the MLLM's answer arrived, then the
    MLLM's (``StreamStats.by_vocabulary``)."""
    seconds = {'lexicon': [], 'mllm': []}
    for stats in runs:
        for origin, spent in stats.by_vocabulary().items():
            seconds.setdefault(origin, []).extend(spent)
    parts = [
        f'{origin} {len(spent)} frames, median ' +
        (f'{1000 * float(np.median(spent)):.0f} ms' if spent else 'n/a')
        for origin, spent in seconds.items()
    ]
    return 'OV-EVA frames by vocabulary (all rounds): ' + '; '.join(parts)


if __name__ == '__main__':
    run(main)
