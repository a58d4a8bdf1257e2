"""Sources of class-agnostic region masks (CorrCLIP's scope), by config.

A source gives each image an (H, W) integer label map at the image's
original size; by the official convention the smallest label is the
unsegmented area. ``files`` reads pre-generated masks as the official code
does (``<root>/[<folder>/]<image stem>.npz``, array ``instance_mask``: the
official ``region_masks.zip`` of CorrCLIP and ``instance_mask.zip`` of
CorrCLIPv2, whose masks are EntitySeg's); ``sam2`` / ``sam`` generate them
with SAM2 / SAM through ``transformers``, and ``eomt`` (``eomt.py``) with
EoMT in one pass, cached on disk per model, parameters and image content.
"""
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from mmengine.logging import print_log
from torch import Tensor

from .optional import require
from .registry import MASK_SOURCES, build_mask_source  # noqa: F401

# tiny random SAM2 / SAM for tests, built from config dicts
TINY_SAM2 = 'ov-eva-tiny-sam2'
TINY_SAM = 'ov-eva-tiny-sam'


@MASK_SOURCES.register_module()
class FileMasks:
    """Pre-generated masks: ``<root>/<image stem>.npz`` holding an integer
    array ``key`` (the official ``instance_mask``) of the image's original
    height and width.

    Args:
        root: the folder of the ``.npz`` files, or, with ``folder``, the
            folder the official archive was extracted to, holding one
            folder per dataset: ``data/region_masks`` (CorrCLIP's
            ``region_masks.zip``, SAM2 masks: ``voc``, ``context``,
            ``coco``, ``ade``, ``city``) or ``data/instance_mask``
            (CorrCLIPv2's ``instance_mask.zip``, EntitySeg masks: the same
            and ``ade847``).
        key: the array's name in each file.
        folder: the dataset's folder inside ``root`` (None: the files are
            in ``root`` itself).
    """

    def __init__(self,
                 root: str,
                 key: str = 'instance_mask',
                 folder: Optional[str] = None):
        # checked when the first image needs it: building the model (e.g.
        # to export a checkpoint or fill the vocabulary cache) needs none
        self.root, self.key, self.folder = Path(root).expanduser(), key, folder

    @property
    def directory(self) -> Path:
        return self.root / self.folder if self.folder else self.root

    def path(self, img_path: str) -> Path:
        return self.directory / f'{Path(img_path).stem}.npz'

    def get(self, meta: dict, device=None) -> Tensor:
        img_path = meta.get('img_path')
        if img_path is None:
            raise ValueError('region masks from files need the image path '
                             '(img_path in the sample metainfo)')
        if not self.directory.is_dir():
            raise FileNotFoundError(self._missing_folder())
        path = self.path(img_path)
        try:
            with np.load(path) as data:
                mask = data[self.key]
        except (OSError, KeyError, ValueError) as error:
            raise FileNotFoundError(
                f'cannot read region mask {str(path)!r} for image '
                f'{img_path!r} ({error}); {self._fix()}') from error
        return check_mask(mask, meta, str(path))

    def _datasets(self, folder: Path) -> list:
        """The folders of ``folder`` holding masks (an archive's layout)."""
        return sorted(p.name for p in folder.iterdir()
                      if p.is_dir() and next(p.glob('*.npz'), None))

    def _fix(self) -> str:
        datasets = [] if self.folder else self._datasets(self.root)
        if datasets:  # the archive's top folder given as the root
            return (f'model.clip.masks.root holds one folder per dataset '
                    f'{datasets}, as the official archives: name this '
                    "dataset's, e.g. model.clip.masks.folder="
                    f'{datasets[0]}')
        return (f'write it as np.savez(path, {self.key}=labels) with an '
                '(H, W) integer label map of the image, or generate masks: '
                'model.clip.masks=sam2 or eomt')

    def _missing_folder(self) -> str:
        """Why the masks' folder is not there, and the fix."""
        if not self.folder or not self.root.is_dir():
            return (f'model.clip.masks.root={str(self.root)!r} is not a '
                    'folder; give the folder of the pre-generated <image '
                    'stem>.npz masks (--cfg-options model.clip.masks.root='
                    'FOLDER), or generate them: model.clip.masks=sam2 or '
                    'eomt')
        nested = self.root / self.root.name
        if (nested / self.folder).is_dir():  # extracted into its own name
            return (f'model.clip.masks.root={str(self.root)!r} holds the '
                    f'archive\'s folder {self.root.name!r}: set '
                    f'model.clip.masks.root={str(nested)}')
        return (f'model.clip.masks.root={str(self.root)!r} has no folder '
                f'{self.folder!r} (model.clip.masks.folder) of masks; it has '
                f'{self._datasets(self.root) or "none"}: extract the official '
                'archive there, or name another folder')


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


def tiny_sam_config():
    """The config of a tiny random SAM (v1) (tests; no download)."""
    return require('transformers', 'SAM masks').SamConfig(
        vision_config=dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            mlp_dim=64,
            output_channels=32,
            global_attn_indexes=[1],
            window_size=4,
            num_pos_feats=16),
        prompt_encoder_config=dict(hidden_size=32),
        mask_decoder_config=dict(
            hidden_size=32,
            mlp_dim=64,
            num_attention_heads=2,
            iou_head_hidden_dim=32))


def tiny_sam2_config():
    """The config of a tiny random SAM2 (tests; no download)."""
    return require('transformers', 'SAM2 masks').Sam2Config(
        vision_config=dict(
            backbone_config=dict(
                model_type='sam2_hiera_det_model',
                hidden_size=8,
                blocks_per_stage=[1, 1, 2, 1],
                embed_dim_per_stage=[8, 16, 32, 64],
                num_attention_heads_per_stage=[1, 1, 1, 1],
                global_attention_blocks=[3]),
            backbone_channel_list=[64, 32, 16, 8],
            fpn_hidden_size=32),
        prompt_encoder_config=dict(hidden_size=32),
        mask_decoder_config=dict(
            hidden_size=32,
            mlp_dim=64,
            num_attention_heads=2,
            iou_head_hidden_dim=32))


class GeneratedMasks:
    """What the mask models share: their weights from a local folder or
    the hub cache (one clear error when neither has them), and a cache of
    their label maps on disk, ``<cache_dir>/masks/<key>.npz``, the key
    hashing the model, its settings and the image bytes (as the vocabulary
    cache). A subclass sets ``name``, ``pretrained`` and ``settings`` and
    gives ``generate(img_path, device) -> (H, W) int array``."""

    name: str
    pretrained: Optional[str]
    settings: dict

    def __init__(self, cache_dir: Union[None, bool, str] = None):
        if cache_dir is None:
            from .text_bank import default_cache_dir
            cache_dir = default_cache_dir()
        self.cache_dir = Path(cache_dir) / 'masks' if cache_dir else None
        self._model = self._processor = self._source = None

    def locate(self) -> Optional[str]:
        """Where the weights are (found once; None: random weights). Asked
        before the run as well, so that missing weights stop it at once."""
        if self._source is None and self.pretrained is not None \
                and not self.name.startswith('ov-eva-tiny'):
            self._source = self._local(self.pretrained)
        return self._source

    @staticmethod
    def _local(pretrained: str) -> str:
        """A local folder of the weights, the hub cache's copy, or the hub
        id to download when the hub is reachable."""
        from .hub import hub_offline, hub_reachable
        path = os.path.expanduser(pretrained)
        if os.path.isdir(path):
            return path
        if os.path.isabs(path) or pretrained.startswith(('.', '~')) \
                or pretrained.count('/') > 1:  # a path, not a hub id
            raise FileNotFoundError(
                f'mask model folder {pretrained!r} (model.clip.masks.'
                'pretrained) does not exist; give the folder holding its '
                'config.json and weights (save_pretrained), or a hub id')
        try:
            from huggingface_hub import snapshot_download
            return snapshot_download(pretrained, local_files_only=True)
        except Exception:
            if hub_offline() or not hub_reachable():
                raise FileNotFoundError(
                    f'mask model {pretrained!r} (model.clip.masks) is not in '
                    'the local cache and the hub is unreachable (or '
                    'HF_HUB_OFFLINE=1). Fetch it once where there is network '
                    f'(huggingface-cli download {pretrained}) and copy '
                    '~/.cache/huggingface, or set model.clip.masks.pretrained '
                    'to a local folder with its config and weights, or use '
                    "pre-generated masks: dict(type='files', root=...).") \
                    from None
            return pretrained

    def key(self, img_path: str) -> str:
        digest = hashlib.sha256(Path(img_path).read_bytes()).hexdigest()[:32]
        material = json.dumps(
            [self.name, self.pretrained, self.settings, digest],
            sort_keys=True)
        return hashlib.sha256(material.encode()).hexdigest()[:40]

    def generate(self, img_path: str, device=None) -> np.ndarray:
        raise NotImplementedError

    def get(self, meta: dict, device=None) -> Tensor:
        """The image's label map, from the cache or generated on
        ``device`` (where the segmentor runs; None: where the model is)."""
        img_path = meta.get('img_path')
        if img_path is None:
            raise ValueError('generated region masks need the image path '
                             '(img_path in the sample metainfo)')
        path = None
        if self.cache_dir is not None:
            path = self.cache_dir / f'{self.key(img_path)}.npz'
            if path.is_file():
                try:
                    with np.load(path) as data:
                        return check_mask(data['instance_mask'], meta,
                                          str(path))
                except (OSError, KeyError, ValueError):
                    pass  # torn or stale: generate again
        mask = self.generate(img_path, device)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix='.tmp.npz')
            os.close(fd)
            try:
                np.savez(tmp, instance_mask=mask)
                os.replace(tmp, path)  # atomic for concurrent processes
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
        return check_mask(mask, meta, img_path)


@MASK_SOURCES.register_module()
class SAMMasks(GeneratedMasks):
    """Automatic masks from SAM2 (``Sam2Model``) or SAM (``SamModel``,
    ``type='sam'``) through ``transformers``,
    with CorrCLIP's settings of SAM2's automatic mask generator
    (``mask_generator='sam2'``): an 8 x 8 point grid, one mask per point
    (``multimask_output=False``), predicted-IoU and stability thresholds
    0.4, box NMS 0.7. The grid's points go through the mask decoder
    ``points_per_batch`` at a time on one image embedding. The kept masks
    are painted from the smallest area to the largest (larger ones win
    where they overlap), labels 1, 2, ...; 0 is unsegmented.

    Args:
        name: hub id or ``ov-eva-tiny-sam2`` / ``ov-eva-tiny-sam`` (random,
            tests); default SAM2 Hiera-L as the official code
            (``sam2_hiera_large.pt``), ``facebook/sam-vit-huge`` for
            ``type='sam'``.
        pretrained: hub id or local folder (default: ``name``), None for
            random weights.
        cache_dir: masks are kept as ``<cache_dir>/masks/<key>.npz``, the
            key hashing the model, these settings and the image bytes (as
            the vocabulary cache); None: ``$OV_EVA_CACHE``; False: none.
        root: ignored: the ``files`` source's folder, accepted so that
            ``--cfg-options model.clip.masks.type=sam2`` works on a config
            that reads pre-generated masks.
    """

    def __init__(self,
                 name: str = 'facebook/sam2-hiera-large',
                 pretrained: Optional[str] = '',
                 points_per_side: int = 8,
                 points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.4,
                 stability_score_thresh: float = 0.4,
                 stability_score_offset: float = 1.0,
                 mask_threshold: float = 0.0,
                 box_nms_thresh: float = 0.7,
                 multimask_output: bool = False,
                 cache_dir: Union[None, bool, str] = None,
                 root: Optional[str] = None):
        self.name = name
        self.pretrained = name if pretrained == '' else pretrained
        self.settings = dict(
            points_per_side=points_per_side,
            points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset,
            mask_threshold=mask_threshold,
            box_nms_thresh=box_nms_thresh,
            multimask_output=multimask_output)
        super().__init__(cache_dir)

    # the model, on first use
    def load(self):
        if self._model is not None:
            return self._model, self._processor
        require('transformers', 'SAM masks')
        from transformers import (AutoModel, Sam2ImageProcessor,
                                  SamImageProcessor)
        tiny = {TINY_SAM2: tiny_sam2_config, TINY_SAM: tiny_sam_config}
        if self.name in tiny or self.pretrained is None:
            from transformers import AutoConfig
            config = tiny[self.name]() if self.name in tiny \
                else AutoConfig.from_pretrained(self.name)
            model = AutoModel.from_config(config)
            processor = SamImageProcessor() if config.model_type == 'sam' \
                else Sam2ImageProcessor()
            print_log(
                f'mask model {self.name!r} has random weights',
                logger='current')
        else:
            source = self.locate()
            model = AutoModel.from_pretrained(source)
            from transformers import AutoImageProcessor
            processor = AutoImageProcessor.from_pretrained(source)
        self._model, self._processor = model.eval(), processor
        return self._model, self._processor

    @torch.no_grad()
    def generate(self, img_path: str, device=None) -> np.ndarray:
        """The (H, W) int64 label map of one image file."""
        from PIL import Image
        model, processor = self.load()
        if device is not None:
            model.to(device)
        image = Image.open(img_path).convert('RGB')
        masks = self.masks(model, processor, image)
        label = np.zeros((image.height, image.width), dtype=np.int64)
        areas = [int(m.sum()) for m in masks]
        # stable sort by area, as the official sorted(..., key=area)
        for new_id, k in enumerate(
                sorted(range(len(masks)), key=areas.__getitem__), 1):
            label[masks[k]] = new_id
        return label

    def masks(self, model, processor, image) -> list:
        """Boolean (H, W) masks kept by the automatic generator."""
        settings = self.settings
        size = processor.size
        target = size.get('longest_edge') if hasattr(size, 'get') else None
        target = target or size['height']
        crop_boxes, points, crops, labels = processor.generate_crop_boxes(
            image, target, 0, 512 / 1500, settings['points_per_side'], 1)
        inputs = processor(images=crops, return_tensors='pt')
        device = next(model.parameters()).device
        embeddings = model.get_image_embeddings(
            inputs['pixel_values'].to(device))
        original = inputs['original_sizes']
        extra = {}
        if 'reshaped_input_sizes' in inputs:  # SAM (v1) pads to a square
            extra['reshaped_input_sizes'] = inputs['reshaped_input_sizes']
        all_masks, all_scores, all_boxes = [], [], []
        step = settings['points_per_batch']
        for start in range(0, points.shape[1], step):
            out = model(
                image_embeddings=embeddings,
                input_points=points[:, start:start + step].to(device),
                input_labels=labels[:, start:start + step].to(device),
                multimask_output=settings['multimask_output'])
            masks = processor.post_process_masks(
                out.pred_masks.cpu(),
                original,
                mask_threshold=settings['mask_threshold'],
                binarize=False,
                **extra)
            masks, scores, boxes = processor.filter_masks(
                masks[0], out.iou_scores[0].cpu(), original[0], crop_boxes[0],
                settings['pred_iou_thresh'],
                settings['stability_score_thresh'], settings['mask_threshold'],
                settings['stability_score_offset'])
            all_masks.extend(masks)
            all_scores.append(scores)
            all_boxes.append(boxes)
        if not all_masks:
            return []
        # NMS here, not transformers' post_process_for_mask_generation:
        # that calls torchvision's compiled nms, missing on CPU-only
        # installs whose torchvision wheel is a CUDA build
        keep = box_nms(
            torch.cat(all_boxes).float(), torch.cat(all_scores),
            settings['box_nms_thresh'])
        return [np.asarray(decode(all_masks[i]), dtype=bool) for i in keep]


def box_nms(boxes: Tensor, scores: Tensor, iou_thresh: float) -> list:
    """Greedy non-maximum suppression (torchvision's ``nms``): boxes
    (N, 4) x0, y0, x1, y1 by descending score; a box is dropped when its IoU
    with a kept one exceeds ``iou_thresh``. Returns kept indices."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    low = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    high = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (high - low).clamp(min=0).prod(dim=2)
    iou = inter / (area[:, None] + area[None, :] - inter)
    keep, dropped = [], torch.zeros(len(boxes), dtype=torch.bool)
    for i in torch.argsort(scores, descending=True, stable=True).tolist():
        if not dropped[i]:
            keep.append(i)
            dropped |= iou[i] > iou_thresh
    return keep


def decode(mask):
    """A kept mask (tensor, array or run-length dict) as an (H, W) array."""
    if isinstance(mask, dict):
        height, width = mask['size']  # column-major run lengths
        flat = np.zeros(height * width, dtype=bool)
        start, value = 0, False
        for count in mask['counts']:
            flat[start:start + count] = value
            start, value = start + count, not value
        return flat.reshape(width, height).T
    return mask.cpu().numpy() if isinstance(mask, Tensor) else mask
