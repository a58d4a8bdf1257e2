r"""Fill (or export/import) the vocabulary cache, resumably.

From a config (its test dataset, classes and ``model.vocabulary``)::

    python tools/build_vocabulary.py --config configs/oveva_vitb16_ade.py \
        --cfg-options model.vocabulary.type=OpenAIVocabulary

From a folder of images and a class file::

    python tools/build_vocabulary.py --images my_photos/ \
        --class-file my_classes.txt --vocabulary openai \
        --set model=gpt-4o-mini concurrency=8

Ask about each scene of videos before stream mode does (``tools/demo.py
--stream`` then finds every scene's answer cached), through the Batch API::

    python tools/build_vocabulary.py --videos drives/ --class-file \
        cityscapes --config configs/oveva_vitb16_cityscapes.py --batch

Share a vocabulary set, or replay someone else's exactly::

    python tools/build_vocabulary.py --cache-file v.sqlite --export v.jsonl
    python tools/build_vocabulary.py --cache-file v.sqlite --import v.jsonl

Know the bill first, cap it, halve it::

    python tools/build_vocabulary.py --config configs/oveva_vitb16_ade.py \
        --cfg-options model.vocabulary.type=OpenAIVocabulary --dry-run
    python tools/build_vocabulary.py --images my_photos/ \
        --class-file my_classes.txt --set max_cost=0.5 detail=low
    python tools/build_vocabulary.py --config configs/oveva_vitb16_ade.py \
        --cfg-options model.vocabulary.type=OpenAIVocabulary --batch

Every run prints its estimate (images, cached, calls, tokens, dollars)
before any request; --dry-run prints it and sends nothing. A rerun skips
every image already cached, retries the failed ones, asks the ones a budget
skipped, and resumes the Batch API jobs a killed run left running.
"""
import argparse
from pathlib import Path

from _cli import (DEFAULT_CONFIG, UserError, add_cfg_options, add_debug_flag,
                  check_classes, check_config_file, check_options,
                  load_config, run)
from mmengine.config import DictAction  # no torch yet

IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'}
SOURCES = 'lexicon, openai, hf, cached, static'
VIDEO_SUFFIXES = {'.mp4', '.mkv', '.webm', '.mov', '.avi', '.m4v', '.gif'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 1)[1])
    parser.add_argument('--config', help='config whose test set to fetch')
    add_cfg_options(parser, 'override config settings, key=value')
    parser.add_argument('--images', help='folder of images (recursive)')
    parser.add_argument(
        '--videos',
        help='a video, a folder of frames, or a folder of videos / frame '
        'folders: fetch the frames that start a scene, as tools/demo.py '
        '--stream will (with --class-file or --classes; --config gives '
        'the model that finds the scenes)')
    parser.add_argument(
        '--class-file', help='class file (with --images or --videos)')
    parser.add_argument(
        '--classes',
        nargs='+',
        metavar='CLASS',
        help='class names with --videos, as tools/demo.py takes them')
    parser.add_argument(
        '--scene-threshold',
        type=float,
        default=0.85,
        help='--videos: the threshold tools/demo.py --stream will use '
        '(%(default)s)')
    parser.add_argument(
        '--vocabulary',
        default='openai',
        help=f'source with --images: {SOURCES} or a type name')
    parser.add_argument(
        '--set',
        nargs='+',
        action=DictAction,
        default={},
        help='source settings with --images, key=value')
    parser.add_argument(
        '--clip',
        default='ViT-B-16:openai',
        help='NAME:TAG_OR_FILE of the CLIP for lexicon '
        'sources with --images')
    parser.add_argument('--cache-file', help='vocabulary cache (SQLite)')
    parser.add_argument('--concurrency', type=int, help='requests in flight')
    parser.add_argument(
        '--dry-run',
        action='store_true',
        help='print the estimate (calls, tokens, dollars) and send nothing')
    parser.add_argument(
        '--batch',
        action='store_true',
        help='use OpenAI\'s Batch API (half price, results within 24 h; '
        'resumable)')
    parser.add_argument('--export', help='write the cache as JSON Lines')
    parser.add_argument(
        '--import', dest='import_', help='add a JSON Lines export')
    add_debug_flag(parser)
    return parser.parse_args(argv)


def from_config(args):
    from ov_eva.registry import vocabulary_config
    from ov_eva.text_bank import load_classes
    cfg = load_config(args.config, args.cfg_options)
    if vocabulary_config(cfg.model.get('vocabulary')) is None:
        raise UserError(
            f'{args.config} has no model.vocabulary; set one, e.g. '
            '--cfg-options model.vocabulary.type=OpenAIVocabulary')
    vocab_cfg = vocabulary_config(cfg.model.vocabulary)
    if args.cache_file:
        vocab_cfg['cache_file'] = args.cache_file
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    dataset_cfg = cfg.test_dataloader.dataset.copy()
    dataset_cfg.pop('pipeline', None)  # only the file list is needed
    dataset = DATASETS.build(dict(dataset_cfg, pipeline=[]))
    images = [
        dataset.get_data_info(i)['img_path'] for i in range(len(dataset))
    ]
    return vocab_cfg, load_classes(cfg.model.classes), images, dict(
        cfg.model.clip)


def folder_images(args):
    """The images and classes of --images / --class-file, checked without
    torch."""
    if not args.class_file:
        raise UserError('--images needs --class-file (one class a line)')
    folder = Path(args.images)
    if not folder.is_dir():
        raise UserError(f'--images {folder}: not a folder')
    images = sorted(
        p for p in folder.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise UserError(f'--images {folder}: no image files '
                        f'({", ".join(sorted(IMAGE_SUFFIXES))})')
    return [str(p) for p in images], check_classes(
        class_file=args.class_file, flag='--class-file')


def from_folder(args, images, classes):
    from ov_eva.registry import vocabulary_config
    vocab_cfg = dict(vocabulary_config(args.vocabulary), **args.set)
    if args.cache_file:
        vocab_cfg['cache_file'] = args.cache_file
    name, _, pretrained = args.clip.partition(':')
    return vocab_cfg, classes, images, dict(
        name=name, pretrained=pretrained or None)


def main(argv=None):
    args = parse_args(argv)
    if args.export or args.import_:
        if not args.cache_file:
            raise UserError('--export/--import need --cache-file')
        if args.import_ and not Path(args.import_).is_file():
            raise UserError(f'--import {args.import_!r} does not exist')
        from ov_eva.vocabulary import VocabularyCache
        cache = VocabularyCache(args.cache_file)
        if args.import_:
            print(f'imported {cache.import_jsonl(args.import_)} entries '
                  f'into {args.cache_file}')
        if args.export:
            print(f'exported {cache.export_jsonl(args.export)} entries to '
                  f'{args.export}')
        return
    if args.videos:
        return from_videos(args)
    if bool(args.config) == bool(args.images):
        raise UserError('give either --config or --images (see --help)')
    if args.config:  # what needs no torch first
        check_config_file(args.config, '--config')
        check_options(args.cfg_options, args.config)
    else:
        images, classes = folder_images(args)
    import ov_eva  # noqa: F401  (registers sources; compat before mmseg)
    from ov_eva.registry import build_vocabulary
    from ov_eva.vocabulary import FatalVocabularyError
    from ov_eva.vocabulary.prefetch import prefetch
    vocab_cfg, classes, images, clip_cfg = (
        from_config(args) if args.config else from_folder(
            args, images, classes))
    if args.batch:
        vocab_cfg['batch'] = True
    source = build_vocabulary(vocab_cfg)
    if args.batch and not hasattr(source, 'prefetch_batch'):
        raise UserError(f'--batch: {type(source).__name__} has no Batch API '
                        '(use the openai source / OpenAIVocabulary)')
    if args.dry_run:
        return dry_run(source, images, classes)
    if getattr(source, 'needs_encoder', False):
        import inspect

        from ov_eva.backends import DenseCLIPEncoder
        from ov_eva.clip_encoder import CLIPTower

        # the CLIP tower alone, whichever backend the config names: the
        # sources read CLIP's image and text towers, nothing else
        keys = inspect.signature(CLIPTower.__init__).parameters
        source.bind(
            DenseCLIPEncoder(**{
                k: v
                for k, v in clip_cfg.items() if k in keys
            }))
    print(f'{len(images)} images, {len(classes)} classes, '
          f'{type(source).__name__} ({source.model_id}), cache '
          f'{source.cache_file}')
    try:
        summary = prefetch(source, images, classes, args.concurrency)
    except FatalVocabularyError as error:
        raise UserError(str(error)) from None
    print(summary.format())


def video_inputs(root: Path) -> list:
    """The streams under --videos: the path itself when it is a video or
    holds frames, else each video and frame folder in it, in name order."""
    from ov_eva.stream import FRAME_SUFFIXES
    if root.is_file():
        return [root]
    entries = sorted(root.iterdir())
    if any(p.suffix.lower() in FRAME_SUFFIXES for p in entries):
        return [root]
    return [
        p for p in entries
        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES or p.is_dir()
        and any(f.suffix.lower() in FRAME_SUFFIXES for f in p.iterdir())
    ]


def from_videos(args):
    """--videos: the scene-starting frames of each stream, fetched as
    stream mode would fetch them (same model, classes and threshold)."""
    root = Path(args.videos).expanduser()
    if not root.exists():
        raise UserError(f'--videos {str(root)!r} does not exist')
    if args.images:
        raise UserError('give either --videos or --images, not both')
    if (args.classes is None) == (args.class_file is None):
        raise UserError('--videos needs --classes or --class-file (the '
                        'classes tools/demo.py --stream will be given)')
    classes = check_classes(args.classes, args.class_file,
                            '--class-file' if args.class_file else '--classes')
    config = args.config or str(DEFAULT_CONFIG)
    check_config_file(config, '--config')
    check_options(args.cfg_options, config)
    streams = video_inputs(root)
    if not streams:
        raise UserError(f'--videos {str(root)!r} holds no video '
                        f'({", ".join(sorted(VIDEO_SUFFIXES))}) or frames')
    import ov_eva  # noqa: F401  (registers OV-EVA; compat before mmseg)
    from ov_eva.apis import image_config, init_model
    from ov_eva.stream import scene_starts
    from ov_eva.vocabulary import FatalVocabularyError
    from ov_eva.vocabulary.prefetch import prefetch
    from ov_eva.registry import vocabulary_config
    cfg = image_config(config, classes, args.vocabulary, args.cfg_options)
    vocabulary = vocabulary_config(cfg.model.get('vocabulary'))
    if vocabulary is None:
        raise UserError(f'--vocabulary {args.vocabulary}: --videos fetches '
                        f'from a vocabulary source; use one of {SOURCES}')
    vocabulary.update(args.set)
    if args.cache_file:
        vocabulary['cache_file'] = args.cache_file
    if args.batch:
        vocabulary['batch'] = True
    cfg.model.vocabulary = vocabulary
    model = init_model(cfg, 'cpu')
    frames = []
    for stream in streams:
        try:
            starts = [rgb for _, rgb in scene_starts(
                model, stream, args.scene_threshold)]
        except (ValueError, ImportError) as error:
            raise UserError(str(error)) from None
        print(f'{stream}: {len(starts)} scene(s)')
        frames += starts
    source = model.vocabulary
    if args.batch and not hasattr(source, 'prefetch_batch'):
        raise UserError(f'--batch: {type(source).__name__} has no Batch API '
                        '(use the openai source / OpenAIVocabulary)')
    classes = model.class_bank.fetch_classes
    if args.dry_run:
        return dry_run(source, frames, classes)
    try:
        summary = prefetch(source, frames, classes, args.concurrency)
    except FatalVocabularyError as error:
        raise UserError(str(error)) from None
    print(summary.format())


def dry_run(source, images, classes):
    """The estimate, or (for sources that pay no one) the cached count."""
    if hasattr(source, 'estimate'):
        print(source.estimate(images, classes).format())
    else:
        cached = 0
        if source.cache is not None:
            from ov_eva.vocabulary import VocabularyFailure
            for image in images:
                try:
                    cached += source.lookup(image, classes)[3] is not None
                except VocabularyFailure:
                    pass
        print(f'{len(images)} images, {cached} cached; '
              f'{type(source).__name__} sends no paid requests')
    print('dry run: no request sent')


if __name__ == '__main__':
    run(main)
