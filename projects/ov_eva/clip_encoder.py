"""The CLIP tower every dense-feature backend shares.

Training-free bases all change only how the last vision block of CLIP mixes
tokens. ``CLIPTower`` holds an unmodified open_clip model (weights, text
encoding, the patch grid of an input, the positional embedding for other
grids) and runs open_clip's own modules up to that block; a backend
(``ov_eva.backends``, chosen by ``model.clip.type``) supplies the last
block. The open_clip model itself is never edited, so any open_clip ViT
checkpoint loads as is. ``DenseCLIPEncoder`` (the last-block variants
MaskCLIP, SCLIP, ClearCLIP, NACLIP) lives in ``backends/clip_variants.py``
and is re-exported here.
"""
import copy
import logging
import math
import os
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Tuple

import open_clip
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor

from .hub import hub_cache_only, hub_offline, hub_reachable

AUTOCAST = ('auto', 'bf16', 'fp16', 'fp32')
# how an input whose side is not a multiple of the patch meets the patches
PATCH_FITS = ('pad_end', 'pad_centre', 'truncate')
# how the positional embedding is resized to another grid
POS_RESIZES = ('scale_factor', 'size')
TINY_MODEL = 'ov-eva-tiny'
open_clip.add_model_config(
    Path(__file__).parent / 'model_configs' / f'{TINY_MODEL}.json')


class AxisFit(NamedTuple):
    """How one side of ``size`` pixels meets patches of ``patch`` pixels:
    the input is padded by ``pad_before`` / ``pad_after`` zeros, the
    patch-grid logits are resized to ``upsampled`` pixels, and the input's
    pixels start at ``offset`` in them."""
    pad_before: int
    pad_after: int
    upsampled: int
    offset: int


def fit_axis(size: int, patch: int, mode: str) -> AxisFit:
    """``pad_end``: zeros after the last pixel up to whole patches, logits
    cropped back from the start; ``pad_centre``: the zeros split around the
    input (ClearCLIP); ``truncate``: the patch convolution drops the last
    ``size % patch`` pixels and the logits are stretched over all ``size``
    pixels (SCLIP, NACLIP)."""
    if mode == 'truncate':  # below one patch there is nothing to drop
        return AxisFit(0, max(patch - size, 0), size, 0)
    missing = -size % patch
    before = missing // 2 if mode == 'pad_centre' else 0
    return AxisFit(before, missing - before, size + missing, before)


def cpu_has_bf16() -> bool:
    """Native bfloat16 matrix instructions (AVX512-BF16 or AMX) on this
    CPU; without them bf16 is emulated and slower than float32."""
    try:
        flags = Path('/proc/cpuinfo').read_text()
    except OSError:
        return False
    return 'avx512_bf16' in flags or 'amx_bf16' in flags


def autocast_dtype(mode: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of ``mode`` on ``device`` (None: float32).
    ``'auto'``: bf16 on CUDA where supported, else fp16; bf16 on CPUs with
    native bf16 instructions; float32 elsewhere."""
    if mode == 'fp32':
        return None
    if mode in ('bf16', 'fp16'):
        return torch.bfloat16 if mode == 'bf16' else torch.float16
    if device.type == 'cuda':
        return torch.bfloat16 if torch.cuda.is_bf16_supported() \
            else torch.float16
    return torch.bfloat16 if device.type == 'cpu' and cpu_has_bf16() \
        else None


def _version(tensor: Tensor) -> int:
    """In-place modification count of ``tensor``; -1 for tensors made under
    ``torch.inference_mode``, which keep none."""
    return -1 if tensor.is_inference() else tensor._version


def _is_torchscript(path: str) -> bool:
    """OpenAI's own downloads (``ViT-B-16.pt``) are TorchScript archives:
    zip files with a ``code/`` folder."""
    import zipfile
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any('/code/' in name for name in archive.namelist())


# open_clip's create_model takes QuickGELU from its caller and cannot tell
# whose weights a local file holds: that rule stays ours.
def file_tag(name: str, path: str) -> Tuple[Optional[str], str]:
    """The open_clip tag whose weights a local file for model ``name``
    holds, as far as can be told, and why; None when nothing tells. The
    state dict does not say, so: the download of a known tag (open_clip's
    or the hub's cache layout) is that tag's; a TorchScript archive is
    OpenAI's; a plain state dict for an architecture that OpenAI released
    (an ``openai`` tag exists) is taken as OpenAI's."""
    tags = open_clip.list_pretrained_tags_by_model(name)
    resolved = os.path.realpath(path)
    for tag in tags:
        cfg = open_clip.get_pretrained_cfg(name, tag)
        hub = cfg.get('hf_hub', '').strip('/')
        url = cfg.get('url', '')
        if (hub and f"models--{hub.split('/')[0]}--{hub.split('/')[-1]}"
                in resolved) or (url and os.path.basename(url)
                                 == os.path.basename(path)):
            return tag, f'the download of tag {tag!r}'
    if _is_torchscript(path):
        return 'openai', 'an OpenAI TorchScript archive'
    if 'openai' in tags:
        return 'openai', (
            f"{name!r} weights in a state dict are taken as OpenAI's; set "
            'model.clip.quick_gelu=False and model.clip.fp16_weights=False '
            'for other weights (e.g. LAION, DataComp)')
    return None, f"open_clip's {name!r} default"


def file_quick_gelu(name: str, path: str) -> Tuple[bool, str]:
    """Whether a local weights file for open_clip model ``name`` was trained
    with QuickGELU (OpenAI's activation; open_clip's configs default to
    GELU), and why (see ``file_tag``)."""
    if (open_clip.get_model_config(name) or {}).get('quick_gelu'):
        return True, f'model {name!r} is built with QuickGELU'
    tag, why = file_tag(name, path)
    if tag in (None, 'openai'):
        return tag == 'openai', why
    return bool(
        open_clip.get_pretrained_cfg(name, tag).get('quick_gelu', False)), why


def weights_tag(name: str, pretrained: Optional[str]) -> Optional[str]:
    """The tag of ``pretrained``: itself, or a local file's (``file_tag``),
    or None."""
    if pretrained is None:
        return None
    path = os.path.expanduser(pretrained)
    return file_tag(name, path)[0] if os.path.isfile(path) else pretrained


def check_choice(knob: str, value, choices: Sequence[str]) -> None:
    """``model.clip.<knob>`` must be one of ``choices``; else a ValueError
    naming the closest."""
    if value not in choices:
        import difflib
        close = difflib.get_close_matches(str(value), choices, 1)
        hint = f' (did you mean {close[0]!r}?)' if close else ''
        raise ValueError(f'unknown model.clip.{knob} {value!r}'
                         f'{hint}; use one of {tuple(choices)}')


def check_model_name(name: str) -> None:
    if name not in open_clip.list_models() and ':' not in name:
        import difflib
        close = difflib.get_close_matches(name, open_clip.list_models(), 3)
        hint = f' (did you mean {", ".join(close)}?)' if close else ''
        raise ValueError(f'unknown open_clip model {name!r} in '
                         f'model.clip.name{hint}; see open_clip.list_models()')


def weights_quick_gelu(name: str,
                       pretrained: Optional[str],
                       quick_gelu: Optional[bool] = None) -> bool:
    """The MLP activation of ``pretrained`` (a tag, a local file or None)
    without fetching anything: ``quick_gelu`` when given, else the tag's
    setting or ``file_quick_gelu``'s rules (logged). Unknown tags fail."""
    if pretrained is None:
        return bool(quick_gelu)
    path = os.path.expanduser(pretrained)
    if os.path.isfile(path):
        if quick_gelu is None:
            quick_gelu, why = file_quick_gelu(name, path)
            print_log(
                f'CLIP weights file {path}: '
                f"{'QuickGELU' if quick_gelu else 'GELU'} ({why})",
                logger='current')
        return bool(quick_gelu)
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise FileNotFoundError(
            f'model.clip.pretrained={pretrained!r} for model {name!r} is '
            f'neither a file nor a known tag (tags: {tags}); give an '
            'open_clip tag or the path of a local weights file')
    return bool(tag_cfg.get('quick_gelu', False)) if quick_gelu is None \
        else bool(quick_gelu)


def weights_fp16(name: str,
                 pretrained: Optional[str],
                 fp16_weights: Optional[bool] = None) -> bool:
    """Whether ``pretrained`` is rounded as OpenAI's loader rounds it
    (``round_like_openai``): ``fp16_weights`` when given, else for OpenAI's
    weights (the ``openai`` tag, or a file taken as OpenAI's by
    ``file_tag``)."""
    if fp16_weights is not None:
        return fp16_weights
    return weights_tag(name, pretrained) == 'openai'


def pretrained_file(name: str,
                    pretrained: str,
                    cache_dir: Optional[str] = None) -> str:
    """``pretrained`` as a local file: itself, or its tag's download by
    open_clip's ``download_pretrained`` (what ``create_model`` calls), from
    the cache without a request when there, else from the hub; without
    network and not cached, a FileNotFoundError within seconds that says
    what to do."""
    path = os.path.expanduser(pretrained)
    if os.path.isfile(path):
        return path
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    try:
        with hub_cache_only():
            return open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)
    except FileNotFoundError:
        if hub_offline() or not hub_reachable():
            raise FileNotFoundError(
                f'CLIP weights {name!r} / {pretrained!r} are not in the '
                'local cache and the hub is unreachable (or '
                'HF_HUB_OFFLINE=1). Fetch them once where there is network '
                '(python -c "import open_clip; open_clip.create_model('
                f"'{name}', pretrained='{pretrained}')\") and copy the cache "
                '(~/.cache/huggingface), or set model.clip.pretrained to a '
                'local weights file (e.g. open_clip_pytorch_model.bin), or '
                'load a checkpoint that holds them '
                '(tools/export_checkpoint.py).') from None
    return open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)


def create_clip_model(name: str,
                      pretrained: Optional[str] = None,
                      cache_dir: Optional[str] = None,
                      quick_gelu: Optional[bool] = None,
                      fp16_weights: Optional[bool] = None,
                      load_weights: bool = True) -> torch.nn.Module:
    """The one entry for CLIP weights: open_clip's ``create_model`` with
    ``pretrained`` (an open_clip tag, downloaded once into ``cache_dir``; a
    local weights file; or None for random weights), failing fast and
    clearly offline (``pretrained_file``). ``quick_gelu``: the MLP
    activation the weights were trained with, None follows the tag or the
    file (``weights_quick_gelu``); OpenAI's weights need QuickGELU, and GELU
    changes every feature. ``fp16_weights``: see ``weights_fp16``.
    ``load_weights=False``: the architecture alone, nothing fetched."""
    check_model_name(name)
    quick_gelu = weights_quick_gelu(name, pretrained, quick_gelu)
    if pretrained is None or not load_weights:
        # quietly: open_clip warns that no weights were loaded
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            return open_clip.create_model(name, force_quick_gelu=quick_gelu)
        finally:
            logging.disable(previous)
    model = open_clip.create_model(
        name,
        pretrained=pretrained_file(name, pretrained, cache_dir),
        force_quick_gelu=quick_gelu)
    if weights_fp16(name, pretrained, fp16_weights):
        round_like_openai(model)
    return model


def round_like_openai(model: torch.nn.Module) -> None:
    """Round conv, linear, attention and projection weights to float16
    values, in place and still float32, as OpenAI's loader (``clip.load``,
    open_clip's ``load_openai_model``) does before loading a checkpoint and
    the SCLIP-family code computes; open_clip's ``create_model`` loads the
    weights as they are."""
    open_clip.convert_weights_to_lp(model, torch.float16)
    model.float()


class CLIPTower(BaseModule):
    """Per-patch CLIP embeddings and text embeddings from one open_clip
    model; the last block is the backend's (``_dense``).

    Args:
        name: open_clip model name, e.g. ``'ViT-B-16'`` or ``'ov-eva-tiny'``.
        pretrained: open_clip tag, local weights file, or None (random).
        quick_gelu: the MLP activation the weights were trained with; None
            follows the tag or the file (see ``file_quick_gelu``).
        fp16_weights: round the loaded weights as OpenAI's loader does
            (``round_like_openai``); None: for OpenAI's weights (the
            ``openai`` tag, or a file taken as OpenAI's by ``file_tag``),
            where it changes nothing for the released weights and makes a
            float32 file compute what the SCLIP-family code computes.
        patch_fit: how inputs whose sides are not whole patches meet the
            patch grid, one of ``PATCH_FITS`` (see ``fit_axis``).
        pos_resize: how the positional embedding is resized for other grids:
            ``'scale_factor'`` bicubic by ``(g + 0.1) / g0`` as SCLIP, NACLIP
            and ClearCLIP do (DINO's rule), or ``'size'`` bicubic to the
            grid.
        autocast: precision of the image tower: ``'auto'`` (bf16/fp16 where
            the hardware runs it natively), ``'bf16'``, ``'fp16'`` or
            ``'fp32'``. Below float32 the tower runs on a copy of its weights
            cast once (see ``image_tower``). Features are returned in
            float32; text is always encoded in float32 (it is cached).
        cache_dir: where open_clip keeps downloaded weights.

    The architecture is built at once, the weights are loaded by
    ``init_weights()`` or on first use, unless a checkpoint loaded first
    brings them: a run from a checkpoint never needs the pretrained tag, its
    cache or the network.
    """

    def __init__(self,
                 name: str,
                 pretrained: Optional[str] = None,
                 autocast: str = 'auto',
                 quick_gelu: Optional[bool] = None,
                 fp16_weights: Optional[bool] = None,
                 patch_fit: str = 'pad_end',
                 pos_resize: str = 'scale_factor',
                 cache_dir: Optional[str] = None,
                 init_cfg=None):
        super().__init__(init_cfg)
        for knob, value, choices in (('autocast', autocast, AUTOCAST),
                                     ('patch_fit', patch_fit, PATCH_FITS),
                                     ('pos_resize', pos_resize, POS_RESIZES)):
            check_choice(knob, value, choices)
        self.autocast = autocast
        self.name, self.pretrained = name, pretrained
        self.patch_fit, self.pos_resize = patch_fit, pos_resize
        self.cache_dir = cache_dir
        check_model_name(name)
        # the architecture now; the weights in init_weights() (mmengine's
        # convention) or on first use, unless a checkpoint brings them
        self.quick_gelu = weights_quick_gelu(name, pretrained, quick_gelu)
        self.fp16_weights = weights_fp16(name, pretrained, fp16_weights)
        self.model = create_clip_model(
            name, pretrained, quick_gelu=self.quick_gelu, load_weights=False)
        self.weights_loaded = pretrained is None
        if pretrained is None:
            print_log(
                f'CLIP model {name!r} has random weights '
                '(clip.pretrained=None)',
                logger='current')
        # eval mode; parameters keep requires_grad so that mmengine can wrap
        # the segmentor in DistributedDataParallel (it refuses a frozen one)
        self.model.eval()
        visual = self.model.visual
        if not isinstance(visual, open_clip.transformer.VisionTransformer) \
                or visual.attn_pool is not None:
            raise ValueError(
                f'open_clip model {name!r} has a {type(visual).__name__} '
                'image tower; dense features need a plain CLIP ViT')
        self.tokenizer = open_clip.get_tokenizer(name)
        self._cast_tower: Optional[tuple] = None  # (key, tower), see below

    def init_weights(self) -> None:
        """Load ``pretrained`` (a no-op once weights are loaded, e.g. from a
        checkpoint)."""
        super().init_weights()
        self.load_pretrained()

    def load_pretrained(self) -> None:
        if self.weights_loaded:
            return
        # into the architecture built above with the loader create_model
        # calls: create_model(pretrained=) would build and randomly
        # initialise a second model first (ViT-B-16: 7.5 s instead of 2.5 s)
        path = pretrained_file(self.name, self.pretrained, self.cache_dir)
        open_clip.load_checkpoint(self.model, path)
        if self.fp16_weights:
            round_like_openai(self.model)
        self.weights_loaded = True
        print_log(
            f'CLIP {self.name!r} weights {self.pretrained!r} loaded from '
            f'{path}',
            logger='current')

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if any(key.startswith(prefix + 'model.') for key in state_dict):
            self.weights_loaded = True  # a checkpoint brought them

    @property
    def patch_size(self) -> Tuple[int, int]:
        return tuple(self.model.visual.patch_size)

    @property
    def logit_scale(self) -> float:
        self.load_pretrained()
        return float(self.model.logit_scale.detach().exp())

    def positional_embedding(
            self,
            grid: Tuple[int, int],
            visual: Optional[torch.nn.Module] = None) -> Tensor:
        """The image tower's positional embedding resized to a ``grid`` of
        patches, so windows other than the native size (336, 448 on a 224
        model) keep their spatial layout (``pos_resize``)."""
        visual = self.model.visual if visual is None else visual
        pos = visual.positional_embedding
        native = tuple(visual.grid_size)
        # as the references: any grid with the native token count keeps the
        # native embedding (their test is on the token count alone)
        if tuple(grid) == native or (self.pos_resize == 'scale_factor'
                                     and grid[0] * grid[1]
                                     == native[0] * native[1]):
            return pos
        cls_pos, patch_pos = pos[:1], pos[1:]
        patch_pos = patch_pos.reshape(1, *native, -1).permute(0, 3, 1, 2)
        if self.pos_resize == 'scale_factor':
            # (g + 0.1) / g0: the output has g rows, and the sampling
            # positions follow the scale factor, not g / g0
            resize = dict(
                scale_factor=tuple(
                    (g + 0.1) / n for g, n in zip(grid, native)))
        else:
            resize = dict(size=tuple(grid))
        patch_pos = F.interpolate(
            patch_pos.float(), mode='bicubic', align_corners=False,
            **resize).to(pos.dtype)
        return torch.cat([cls_pos, patch_pos.flatten(2).squeeze(0).T])

    def fit(self, height: int, width: int) -> Tuple[AxisFit, AxisFit]:
        """How an input of ``height`` x ``width`` meets the patch grid
        (``patch_fit``): per axis, its padding and how the patch-grid logits
        map back onto its pixels."""
        ph, pw = self.patch_size
        return (fit_axis(height, ph,
                         self.patch_fit), fit_axis(width, pw, self.patch_fit))

    def forward(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) normalised images -> (B, D, h, w) L2-normalised
        float32 patch embeddings; sides that are not whole patches are
        padded with zeros or truncated by ``patch_fit`` (see ``fit``)."""
        self.load_pretrained()
        dtype = autocast_dtype(self.autocast, images.device)
        return self._dense(images, self.image_tower(dtype))

    def image_tower(self, dtype: Optional[torch.dtype]) -> torch.nn.Module:
        """The image tower with its weights in ``dtype`` (None: the model's
        own). A low-precision copy is made once and kept beside the float32
        weights, which stay what checkpoints save and load; it is made again
        whenever those change (loaded, moved to another device, edited in
        place). Unlike autocast, this casts no weight on every call, and lets
        nn.MultiheadAttention take its fused path, which autocast turns off:
        15 ViT-B/16 windows took 690 instead of 810 ms on a CPU with bf16."""
        visual = self.model.visual
        if dtype is None:
            return visual
        tensors = list(visual.parameters()) + list(visual.buffers())
        key = (dtype, ) + tuple(
            (t.device, t.data_ptr(), _version(t)) for t in tensors)
        if self._cast_tower is None or self._cast_tower[0] != key:
            self._cast_tower = None  # free the stale copy first
            # deepcopy with every tensor replaced by its cast: no transient
            # float32 copy of the tower
            memo = {
                id(t):
                torch.nn.Parameter(t.detach().to(dtype), requires_grad=False)
                if isinstance(t, torch.nn.Parameter) else t.to(dtype)
                for t in tensors if t.is_floating_point()
            }
            self._cast_tower = (key, copy.deepcopy(visual, memo))
        return self._cast_tower[1]

    def _dense(self, images: Tensor, visual: torch.nn.Module) -> Tensor:
        """(B, D, h, w) L2-normalised patch embeddings of ``images`` with
        the image tower ``visual``: the backend's last block."""
        raise NotImplementedError

    def _tokens(self, images: Tensor,
                visual: torch.nn.Module) -> Tuple[Tensor, Tuple[int, int]]:
        """The (B, 1 + h * w, C) tokens that enter the last block (batch
        first, class token first) and the patch grid (h, w), from images
        padded or truncated by ``fit``."""
        rows, cols = self.fit(*images.shape[-2:])
        images = F.pad(
            images,
            (cols.pad_before, cols.pad_after, rows.pad_before, rows.pad_after))
        x = visual.conv1(images.to(visual.conv1.weight.dtype))
        grid = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        x = x + self.positional_embedding(grid, visual).to(x.dtype)
        x = visual.ln_pre(visual.patch_dropout(x))

        transformer = visual.transformer
        batch_first = getattr(transformer, 'batch_first', True)
        x = x if batch_first else x.transpose(0, 1)
        for block in transformer.resblocks[:-1]:
            x = block(x)
        x = x if batch_first else x.transpose(0, 1)
        return x, grid

    @staticmethod
    def _embed(visual: torch.nn.Module, x: Tensor, grid: Tuple[int,
                                                               int]) -> Tensor:
        """(B, h * w, C) patch tokens out of the last block -> (B, D, h, w)
        L2-normalised float32 embeddings (``ln_post`` and ``proj``)."""
        x = visual.ln_post(x)
        if visual.proj is not None:
            x = x @ visual.proj
        x = F.normalize(x.float(), dim=-1)
        return x.transpose(1, 2).reshape(x.shape[0], -1, *grid)

    @staticmethod
    def _qkv(block, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """q, k, v (B, heads, N, head_dim) of the last block's attention on
        its normalised input ``ln_1(x)``."""
        attn = block.attn
        batch, tokens, _ = x.shape
        qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.reshape(batch, tokens, 3, attn.num_heads,
                              -1).permute(2, 0, 3, 1, 4)
        return q, k, v

    @torch.no_grad()
    def encode_text(self,
                    texts: Sequence[str],
                    batch_size: int = 256) -> Tensor:
        """L2-normalised embeddings (N, D) of ``texts``, on the model's
        device."""
        self.load_pretrained()
        device = self.model.logit_scale.device
        chunks: List[Tensor] = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start:start + batch_size]))
            chunks.append(self._encode_tokens(tokens.to(device)))
        if not chunks:
            return torch.empty(0, self.embed_dim, device=device)
        return torch.cat(chunks)

    def _encode_tokens(self, tokens: Tensor) -> Tensor:
        """``model.encode_text(tokens, normalize=True)``, run only up to the
        longest real prompt of the batch instead of the padded context (77
        tokens for ~10 real ones). Exact for CLIP's causal text tower: no
        token attends to the padding after it, and pooling reads the EOT
        token, which is kept. Other text towers take the padded path."""
        model = self.model
        plain = getattr(model, 'attn_mask', None) is not None and hasattr(
            model, 'token_embedding') and getattr(model, 'text_pool_type',
                                                  'argmax') == 'argmax'
        if not plain:
            return model.encode_text(tokens, normalize=True)
        length = int((tokens != 0).sum(1).max())
        tokens = tokens[:, :length]
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(tokens).to(cast_dtype)
        x = x + model.positional_embedding[:length].to(cast_dtype)
        x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
        x = model.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(-1)]
        x = model.text_projection(x) if isinstance(
            model.text_projection, torch.nn.Linear) else \
            x @ model.text_projection
        return F.normalize(x, dim=-1)

    @property
    def embed_dim(self) -> int:
        proj = self.model.visual.proj
        return proj.shape[1] if proj is not None else \
            self.model.visual.transformer.width

    def text_fingerprint(self) -> str:
        """Content hash of the text tower (keys cached text embeddings)."""
        return self.fingerprint(visual=False)

    def fingerprint(self, visual: bool = True) -> str:
        """Content hash of the weights actually loaded (tags, files,
        checkpoints and random weights alike), of both towers or of the text
        tower only. A strided sample of every tensor keeps it fast on large
        models."""
        import hashlib
        self.load_pretrained()
        digest = hashlib.sha256(self.name.encode())
        for key, tensor in self.model.state_dict().items():
            if key.startswith('visual.') and not visual:
                continue
            flat = tensor.detach().flatten()
            step = max(1, math.ceil(flat.numel() / 4096))
            digest.update(key.encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(flat[::step].float().cpu().numpy().tobytes())
        return digest.hexdigest()[:16]
