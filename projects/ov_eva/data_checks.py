"""Checks of the evaluation data that would otherwise end in a wrong number
or a numpy message: an image folder where nothing matches the suffix,
label values that are no class, an image that does not decode.

Each problem is a ``DataError`` (a ValueError): ``tools/test.py`` prints it
as one ``error:`` line; under ``mim test`` (mmseg's own tools/test.py) the
hook installed by ``install_excepthook`` does the same.
"""
import os
import os.path as osp
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

import mmcv
import numpy as np
from mmengine import fileio

_WORKER_HEADER = 'Original Traceback'
FIRST_FILES = 3  # files named per problem


class DataError(ValueError):
    """A problem with the user's data files: its message is the story.

    Raised in a DataLoader worker, PyTorch rebuilds it in the main process
    from the worker's whole traceback; the message keeps the last line."""

    def __init__(self, message: str):
        if _WORKER_HEADER in message:
            last = message.rstrip().splitlines()[-1]
            message = last.split(f'{type(self).__name__}: ', 1)[-1]
        super().__init__(message)


def install_excepthook() -> None:
    """A DataError that nothing caught (``mim test`` runs mmseg's
    tools/test.py) ends in one ``error:`` line and exit status 2, as in
    OV-EVA's tools; OV_EVA_DEBUG=1 shows the traceback."""
    previous = sys.excepthook
    if getattr(previous, 'ov_eva', False):
        return

    def hook(kind, error, trace):
        if not issubclass(kind, DataError):
            return previous(kind, error, trace)
        if os.environ.get('OV_EVA_DEBUG'):
            previous(kind, error, trace)
        sys.stdout.flush()
        print(f'error: {error}', file=sys.stderr, flush=True)
        sys.exit(2)

    hook.ov_eva = True
    sys.excepthook = hook


def _plural(count: int, word: str) -> str:
    return f'{count:,} {word}{"" if count == 1 else "s"}'


def _first_files(paths: Sequence[str]) -> str:
    names = ', '.join(str(p) for p in paths[:FIRST_FILES])
    more = len(paths) - FIRST_FILES
    return names + (f' and {more} more' if more > 0 else '')


def describe_no_images(img_dir: str, suffix: str, ann_file: str = '') -> str:
    """Why a dataset found no image: the folder, the suffix and what the
    folder holds instead (``found 12 .png files: set img_suffix='.png'``)."""
    if ann_file:
        return (f'the split file {ann_file} lists no image: put one image '
                'name a line (without the suffix), or set ann_file=\'\' to '
                f'take every *{suffix} under {img_dir}')
    if not osp.isdir(img_dir):
        return (f'the image folder {img_dir} does not exist: check '
                "data_root and data_prefix.img_path of the test dataset")
    found = Counter(
        osp.splitext(name)[1] for _, _, names in os.walk(img_dir)
        for name in names if osp.splitext(name)[1])
    what = 'it is empty'
    if found:
        suffix_seen, count = found.most_common(1)[0]
        what = (f'found {_plural(count, suffix_seen + " file")}'
                f': set img_suffix={suffix_seen!r}')
        others = len(found) - 1
        if others:
            what += f' (and {_plural(others, "other suffix")})'
    return f'no image ending in {suffix!r} under {img_dir}: {what}'


@lru_cache(maxsize=None)  # the checks before the Runner and its own build
def unreadable(path: str) -> Optional[str]:
    """Why ``path`` is not an image mmcv can decode, or None."""
    try:
        image = mmcv.imfrombytes(fileio.get(path), flag='unchanged')
    except Exception as error:  # noqa: B902 (any decoder complaint)
        return ' '.join(str(error).split()) or type(error).__name__
    return None if image is not None and image.size else 'does not decode'


def corrupt_files(data_list: List[dict]) -> Dict[str, str]:
    """The images and label files of ``data_list`` that do not decode, each
    with the reason (decoded on 8 threads)."""
    paths = [
        info[key] for info in data_list for key in ('img_path', 'seg_map_path')
        if key in info
    ]
    with ThreadPoolExecutor(8) as pool:
        reasons = list(pool.map(unreadable, paths))
    return {p: r for p, r in zip(paths, reasons) if r is not None}


def _fails_quick_check(path: str) -> Optional[str]:
    """``unreadable`` for the files PIL's header and checksum check (no
    decoding) doubts."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            image.verify()
        return None
    except Exception:  # noqa: B902 (PIL doubts it: decode to be sure)
        return unreadable(path)


def check_images(dataset) -> None:
    """A DataError naming the first image that does not decode (checked on
    8 threads, decoding only what PIL's quick check doubts)."""
    paths = [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]
    with ThreadPoolExecutor(8) as pool:
        for path, reason in zip(paths, pool.map(_fails_quick_check, paths)):
            if reason is not None:
                raise corrupt_image_error(path, reason)


def corrupt_image_error(path: str, reason: str) -> DataError:
    return DataError(
        f'{path} is not a readable image ({reason}): replace or remove it, '
        'or leave out every such file with tools/test.py --skip-corrupt '
        '(skip_corrupt=True in the test dataset)')


class ChecksItsFiles:
    """A BaseSegDataset mixin: a DataError naming the folder, the suffix and
    what is there instead when nothing matches; a DataError naming the file
    when an image or label does not decode during the evaluation or, with
    ``skip_corrupt=True``, such files checked first and left out (listed in
    ``skipped_files`` and reported by ``DatasetClassesHook`` after the
    table)."""

    def __init__(self, *args, skip_corrupt: bool = False, **kwargs):
        self.skip_corrupt = skip_corrupt
        self.skipped_files: Dict[str, str] = {}
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        img_dir = self.data_prefix.get('img_path', '')
        listed = self.ann_file and osp.isfile(self.ann_file)
        found = listed or osp.isdir(img_dir)  # else mmseg's scandir fails
        data_list = super().load_data_list() if found else []
        if not data_list:
            raise DataError(
                describe_no_images(img_dir, self.img_suffix,
                                   self.ann_file if listed else ''))
        if self.skip_corrupt:
            self.skipped_files = corrupt_files(data_list)
            data_list = [
                info for info in data_list
                if info['img_path'] not in self.skipped_files
                and info.get('seg_map_path') not in self.skipped_files
            ]
            if not data_list:
                raise DataError('no readable image: every one is corrupt '
                                f'({_first_files(list(self.skipped_files))})')
        return data_list

    def prepare_data(self, idx):
        try:
            return super().prepare_data(idx)
        except Exception:
            info = self.get_data_info(idx)
            for key in ('img_path', 'seg_map_path'):
                reason = unreadable(info[key]) if key in info else None
                if reason is not None:
                    raise corrupt_image_error(info[key], reason) from None
            raise


def _label_loader(dataset):
    """The dataset pipeline's LoadAnnotations (so labels are read exactly
    as the evaluation reads them: reduce_zero_label, label_map), or a new
    one."""
    from mmseg.datasets.transforms import LoadAnnotations
    for transform in _transforms(dataset.pipeline):
        if isinstance(transform, LoadAnnotations):
            return transform
    return LoadAnnotations()


def _transforms(pipeline):
    """The transforms of a pipeline, those inside ``TestTimeAug``'s
    branches (``--tta``) included, in order."""
    for transform in getattr(pipeline, 'transforms', []):
        yield transform
        for branch in getattr(transform, 'subroutines', []):
            yield from _transforms(branch)


def _label_histogram(loader, info: dict) -> np.ndarray:
    results = dict(
        seg_map_path=info['seg_map_path'],
        reduce_zero_label=info.get('reduce_zero_label', False),
        label_map=info.get('label_map'),
        seg_fields=[])
    try:
        loader(results)
    except Exception as error:  # noqa: B902 (missing or corrupt file)
        path = info['seg_map_path']
        if not osp.isfile(path):
            raise DataError(
                f'the label file {path} of {info["img_path"]} does not '
                'exist: check data_prefix.seg_map_path and seg_map_suffix '
                'of the test dataset') from None
        raise corrupt_image_error(path,
                                  unreadable(path) or str(error)) from None
    return np.bincount(results['gt_seg_map'].ravel(), minlength=256)


def stray_labels(dataset,
                 num_classes: int,
                 ignore_index: int = 255) -> Dict[int, Tuple[int, list]]:
    """Label values outside ``[0, num_classes)`` and not ``ignore_index``,
    as the evaluation reads them: value -> (pixels, label files)."""
    loader = _label_loader(dataset)
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    infos = [info for info in infos if 'seg_map_path' in info]
    with ThreadPoolExecutor(8) as pool:
        histograms = list(
            pool.map(lambda info: _label_histogram(loader, info), infos))
    stray: Dict[int, Tuple[int, list]] = {}
    for info, histogram in zip(infos, histograms):
        histogram[ignore_index] = 0
        for value in np.flatnonzero(histogram[num_classes:]) + num_classes:
            pixels, files = stray.get(int(value), (0, []))
            stray[int(value)] = (pixels + int(histogram[value]),
                                 files + [info['seg_map_path']])
    return stray


def stray_labels_message(stray: Dict[int, Tuple[int, list]], dataset,
                         num_classes: int, ignore_index: int) -> str:
    """One line: the values, their pixels and files, and the two fixes."""
    shift = 1 if getattr(dataset, 'reduce_zero_label', False) else 0
    parts = []
    for value, (pixels, files) in sorted(stray.items()):
        parts.append(f'{value + shift} ({_plural(pixels, "pixel")} in '
                     f'{_plural(len(files), "file")}: {_first_files(files)})')
    kind = type(dataset).__name__
    class_file = getattr(dataset, 'class_file', None)
    where = f'the class file {class_file}' if class_file else \
        "the dataset's classes"
    values = sorted(v + shift for v in stray)
    unlabelled = f'set ignore_values={values} in the test dataset' if hasattr(
        dataset, 'ignore_values') else \
        f'map it to {ignore_index} (ClassFileSegDataset: ignore_values)'
    shifted = ' (value v is class v, after reduce_zero_label v - 1)' \
        if shift else ''
    return (f'label values outside the {num_classes} classes of the test '
            f'dataset ({kind}){shifted}, {ignore_index} being ignored: '
            f'{"; ".join(parts)}. Give each value its class in {where}, '
            f'or, if it means "unlabelled", {unlabelled}: not scored')


_CHECKED = set()  # datasets whose labels passed, in this process


def check_labels(dataset, ignore_index: int = 255) -> None:
    """A DataError when a label value is no class of ``dataset``: the
    metric would score it (a union with no class) without a word."""
    classes = dataset.metainfo.get('classes') or ()
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    key = (len(classes), ignore_index,
           repr([(i.get('seg_map_path'), i.get('reduce_zero_label'),
                  i.get('label_map')) for i in infos]))
    if not classes or key in _CHECKED:
        return
    stray = stray_labels(dataset, len(classes), ignore_index)
    if stray:
        raise DataError(
            stray_labels_message(stray, dataset, len(classes), ignore_index))
    _CHECKED.add(key)


def _check_found_images(dataset) -> None:
    img_dir = dataset.data_prefix.get('img_path', '')
    ann_file = getattr(dataset, 'ann_file', '')
    listed = bool(ann_file) and osp.isfile(ann_file)
    if not (listed or osp.isdir(img_dir)) or not dataset.load_data_list():
        raise DataError(
            describe_no_images(img_dir, dataset.img_suffix,
                               ann_file if listed else ''))


def check_test_data(cfg, model_built: bool = False) -> None:
    """The test dataset of ``cfg`` built, its images and labels checked, so
    that a mistake in the data is told before the Runner logs anything (the
    Runner's own build then finds the labels checked). As in the Runner,
    a mistake in the model settings is told first (the model is built
    quietly unless ``model_built``)."""
    import warnings

    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    try:
        with warnings.catch_warnings():  # said again by the Runner's build
            warnings.simplefilter('ignore')
            dataset = _build_dataset(cfg.test_dataloader.dataset)
        check_images(dataset)
        check_labels(dataset, _ignore_index(cfg.get('test_evaluator', {})))
    except Exception:
        if not model_built:
            _build_model_quietly(cfg.model)  # its error, if any, wins
        raise


def _build_dataset(dataset_cfg):
    import copy

    from mmseg.registry import DATASETS
    dataset = DATASETS.build(dict(copy.deepcopy(dataset_cfg), lazy_init=True))
    _check_found_images(dataset)  # mmseg's own datasets too
    dataset.full_init()
    return dataset


def _ignore_index(evaluator) -> int:
    metrics = evaluator if isinstance(evaluator, list) else [evaluator]
    return next((m['ignore_index'] for m in metrics if 'ignore_index' in m),
                255)


def _build_model_quietly(model_cfg) -> None:
    import copy
    import logging
    import warnings

    from mmengine.logging import MMLogger
    from mmseg.registry import MODELS
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            MODELS.build(copy.deepcopy(model_cfg))
    finally:
        logger.setLevel(level)
