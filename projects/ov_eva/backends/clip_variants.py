"""The CLIP-only backend: the last block replaced by a training-free variant.

MaskCLIP (``vanilla``), SCLIP, ClearCLIP and NACLIP all change only how the
last vision block mixes tokens; ``DenseCLIPEncoder`` applies the variant's
attention with the block's own weights (see ``variant_attention``).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor

from ..clip_encoder import CLIPTower, check_choice
from ..registry import BACKENDS

VARIANTS = ('vanilla', 'sclip', 'clearclip', 'naclip')


def neighbourhood_bias(grid: Tuple[int, int], std: float) -> Tensor:
    """NACLIP's Gaussian prior: ``exp(-|p_i - p_j|^2 / (2 std^2))`` between
    patch positions, zero in the row and column of the class token."""
    h, w = grid
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32),
        torch.arange(w, dtype=torch.float32),
        indexing='ij')
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1)
    gauss = torch.exp(-torch.cdist(pos, pos).pow(2) / (2 * std**2))
    return F.pad(gauss, (1, 0, 1, 0))


def variant_attention(q: Tensor,
                      k: Tensor,
                      v: Tensor,
                      variant: str,
                      grid: Tuple[int, int],
                      gaussian_std: float = 5.0) -> Tensor:
    """Token mixing of the last block; q, k, v are (B, heads, N, head_dim).

    vanilla:   out = v                              (MaskCLIP)
    sclip:     softmax(q q^T s) + softmax(k k^T s)  (correlative attention)
    clearclip: softmax(q q^T s)
    naclip:    softmax(k k^T s + G)                  (G: neighbourhood_bias)
    """
    if variant == 'vanilla':
        return v
    scale = q.shape[-1]**-0.5
    if variant == 'sclip':
        attn = (q @ q.transpose(-2, -1) * scale).softmax(-1) + \
            (k @ k.transpose(-2, -1) * scale).softmax(-1)
    elif variant == 'clearclip':
        attn = (q @ q.transpose(-2, -1) * scale).softmax(-1)
    elif variant == 'naclip':
        bias = neighbourhood_bias(grid, gaussian_std).to(q)
        attn = (k @ k.transpose(-2, -1) * scale + bias).softmax(-1)
    else:
        raise ValueError(f'unknown variant {variant!r}; use one of {VARIANTS}')
    return attn @ v


@BACKENDS.register_module()
@MODELS.register_module()
class DenseCLIPEncoder(CLIPTower):
    """CLIP's patch embeddings with a training-free last block.

    Args:
        name, pretrained, autocast, quick_gelu, fp16_weights, patch_fit,
            pos_resize, cache_dir: the CLIP tower's (see ``CLIPTower``).
        variant: last-block variant, one of ``VARIANTS``.
        gaussian_std: NACLIP's neighbourhood standard deviation, in patches.
    """

    def __init__(self,
                 name: str,
                 pretrained: Optional[str] = None,
                 variant: str = 'naclip',
                 gaussian_std: float = 5.0,
                 autocast: str = 'auto',
                 quick_gelu: Optional[bool] = None,
                 fp16_weights: Optional[bool] = None,
                 patch_fit: str = 'pad_end',
                 pos_resize: str = 'scale_factor',
                 cache_dir: Optional[str] = None,
                 init_cfg=None):
        check_choice('variant', variant, VARIANTS)
        super().__init__(
            name,
            pretrained,
            autocast=autocast,
            quick_gelu=quick_gelu,
            fp16_weights=fp16_weights,
            patch_fit=patch_fit,
            pos_resize=pos_resize,
            cache_dir=cache_dir,
            init_cfg=init_cfg)
        self.variant, self.gaussian_std = variant, gaussian_std

    def set_variant(self, variant: str) -> None:
        """Switch the last block to another of ``VARIANTS`` (same weights:
        e.g. the page's base choice)."""
        check_choice('variant', variant, VARIANTS)
        self.variant = variant

    def _dense(self, images: Tensor, visual: torch.nn.Module) -> Tensor:
        x, grid = self._tokens(images, visual)
        x = self._last_block(visual.transformer.resblocks[-1], x, grid)
        return self._embed(visual, x[:, 1:], grid)

    def _last_block(self, block, x: Tensor, grid: Tuple[int, int]) -> Tensor:
        batch, tokens, width = x.shape
        q, k, v = self._qkv(block, x)
        out = variant_attention(q, k, v, self.variant, grid, self.gaussian_std)
        out = block.attn.out_proj(
            out.transpose(1, 2).reshape(batch, tokens, width))
        if self.variant == 'sclip':  # SCLIP keeps the residual and the FFN
            x = x + block.ls_1(out)
            return x + block.ls_2(block.mlp(block.ln_2(x)))
        return out
