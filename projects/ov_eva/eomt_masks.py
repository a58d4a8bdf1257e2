"""EoMT's single-pass region masks (CorrCLIP's ``mask_generator='eomt'``).

EoMT (Kerssies et al., CVPR'25) is a plain ViT whose last blocks also carry
query tokens; one forward pass gives every query a mask and a class, and
the panoptic merge turns them into one label map. CorrCLIP (zdk258/CorrCLIP
@103bc18, CorrCLIPv1 and CorrCLIPv2 alike) takes that map's segment ids as
its regions: -1 where no segment is kept, 0, 1, ... in the order of the
queries, the segments of one stuff class merged into one. The model loads
through ``transformers`` (``EomtForUniversalSegmentation``); everything
around it follows the official inference, as facts read from its code:

- COCO-panoptic EoMT-L at 640 pixels (``coco_panoptic_eomt_large_640``),
  masked attention off (the official code builds it with
  ``masked_attn_enabled=False``): only the last block's prediction is used;
- the image is resized with PIL's bilinear filter by
  ``min(640 / h, 640 / w)`` (sides rounded), padded with zeros at the
  bottom and right to 640 x 640, scaled to 0-1 and normalised with
  ImageNet's mean and std;
- the mask logits are resized bilinearly to 640 x 640, cut to the resized
  image and resized bilinearly to the original size;
- the panoptic merge (``panoptic_segments``): queries whose top class is
  not "no object" with a probability above 0.8; each pixel goes to the
  query of highest ``score * sigmoid(mask)``; a query keeps its pixels
  where its own mask is at least 0.5, if they are at least 0.8 of its
  mask's area; COCO's stuff classes (80-132) merge into one segment each.

Only the kept queries' mask logits are resized to the image (the merge
reads no other; the official code resizes all 200 of them): the same
labels without 200 full-size maps (1.6 GB for a Cityscapes image).
"""
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor

from .masks import GeneratedMasks
from .optional import require
from .registry import MASK_SOURCES

# COCO panoptic: 80 thing classes, then 53 stuff classes (the official
# config's ``stuff_classes``)
COCO_STUFF_CLASSES = tuple(range(80, 133))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def kept_queries(class_logits: Tensor, score_thresh: float = 0.8) -> Tensor:
    """(Q,) whether a query's top class, of (Q, C + 1) logits, is not "no
    object" (the last) and has a probability above ``score_thresh``."""
    scores, classes = class_logits.softmax(dim=-1).max(dim=-1)
    return (classes != class_logits.shape[-1] - 1) & (scores > score_thresh)


def panoptic_segments(mask_logits: Tensor,
                      class_logits: Tensor,
                      stuff_classes: Sequence[int] = COCO_STUFF_CLASSES,
                      score_thresh: float = 0.8,
                      overlap_thresh: float = 0.8,
                      mask_thresh: float = 0.5) -> Tensor:
    """EoMT's panoptic merge: (Q, H, W) mask logits and (Q, C + 1) class
    logits (the last class "no object") -> (H, W) int64 segment ids, -1
    where no segment is kept."""
    scores, classes = class_logits.softmax(dim=-1).max(dim=-1)
    labels = torch.full(
        mask_logits.shape[-2:],
        -1,
        dtype=torch.long,
        device=mask_logits.device)
    keep = kept_queries(class_logits, score_thresh)
    if not keep.any():
        return labels
    probs = mask_logits[keep].sigmoid()
    scores, classes = scores[keep], classes[keep].tolist()
    owner = (scores[:, None, None] * probs).argmax(dim=0)
    stuff = set(stuff_classes)
    stuff_ids: dict = {}
    next_id = 0
    for k, cls in enumerate(classes):
        own = probs[k] >= mask_thresh
        won = owner == k
        final = own & won
        own_area, won_area = int(own.sum()), int(won.sum())
        if own_area == 0 or won_area == 0 or not final.any() \
                or won_area / own_area < overlap_thresh:
            continue
        if cls in stuff_ids:  # a stuff class seen before: the same segment
            labels[final] = stuff_ids[cls]
            continue
        if cls in stuff:
            stuff_ids[cls] = next_id
        labels[final] = next_id
        next_id += 1
    return labels


@MASK_SOURCES.register_module()
class EoMTMasks(GeneratedMasks):
    """Region masks from EoMT's panoptic output (see the module docstring),
    through ``transformers``' ``EomtForUniversalSegmentation``; the label
    map keeps EoMT's ids (-1 unsegmented, as the official pre-generated
    EoMT masks), cached like SAM2's.

    Args:
        name: hub id or local folder of the model (``save_pretrained``);
            default the official ``tue-mps/coco_panoptic_eomt_large_640``.
        pretrained: where the weights are (default: ``name``): a hub id
            (from the local Hugging Face cache, or downloaded when the hub
            is reachable) or a local folder.
        score_thresh: a query's class probability must exceed it (0.8).
        overlap_thresh: the part of a query's mask it must win (0.8).
        mask_thresh: a mask's pixels are where its probability is at least
            this (0.5).
        stuff_classes: the class ids merged into one segment per class
            (COCO panoptic's 80-132).
        cache_dir: as SAM2's: ``<cache_dir>/masks/<key>.npz``; None:
            ``$OV_EVA_CACHE``; False: none.
        root, folder: ignored: the ``files`` source's, accepted so that
            ``--cfg-options model.clip.masks.type=eomt`` works on a config
            that reads pre-generated masks.
    """

    def __init__(self,
                 name: str = 'tue-mps/coco_panoptic_eomt_large_640',
                 pretrained: Optional[str] = '',
                 score_thresh: float = 0.8,
                 overlap_thresh: float = 0.8,
                 mask_thresh: float = 0.5,
                 stuff_classes: Sequence[int] = COCO_STUFF_CLASSES,
                 cache_dir: Union[None, bool, str] = None,
                 root: Optional[str] = None,
                 folder: Optional[str] = None):
        self.name = name
        self.pretrained = name if pretrained == '' else pretrained
        self.settings = dict(
            score_thresh=score_thresh,
            overlap_thresh=overlap_thresh,
            mask_thresh=mask_thresh,
            stuff_classes=sorted(int(c) for c in stuff_classes))
        super().__init__(cache_dir)

    def load(self):
        """The model, on first use (masked attention off)."""
        if self._model is not None:
            return self._model
        require('transformers', 'EoMT masks')
        from transformers import EomtForUniversalSegmentation
        if self.pretrained is None:
            from transformers import AutoConfig
            config = AutoConfig.from_pretrained(self._local(self.name))
            model = EomtForUniversalSegmentation(config)
            print_log(
                f'mask model {self.name!r} has random weights',
                logger='current')
        else:
            model = EomtForUniversalSegmentation.from_pretrained(self.locate())
        # the official masked_attn_enabled=False: no intermediate masks
        model.attn_mask_probs.zero_()
        self._model = model.eval()
        return self._model

    def image_size(self, model) -> tuple:
        size = model.config.image_size
        return tuple(size) if isinstance(size, (list, tuple)) else (size, size)

    def preprocess(self, image, size: tuple, device) -> tuple:
        """The (1, 3, *size) normalised input and the resized image's
        (height, width)."""
        factor = min(size[0] / image.height, size[1] / image.width)
        height, width = (
            round(side * factor) for side in (image.height, image.width))
        from PIL import Image
        resized = np.asarray(image.resize((width, height), Image.BILINEAR))
        pixels = torch.zeros(1, 3, *size, device=device)
        pixels[0, :, :height, :width] = torch.from_numpy(
            resized.copy()).permute(2, 0, 1).to(device) / 255.0
        mean = torch.tensor(IMAGENET_MEAN, device=device)[:, None, None]
        std = torch.tensor(IMAGENET_STD, device=device)[:, None, None]
        return (pixels - mean) / std, (height, width)

    @torch.no_grad()
    def generate(self, img_path: str, device=None) -> np.ndarray:
        """The (H, W) int64 segment ids of one image file."""
        from PIL import Image
        model = self.load()
        if device is not None:
            model.to(device)
        device = next(model.parameters()).device
        image = Image.open(img_path).convert('RGB')
        size = self.image_size(model)
        pixels, resized = self.preprocess(image, size, device)
        out = model(pixel_values=pixels)
        settings = self.settings
        # only the kept queries' masks are resized (the merge reads no
        # other): the same labels, without Q full-size maps
        class_logits = out.class_queries_logits[0].float()
        keep = kept_queries(class_logits, settings['score_thresh'])
        if not keep.any():  # no segment: all unsegmented
            return np.full((image.height, image.width), -1, np.int64)
        logits = F.interpolate(
            out.masks_queries_logits[:, keep], size=size, mode='bilinear')
        logits = logits[..., :resized[0], :resized[1]]
        logits = F.interpolate(
            logits, size=(image.height, image.width), mode='bilinear')[0]
        return panoptic_segments(logits.float(), class_logits[keep],
                                 settings['stuff_classes'],
                                 settings['score_thresh'],
                                 settings['overlap_thresh'],
                                 settings['mask_thresh']).cpu().numpy()
