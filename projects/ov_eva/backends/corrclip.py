"""CorrCLIP (Zhang et al., ICCV'25): scope-constrained patch correlation.

CLIP's last block mixes its value features with a patch correlation taken
from a frozen DINO (the normalised sum of the query and key of DINO's last
block) and restricted to the regions of class-agnostic masks (SAM2's, or any
label map): a patch attends to the patches of its own region, and patches of
the unsegmented region to those more similar than the mean. Regions whose
mean DINO features are close are merged first (DBSCAN). Two more branches
are added: a spatial one (the same mixing of the mean of intermediate
layers) and a semantic one (one extra class token per region, through every
block with an attention mask). After the decision, each region takes the
mode of its labels (the map correction).

The pure functions below are the math, each checked against its formula in
``tests/test_corrclip.py``; ``CorrCLIPEncoder`` runs them with open_clip's
own blocks and a DINO from ``transformers``. Every setting is the official
default of https://github.com/zdk258/CorrCLIP/tree/103bc18/CorrCLIPv1
(``open_clip/transformer.py``, ``VisionTransformer.forward``, and
``corrclip_segmentor.py``).
"""
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import open_clip
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmseg.registry import MODELS
from torch import Tensor

from ..clip_encoder import AxisFit, CLIPTower, autocast_dtype, fit_axis
from ..scoring import map_correction, region_index  # noqa: F401
from ..registry import BACKENDS, build_mask_source
from .vfm import build_vfm, hub_pos_embedding, load_vfm_weights, vfm_config

# the official constants (VisionTransformer.forward)
TAU = 4.0  # temperature of the DINO correlation
ALPHA, BETA = 1.0, 0.5  # weights of the spatial and the semantic branch
DBSCAN_EPS, DBSCAN_MIN_SAMPLES = 0.2, 1
MERGED_OFFSET = 10000  # merged regions are relabelled cluster + 10000
PAD_MULTIPLE = 56  # windows are padded (centred) to multiples of 56 pixels
MASK_PAD_VALUE = 10000  # the mask label of that padding
# CLIP's and DINO's (ImageNet's) normalisation, in 0-1 units
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_DINO = dict(
    name='facebook/dino-vitb8',
    pretrained='facebook/dino-vitb8',
    layer_norm_eps=1e-6)  # DINO's own (the hub config says 1e-12)
# a tiny random CLIP with 12 blocks, as many as ViT-B (the spatial branch
# averages blocks 5-9 of 12; ov-eva-tiny's 2 blocks are too few)
TINY_CLIP_12 = 'ov-eva-tiny12'
open_clip.add_model_config(
    Path(__file__).parents[1] / 'model_configs' / f'{TINY_CLIP_12}.json')


def num_spatial_layers(num_layers: int) -> int:
    """How many intermediate layers the spatial branch averages: 5, 12, 28
    for 12-, 24-, 32-block towers (B, L, H), ``num_layers - 4`` else."""
    return {12: 5, 24: 12, 32: 28}.get(num_layers, num_layers - 4)


def dbscan_labels(distance: Tensor,
                  eps: float = DBSCAN_EPS,
                  min_samples: int = DBSCAN_MIN_SAMPLES) -> Tensor:
    """scikit-learn's ``DBSCAN(metric='precomputed')`` labels, exactly.

    Neighbours of i are the j with ``distance[i, j] <= eps`` (i included
    when its own distance is); a core point has at least ``min_samples``
    of them. Clusters grow from core points by neighbourhood in index
    order, numbered 0, 1, ... in the order of their first core point;
    points reached by no cluster are noise, -1 (sklearn's ``dbscan_inner``).
    """
    near = (distance <= eps).cpu()
    n = near.shape[0]
    neighbours = [torch.nonzero(row)[:, 0].tolist() for row in near]
    core = [len(row) >= min_samples for row in neighbours]
    labels = [-1] * n
    label = 0
    for start in range(n):
        if labels[start] != -1 or not core[start]:
            continue
        stack, i = [], start
        while True:
            if labels[i] == -1:
                labels[i] = label
                if core[i]:
                    stack.extend(j for j in neighbours[i] if labels[j] == -1)
            if not stack:
                break
            i = stack.pop()
        label += 1
    return torch.tensor(labels, dtype=torch.long)


def merge_regions(masks: Tensor, features: Tensor) -> Tensor:
    """The official mask merging on the feature grid: with more than two
    labels, the mean ``features`` (h, w, C) of every region but the first
    are L2-normalised, clustered by DBSCAN on ``max(sim) - sim`` of their
    cosine similarities, and each clustered region is relabelled
    ``cluster + 10000`` (noise keeps its label). Returns new labels."""
    values, index = region_index(masks)
    if len(values) <= 2:
        return masks.clone()
    flat = index.flatten()
    sums = torch.zeros(
        len(values),
        features.shape[-1],
        dtype=features.dtype,
        device=features.device)
    sums.index_add_(0, flat, features.reshape(-1, features.shape[-1]))
    counts = torch.bincount(flat, minlength=len(values)).to(features.dtype)
    means = F.normalize(sums / counts[:, None], dim=1)[1:]
    sim = means @ means.T
    cluster = dbscan_labels(sim.max() - sim).to(masks.device)
    relabel = torch.cat([
        values[:1],
        torch.where(cluster >= 0,
                    cluster.to(values.dtype) + MERGED_OFFSET, values[1:])
    ])
    return relabel[index]


def scope_attention(similarity: Tensor,
                    masks: Tensor,
                    tau: float = TAU) -> Tensor:
    """The scope-constrained correlation: ``softmax(tau * s)`` over the
    pairs allowed, (N, N) for N = h * w patches of label map ``masks``:
    patches of one region (not the first) attend to each other; a pair with
    a patch of the first (unsegmented) region is allowed where its
    similarity exceeds the mean of ``similarity``."""
    _, index = region_index(masks)
    index = index.flatten()
    same = (index[:, None] == index[None, :]) & (index[:, None] != 0)
    loose = ((index[:, None] == 0) | (index[None, :] == 0)) & (
        similarity > similarity.mean())
    logits = similarity.masked_fill(~(same | loose), float('-inf'))
    return (logits * tau).softmax(dim=-1)


def region_token_mask(region_masks: Tensor) -> Tensor:
    """Additive attention mask (0 allowed, -inf not) of the semantic
    branch for R region tokens before the class token and the P patches:
    the image tokens attend to the image tokens only; region token r to the
    class token and the patches of region r (``region_masks`` (R, P))."""
    num_regions, num_patches = region_masks.shape
    size = num_regions + 1 + num_patches
    allowed = torch.zeros(
        size, size, dtype=torch.bool, device=region_masks.device)
    allowed[num_regions:, num_regions:] = True
    allowed[:num_regions, num_regions] = True
    allowed[:num_regions, num_regions + 1:] = region_masks
    mask = torch.zeros(size, size, device=region_masks.device)
    return mask.masked_fill(~allowed, float('-inf'))


# --------------------------------------------------------------------------
# DINO through transformers (the VFM loader of ``vfm.py``)


def dino_qk_features(dino, images: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
    """(B, 3, H, W) ImageNet-normalised -> ((B, n, C) L2-normalised sum of
    the query and key of DINO's last block at its patch tokens, grid)."""
    emb = dino.embeddings
    x = emb.patch_embeddings.projection(images).flatten(2).transpose(1, 2)
    patch = dino.config.patch_size
    grid = (images.shape[-2] // patch, images.shape[-1] // patch)
    x = torch.cat([emb.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
    x = x + hub_pos_embedding(emb.position_embeddings, grid, 'vit').to(x)
    layers = dino.layers if hasattr(dino, 'layers') else dino.encoder.layer
    for layer in layers[:-1]:
        x = layer(x)
        x = x[0] if isinstance(x, tuple) else x
    last = layers[-1]
    h = last.layernorm_before(x)
    attn = last.attention
    if hasattr(attn, 'q_proj'):  # transformers >= 5
        qk = attn.q_proj(h) + attn.k_proj(h)
    else:
        qk = attn.attention.query(h) + attn.attention.key(h)
    return F.normalize(qk[:, 1:], dim=-1), grid


# --------------------------------------------------------------------------
# the backend


@BACKENDS.register_module()
@MODELS.register_module()
class CorrCLIPEncoder(CLIPTower):
    """CLIP dense features by CorrCLIP (see the module docstring).

    Args:
        dino: the frozen DINO, ``dict(name=..., pretrained=...)`` like
            ``model.clip`` (and config overrides such as ``layer_norm_eps``),
            loaded as ProxyCLIP's VFM (``vfm.py``): a ``transformers`` hub
            id or local folder (official: DINO ViT-B/8,
            ``facebook/dino-vitb8``), or ``'ov-eva-tiny-dino'`` (random,
            tests); ``pretrained=None``: random weights.
        masks: the source of per-image region masks (``build_mask_source``):
            ``dict(type='files', root=...)`` for pre-generated ``.npz``
            masks, or SAM2 / SAM automatic masks.
        correction: apply the map correction after the decision.
        pad_multiple: windows are padded with zeros around the centre to
            whole multiples of it (official: 56 pixels; masks padded with
            label 10000).
        Other arguments: the CLIP tower's (see ``CLIPTower``).
    """

    needs_region_masks = True
    normalize_features = True  # CorrCLIPv2's bank stores the raw features

    def __init__(self,
                 dino: Optional[dict] = None,
                 masks: Optional[dict] = None,
                 correction: bool = True,
                 pad_multiple: int = PAD_MULTIPLE,
                 **kwargs):
        kwargs.setdefault('patch_fit', 'pad_centre')
        super().__init__(**kwargs)
        if not isinstance(pad_multiple, int) or pad_multiple < 1:
            raise ValueError(f'model.clip.pad_multiple={pad_multiple!r}: '
                             'give a positive whole number of pixels')
        self.pad_multiple = pad_multiple
        dino = DEFAULT_DINO if dino is None else dino
        if not isinstance(dino, dict) or 'name' not in dino:
            raise ValueError(
                f'model.clip.dino={dino!r}: give dict(name=..., '
                "pretrained=...), e.g. dict(name='facebook/dino-vitb8', "
                "pretrained='facebook/dino-vitb8') or a local folder")
        dino = dict(dino)
        self.dino_name = dino.pop('name')
        self.dino_pretrained = dino.pop('pretrained', None)
        self.dino = build_vfm(
            vfm_config(self.dino_name, self.dino_pretrained, overrides=dino))
        if self.dino.config.model_type != 'vit':
            raise ValueError(
                f'model.clip.dino {self.dino_name!r} is a '
                f'{self.dino.config.model_type!r} model; CorrCLIP correlates '
                "DINO's query and key: give a DINO ViT (ViTModel), e.g. "
                'facebook/dino-vitb8')
        self.dino_loaded = self.dino_pretrained is None
        if self.dino_loaded:
            print_log(
                f'DINO {self.dino_name!r} has random weights '
                '(clip.dino.pretrained=None)',
                logger='current')
        self.mask_source = build_mask_source(masks)
        self.correction = correction

    def load_pretrained(self) -> None:
        super().load_pretrained()
        if self.dino_loaded:
            return
        source = load_vfm_weights(self.dino, self.dino_pretrained)
        self.dino.eval()
        self.dino_loaded = True
        print_log(
            f'DINO {self.dino_name!r} weights loaded from {source}',
            logger='current')

    def init_weights(self) -> None:
        super().init_weights()
        # a mask model's weights are looked for with CLIP's and DINO's
        # (before the run), not at the first image
        locate = getattr(self.mask_source, 'locate', None)
        if locate is not None:
            locate()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if any(key.startswith(prefix + 'dino.') for key in state_dict):
            self.dino_loaded = True  # a checkpoint brought them

    def fit(self, height: int, width: int) -> Tuple[AxisFit, AxisFit]:
        """Windows are padded centred to multiples of ``pad_multiple`` and the
        logits come at DINO's grid of the padded window."""
        return (fit_axis(height, self.pad_multiple, 'pad_centre'),
                fit_axis(width, self.pad_multiple, 'pad_centre'))

    def region_masks(self, metas: Sequence[dict]) -> List[Tensor]:
        """(H, W) integer region labels of each image at its original
        size, from the mask source."""
        if self.mask_source is None:
            raise ValueError(
                'CorrCLIP needs region masks: set model.clip.masks, e.g. '
                "dict(type='files', root='data/region_masks/ade') for "
                "pre-generated .npz masks or dict(type='sam2', ...)")
        device = self.model.logit_scale.device
        return [self.mask_source.get(meta, device) for meta in metas]

    def forward(self,
                images: Tensor,
                masks: Optional[Tensor] = None) -> Tensor:
        """(B, 3, H, W) CLIP-normalised windows and their (B, 1, H, W)
        region labels -> (B, D, h, w) L2-normalised features at DINO's
        grid of the padded windows."""
        if masks is None:
            raise ValueError('CorrCLIP features need the region masks of '
                             'the images (model.clip.masks)')
        self.load_pretrained()
        rows, cols = self.fit(*images.shape[-2:])
        pad = (cols.pad_before, cols.pad_after, rows.pad_before,
               rows.pad_after)
        images = F.pad(images, pad)
        masks = F.pad(masks.to(torch.int32), pad, value=MASK_PAD_VALUE)
        mean = torch.tensor(CLIP_MEAN, device=images.device)[:, None, None]
        std = torch.tensor(CLIP_STD, device=images.device)[:, None, None]
        in_mean = torch.tensor(
            IMAGENET_MEAN, device=images.device)[:, None, None]
        in_std = torch.tensor(
            IMAGENET_STD, device=images.device)[:, None, None]
        dino_images = (images.float() * std + mean - in_mean) / in_std
        dino_feats, grid = self._vfm(dino_images)
        # the CLIP branches in the tower's precision (``autocast``); DINO,
        # the correlation and the masks in float32
        visual = self.image_tower(autocast_dtype(self.autocast, images.device))
        out = []
        for i in range(len(images)):  # the semantic branch: one window each
            merged, attn_weights = self._correlation(dino_feats[i], grid,
                                                     masks[i:i + 1])
            out.append(
                self._branches(visual, images[i:i + 1], merged, attn_weights,
                               grid))
        x = torch.stack(out).float()
        x = F.normalize(x, dim=-1) if self.normalize_features else x
        return x.transpose(1, 2).reshape(len(images), -1, *grid)

    def _vfm(self, images: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
        return dino_qk_features(self.dino, images)

    @staticmethod
    def _correlation(dino_feats: Tensor, grid: Tuple[int, int],
                     masks: Tensor) -> Tuple[Tensor, Tensor]:
        """One window's merged region labels on DINO's grid and its
        scope-constrained correlation (N, N)."""
        similarity = dino_feats @ dino_feats.T
        masks = F.interpolate(
            masks.float(), size=grid, mode='nearest').int()[0, 0]
        masks = merge_regions(masks, dino_feats.reshape(*grid, -1))
        return masks, scope_attention(similarity, masks)

    def _branches(self, visual, image: Tensor, masks: Tensor,
                  attn_weights: Tensor, grid: Tuple[int, int]) -> Tensor:
        """One window's (n, D) features at DINO's grid: CLIP with the
        region tokens, the main and spatial branches mixed by
        ``attn_weights``, and the semantic branch."""
        # CLIP tokens
        x = visual.conv1(image.to(visual.conv1.weight.dtype))
        tokens = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(1, 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + self.positional_embedding(tokens, visual).to(x.dtype)
        x = visual.ln_pre(visual.patch_dropout(x))

        # semantic branch: one class token per region of the merged masks
        token_masks = F.interpolate(
            masks[None, None].float(), size=tokens, mode='nearest').int()[0, 0]
        values = torch.unique(token_masks)
        regions = token_masks[None] == values[:, None, None]  # (R, th, tw)
        num_regions = len(values)
        attn_mask = region_token_mask(regions.flatten(1)).to(x.dtype)
        x = torch.cat([x[:, :1].expand(1, num_regions, -1), x], dim=1)

        transformer = visual.transformer
        batch_first = getattr(transformer, 'batch_first', True)
        blocks = transformer.resblocks
        num_layers = len(blocks)
        first = num_layers - 2 - num_spatial_layers(num_layers)
        if first < 0 or first > num_layers - 3:
            raise ValueError(
                f'CorrCLIP needs an image tower of at least 5 blocks; '
                f'{self.name!r} has {num_layers}')
        spatial = []
        x = x if batch_first else x.transpose(0, 1)
        for idx, block in enumerate(blocks[:-1]):
            x = block(x, attn_mask=attn_mask)
            if first <= idx <= num_layers - 3:
                spatial.append(x)
        x = x if batch_first else x.transpose(0, 1)
        spatial = torch.stack(spatial).mean(0)
        spatial = spatial if batch_first else spatial.transpose(0, 1)

        # main and spatial branches: values resampled to DINO's grid, mixed
        last = blocks[-1]
        both = torch.cat([x[:, num_regions:], spatial[:, num_regions:]])
        width = both.shape[-1]
        v = F.linear(
            last.ln_1(both), last.attn.in_proj_weight[2 * width:],
            last.attn.in_proj_bias[2 * width:])[:, 1:]
        v = v.transpose(1, 2).reshape(2, width, *tokens)
        v = F.interpolate(v, size=grid, mode='bilinear', align_corners=False)
        v = v.flatten(2).transpose(1, 2)  # (2, n, width)
        mixed = last.attn.out_proj(attn_weights.to(v.dtype) @ v)

        # semantic branch: the region tokens after the last block
        xs = x if batch_first else x.transpose(0, 1)
        region_tokens = last(xs, attn_mask=attn_mask)
        region_tokens = region_tokens if batch_first else \
            region_tokens.transpose(0, 1)
        region_tokens = region_tokens[0, :num_regions]
        expand = F.interpolate(
            regions[:, None].to(region_tokens.dtype),
            size=grid,
            mode='nearest').flatten(1)
        semantic = expand.T @ region_tokens

        out = visual.ln_post(torch.cat([mixed, semantic[None]]))
        out = out[0] + out[1] * ALPHA + out[2] * BETA
        return out @ visual.proj
