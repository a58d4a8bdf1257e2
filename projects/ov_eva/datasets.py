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

PASCAL Context 60/59, ADE20K, COCO-Stuff and Cityscapes use mmseg's own
dataset classes.

``ClassFileSegDataset`` is for your own data: a folder in mmseg's layout
whose classes come from a class file (``configs/custom/``).
"""
from typing import List, Sequence

from mmseg.datasets import BaseSegDataset, COCOStuffDataset, PascalVOCDataset
from mmseg.registry import DATASETS

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
