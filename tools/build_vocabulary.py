"""Fill (or export/import) the vocabulary cache, resumably.

From a config (its test dataset, classes and ``model.vocabulary``)::

    python tools/build_vocabulary.py --config configs/oveva_vitb16_ade.py \
        --cfg-options model.vocabulary.type=OpenAIVocabulary

From a folder of images and a class file::

    python tools/build_vocabulary.py --images my_photos/ \
        --class-file my_classes.txt --vocabulary openai \
        --set model=gpt-4o-mini concurrency=8

Share a vocabulary set, or replay someone else's exactly::

    python tools/build_vocabulary.py --cache-file v.sqlite --export v.jsonl
    python tools/build_vocabulary.py --cache-file v.sqlite --import v.jsonl

A rerun skips every image already cached and retries the failed ones.
"""
import argparse
import sys
from pathlib import Path

from mmengine.config import Config, DictAction

import ov_eva  # noqa: F401  (registers sources; compat before mmseg)
from ov_eva.registry import (VOCABULARY_SHORT_NAMES, build_vocabulary,
                             vocabulary_config)
from ov_eva.text_bank import load_classes
from ov_eva.vocabulary import FatalVocabularyError, VocabularyCache
from ov_eva.vocabulary.prefetch import prefetch

IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 1)[1])
    parser.add_argument('--config', help='config whose test set to fetch')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value')
    parser.add_argument('--images', help='folder of images (recursive)')
    parser.add_argument('--class-file', help='class file (with --images)')
    parser.add_argument(
        '--vocabulary',
        default='openai',
        help='source with --images: '
        f'{", ".join(VOCABULARY_SHORT_NAMES)} or a type name')
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
    parser.add_argument('--export', help='write the cache as JSON Lines')
    parser.add_argument(
        '--import', dest='import_', help='add a JSON Lines export')
    return parser.parse_args(argv)


def from_config(args):
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if vocabulary_config(cfg.model.get('vocabulary')) is None:
        sys.exit(f'{args.config} has no model.vocabulary; set one, e.g. '
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


def from_folder(args):
    if not args.class_file:
        sys.exit('--images needs --class-file (one class a line)')
    folder = Path(args.images)
    if not folder.is_dir():
        sys.exit(f'--images {folder}: not a folder')
    images = sorted(
        p for p in folder.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        sys.exit(f'--images {folder}: no image files '
                 f'({", ".join(sorted(IMAGE_SUFFIXES))})')
    vocab_cfg = dict(vocabulary_config(args.vocabulary), **args.set)
    if args.cache_file:
        vocab_cfg['cache_file'] = args.cache_file
    name, _, pretrained = args.clip.partition(':')
    return vocab_cfg, load_classes(args.class_file), [str(p)
                                                      for p in images], dict(
                                                          name=name,
                                                          pretrained=pretrained
                                                          or None)


def main(argv=None):
    args = parse_args(argv)
    if args.export or args.import_:
        if not args.cache_file:
            sys.exit('--export/--import need --cache-file')
        cache = VocabularyCache(args.cache_file)
        if args.import_:
            print(f'imported {cache.import_jsonl(args.import_)} entries '
                  f'into {args.cache_file}')
        if args.export:
            print(f'exported {cache.export_jsonl(args.export)} entries to '
                  f'{args.export}')
        return
    if bool(args.config) == bool(args.images):
        sys.exit('give either --config or --images (see --help)')
    vocab_cfg, classes, images, clip_cfg = (
        from_config(args) if args.config else from_folder(args))
    source = build_vocabulary(vocab_cfg)
    if getattr(source, 'needs_encoder', False):
        from ov_eva.clip_encoder import DenseCLIPEncoder
        source.bind(DenseCLIPEncoder(**clip_cfg))
    print(f'{len(images)} images, {len(classes)} classes, '
          f'{type(source).__name__} ({source.model_id}), cache '
          f'{source.cache_file}')
    try:
        summary = prefetch(source, images, classes, args.concurrency)
    except FatalVocabularyError as error:
        sys.exit(f'error: {error}')
    print(summary.format())


if __name__ == '__main__':
    main()
