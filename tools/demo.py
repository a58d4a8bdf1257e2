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

Against another config (``--compare``: a config file, or ``base`` for
the same config without its vocabulary source), each image is segmented
again with it and ``<stem>_compare.png`` shows the image, that config's
overlay and this one's side by side in one palette with one legend, the
pixels whose class changed outlined in magenta (docs/figures.md)::

    python tools/demo.py my_photos/ --classes sky road tree car \
        --compare base
    python tools/demo.py photo.jpg --classes cat sofa wall floor \
        --compare configs/baselines/sclip_vitb16_ade.py

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
    with --compare:
    <stem>_compare.png  image | the other config's overlay | this one's
    <stem>_compare_label.png  the other config's class index per pixel

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

import numpy as np
from _cli import (DEFAULT_CONFIG, Context, UserError, add_cfg_options,
                  add_debug_flag, check_classes, check_config_file,
                  check_options, run)
from PIL import Image

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


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
        '--stream',
        action='store_true',
        help='INPUT is a video file or a folder of frames: a vocabulary per '
        'scene, asked in the background (see docs/stream.md)')
    parser.add_argument(
        '--scene-threshold',
        type=float,
        default=0.85,
        help='--stream: cosine similarity to the scene\'s first frame below '
        'which a new scene starts (%(default)s)')
    parser.add_argument(
        '--reuse-threshold',
        type=float,
        help='--stream: a frame this similar to the previous one reuses its '
        'labels (off by default)')
    parser.add_argument(
        '--compare',
        metavar='CONFIG',
        help='also segment each image with CONFIG (or "base": --config '
        'without its vocabulary source) and write <stem>_compare.png, the '
        'two overlays side by side with the changed pixels outlined; needs '
        '--classes or --class-file')
    add_cfg_options(
        parser, 'override config settings, key=value (applied last, to '
        'both configs with --compare)')
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

    from ov_eva.visualization import (class_palette, class_records,
                                      draw_overlay, present_rows)
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
    names = [c['name'] for c in info['classes']]
    counts, rows = present_rows(label, names, len(palette))
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


def main(argv=None):
    args = parse_args(argv)
    # what needs no torch first: a mistake answers in a fraction of a second
    if not 0 <= args.opacity <= 1:
        raise UserError(f'--opacity {args.opacity} is outside 0..1')
    check_config_file(args.config, '--config')
    check_options(args.cfg_options, args.config)
    check_compare(args)
    if args.stream:
        return stream_main(args)
    images, root = find_images(args)
    classes = read_classes(args)

    import ov_eva  # noqa: F401  (registers OV-EVA; compat before mmseg)
    from ov_eva.apis import image_config, init_model
    from ov_eva.memory import reuse_freed_memory
    from ov_eva.visualization import class_palette, class_records
    from ov_eva.vocabulary import FatalVocabularyError
    device = choose_device(args.device)
    cfg = image_config(args.config, classes, args.vocabulary, args.cfg_options)
    Context.cfg = cfg
    start = time.perf_counter()
    model = init_model(cfg, device)  # a mistake is the first line printed
    reuse_freed_memory()  # for the images' buffers
    found = model.class_bank.auto
    palette = class_palette(0 if found else len(model.classes))
    if not found:
        model.dataset_meta = dict(
            classes=[c[0] for c in model.classes], palette=palette.tolist())
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
    done = []  # (image, output prefix) of the images segmented
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
            done.append((path, prefix))
            console.say(f'{path} -> {record["outputs"]["overlay"]} '
                        f'({shares_text(record["present"])})')
        console.step()
    console.close()
    if args.compare and done:
        del model  # one model at a time
        failed += compare_main(args, done, classes, device, info)
    print(f'{ok} ok, {failed} failed, of {len(images)} image(s); '
          f'outputs in {out}')
    return 1 if failed else 0


def shares_text(present) -> str:
    """'wall 40.8%, tree 37.4%, ...' of the ten largest classes present."""
    from ov_eva.visualization import share_text
    shares = ', '.join(f'{c["name"]} {share_text(c["share"])}'
                       for c in present[:10])
    if len(present) > 10:
        shares += f', +{len(present) - 10} more'
    return shares


def check_compare(args) -> None:
    """``--compare``: ``base`` or a config file, with the classes given; not
    with ``--stream``."""
    if args.compare is None:
        return
    if args.stream:
        raise UserError('--compare works on images, not with --stream')
    if args.classes is None and args.class_file is None:
        raise UserError('--compare needs the same classes for both configs: '
                        'give --classes or --class-file')
    if args.compare != 'base':
        check_config_file(args.compare, '--compare')


def compare_main(args, done, classes, device, info) -> int:
    """``--compare``: the segmented images again with the other config, a
    grid of its overlay beside this one's; the number that failed."""
    from mmseg.apis import inference_model

    from ov_eva.apis import image_config, init_model
    from ov_eva.figures import changed_outline, draw_grid
    from ov_eva.vocabulary.base import read_rgb
    if args.compare == 'base':
        cfg = image_config(args.config, classes, 'none', args.cfg_options)
        name = f'{Path(args.config).stem} without vocabulary'
        title = f'base\n{name}'
    else:
        cfg = image_config(args.compare, classes, None, args.cfg_options)
        title = name = Path(args.compare).stem
    mine = f'{Path(args.config).stem}\nvocabulary: ' \
        f'{info["vocabulary_source"] or "none"}'
    model = init_model(cfg, device)
    source = model.vocabulary
    print(f'--compare: {name} (vocabulary: '
          f'{type(source).__name__ if source is not None else "none"})')
    names = [c[0] for c in model.classes]
    failed = 0
    for path, prefix in done:
        record_file = prefix.with_name(f'{prefix.name}.json')
        try:
            other = inference_model(
                model, str(path)).pred_sem_seg.data[0].cpu().numpy()
            label_file = prefix.with_name(f'{prefix.name}_label.png')
            with Image.open(label_file) as picture:
                label = np.asarray(picture)
            grid = prefix.with_name(f'{prefix.name}_compare.png')
            draw_grid(
                read_rgb(path), [(title, other), (mine, label)],
                names,
                grid,
                outline=changed_outline(other, label))
            other_file = prefix.with_name(f'{prefix.name}_compare_label.png')
            Image.fromarray(other.astype(label.dtype)).save(other_file)
            changed = 100.0 * float(np.mean(other != label))
            record = json.loads(record_file.read_text())
            record['compare'] = dict(
                config=args.compare,
                vocabulary_source=None
                if source is None else type(source).__name__,
                changed_share=round(changed, 4),
                outputs=dict(grid=str(grid), label=str(other_file)))
            record_file.write_text(json.dumps(record, indent=2, default=str))
        except Exception as error:
            failed += 1
            print(
                f'error: {path}: --compare: {error}; skipped', file=sys.stderr)
        else:
            print(f'{path} -> {grid} ({changed:.1f}% of the pixels changed '
                  'class)')
    return failed


def stream_main(args):
    """``--stream``: frames of a video or folder, see ov_eva.stream."""
    classes = read_classes(args)
    if classes is None:
        raise UserError('--stream needs --classes or --class-file (classes '
                        'found per frame are not supported in stream mode)')
    import ov_eva  # noqa: F401  (registers OV-EVA; compat before mmseg)
    from ov_eva.apis import image_config, init_model
    from ov_eva.stream import check_stream_input, count_frames, segment_stream
    from ov_eva.visualization import class_palette
    try:
        check_stream_input(args.input)
    except (ValueError, ImportError) as error:
        raise UserError(str(error)) from None
    cfg = image_config(args.config, classes, args.vocabulary, args.cfg_options)
    Context.cfg = cfg
    model = init_model(cfg, choose_device(args.device))
    palette = class_palette(len(model.classes))
    console = Console(count_frames(args.input) or 0, show_bar=True)
    try:
        segment_stream(
            model,
            args.input,
            Path(args.out).expanduser(),
            palette,
            args.opacity,
            args.scene_threshold,
            args.reuse_threshold,
            say=console.say,
            progress=lambda frames: console.step())
    finally:
        console.close()
    return 0


if __name__ == '__main__':
    run(main)
