"""Speed of OV-EVA against its own baseline, in one process, same images.

Both models use the config's CLIP architecture with random weights (timing
only), its resolution and windows; the baseline has no vocabulary. OV-EVA is
timed with a warm vocabulary and term cache (a first, cold pass fills them
and reports what new-term encoding costs and how often terms repeat)::

    python tools/benchmark.py configs/oveva_vitb16_ade.py --images 8

Per-stage times come from wrapping the stages' entry points (no timing code
in the model). Each stage is also put against its floor: its FLOPs (counted
by ``torch.utils.flop_counter`` on one image) over the matrix-multiply rate
measured here at the precision the stage runs in. Peak memory is the
process's resident high-water mark (``VmHWM``, reset before each model's
pass over the images, with glibc's default malloc; the tools keep freed
memory, see ``ov_eva.memory``) on CPU, ``torch.cuda.max_memory_allocated``
on GPU.
Timing runs the two models in turn on each image, ``--rounds`` times, and
keeps each image's fastest round. The last line is
``ratio ov-eva/baseline: X.XX``.

``--bases CONFIG ...`` instead puts dense-feature bases side by side (their
baseline configs, random weights, in turn on each image as above): per
stage (CLIP tower up to its last block, the last block or ProxyCLIP's
proxy attention, the VFM tower, text, post-processing) time and each
base's peak memory, then ``ratio <base>/<first base>: X.XX`` per base::

    python tools/benchmark.py --bases configs/baselines/naclip_vitb16_ade.py \
        configs/baselines/proxyclip_vitb16_ade.py --vfm /path/dino-vitb8

CorrCLIP's stages are the VFM tower, the correlation (mask merging and
scope), the CLIP tower with its three branches, and mask generation
(``--masks``: a SAM2 run on every image, or a folder of pre-generated
masks), each with its share of the image's time. CorrCLIPv2's are the
VFM tower, the retrieval (region pooling in VFM space, the FAISS search,
reading the stores' rows), the CLIP tower, the support fusion and mask
generation; it retrieves from a synthetic bank of ``--bank-regions``
random regions (100 000 by default; stores and index as the builder writes
them), so its peak memory includes what such a bank costs.

``--device cuda`` times on the GPU: every stage is bracketed by
``torch.cuda.synchronize`` (kernels run asynchronously, so a stage's time
is only real once its work is done) and reports the peak GPU memory it
allocated (``torch.cuda.max_memory_allocated``, reset when the stage
starts). ``--amp bf16|fp16`` sets the image tower's autocast
(``model.clip.autocast``) of every model timed; on the CPU only bf16::

    python tools/benchmark.py --device cuda --amp bf16 --images 16
"""
import argparse
import atexit
import shutil
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch
from _cli import DEFAULT_CONFIG, UserError, add_cfg_options
from _cli import run as run_tool
from torch.utils.flop_counter import FlopCounterMode

# isort: off
import ov_eva  # noqa: F401  (before mmseg: compat for mmcv-lite)
from mmengine.config import Config  # noqa: E402
from mmengine.runner import set_random_seed  # noqa: E402
from mmseg.apis import inference_model, init_model  # noqa: E402

from ov_eva.clip_encoder import autocast_dtype  # noqa: E402
from ov_eva.memory import reuse_freed_memory  # noqa: E402

# isort: on


class StageTimer:
    """Accumulates wall time (and, while ``counting``, FLOPs) of wrapped
    callables, per stage name. Stages never nest, so each call can have a
    FLOP counter of its own."""

    def __init__(self, device='cpu'):
        self.seconds = defaultdict(float)
        self.flops = defaultdict(int)
        self.counting = False
        self.cuda = torch.device(device).type == 'cuda'
        self.peak_bytes = defaultdict(int)  # per stage, on GPU only
        self.run_peak = 0  # the highest stage peak since the last reset

    def _sync(self):
        if self.cuda:  # a stage's time is real once its kernels are done
            torch.cuda.synchronize()

    def _start_stage(self):
        self._sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        return time.perf_counter()

    def _end_stage(self, stage, start):
        self._sync()
        self.seconds[stage] += time.perf_counter() - start
        if self.cuda:
            peak = torch.cuda.max_memory_allocated()
            self.peak_bytes[stage] = max(self.peak_bytes[stage], peak)
            self.run_peak = max(self.run_peak, peak)

    def wrap(self, owner, attribute, stage):
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            if self.counting:
                with FlopCounterMode(display=False) as counter:
                    result = original(*args, **kwargs)
                self.flops[stage] += counter.get_total_flops()
                return result
            start = self._start_stage()
            try:
                return original(*args, **kwargs)
            finally:
                self._end_stage(stage, start)

        setattr(owner, attribute, timed)

    @contextmanager
    def stage(self, name):
        """The whole image: synchronised, but its memory is not reset (the
        stages inside reset it; their highest peak is the image's)."""
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        self.seconds[name] += time.perf_counter() - start


def build(cfg, vocabulary, device):
    cfg = cfg.copy()
    cfg.model.vocabulary = vocabulary
    set_random_seed(0)
    model = init_model(cfg, device=device)
    timer = StageTimer(device)
    timer.wrap(model.clip, 'forward', 'image encoding')
    timer.wrap(model.class_bank.text_bank, 'embed', 'text encoding')
    timer.wrap(model.class_bank.term_bank, 'embed', 'text encoding')
    if model.vocabulary is not None:
        timer.wrap(model.vocabulary, 'fetch', 'vocabulary lookup')
    if model.uses_vocabulary:
        timer.wrap(model.decode_head, 'forward', 'refinement')
    # resizing to the original image, PAMR there, the decision
    timer.wrap(model.decode_head, 'decide', 'post-processing')
    return model, timer


def run_one(model, timer, image):
    """Stage seconds of one image, and of all its stages (``'total'``)."""
    timer.seconds.clear()
    with torch.no_grad(), timer.stage('total'):
        inference_model(model, image)
    return dict(timer.seconds)


def run(model, timer, images):
    return [run_one(model, timer, image) for image in images]


def summed(per_image):
    total = defaultdict(float)
    for seconds in per_image:
        for stage, value in seconds.items():
            total[stage] += value
    return dict(total)


def fastest(times):
    """Per image, the stage seconds of its fastest round, summed over the
    images."""
    return summed(
        min(rounds, key=lambda s: s['total']) for rounds in times.values())


def count_flops(model, timer, image):
    """FLOPs of one image, per stage and in all (``'total'``)."""
    timer.flops.clear()
    timer.counting = True
    # nn.MultiheadAttention's fused inference path (taken in float32) is
    # invisible to the FLOP counter: count the same math unfused
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            inference_model(model, image)
    finally:
        timer.counting = False
        torch.backends.mha.set_fastpath_enabled(fastpath)
    flops = dict(timer.flops)
    # the outer counter sees every stage's work as well
    flops['total'] = counter.get_total_flops()
    flops['scoring, merging, resizing'] = flops['total'] - sum(
        timer.flops.values())
    return flops


def matmul_rate(dtype, device, repeats=100):
    """GFLOP/s of one ViT-B/16 MLP matmul for 8 windows (1576 x 768 x 3072)
    in ``dtype``: the ceiling the image tower is held against. The fastest
    of many (after a warm-up), as this shared machine has slow moments."""
    a = torch.randn(1576, 768, device=device).to(dtype)
    b = torch.randn(768, 3072, device=device).to(dtype)
    for _ in range(10):
        a @ b
    best = float('inf')
    for _ in range(repeats):
        if device != 'cpu':
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device != 'cpu':
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * 1576 * 768 * 3072 / best / 1e9


class PeakMemory:
    """Peak memory while a block runs: the resident high-water mark on CPU
    (Linux: reset through /proc/self/clear_refs), allocated memory on GPU
    (``timer``'s stages reset the GPU's counter each, so the highest of
    their peaks counts too).
    """

    def __init__(self, device, timer=None):
        self.device = device
        self.timer = timer
        self.gib = None

    def __enter__(self):
        if torch.device(self.device).type == 'cuda':
            torch.cuda.reset_peak_memory_stats()
            if self.timer is not None:
                self.timer.run_peak = 0
        else:
            try:
                with open('/proc/self/clear_refs', 'w') as f:
                    f.write('5')
            except OSError:
                pass  # not Linux: the process-wide peak so far
        return self

    def __exit__(self, *exc):
        if torch.device(self.device).type == 'cuda':
            stages = self.timer.run_peak if self.timer is not None else 0
            self.gib = max(torch.cuda.max_memory_allocated(), stages) / 2**30
            return
        try:
            with open('/proc/self/status') as f:
                line = next(x for x in f if x.startswith('VmHWM:'))
            self.gib = int(line.split()[1]) / 2**20
        except (OSError, StopIteration):
            import resource
            self.gib = resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 2**20


def report(name, seconds, flops, rates, count, peak, stage_peaks=None):
    """One model's lines: speed, memory, then each stage's time and how
    close it runs to its FLOP floor (``rates``: GFLOP/s per stage) and, on
    GPU, its peak memory (``stage_peaks``: bytes per stage)."""
    stage_peaks = stage_peaks or {}
    total = seconds['total']
    known = sum(v for k, v in seconds.items() if k != 'total')
    rows = {k: v for k, v in seconds.items() if k != 'total'}
    rows['scoring, merging, resizing'] = total - known
    print(f'{name}: {count / total:.3f} images/s, '
          f'{1000 * total / count:.0f} ms/image, peak memory {peak:.2f} GiB')
    for stage, value in [*rows.items(), ('whole image', total)]:
        line = (f'  {stage:28s} {1000 * value / count:9.1f} ms/image '
                f'({100 * value / total:5.1f}%)')
        work = flops.get('total' if stage == 'whole image' else stage, 0)
        if work and value > 0:
            floor = work / (rates[stage] * 1e9)
            line += (
                f'  {work / 1e9:7.1f} GFLOP, floor '
                f'{1000 * floor:7.1f} ms: {100 * floor * count / value:5.1f}%'
                ' of the matmul rate')
        if stage in stage_peaks:
            line += f'  peak {stage_peaks[stage] / 2**30:.2f} GiB'
        print(line)


def synthetic_bank(cfg, regions: int) -> None:
    """Point a CorrCLIPv2 config at a bank of ``regions`` random regions in
    a temporary folder (stores sized by its CLIPs, keys by its VFM, the
    index built as the builder builds it: IVFPQ from 10 000 regions)."""
    import open_clip

    from ov_eva import memory_bank as mb
    from ov_eva.backends.vfm import vfm_config
    clip, bank = cfg.model.clip, cfg.model.clip.bank
    root = tempfile.mkdtemp(prefix='ov_eva_bank_')
    atexit.register(shutil.rmtree, root, True)
    layout = mb.BankLayout(root, 'synthetic')
    vfm = clip.vfm.get('type', 'radiov3')
    key_dim = 1024 if vfm.startswith('radio') else vfm_config(
        clip.vfm.name, clip.vfm.get('pretrained')).hidden_size
    dims = {bank.main: open_clip.get_model_config(clip.name)['embed_dim']}
    if bank.get('aux', 'dfnclip_b'):
        dims[bank.get('aux', 'dfnclip_b')] = open_clip.get_model_config(
            clip.aux_clip.name)['embed_dim']
    generator = torch.Generator().manual_seed(0)
    for path, dim in [(layout.clip_store(k), d) for k, d in dims.items()
                      ] + [(layout.vfm_store(vfm), key_dim)]:
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = torch.randn(regions, dim, generator=generator)
        torch.save(torch.nn.functional.normalize(rows, dim=1).half(), path)
    mb.update_index(layout.index(vfm), mb.open_store(layout.vfm_store(vfm)))
    clip.bank.update(root=root, name='synthetic')


def build_base(path, options, vfm, device, masks=None, bank_regions=0):
    """A base's baseline config with random weights, its stages timed."""
    cfg = Config.fromfile(path)
    cfg.model.clip.pretrained = None  # random weights: timing only
    for key in ('vfm', 'dino'):  # ProxyCLIP's VFM, CorrCLIP's DINO
        if key in cfg.model.clip:
            cfg.model.clip[key].pretrained = None
            if vfm:
                cfg.model.clip[key].name = vfm
                if 'type' in cfg.model.clip[key]:  # CorrCLIPv2's: by name
                    cfg.model.clip[key].type = 'dinov2'

    if 'masks' in cfg.model.clip and masks:
        # region masks: a folder of .npz, or a SAM2 generating them every
        # time (no cache) so that their cost is measured
        model_folder = (Path(masks) / 'config.json').is_file()
        cfg.model.clip.masks = dict(
            type='files', root=masks) if Path(masks).is_dir() and \
            not model_folder else dict(
                type='sam2', name=masks, pretrained=None, cache_dir=False)
    cfg.merge_from_dict(options)
    if 'bank' in cfg.model.clip:  # CorrCLIPv2: a random aux CLIP, its size
        cfg.model.clip.aux_clip = dict(name=cfg.model.clip.name,
                                       pretrained=None)
        if bank_regions:
            synthetic_bank(cfg, bank_regions)
    set_random_seed(0)
    model = init_model(cfg, device=device)
    timer = StageTimer(device)
    clip = model.clip
    if hasattr(clip, 'retrieve'):  # CorrCLIPv2's stages
        timer.wrap(clip.vfm, 'forward', 'VFM tower')
        timer.wrap(clip, 'support', 'retrieval (pool, search, read stores)')
        timer.wrap(clip, '_branches', 'CLIP tower (three branches)')
        timer.wrap(clip, 'fuse_support', 'support fusion')
        if clip.mask_source is not None:
            timer.wrap(clip.mask_source, 'get', 'mask generation')
    elif hasattr(clip, 'mask_source'):  # CorrCLIP's stages
        timer.wrap(clip, '_vfm', 'VFM tower')
        timer.wrap(clip, '_correlation', 'correlation')
        timer.wrap(clip, '_branches', 'CLIP tower (three branches)')
        if clip.mask_source is not None:  # before the features
            timer.wrap(clip.mask_source, 'get', 'mask generation')
    elif hasattr(clip, 'vfm_forward'):
        timer.wrap(clip, '_tokens', 'CLIP tower (to the last block)')
        timer.wrap(clip, 'vfm_forward', 'VFM tower')
        timer.wrap(clip, '_proxy_block', 'proxy attention (last block)')
    else:
        timer.wrap(clip, '_tokens', 'CLIP tower (to the last block)')
        timer.wrap(clip, '_last_block', 'last block')
    timer.wrap(model.class_bank.text_bank, 'embed', 'text encoding')
    timer.wrap(model.decode_head, 'decide', 'post-processing')
    return model, timer


def bench_images(folder: Optional[str], count: int) -> list:
    """Paths of ``count`` images: the files of ``folder`` in name order,
    repeated, or random ADE20K-sized photos written to a temporary folder
    (paths, as mask sources such as SAM2's cache key on them)."""
    if folder is None:
        folder = tempfile.mkdtemp(prefix='ov_eva_benchmark_')
        atexit.register(shutil.rmtree, folder, True)
        rng = np.random.default_rng(0)
        for i in range(count):
            cv2.imwrite(f'{folder}/random_{i:03d}.png',
                        rng.integers(0, 255, (512, 683, 3), dtype=np.uint8))
    files = sorted(p for p in Path(folder).expanduser().glob('*')
                   if p.suffix.lower() in ('.jpg', '.jpeg', '.png'))
    if not files:
        raise UserError(f'--image-dir {folder!r} holds no .jpg or .png '
                        'image; use a folder of photos, or leave the '
                        'option out for random images')
    return [str(files[i % len(files)]) for i in range(count)]


def compare_bases(args, images, device):
    """Bases side by side: each image through every base in turn (order
    rotated every round), each image's fastest round kept."""
    names = [Path(p).stem for p in args.bases]
    models = [
        build_base(p, args.cfg_options, args.vfm, device, args.masks,
                   args.bank_regions) for p in args.bases
    ]
    towers = [
        autocast_dtype(m.clip.autocast, torch.device(device)) or torch.float32
        for m, _ in models
    ]
    print('image towers run in: ' + ', '.join(
        f'{name} {str(dtype)[6:]}' for name, dtype in zip(names, towers)))
    for model, _ in models:
        model.class_bank.query_set()  # class text once, before timing
    peaks = []
    for model, timer in models:  # peak memory of each over all images
        with PeakMemory(device, timer) as peak:
            run(model, timer, images)
        peaks.append(peak.gib)
    reuse_freed_memory()
    times = [defaultdict(list) for _ in models]
    for round_ in range(args.rounds):
        order = list(range(len(models)))
        order = order[round_ % len(order):] + order[:round_ % len(order)]
        for index, image in enumerate(images):
            for which in order:
                times[which][index].append(run_one(*models[which], image))
    seconds = [fastest(t) for t in times]
    print(f'each image\'s fastest of {args.rounds} rounds, the bases in '
          'turn:')
    for name, value, peak, (_, timer) in zip(names, seconds, peaks, models):
        report(name, value, {}, {}, len(images), peak, timer.peak_bytes)
    for name, value in zip(names, seconds):
        print(f'ratio {name}/{names[0]}: '
              f'{value["total"] / seconds[0]["total"]:.2f}')


def device_name(device):
    """``cpu``, or the GPU's name (for the figures' record)."""
    if torch.device(device).type != 'cuda':
        return 'cpu'
    return f'{device} ({torch.cuda.get_device_name(device)})'


def check_device(device, amp):
    """The device to time on (default: cuda when present), or a UserError
    before anything is built: no such device, or fp16 on the CPU."""
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise UserError(f'--device {device!r}: not a device; use cpu, cuda '
                        'or cuda:N') from None
    if kind not in ('cpu', 'cuda'):
        raise UserError(f'--device {device!r}: only cpu and cuda are timed')
    if kind == 'cuda' and not torch.cuda.is_available():
        raise UserError(f'--device {device}: no CUDA GPU is visible to '
                        f'PyTorch {torch.__version__} here (CUDA build: '
                        f'{torch.version.cuda}); run on a GPU machine or '
                        'use --device cpu')
    index = torch.device(device).index
    if kind == 'cuda' and index is not None and \
            index >= torch.cuda.device_count():
        raise UserError(f'--device {device}: only '
                        f'{torch.cuda.device_count()} GPU(s) visible')
    if kind == 'cpu' and amp == 'fp16':
        raise UserError('--amp fp16 on the CPU: float16 matmuls are slow '
                        'or missing there; use --amp bf16 (or --device '
                        'cuda)')
    return device


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', nargs='?', default=str(DEFAULT_CONFIG))
    parser.add_argument('--images', type=int, default=6)
    parser.add_argument(
        '--image-dir',
        default=None,
        help='folder of .jpg/.png images to time on, taken in name order '
        'and repeated up to --images (default: random 512x683 images, the '
        'size of an ADE20K photo)')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument(
        '--device',
        default=None,
        help='cpu, cuda or cuda:N (default: cuda when a GPU is present)')
    parser.add_argument(
        '--amp',
        choices=['fp16', 'bf16'],
        default=None,
        help="the image tower's autocast (model.clip.autocast) of every "
        "model timed; default: the config's. CPU: bf16 only")
    add_cfg_options(parser, help=None, default={})
    parser.add_argument(
        '--bases',
        nargs='+',
        metavar='CONFIG',
        help='baseline configs of dense-feature bases to put side by side '
        '(the first is the reference of the ratios)')
    parser.add_argument(
        '--vfm',
        default=None,
        help='with --bases: the VFM (model.clip.vfm.name: hub id, local '
        'folder or ov-eva-tiny-dino) of the bases that have one')
    parser.add_argument(
        '--masks',
        default=None,
        help='with --bases: the region masks of the bases that take them '
        '(CorrCLIP): a folder of <image stem>.npz, or a SAM2 (hub id, folder '
        'with its config.json, or ov-eva-tiny-sam2; random weights) '
        'generating them for every image')
    parser.add_argument(
        '--bank-regions',
        type=int,
        default=100000,
        help='with --bases: CorrCLIPv2 bases retrieve from a synthetic bank '
        'of this many random regions (0: the config\'s bank)')
    args = parser.parse_args()
    device = check_device(args.device, args.amp)
    if args.amp:
        args.cfg_options['model.clip.autocast'] = args.amp
    if args.bases:
        images = bench_images(args.image_dir, args.images)
        print(f'{args.images} images, random weights, device '
              f'{device_name(device)}, autocast {args.amp or "per config"}, '
              f'{torch.get_num_threads()} threads; bases: '
              f'{", ".join(args.bases)}')
        return compare_bases(args, images, device)
    cfg = Config.fromfile(args.config)
    cfg.model.clip.pretrained = None  # random weights: timing only
    cfg.merge_from_dict(args.cfg_options)
    images = bench_images(args.image_dir, args.images)
    print(f'{args.images} images ({args.image_dir or "random, 512x683"}'
          f'), CLIP {cfg.model.clip.name} (random weights), windows '
          f'{cfg.model.test_cfg.get("crop_size")}, device '
          f'{device_name(device)}, autocast {cfg.model.clip.autocast}, '
          f'{torch.get_num_threads()} threads')

    ours, ours_timer = build(cfg, cfg.model.get('vocabulary'), device)
    base, base_timer = build(cfg, None, device)
    image_dtype = autocast_dtype(ours.clip.autocast,
                                 torch.device(device)) or torch.float32
    rate = {
        dtype: matmul_rate(dtype, device)
        for dtype in {image_dtype, torch.float32}
    }
    print('matmul rate: ' + ', '.join(f'{str(d)[6:]} {r:.0f} GFLOP/s'
                                      for d, r in rate.items()) +
          f'; image tower runs in {str(image_dtype)[6:]}')
    # the image tower in its own precision, everything else in float32
    rates = defaultdict(lambda: rate[torch.float32])
    rates['image encoding'] = rate[image_dtype]
    # the whole image against the matmul rate of the stage doing most work
    rates['whole image'] = rate[image_dtype]
    start = time.perf_counter()
    ours.class_bank.query_set(), base.class_bank.query_set()
    print(f'class text embeddings (once; cached on disk afterwards): '
          f'{time.perf_counter() - start:.1f} s')

    # the first pass fills the vocabulary and term caches
    cold = summed(run(ours, ours_timer, images))
    terms = [
        row['term'] for image in images for row in inference_model(
            ours, image).metainfo.get('ov_eva_vocabulary', [])
    ]
    unique = len(set(terms))
    print(f'first pass: {cold["total"]:.1f} s, vocabulary lookup '
          f'{cold.get("vocabulary lookup", 0):.1f} s, new-term text '
          f'encoding {cold.get("text encoding", 0):.1f} s for '
          f'{ours.class_bank.term_bank.encoded_count} terms (0: all cached '
          f'by earlier runs, see $OV_EVA_CACHE); {len(terms)} terms over '
          f'{len(images)} images, {unique} distinct '
          f'({100 * (1 - unique / max(len(terms), 1)):.0f}% repeats)')

    flops = [
        count_flops(m, t, images[0])
        for m, t in ((base, base_timer), (ours, ours_timer))
    ]
    # peak memory of each model over all images (also the warm-up)
    peaks = [PeakMemory(device, base_timer), PeakMemory(device, ours_timer)]
    with peaks[0]:
        run(base, base_timer, images)
    with peaks[1]:
        run(ours, ours_timer, images)
    # then the two in turn on each image, the first to go swapped every
    # round, and each image's fastest round kept: a slow moment of this
    # shared machine hits both models alike. Timed as tools/test.py and
    # demo.py run, with freed memory reused (after the peaks: a process that
    # keeps its memory has no peak of each model)
    reuse_freed_memory()
    times = [defaultdict(list), defaultdict(list)]
    models = [(base, base_timer), (ours, ours_timer)]
    for round_ in range(args.rounds):
        for index, image in enumerate(images):
            for which in ((0, 1) if round_ % 2 == 0 else (1, 0)):
                times[which][index].append(run_one(*models[which], image))
    base_seconds, ours_seconds = fastest(times[0]), fastest(times[1])
    print(f'each image\'s fastest of {args.rounds} rounds, the two models '
          'in turn (FLOPs and floors per image):')
    report('baseline', base_seconds, flops[0], rates, len(images),
           peaks[0].gib, base_timer.peak_bytes)
    report('ov-eva (warm caches)', ours_seconds, flops[1], rates, len(images),
           peaks[1].gib, ours_timer.peak_bytes)
    print(f'ratio ov-eva/baseline: '
          f'{ours_seconds["total"] / base_seconds["total"]:.2f}')


if __name__ == '__main__':
    run_tool(main)
