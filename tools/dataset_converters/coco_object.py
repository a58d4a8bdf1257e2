"""Derive COCO-Object labels from mmseg's COCO-Stuff164k labels.

COCO-Object is background plus the 80 COCO thing classes. Its labels are
computed from the ``*_labelTrainIds.png`` files that mmseg's
``tools/dataset_converters/coco_stuff164k.py`` writes (0..79 things,
80..170 stuff, 255 ignore) and written next to them as
``*_instanceTrainIds.png`` (0 background = every stuff class, 1..80 things,
255 ignore), the file names ``COCOObjectDataset`` reads.

Usage::

    python tools/dataset_converters/coco_object.py data/coco_stuff164k \
        [--split val2017] [--nproc 8] [--overwrite]
"""
import argparse
import os
import os.path as osp
from functools import partial
from glob import glob

import numpy as np
from mmengine.utils import track_parallel_progress, track_progress
from PIL import Image

NUM_THINGS = 80
NUM_STUFF_CLASSES = 171
IGNORE_INDEX = 255
SRC_SUFFIX = '_labelTrainIds.png'
DST_SUFFIX = '_instanceTrainIds.png'
DEFAULT_NPROC = min(8, os.cpu_count() or 1)


def build_lut() -> np.ndarray:
    """Lookup table from COCO-Stuff164k train ids to COCO-Object ids.

    Things 0..79 -> 1..80, stuff 80..170 -> 0 (background), everything else
    (255 and the unused ids 171..254) -> 255 (ignore).
    """
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[:NUM_THINGS] = np.arange(1, NUM_THINGS + 1, dtype=np.uint8)
    lut[NUM_THINGS:NUM_STUFF_CLASSES] = 0
    return lut


COCO_OBJECT_LUT = build_lut()


def to_coco_object(label: np.ndarray) -> np.ndarray:
    """Map a COCO-Stuff164k train-id label map to COCO-Object ids (uint8)."""
    label = np.asarray(label)
    if label.dtype != np.uint8:
        if label.size and (label.min() < 0 or label.max() > 255):
            raise ValueError('COCO-Stuff train ids must lie in 0..255, got '
                             f'{label.min()}..{label.max()}')
        label = label.astype(np.uint8)
    return COCO_OBJECT_LUT[label]


def output_path(src: str) -> str:
    """``X_labelTrainIds.png`` -> ``X_instanceTrainIds.png``."""
    assert src.endswith(SRC_SUFFIX), src
    return src[:-len(SRC_SUFFIX)] + DST_SUFFIX


def convert_file(src: str, overwrite: bool = False) -> bool:
    """Convert one label file; return False if it was skipped.

    The result is written to a temporary file in the same folder and moved
    into place with ``os.replace``, so an interrupted run never leaves a
    truncated label file behind.
    """
    dst = output_path(src)
    if not overwrite and osp.exists(dst):
        return False
    with Image.open(src) as img:
        label = np.asarray(img)
    out = Image.fromarray(to_coco_object(label))
    # Same folder (os.replace must not cross file systems), ordinary
    # permissions (unlike mkstemp's 0600), one name per process.
    tmp = f'{dst}.{os.getpid()}.tmp'
    try:
        with open(tmp, 'wb') as f:
            out.save(f, format='PNG')
        os.replace(tmp, dst)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    return True


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Derive COCO-Object labels (*' + DST_SUFFIX + ') from '
        "mmseg's COCO-Stuff164k labels (*" + SRC_SUFFIX + ').')
    parser.add_argument(
        'data_root',
        help='COCO-Stuff164k root holding annotations/<split>/*' + SRC_SUFFIX)
    parser.add_argument(
        '--split',
        nargs='+',
        default=['val2017'],
        help='annotation sub-folder(s) to convert (default: val2017)')
    parser.add_argument(
        '--nproc',
        type=int,
        default=DEFAULT_NPROC,
        help='number of worker processes')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='convert files whose output already exists again')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for split in args.split:
        folder = osp.join(args.data_root, 'annotations', split)
        files = sorted(glob(osp.join(folder, '*' + SRC_SUFFIX)))
        if not files:
            why = '' if osp.isdir(folder) else ' (the folder does not exist)'
            raise SystemExit(
                f'error: no *{SRC_SUFFIX} label files in {folder}{why}; '
                "create them with mmseg's "
                'tools/dataset_converters/coco_stuff164k.py first.')
        print(f'{split}: {len(files)} label files in {folder}')
        task = partial(convert_file, overwrite=args.overwrite)
        if args.nproc > 1:
            done = track_parallel_progress(task, files, nproc=args.nproc)
        else:
            done = track_progress(task, files)
        converted = sum(done)
        print(f'\n{split}: converted {converted}, skipped '
              f'{len(files) - converted} already converted')


if __name__ == '__main__':
    main()
