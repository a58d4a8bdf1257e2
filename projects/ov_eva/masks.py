"""Sources of class-agnostic region masks (CorrCLIP's scope), by config.

A source gives each image an (H, W) integer label map at the image's
original size; by the official convention the smallest label is the
unsegmented area. ``files`` reads pre-generated masks as the official code
does (``<root>/<image stem>.npz``, array ``instance_mask``).
"""
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from mmengine.registry import Registry
from torch import Tensor

MASK_SOURCES = Registry('region mask source')
MASK_SOURCE_SHORT_NAMES = dict(files='FileMasks')


def build_mask_source(spec: Union[None, str, dict]):
    """A source from ``dict(type=..., ...)`` (short names: ``files``), or
    None."""
    if spec is None:
        return None
    cfg = dict(type=spec) if isinstance(spec, str) else dict(spec)
    kind = cfg.get('type')
    cfg['type'] = MASK_SOURCE_SHORT_NAMES.get(kind, kind)
    if cfg['type'] not in MASK_SOURCES.module_dict:
        raise ValueError(f'unknown model.clip.masks type {kind!r}; use one of '
                         f'{sorted(MASK_SOURCE_SHORT_NAMES)} or '
                         f'{sorted(MASK_SOURCES.module_dict)}')
    return MASK_SOURCES.build(cfg)


@MASK_SOURCES.register_module()
class FileMasks:
    """Pre-generated masks: ``<root>/<image stem>.npz`` holding an integer
    array ``key`` (the official ``instance_mask``) of the image's original
    height and width."""

    def __init__(self, root: str, key: str = 'instance_mask'):
        self.root, self.key = Path(root).expanduser(), key
        if not self.root.is_dir():
            raise FileNotFoundError(
                f'model.clip.masks.root={root!r} is not a folder; give the '
                'folder of the pre-generated <image stem>.npz masks')

    def path(self, img_path: str) -> Path:
        return self.root / f'{Path(img_path).stem}.npz'

    def get(self, meta: dict) -> Tensor:
        img_path = meta.get('img_path')
        if img_path is None:
            raise ValueError('region masks from files need the image path '
                             '(img_path in the sample metainfo)')
        path = self.path(img_path)
        try:
            with np.load(path) as data:
                mask = data[self.key]
        except (OSError, KeyError, ValueError) as error:
            raise FileNotFoundError(
                f'cannot read region mask {str(path)!r} for image '
                f'{img_path!r} ({error}); write it as np.savez(path, '
                f'{self.key}=labels) with an (H, W) integer label map of '
                'the image, or generate masks with SAM2') from error
        return check_mask(mask, meta, str(path))


def check_mask(mask, meta: dict, source: str) -> Tensor:
    """The (H, W) label map as an int32 tensor, checked against the
    image's original size."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f'region mask {source!r}: expected an (H, W) '
                         f'integer array, got {mask.dtype} {mask.shape}')
    size: Optional[tuple] = meta.get('ori_shape')
    if size is not None and tuple(mask.shape) != tuple(size[:2]):
        raise ValueError(
            f'region mask {source!r} is {mask.shape[0]}x{mask.shape[1]} but '
            f'its image {meta.get("img_path")!r} is {size[0]}x{size[1]}; '
            'masks must have the original image size')
    return torch.from_numpy(mask.astype(np.int32))
