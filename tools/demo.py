r"""Segment your own images with your own class names.

One class an argument, synonyms comma-separated (a class scores as the max
over its synonyms), a class file (one class a line, same syntax), or
neither: then each image's classes are found in its vocabulary
(``model.classes='auto'``: the lexicon's top concepts or the MLLM's
perceived terms, merged into synonym groups, plus a background class)::

    python tools/demo.py photo.jpg --classes cat sofa "wall, brick wall" floor
    python tools/demo.py my_photos/ --class-file my_classes.txt --out vis/
    python tools/demo.py photo.jpg     # no class list: what is in it?
    python tools/demo.py photo.jpg --classes sky building road tree \
        --vocabulary none --device cpu --opacity 0.6
    python tools/demo.py photo.jpg --classes cat dog grass \
        --vocabulary openai --cfg-options model.vocabulary.model=gpt-4o-mini

The model is ``configs/oveva_vitb16_ade.py`` (``--config`` picks another)
with its classes replaced by yours, no background threshold (``prob_thd=0``,
``bg_idx=0``; set them with ``--cfg-options``) and the config's vocabulary
source, the offline CLIP-ranked lexicon, unless ``--vocabulary`` names
another (``lexicon``, ``openai``, ``hf``, ``cached``, ``static``, ``none``
or a registered type name). ``--cfg-options`` is applied last.

A folder is searched recursively for images (jpg, jpeg, png, bmp, webp, tif,
tiff). Per image, in ``--out`` (sub-folders kept)::

    <stem>_overlay.png  the image with the prediction blended in, and a
                        legend of the classes present (share of pixels)
    <stem>_label.png    class index per pixel (uint8; uint16 for >255
                        classes), the size of the image
    <stem>.json         classes, pixel counts and shares, the vocabulary
                        used and its mapping, config and time taken

Exit status: 0 when every image was segmented; 1 when some failed (each is
named, the others are still written); 2 for a mistake in what was given
(bad arguments, checked before the model is built; an unknown setting or a
bad value; weights not available offline), told in one ``error:`` line
(``--debug`` adds the traceback).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from _cli import (Context, UserError, add_debug_flag, check_classes,
                  check_config_file, check_options, run)
from mmengine.config import Config, DictAction  # no torch yet
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / 'configs' / 'oveva_vitb16_ade.py'
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
WHITE, BLACK = (255, 255, 255), (0, 0, 0)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 1)[1])
    parser.add_argument('input', help='an image file or a folder of images')
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        '--classes',
        nargs='+',
        metavar='CLASS',
        help='class names, one an argument; synonyms comma-separated, '
        'e.g. cat sofa "wall, brick wall"')
    group.add_argument(
        '--class-file',
        help='text file, one class a line (or a shipped '
        'name such as ade20k); with neither option each image\'s classes '
        'come from its vocabulary')
    parser.add_argument(
        '--config',
        default=str(DEFAULT_CONFIG),
        help='model config (default: %(default)s)')
    parser.add_argument(
        '--vocabulary',
        help='vocabulary source: lexicon, openai, hf, cached, static, none '
        "or a type name (default: the config's)")
    parser.add_argument(
        '--out', default='demo_out', help='output folder (%(default)s)')
    parser.add_argument(
        '--device',
        help='cpu, cuda, cuda:0, ... (default: cuda if '
        'available, else cpu)')
    parser.add_argument(
        '--opacity',
        type=float,
        default=0.5,
        help='opacity of the prediction in the overlay, 0..1 (%(default)s)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value (applied last)')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def find_images(args):
    """(images, root): the image, or every image under the folder (sorted),
    and the folder their output paths are relative to. Exits with a clear
    message when there is nothing to segment."""
    path = Path(args.input).expanduser()
    if not path.exists():
        raise UserError(
            f'{args.input!r} does not exist; give an image file or '
            'a folder of images')
    if path.is_file():
        return [path], None
    if not path.is_dir():
        raise UserError(f'{args.input!r} is neither a file nor a folder')
    out = Path(args.out).expanduser().resolve()
    images = sorted(
        p for p in path.rglob('*')
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and out not in p.resolve().parents)  # not our own earlier outputs
    if not images:
        raise UserError(
            f'folder {args.input!r} holds no images '
            f'({", ".join(s[1:] for s in IMAGE_SUFFIXES)}; searched '
            'recursively); give a folder with images, or one '
            'image file')
    return images, path


def read_classes(args):
    """Classes as lists of synonyms, parsed as class files are (no torch
    needed); None when none were given (found per image)."""
    if args.classes is None and args.class_file is None:
        return None
    if args.class_file:
        return check_classes(class_file=args.class_file, flag='--class-file')
    return check_classes(args.classes, flag='--classes')


def choose_device(device) -> str:
    import torch
    cuda = torch.cuda.is_available()
    if device is None:
        return 'cuda' if cuda else 'cpu'
    if device.startswith('cuda') and not cuda:
        raise UserError(f'--device {device}: CUDA is not available here; use '
                        '--device cpu')
    return device


def build_config(args, classes) -> Config:
    cfg = Config.fromfile(Path(args.config).expanduser())
    cfg.model.classes = 'auto' if classes is None else [
        ', '.join(synonyms) for synonyms in classes
    ]
    cfg.model.prob_thd = 0.0
    cfg.model.bg_idx = 0
    if args.vocabulary is not None:
        from ov_eva.registry import (VOCABULARIES, VOCABULARY_SHORT_NAMES,
                                     vocabulary_config)
        vocabulary = vocabulary_config(args.vocabulary)
        if vocabulary is not None and VOCABULARIES.get(
                vocabulary['type']) is None:
            raise UserError(
                f'--vocabulary {args.vocabulary!r} is unknown; use '
                f'one of {", ".join(VOCABULARY_SHORT_NAMES)}, none '
                f'or a type name: {", ".join(VOCABULARIES.module_dict)}')
        cfg.model.vocabulary = vocabulary
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    # mmseg's inference_model builds cfg.test_pipeline, dropping only the
    # transforms named exactly LoadAnnotations: drop any annotation loader,
    # and take the dataset's pipeline where the config has no test_pipeline
    pipeline = cfg.get('test_pipeline') or \
        cfg.test_dataloader.dataset.pipeline
    cfg.test_pipeline = [
        t for t in pipeline if 'Annotation' not in str(t.get('type'))
    ]
    return cfg


OFFLINE_ROUTE = ('Without the weights, try the tools on the tiny random '
                 'model (no download, masks are noise): --cfg-options '
                 'model.clip.name=ov-eva-tiny model.clip.pretrained=None')


def build_model(cfg: Config, device: str):
    """mmseg's ``init_model``, seeded so that random weights (the tiny test
    model) are reproducible, with its weights loaded now: missing weights
    are said once, before the first image, with the offline route."""
    from mmengine.runner import set_random_seed
    from mmseg.apis import init_model
    set_random_seed(0)
    model = init_model(cfg, checkpoint=None, device=device)
    try:
        model.clip.load_pretrained()  # a no-op once loaded
    except FileNotFoundError as error:
        raise UserError(
            f'{" ".join(str(error).split())} {OFFLINE_ROUTE}') from None
    return model


def class_palette(num_classes: int) -> np.ndarray:
    """(K, 3) uint8 light, distinct colours: hues a golden angle apart at
    high value and medium saturation, so that a class blended over a photo
    lightens it instead of darkening it (the regions get outlines in the
    same colours, see ``draw_overlay``); colours that round to the same
    bytes are nudged apart, so every class has its own."""
    k = np.arange(num_classes)
    hue = (k * 0.618033988749895) % 1.0 * 6
    saturation = np.array([0.45, 0.65, 0.85])[k % 3]
    value = np.array([0.98, 0.88])[k % 2]
    # HSV -> RGB (colorsys's formula, vectorised)
    sector, frac = np.floor(hue).astype(int) % 6, hue - np.floor(hue)
    p, q = value * (1 - saturation), value * (1 - saturation * frac)
    t = value * (1 - saturation * (1 - frac))
    rgb = np.choose(sector[None], [
        np.stack(c) for c in ((value, t, p), (q, value, p), (p, value, t),
                              (p, q, value), (t, p, value), (value, p, q))
    ]).T
    palette = np.round(rgb * 255).astype(int)
    seen = set()
    for row in palette:
        while tuple(row) in seen:
            row[2] = (row[2] + 7) % 256
        seen.add(tuple(row))
    return palette.astype(np.uint8)


def region_edges(label: np.ndarray, width: int = 1) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour (``width`` pixels
    thick) has another label."""
    edges = np.zeros(label.shape, dtype=bool)
    edges[:, :-1] |= label[:, 1:] != label[:, :-1]
    edges[:-1] |= label[1:] != label[:-1]
    if width > 1:
        edges = cv2.dilate(
            edges.astype(np.uint8), np.ones((width, width),
                                            np.uint8)).astype(bool)
    return edges


def legend_font(image_height: int):
    """PIL's default font, ~14 px (larger on large images); the bitmap
    default on Pillow without a scalable default font."""
    size = max(14, round(image_height / 40))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def draw_overlay(image: np.ndarray, label: np.ndarray, palette: np.ndarray,
                 rows, opacity: float) -> Image.Image:
    """The image with the prediction blended in, and on its right a legend
    panel: one row (swatch, name, share) per class present."""
    height, width = label.shape
    # uint8 blending (rounded, saturated): a float copy of a 48-megapixel
    # photo would cost 0.6 GB a channel-stack
    colours = palette[label]
    blended = cv2.addWeighted(
        np.ascontiguousarray(image), 1 - opacity, colours, opacity, 0)
    # each region outlined in its colour, so it reads over any photo
    edges = region_edges(label, max(1, round(min(height, width) / 300)))
    blended[edges] = colours[edges]
    blended = Image.fromarray(blended)
    font = legend_font(height)
    measure = ImageDraw.Draw(Image.new('RGB', (1, 1)))
    box = measure.textbbox((0, 0), 'Hg', font=font)
    line = box[3] - box[1]
    pad, swatch, step = line, line + 4, line + 12
    header = f'{len(rows)} of {len(palette)} classes'
    texts = [f'{name}  {share_text(share)}' for _, name, share in rows]
    text_width = max(
        measure.textlength(t, font=font) for t in texts + [header])
    legend_w = int(pad + swatch + pad // 2 + text_width + pad)
    legend_h = int(pad + step * (len(rows) + 1) + pad)
    canvas = Image.new('RGB', (width + legend_w, max(height, legend_h)), WHITE)
    canvas.paste(blended, (0, 0))
    draw = ImageDraw.Draw(canvas)
    x, y = width + pad, pad
    draw.text((x, y), header, fill=BLACK, font=font)
    for (k, _, _), text in zip(rows, texts):
        y += step
        draw.rectangle([x, y, x + swatch - 1, y + swatch - 1],
                       fill=tuple(int(c) for c in palette[k]),
                       outline=BLACK)
        draw.text((x + swatch + pad // 2, y + 2), text, fill=BLACK, font=font)
    return canvas


def share_text(share: float) -> str:
    return '<0.1%' if share < 0.05 else f'{share:.1f}%'


class Console:
    """Per-image lines on stdout, errors on stderr, and (folders only) a
    progress bar on stderr, kept below the lines."""

    def __init__(self, total: int, show_bar: bool):
        from mmengine.utils import ProgressBar
        self.bar = ProgressBar(total, file=sys.stderr) if show_bar else None

    def say(self, message: str, error: bool = False):
        if self.bar is not None:  # wipe the bar; step() draws it again
            sys.stderr.write('\r\033[K' if sys.stderr.isatty() else '\n')
            sys.stderr.flush()
        print(message, file=sys.stderr if error else sys.stdout, flush=True)

    def step(self):
        if self.bar is not None:
            self.bar.update()

    def close(self):
        if self.bar is not None:
            sys.stderr.write('\n')
            sys.stderr.flush()


def output_stems(images, root, out: Path):
    """Output path prefix of each image: ``out/<sub-folders>/<stem>``;
    images sharing a stem in one folder (a.jpg, a.png) get the suffix."""
    relative = [p.relative_to(root) if root else Path(p.name) for p in images]
    seen = {}
    for rel in relative:
        key = rel.with_suffix('')
        seen[key] = seen.get(key, 0) + 1
    return [
        out / (rel.with_suffix('') if seen[rel.with_suffix('')] == 1 else
               rel.parent / f'{rel.stem}_{rel.suffix[1:].lower()}')
        for rel in relative
    ]


def segment(model, path: Path, prefix: Path, palette, opacity: float,
            info: dict) -> dict:
    """Segment one image and write its three files; the JSON record."""
    from mmseg.apis import inference_model

    from ov_eva.vocabulary.base import read_rgb
    start = time.perf_counter()
    image = read_rgb(path)
    # a path, not an array: the vocabulary is fetched (and cached) by file
    sample = inference_model(model, str(path))
    label = sample.pred_sem_seg.data[0].cpu().numpy()
    vocabulary = list(sample.metainfo.get('ov_eva_vocabulary') or [])
    found = sample.metainfo.get('ov_eva_classes')  # classes='auto'
    if found is not None:
        palette = class_palette(len(found))
        info = dict(info, classes=class_records(found, palette))
    del sample  # its logits: the largest thing held, no longer needed
    if label.shape != image.shape[:2]:
        raise RuntimeError(f'prediction {label.shape} and image '
                           f'{image.shape[:2]} differ in size')
    counts = np.bincount(label.ravel(), minlength=len(palette))
    total = int(counts.sum())
    present = sorted(np.flatnonzero(counts), key=lambda k: (-counts[k], k))
    names = [c['name'] for c in info['classes']]
    rows = [(int(k), names[k], 100.0 * counts[k] / total) for k in present]
    prefix.parent.mkdir(parents=True, exist_ok=True)
    overlay = prefix.with_name(f'{prefix.name}_overlay.png')
    label_file = prefix.with_name(f'{prefix.name}_label.png')
    draw_overlay(image, label, palette, rows, opacity).save(overlay)
    dtype = np.uint8 if len(palette) < 256 else np.uint16
    Image.fromarray(label.astype(dtype)).save(label_file)
    record = dict(
        image=str(path),
        image_size=dict(width=int(image.shape[1]), height=int(image.shape[0])),
        config=info['config'],
        device=info['device'],
        classes=info['classes'],
        classes_found=found is not None,
        present=[
            dict(
                index=k,
                name=name,
                pixels=int(counts[k]),
                share=round(share, 4),
                color=palette[k].tolist()) for k, name, share in rows
        ],
        vocabulary_source=info['vocabulary_source'],
        vocabulary=vocabulary,
        outputs=dict(overlay=str(overlay), label=str(label_file)))
    record['seconds'] = round(time.perf_counter() - start, 3)
    with open(prefix.with_name(f'{prefix.name}.json'), 'w') as f:
        json.dump(record, f, indent=2, default=str)
    return record


def class_records(classes, palette) -> list:
    """The classes as the JSON and the page show them."""
    return [
        dict(
            index=k,
            name=synonyms[0],
            synonyms=list(synonyms),
            color=palette[k].tolist()) for k, synonyms in enumerate(classes)
    ]


def main(argv=None):
    args = parse_args(argv)
    # what needs no torch first: a mistake answers in a fraction of a second
    if not 0 <= args.opacity <= 1:
        raise UserError(f'--opacity {args.opacity} is outside 0..1')
    check_config_file(args.config, '--config')
    check_options(args.cfg_options, args.config)
    images, root = find_images(args)
    classes = read_classes(args)

    import ov_eva  # noqa: F401  (registers OV-EVA; compat before mmseg)
    from ov_eva.memory import reuse_freed_memory
    from ov_eva.vocabulary import FatalVocabularyError
    device = choose_device(args.device)
    cfg = build_config(args, classes)
    Context.cfg = cfg
    start = time.perf_counter()
    model = build_model(cfg, device)  # a mistake is the first line printed
    reuse_freed_memory()  # for the images' buffers
    found = model.auto_classes
    palette = class_palette(0 if found else len(model.classes))
    if not found:
        model.dataset_meta = dict(
            classes=list(model.class_names), palette=palette.tolist())
    vocabulary = model.vocabulary
    info = dict(
        classes=[] if found else class_records(model.classes, palette),
        vocabulary_source=None
        if vocabulary is None else type(vocabulary).__name__,
        config=str(Path(args.config).expanduser().resolve()),
        device=device)
    count = 'classes found per image' if found else \
        f'{len(model.classes)} classes'
    print(f'{len(images)} image(s), {count}, '
          f'vocabulary: {info["vocabulary_source"] or "none"}, '
          f'device: {device} (model built in '
          f'{time.perf_counter() - start:.1f}s)')

    out = Path(args.out).expanduser()
    console = Console(len(images), show_bar=root is not None)
    ok = failed = 0
    for path, prefix in zip(images, output_stems(images, root, out)):
        try:
            record = segment(model, path, prefix, palette, args.opacity, info)
        except FatalVocabularyError as error:
            console.close()
            raise UserError(f'the vocabulary source failed ({error}); '
                            f'stopped after {ok} image(s)') from None
        except Exception as error:
            failed += 1
            console.say(f'error: {path}: {error}; skipped', error=True)
        else:
            ok += 1
            present = record['present']
            shares = ', '.join(f'{c["name"]} {share_text(c["share"])}'
                               for c in present[:10])
            if len(present) > 10:
                shares += f', +{len(present) - 10} more'
            console.say(f'{path} -> {record["outputs"]["overlay"]} '
                        f'({shares})')
        console.step()
    console.close()
    print(f'{ok} ok, {failed} failed, of {len(images)} image(s); '
          f'outputs in {out}')
    return 1 if failed else 0


if __name__ == '__main__':
    run(main)
