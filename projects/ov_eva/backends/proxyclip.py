"""ProxyCLIP (Lan et al., ECCV 2024): CLIP's values mixed by a VFM's attention.

The last CLIP block keeps only its value path; the tokens are mixed by a
"proxy attention" computed from the patch features of a frozen vision
foundation model (DINO, DINOv2), on the VFM's grid (``proxy_attention``).
Settings as the official code (github.com/mc-lan/ProxyCLIP,
``proxyclip_segmentor.py`` and its ``open_clip/transformer.py``): beta 1.2,
gamma 3.0, windows padded (centred) to whole multiples of 56 pixels, the
VFM fed the image re-normalised with ImageNet's mean and std.
"""
import contextlib
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor

from ..clip_encoder import (AxisFit, CLIPTower, autocast_dtype, check_choice,
                            fit_axis)
from ..registry import BACKENDS
from .vfm import build_vfm, load_vfm_weights, vfm_config, vfm_features

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# the official default: DINO ViT-B/8 (torch.hub dino_vitb8; layer-norm eps
# 1e-6 as DINO's own code)
DEFAULT_VFM = dict(
    name='facebook/dino-vitb8',
    pretrained='facebook/dino-vitb8',
    layer_norm_eps=1e-6)


def proxy_attention(features: Tensor, beta: float, gamma: float) -> Tensor:
    """(B, C, h, w) VFM features -> (B, h * w, h * w) attention weights:
    ``softmax(A)`` row by row, with ``S = f^T f`` the cosine similarity of
    the patches, ``A = gamma (S - beta mean(S))`` where it is >= 0 and
    ``-inf`` elsewhere (the mean over each image's whole ``S``)."""
    f = F.normalize(features.flatten(2).float(), dim=1)
    sim = f.transpose(1, 2) @ f
    sim = (sim - sim.mean(dim=(1, 2), keepdim=True) * beta) * gamma
    sim = sim.masked_fill(sim < 0, float('-inf'))
    return sim.softmax(-1)


@BACKENDS.register_module()
class ProxyCLIPEncoder(CLIPTower):
    """ProxyCLIP's dense CLIP features.

    Args:
        name, pretrained, autocast, quick_gelu, fp16_weights, pos_resize,
            cache_dir: the CLIP tower's (see ``CLIPTower``).
        vfm: the frozen VFM: ``name`` (hub id, local folder, or a tiny
            random model of ``vfm.TINY_VFMS``), ``pretrained`` (hub id or
            local folder of the weights; None: random) and any config
            overrides (e.g. ``layer_norm_eps=1e-6``, DINO's own); None:
            ``DEFAULT_VFM``.
        beta, gamma: the proxy attention's mean shift and temperature
            (``proxy_attention``).
        patch_fit: ``'pad_centre'`` (the official: zeros split around the
            window) or ``'pad_end'``.
        pad_multiple: windows are padded to whole multiples of it (56, the
            official: whole patches of 8, 14 and 16 alike).
        clip_mean, clip_std: the normalisation of the input images (CLIP's),
            undone before the VFM's, ``vfm_mean`` / ``vfm_std`` (ImageNet),
            is applied, all in 0-1 units.
    """

    def __init__(self,
                 name: str,
                 pretrained: Optional[str] = None,
                 vfm: Optional[dict] = None,
                 beta: float = 1.2,
                 gamma: float = 3.0,
                 patch_fit: str = 'pad_centre',
                 pad_multiple: int = 56,
                 clip_mean: Sequence[float] = OPENAI_MEAN,
                 clip_std: Sequence[float] = OPENAI_STD,
                 vfm_mean: Sequence[float] = IMAGENET_MEAN,
                 vfm_std: Sequence[float] = IMAGENET_STD,
                 autocast: str = 'auto',
                 quick_gelu: Optional[bool] = None,
                 fp16_weights: Optional[bool] = None,
                 pos_resize: str = 'scale_factor',
                 cache_dir: Optional[str] = None,
                 init_cfg=None):
        check_choice('patch_fit', patch_fit, ('pad_centre', 'pad_end'))
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
        vfm = DEFAULT_VFM if vfm is None else vfm
        if not isinstance(vfm, dict) or 'name' not in vfm:
            raise ValueError(
                f'model.clip.vfm={vfm!r}: give a dict with name and '
                "pretrained, e.g. dict(name='facebook/dino-vitb8', "
                "pretrained='facebook/dino-vitb8')")
        vfm = dict(vfm)
        self.vfm_name = vfm.pop('name')
        self.vfm_pretrained = vfm.pop('pretrained', None)
        self.vfm = build_vfm(
            vfm_config(self.vfm_name, self.vfm_pretrained, overrides=vfm))
        self.vfm_loaded = self.vfm_pretrained is None
        if self.vfm_pretrained is None:
            print_log(
                f'VFM {self.vfm_name!r} has random weights '
                '(clip.vfm.pretrained=None)',
                logger='current')
        self.beta, self.gamma = float(beta), float(gamma)
        if not isinstance(pad_multiple, int) or pad_multiple < 1:
            raise ValueError(f'model.clip.pad_multiple={pad_multiple!r}: '
                             'give a positive whole number of pixels')
        self.pad_multiple = pad_multiple
        # input (CLIP-normalised) -> VFM-normalised: x * scale + shift
        clip_mean, clip_std = torch.tensor(clip_mean), torch.tensor(clip_std)
        vfm_mean, vfm_std = torch.tensor(vfm_mean), torch.tensor(vfm_std)
        self.register_buffer(
            'vfm_scale', (clip_std / vfm_std).view(1, 3, 1, 1),
            persistent=False)
        self.register_buffer(
            'vfm_shift', ((clip_mean - vfm_mean) / vfm_std).view(1, 3, 1, 1),
            persistent=False)

    def load_pretrained(self) -> None:
        super().load_pretrained()
        if self.vfm_loaded:
            return
        source = load_vfm_weights(self.vfm, self.vfm_pretrained)
        self.vfm.eval()
        self.vfm_loaded = True
        print_log(
            f'VFM {self.vfm_name!r} weights loaded from {source}',
            logger='current')

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if any(key.startswith(prefix + 'vfm.') for key in state_dict):
            self.vfm_loaded = True  # a checkpoint brought them

    def fit(self, height: int, width: int) -> Tuple[AxisFit, AxisFit]:
        """Windows are padded to whole multiples of ``pad_multiple``; the
        features, on the VFM's grid, cover the padded window."""
        return (fit_axis(height, self.pad_multiple, self.patch_fit),
                fit_axis(width, self.pad_multiple, self.patch_fit))

    def vfm_input(self, images: Tensor) -> Tensor:
        """CLIP-normalised images -> the VFM's normalisation (ImageNet's),
        as the official code: un-normalised with CLIP's mean and std,
        normalised with the VFM's."""
        return images * self.vfm_scale.to(images) + \
            self.vfm_shift.to(images)

    def forward(self, images: Tensor) -> Tensor:
        self.load_pretrained()
        dtype = autocast_dtype(self.autocast, images.device)
        return self._dense(images, self.image_tower(dtype), dtype)

    def vfm_forward(self,
                    padded: Tensor,
                    dtype: Optional[torch.dtype] = None) -> Tensor:
        """(B, C, h, w) VFM patch features of padded CLIP-normalised
        images (``dtype``: autocast precision, None for float32)."""
        pixels = self.vfm_input(padded.float())
        context = contextlib.nullcontext() if dtype is None else \
            torch.autocast(padded.device.type, dtype=dtype)
        with context:
            return vfm_features(self.vfm, pixels).float()

    def _dense(self,
               images: Tensor,
               visual: torch.nn.Module,
               dtype: Optional[torch.dtype] = None) -> Tensor:
        rows, cols = self.fit(*images.shape[-2:])
        padded = F.pad(
            images,
            (cols.pad_before, cols.pad_after, rows.pad_before, rows.pad_after))
        x, grid = self._tokens(padded, visual)
        features = self.vfm_forward(padded, dtype)
        out = self._proxy_block(visual.transformer.resblocks[-1], x, grid,
                                features)
        return self._embed(visual, out, tuple(features.shape[-2:]))

    def _proxy_block(self, block, x: Tensor, grid: Tuple[int, int],
                     features: Tensor) -> Tensor:
        """The last block: each head's patch values (``grid``) resized
        bilinearly to the VFM's grid, mixed by ``proxy_attention`` of the
        VFM ``features``, through the output projection; no residual, no
        FFN. Returns (B, h' * w', C) tokens on the VFM's grid."""
        _, _, v = self._qkv(block, x)
        batch, heads, _, head_dim = v.shape
        vfm_grid = tuple(features.shape[-2:])
        v = v[:, :, 1:].reshape(batch * heads, *grid, head_dim)
        v = F.interpolate(
            v.permute(0, 3, 1, 2),
            size=vfm_grid,
            mode='bilinear',
            align_corners=False)
        v = v.reshape(batch, heads, head_dim, -1).transpose(-2, -1)
        attn = proxy_attention(features, self.beta, self.gamma).to(v.dtype)
        out = attn[:, None] @ v  # one attention for every head
        out = out.transpose(1, 2).reshape(batch, -1, heads * head_dim)
        return block.attn.out_proj(out)
