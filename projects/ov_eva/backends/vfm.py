"""Frozen vision foundation models (DINO, DINOv2) through ``transformers``.

A VFM is named like the CLIP model: ``name`` (a hub id such as
``facebook/dino-vitb8``, a local folder written by ``save_pretrained``, or a
tiny random model for tests, ``TINY_VFMS``) and ``pretrained`` (where the
weights come from: a hub id or local folder, or None for random weights).
The architecture is built at once from its config; the weights are loaded
later (``load_vfm_weights``), unless a checkpoint brings them.

The official ProxyCLIP code takes its VFMs from ``torch.hub``
(``facebookresearch/dino``, ``facebookresearch/dinov2``); ``vfm_features``
computes what their ``get_intermediate_layers`` returns: the last block's
patch tokens after the final layer norm, with the positional embedding
resized by each hub model's own rule (``hub_pos_embedding``), which is not
``transformers``' rule for DINO and for DINOv2 without registers.
"""
import functools
import math
import os
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..hub import hub_offline, hub_reachable
from ..optional import require

# Tiny random VFMs for tests (no download): transformers config dicts.
TINY_VFMS = {
    'ov-eva-tiny-dino':
    dict(
        model_type='vit',
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        qkv_bias=True,
        layer_norm_eps=1e-6),
    'ov-eva-tiny-dinov2':
    dict(
        model_type='dinov2_with_registers',
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=56,
        patch_size=14,
        num_register_tokens=4,
        layer_norm_eps=1e-6),
}
VFM_TYPES = ('vit', 'dinov2', 'dinov2_with_registers', 'dinov3_vit')


def _is_folder(path: Optional[str]) -> bool:
    return isinstance(path, str) and os.path.isdir(os.path.expanduser(path))


def _offline_error(what: str, source: str) -> FileNotFoundError:
    return FileNotFoundError(
        f'VFM {what} of {source!r} (model.clip.vfm) are not in the local '
        'cache and the hub is unreachable (or HF_HUB_OFFLINE=1). Fetch them '
        'once where there is network (python -c "from transformers import '
        f"AutoModel; AutoModel.from_pretrained('{source}')"
        '.save_pretrained(\'FOLDER\')") and set model.clip.vfm.pretrained '
        '(and model.clip.vfm.name) to that local folder, or load a '
        'checkpoint that holds them (tools/export_checkpoint.py).')


def vfm_config(name: str,
               pretrained: Optional[str] = None,
               overrides: Optional[dict] = None):
    """The transformers config of VFM ``name`` (a tiny name, a hub id or a
    local folder; a local ``pretrained`` folder is read first), with
    ``overrides``; offline and uncached, a FileNotFoundError within seconds
    that says what to do."""
    require('transformers', f'model.clip.vfm {name!r}')
    from transformers import CONFIG_MAPPING, AutoConfig
    overrides = dict(overrides or {})
    if name in TINY_VFMS:
        spec = dict(TINY_VFMS[name], **overrides)
        return CONFIG_MAPPING[spec.pop('model_type')](**spec)
    source = os.path.expanduser(pretrained) if _is_folder(pretrained) \
        else os.path.expanduser(name) if _is_folder(name) else name
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        if _is_folder(source):
            raise FileNotFoundError(
                f'model.clip.vfm: folder {source!r} holds no transformers '
                'config.json; give a folder written by save_pretrained')
        if hub_offline() or not hub_reachable():
            raise _offline_error('config and weights', source)
        config = AutoConfig.from_pretrained(source)
    if config.model_type not in VFM_TYPES:
        raise ValueError(
            f'model.clip.vfm {source!r} is a {config.model_type!r} model; '
            f'dense proxy attention supports {VFM_TYPES} '
            '(DINO: ViTModel, DINOv2: Dinov2Model / '
            'Dinov2WithRegistersModel)')
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def build_vfm(config) -> torch.nn.Module:
    """The VFM architecture of ``config`` with random weights, in eval
    mode (ViTs without their pooler: only patch tokens are read)."""
    from transformers import AutoModel, ViTModel
    if config.model_type == 'vit':
        model = ViTModel(config, add_pooling_layer=False)
    else:
        model = AutoModel.from_config(config)
    # the hub models' own resize of the positional embedding
    model.embeddings.interpolate_pos_encoding = functools.partial(
        _interpolate_like_hub, model.embeddings, config.model_type)
    return model.eval()


def load_vfm_weights(model: torch.nn.Module, pretrained: str) -> str:
    """Load the weights of ``pretrained`` (hub id, cached once, or local
    folder) into ``model``; returns where they came from."""
    from transformers import AutoModel
    source = os.path.expanduser(pretrained)
    try:
        loaded = AutoModel.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError):
        if _is_folder(source):
            raise FileNotFoundError(
                f'model.clip.vfm.pretrained: folder {source!r} holds no '
                'transformers weights; give a folder written by '
                'save_pretrained')
        if hub_offline() or not hub_reachable():
            raise _offline_error('weights', source)
        loaded = AutoModel.from_pretrained(source)
    state = {
        k: v
        for k, v in loaded.state_dict().items() if not k.startswith('pooler.')
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f'model.clip.vfm.pretrained={pretrained!r} does not fit '
            f'model.clip.vfm.name: missing {missing[:5]}, unexpected '
            f'{unexpected[:5]}')
    return source


def hub_pos_embedding(pos: Tensor, grid: Tuple[int, int],
                      model_type: str) -> Tensor:
    """The (1, 1 + N, C) positional embedding resized to a ``grid`` of
    patches as the torch.hub models do (unchanged where the token count is
    the native one and the grid is square):

    - ``vit`` (DINO) and ``dinov2`` (DINOv2, ``interpolate_offset=0.1``):
      bicubic by the scale factor ``(g + 0.1) / g0``;
    - ``dinov2_with_registers`` (DINOv2 ``*_reg``, offset 0): bicubic with
      antialiasing to the grid's size, in float32.
    """
    num = pos.shape[1] - 1
    if grid[0] * grid[1] == num and grid[0] == grid[1]:
        return pos
    side = int(math.sqrt(num))
    patch = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    if model_type == 'dinov2_with_registers':
        patch = F.interpolate(
            patch.float(),
            size=tuple(grid),
            mode='bicubic',
            align_corners=False,
            antialias=True).to(pos.dtype)
    else:
        source = patch.float() if model_type == 'dinov2' else patch
        patch = F.interpolate(
            source,
            scale_factor=tuple((g + 0.1) / side for g in grid),
            mode='bicubic',
            align_corners=False).to(pos.dtype)
    patch = patch.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])
    return torch.cat([pos[:, :1], patch], dim=1)


def _interpolate_like_hub(module, model_type: str, embeddings: Tensor,
                          height: int, width: int) -> Tensor:
    """Bound to a transformers ``*Embeddings`` module in place of its own
    ``interpolate_pos_encoding``."""
    patch = module.patch_size
    ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
    return hub_pos_embedding(module.position_embeddings,
                             (height // ph, width // pw), model_type)


def vfm_patch_size(model: torch.nn.Module) -> Tuple[int, int]:
    patch = model.config.patch_size
    return (patch, patch) if isinstance(patch, int) else tuple(patch)


def vfm_features(model: torch.nn.Module, pixel_values: Tensor) -> Tensor:
    """(B, 3, H, W) VFM-normalised images -> (B, C, H / p, W / p) patch
    tokens of the last block after the final layer norm (class and
    register tokens dropped), as the hub models' ``get_intermediate_layers``
    return them."""
    ph, pw = vfm_patch_size(model)
    grid = (pixel_values.shape[-2] // ph, pixel_values.shape[-1] // pw)
    kwargs = dict(interpolate_pos_encoding=True) \
        if model.config.model_type == 'vit' else {}
    out = model(pixel_values=pixel_values, **kwargs).last_hidden_state
    skip = 1 + getattr(model.config, 'num_register_tokens', 0)
    tokens = out[:, skip:]
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *grid)
