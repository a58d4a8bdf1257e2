"""Latency of the web page (tools/app.py) for one 640x480 photo, against
the same segmentation called in-process, side by side.

The page is started as ``make app`` starts it (a process on a free loopback
port, the config's settings, ``--cfg-options`` applied) and asked through
``gradio_client``, as the browser asks it (upload, queue, segmentation,
overlay PNG and tables back); the in-process call runs the page's own
``Segmenter.segment`` on a model built the same way, with no server. Both
use random weights of the config's CLIP (timing only) unless
``--cfg-options`` says otherwise::

    python tools/benchmark_app.py                       # ViT-B/16, random
    python tools/benchmark_app.py --cfg-options \\
        model.clip.name=ov-eva-tiny model.clip.pretrained=None

Each mode (classes typed; no classes, found with the lexicon) is warmed up
once, then timed ``--rounds`` times, page and in-process in turn, and the
median kept. The last line is ``ratio page/in-process: X.XX``.
"""
import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CLASSES = 'cat; coffee cup, mug; table; wall; sky, clouds'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def start_page(options, log_file):
    port = free_port()
    cmd = [sys.executable, str(REPO / 'tools' / 'app.py'), '--port', str(port)]
    if options:
        cmd += ['--cfg-options', *options]
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f'tools/app.py exited; see {log_file.name}')
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f'tools/app.py did not start in 600 s; see '
                     f'{log_file.name}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--config', default=str(REPO / 'configs' / 'oveva_vitb16_ade.py'))
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        default=['model.clip.pretrained=None'],
        help='key=value settings for both (default: random weights)')
    args = parser.parse_args()
    options = list(args.cfg_options)
    from gradio_client import Client, handle_file
    from mmengine.config import DictAction

    import app as page_module

    folder = Path(tempfile.mkdtemp(prefix='ov_eva_page_bench_'))
    photo = folder / 'photo_640x480.jpg'
    with Image.open(REPO / 'demo' / 'coffee.jpg') as picture:
        picture.convert('RGB').resize((640, 480)).save(photo, quality=92)

    # the in-process model, built as the page builds its own
    parsed = argparse.Namespace()
    DictAction(option_strings=[], dest='cfg')(None, parsed, options)
    from ov_eva.apis import image_config
    cfg = image_config(args.config, cfg_options=parsed.cfg)
    from ov_eva.memory import reuse_freed_memory
    reuse_freed_memory()  # as the page does
    direct = page_module.Segmenter(cfg)
    lexicon = direct.source('lexicon', '', '')

    def in_process(classes):
        parsed_classes = page_module.parse_class_text(classes)
        with direct.lock:
            direct.segment(
                str(photo), parsed_classes, lexicon, lambda *a, **k: None)

    with open(folder / 'app.log', 'w') as log:
        proc, url = start_page(options, log)
        try:
            client = Client(url, verbose=False)

            def through_page(classes):
                status = client.predict(
                    handle_file(str(photo)),
                    classes,
                    'lexicon',
                    '',
                    'gpt-4o',
                    direct.base,
                    api_name='/segment')[3]
                if 'Done' not in status:
                    raise SystemExit(f'the page answered: {status}')

            print(f'640x480 photo, config {Path(args.config).name}, '
                  f'options {" ".join(options) or "-"}, CLIP '
                  f'{cfg.model.clip.name}, PAMR '
                  f'{"on" if cfg.model.get("pamr") else "off"}; median of '
                  f'{args.rounds} rounds after one warm-up')
            ratios = []
            for mode, classes in (('5 classes typed', CLASSES),
                                  ('no classes (lexicon)', '')):
                through_page(classes)  # warm-up: caches, lexicon embedding
                in_process(classes)
                times = {'page': [], 'in-process': []}
                for round_ in range(args.rounds):
                    order = ('page', 'in-process') if round_ % 2 == 0 else (
                        'in-process', 'page')
                    for which in order:
                        start = time.perf_counter()
                        (through_page if which == 'page' else in_process)(
                            classes)
                        times[which].append(time.perf_counter() - start)
                page_s = statistics.median(times['page'])
                direct_s = statistics.median(times['in-process'])
                ratios.append(page_s / direct_s)
                print(f'{mode}: page {page_s:.2f} s, in-process '
                      f'{direct_s:.2f} s, ratio {page_s / direct_s:.2f}')
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f'ratio page/in-process: {np.mean(ratios):.2f}')
    return 0


if __name__ == '__main__':
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')
    sys.exit(main())
