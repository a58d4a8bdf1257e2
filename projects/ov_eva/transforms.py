"""Pipeline transforms: region masks loaded by the dataloader.

``LoadRegionMasks`` reads (or generates) an image's region masks in the
data pipeline, in the dataloader's workers, next to its image;
``PackOVEVAInputs`` is mmseg's ``PackSegInputs`` that also packs them into
the data sample's ``region_masks`` field, where the segmentor takes them
instead of asking its backend's mask source.

The masks stay at the image's original size, as ``gt_seg_map`` does in
mmseg's test pipelines (annotations are loaded after ``Resize``). The
segmentor maps them onto the network input (``windows.masks_at_input``) with
torch's nearest interpolation, as the official CorrCLIP code does: mmcv's
``Resize`` and ``RandomFlip`` transform ``gt_seg_map`` only, and cv2's
nearest rounding differs from torch's on up to 0.8% of the pixels of a
mask, which would change labels against the official code.
"""
from typing import Optional

import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import PixelData
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import TRANSFORMS

from .registry import build_mask_source


@TRANSFORMS.register_module()
class LoadRegionMasks(BaseTransform):
    """Add ``region_masks`` (H, W) int32 at the original image size.

    Args:
        source: a mask source, as ``model.clip.masks`` takes it (e.g.
            ``dict(type='files', root='data/region_masks/ade')``, ``'sam2'``);
            built in each worker on its first image.
    """

    def __init__(self, source):
        self.source_cfg = source
        self._source = None

    def transform(self, results: dict) -> dict:
        if self._source is None:
            self._source = build_mask_source(self.source_cfg)
        meta = dict(
            img_path=results.get('img_path'),
            ori_shape=results.get('ori_shape'))
        results['region_masks'] = self._source.get(meta).numpy()
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(source={self.source_cfg!r})'


@TRANSFORMS.register_module()
class PackOVEVAInputs(PackSegInputs):
    """``PackSegInputs``, plus the ``region_masks`` of ``LoadRegionMasks``
    as a ``PixelData`` field of the data sample."""

    def transform(self, results: dict) -> dict:
        packed = super().transform(results)
        masks: Optional[object] = results.get('region_masks')
        if masks is not None:
            packed['data_samples'].set_field(
                PixelData(data=torch.from_numpy(masks)[None]), 'region_masks')
        return packed
