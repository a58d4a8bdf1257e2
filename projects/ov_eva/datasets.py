"""Benchmark datasets that mmsegmentation does not ship.

Training-free open-vocabulary segmentation papers (MaskCLIP, SCLIP,
ClearCLIP, NACLIP, ...) report two benchmarks for which mmseg has no
dataset class:

* ``PascalVOC20Dataset``: PASCAL VOC 2012 without its background class.
  Same files as ``PascalVOCDataset``; label 0 (background) is ignored and
  the 20 object classes become 0..19 (``reduce_zero_label=True``).
* ``COCOObjectDataset``: COCO-Object, the 80 COCO thing classes plus one
  background class made of all stuff. Its labels are derived from mmseg's
  COCO-Stuff164k labels by ``tools/dataset_converters/coco_object.py``
  (``*_instanceTrainIds.png``: 0 background, 1..80 things, 255 ignore).

* ``ADE20K847Dataset`` / ``PascalContext459Dataset``: the full ADE20K (847
  classes) and PASCAL Context (459 classes) as CAT-Seg prepares them:
  uint16 ``.tif`` labels (class ``v`` is line ``v + 1`` of the class file,
  65535 ignored), read by ``LoadWideAnnotations``, scored by ``IoUMetric``
  with ``ignore_index=65535`` (``configs/_base_/datasets/``, docs/datasets.md).

PASCAL Context 60/59, ADE20K, COCO-Stuff and Cityscapes use mmseg's own
dataset classes.

``ClassFileSegDataset`` is for your own data: a folder in mmseg's layout
whose classes come from a class file (``configs/custom/``).
"""
import os.path as osp
from typing import List, Sequence

import mmcv
import numpy as np
from mmengine import fileio
from mmseg.datasets import BaseSegDataset, COCOStuffDataset, PascalVOCDataset
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import DATASETS, TRANSFORMS

from .data_checks import ChecksItsFiles
from .text_bank import read_class_file


def _pascal_color_map(num: int) -> List[List[int]]:
    """The PASCAL VOC colour map: ``num`` distinct colours, index 0 black."""
    palette = []
    for index in range(num):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append([r, g, b])
    return palette


@DATASETS.register_module()
class PascalVOC20Dataset(ChecksItsFiles, PascalVOCDataset):
    """PASCAL VOC 2012 with the 20 object classes only (VOC20).

    The label files are VOC's own (0 background, 1..20 objects, 255
    ignore). With the default ``reduce_zero_label=True``, background pixels
    become 255 and are ignored, and objects become 0..19.

    Args:
        ann_file (str): Split file, e.g. ``ImageSets/Segmentation/val.txt``.
        reduce_zero_label (bool): Ignore label 0 and shift the others down
            by one. Defaults to True.
    """
    METAINFO = dict(
        classes=PascalVOCDataset.METAINFO['classes'][1:],
        palette=PascalVOCDataset.METAINFO['palette'][1:])

    def __init__(self,
                 ann_file,
                 img_suffix='.jpg',
                 seg_map_suffix='.png',
                 reduce_zero_label=True,
                 **kwargs) -> None:
        super().__init__(
            ann_file=ann_file,
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)


@DATASETS.register_module()
class COCOObjectDataset(ChecksItsFiles, BaseSegDataset):
    """COCO-Object: background plus the 80 COCO thing classes.

    Label files ``<image id>_instanceTrainIds.png`` hold 0 for background
    (every COCO-Stuff stuff class), 1..80 for the things in COCO-Stuff's
    order and 255 for ignore. Create them from mmseg's COCO-Stuff164k
    ``*_labelTrainIds.png`` with ``tools/dataset_converters/coco_object.py``.
    """
    METAINFO = dict(
        classes=('background', ) + COCOStuffDataset.METAINFO['classes'][:80],
        palette=_pascal_color_map(81))

    def __init__(self,
                 img_suffix='.jpg',
                 seg_map_suffix='_instanceTrainIds.png',
                 reduce_zero_label=False,
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)


@DATASETS.register_module()
class ClassFileSegDataset(ChecksItsFiles, BaseSegDataset):
    """Images and label PNGs in mmseg's layout (``data_prefix`` folders,
    ``img_suffix`` / ``seg_map_suffix``) whose classes are a class file: one
    class a line, synonyms comma-separated, a label value ``v`` meaning the
    class on line ``v + 1`` (after ``reduce_zero_label``), 255 ignored. The
    metainfo gets each line's first name; ``DatasetClassesHook`` gives the
    model every synonym when ``model.classes`` is None and stops the run
    when a label value is no class.

    Args:
        class_file: the class file.
        ignore_values: label values, as written in the label files, that
            mean "unlabelled" in this dataset (CamVid's 11): read as
            ``ignore_index`` (255), so the metric does not score them.
        skip_corrupt: check that every image and label decodes first and
            leave out those that do not (listed after the table); by
            default such a file stops the evaluation, naming it.
    """

    def __init__(self,
                 class_file: str,
                 metainfo=None,
                 ignore_values: Sequence[int] = (),
                 **kwargs):
        self.class_file = class_file
        self.ignore_values = sorted(set(int(v) for v in ignore_values))
        for value in self.ignore_values:
            if not 0 <= value <= 255:
                raise ValueError(f'ignore_values: {value} is no label value '
                                 '(a label PNG holds 0..255)')
        names = tuple(c[0] for c in read_class_file(class_file))
        super().__init__(
            metainfo=dict(metainfo or {}, classes=names), **kwargs)

    def load_data_list(self) -> List[dict]:
        # mmseg's LoadAnnotations applies label_map after reduce_zero_label
        # (which already ignores 0)
        shift = 1 if self.reduce_zero_label else 0
        unlabelled = {
            value - shift: self.ignore_index
            for value in self.ignore_values if value >= shift
        }
        if unlabelled:
            self.label_map = {**(self.label_map or {}), **unlabelled}
            self._metainfo['label_map'] = self.label_map
        return super().load_data_list()


#: label value meaning "unlabelled" in the uint16 labels of ADE-847 and
#: Context-459 (CAT-Seg's converters write it; 255 is a class there)
WIDE_IGNORE_INDEX = 65535
_CLASS_NAMES = osp.join(osp.dirname(__file__), 'class_names')


@TRANSFORMS.register_module()
class LoadWideAnnotations(LoadAnnotations):
    """mmseg's ``LoadAnnotations`` for labels wider than 8 bits: the label
    file is read unchanged and kept as uint16 (mmseg's casts to uint8,
    which folds class 256 onto class 0)."""

    def _load_seg_map(self, results: dict) -> None:
        data = fileio.get(results['seg_map_path'],
                          backend_args=self.backend_args)
        label = mmcv.imfrombytes(
            data, flag='unchanged', backend=self.imdecode_backend)
        label = np.asarray(label).squeeze().astype(np.int64)
        if label.ndim != 2:
            raise ValueError(f'{results["seg_map_path"]}: a label map has one '
                             f'channel, this one has shape {label.shape}')
        if results.get('label_map'):
            mapped = label.copy()
            for old, new in results['label_map'].items():
                mapped[label == old] = new
            label = mapped
        results['gt_seg_map'] = label.astype(np.uint16)
        results['seg_fields'].append('gt_seg_map')


class _WideLabelDataset(ChecksItsFiles, BaseSegDataset):
    """Images ``*.jpg`` and uint16 ``*.tif`` labels, classes from a class
    file shipped in ``class_names/``, 65535 ignored."""
    CLASS_FILE = ''

    def __init__(self,
                 img_suffix='.jpg',
                 seg_map_suffix='.tif',
                 reduce_zero_label=False,
                 ignore_index=WIDE_IGNORE_INDEX,
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            ignore_index=ignore_index,
            **kwargs)

    @classmethod
    def class_file(cls) -> str:
        return osp.join(_CLASS_NAMES, cls.CLASS_FILE)


@DATASETS.register_module()
class ADE20K847Dataset(_WideLabelDataset):
    """ADE20K-full, 847 classes: ``ADE20K_2021_17_01`` converted by the
    ``prepare_ade20k_full_sem_seg.py`` of the CAT-Seg / SAN family to
    ``images_detectron2/validation`` and ``annotations_detectron2/
    validation`` (2000 images, uint16 ``.tif``, 65535 unlabelled)."""
    CLASS_FILE = 'ade847.txt'
    METAINFO = dict(classes=tuple(
        c[0] for c in read_class_file('ade847', verbatim=True)))


@DATASETS.register_module()
class PascalContext459Dataset(_WideLabelDataset):
    """PASCAL Context, 459 classes: VOC2010 ``JPEGImages`` with labels
    ``annotations_detectron2/pc459_val/*.tif`` written from PASCAL Context's
    ``trainval/*.mat`` by CAT-Seg's ``prepare_pascal_context_459.py``; the
    5105 val images listed in ``ImageSets/SegmentationContext/val.txt``."""
    CLASS_FILE = 'context459.txt'
    METAINFO = dict(classes=tuple(
        c[0] for c in read_class_file('context459', verbatim=True)))
