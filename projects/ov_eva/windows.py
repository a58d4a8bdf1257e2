"""Whole-image and sliding-window inference over a patch-logit function.

mmseg's layout and result (``EncoderDecoder.whole_inference`` /
``slide_inference``, same ``crop_size`` / ``stride`` and window offsets),
with two changes that leave the logits equal but for float rounding and
that ``tools/benchmark.py`` measured faster on CPU: windows go through the
encoder ``batch_windows`` at a time, and their patch-grid logits are
upsampled and averaged in one separable step (``scoring.merge_windows``).
"""
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmseg.models.utils import resize
from mmseg.structures import SegDataSample
from torch import Tensor

from . import scoring

# (B, 3, h, w) images, their (B, 1, h, w) region masks or None ->
# (B, S, h', w') logits at the backend's patch grid
PatchLogits = Callable[[Tensor, Optional[Tensor]], Tensor]
TEST_CFG_LIMITS = ('batch_windows', 'max_output_logits', 'max_pamr_pixels')


def check_test_cfg(test_cfg: Optional[dict]) -> ConfigDict:
    test_cfg = ConfigDict(test_cfg or dict(mode='whole'))
    for knob in TEST_CFG_LIMITS:
        value = test_cfg.get(knob)
        if value is not None and (not isinstance(value, int)
                                  or isinstance(value, bool) or value < 1):
            raise ValueError(f'test_cfg.{knob}={value!r}: give a '
                             'positive whole number')
    return test_cfg


def whole(patch_logits: PatchLogits, fit, inputs: Tensor,
          guides: Optional[Tensor]) -> Tensor:
    """(B, S, H, W) logits of whole images: the patch-grid logits
    upsampled as the backend's ``fit`` says (channels-last: upsampling and
    every later per-pixel pass run ~1.5-3x faster on CPU, same values)."""
    logits = patch_logits(inputs, guides)
    rows, cols = fit(*inputs.shape[-2:])
    logits = resize(
        logits.contiguous(memory_format=torch.channels_last),
        size=(rows.upsampled, cols.upsampled),
        mode='bilinear',
        align_corners=False)
    return logits[..., rows.offset:rows.offset + inputs.shape[-2],
                  cols.offset:cols.offset + inputs.shape[-1]]


def window_offsets(size: int, crop: int, stride: int) -> list:
    """mmseg's window starts along one axis: the last ends at the border."""
    grids = max(size - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, size) - crop, 0) for i in range(grids)]


def slide(patch_logits: PatchLogits,
          fit,
          inputs: Tensor,
          guides: Optional[Tensor],
          crop_size: Tuple[int, int],
          stride: Tuple[int, int],
          batch_windows: int = 16) -> Tensor:
    """(B, S, H, W) logits averaged over mmseg's sliding windows;
    ``batch_windows`` windows per forward pass (16: the 15 windows of an
    ADE20K-sized image in one pass). The result is channels-last."""
    batch_size, _, h_img, w_img = inputs.size()
    y_offsets = window_offsets(h_img, crop_size[0], stride[0])
    x_offsets = window_offsets(w_img, crop_size[1], stride[1])
    window = (min(crop_size[0], h_img), min(crop_size[1], w_img))
    boxes = [(y, x) for y in y_offsets for x in x_offsets]

    def cut(x: Tensor, part) -> Tensor:
        # one window: a view (CorrCLIPv2's guides hold a GB of features)
        crops = [x[:, :, y:y + window[0], x0:x0 + window[1]] for y, x0 in part]
        return crops[0] if len(crops) == 1 else torch.cat(crops)

    chunks = []
    for start in range(0, len(boxes), batch_windows):
        part = boxes[start:start + batch_windows]
        chunks.append(
            patch_logits(
                cut(inputs, part), None if guides is None else cut(
                    guides, part)))
    logits = torch.cat(chunks)  # (windows * B, S, h, w)
    rows, cols = fit(*window)
    return scoring.merge_windows(
        logits.view(len(y_offsets), len(x_offsets), batch_size,
                    *logits.shape[1:]), y_offsets, x_offsets, window,
        (rows.upsampled, cols.upsampled), (h_img, w_img),
        (rows.offset, cols.offset))


def unpad_unflip(x: Tensor, meta: dict) -> Tensor:
    """(1, C, H, W) without the test pipeline's padding and flip, as in
    mmseg's ``postprocess_result``."""
    left, right, top, bottom = meta.get('img_padding_size',
                                        meta.get('padding_size', [0] * 4))
    height, width = x.shape[-2:]
    x = x[..., top:height - bottom, left:width - right]
    if meta.get('flip'):
        x = x.flip(dims=(-1 if meta.get('flip_direction') == 'horizontal'
                         else -2, ))
    return x


def masks_at_input(samples: Sequence[SegDataSample],
                   inputs: Tensor) -> Optional[Tensor]:
    """The samples' region masks (original size) resized (nearest) to the
    input image, flipped as TTA flips it and padded as the batch:
    (B, 1, H, W) int32; None when the samples carry none."""
    if not all('region_masks' in s for s in samples):
        return None
    guides = torch.zeros((len(samples), 1, *inputs.shape[-2:]),
                         dtype=torch.int32,
                         device=inputs.device)
    for i, sample in enumerate(samples):
        meta = sample.metainfo
        size = tuple(meta.get('img_shape', inputs.shape[-2:])[:2])
        mask = F.interpolate(
            sample.region_masks.data[None].float(), size=size, mode='nearest')
        if meta.get('flip'):  # TTA flips the image after resizing it
            mask = mask.flip(dims=(-1 if meta.get('flip_direction') ==
                                   'horizontal' else -2, ))
        guides[i, :, :size[0], :size[1]] = mask[0].int().to(inputs.device)
    return guides
