"""CorrCLIPv2 (zdk258/CorrCLIP, CorrCLIPv2/, journal extension of CorrCLIP).

Two changes to CorrCLIP (``corrclip.py``):

1. The correlation comes from a vision foundation model (VFM; C-RADIOv3-L
   by default, DINOv2 / DINOv3): the whole image's dense VFM features are
   resized to the input, L2-normalised, cut with each window (windows
   padded centred to multiples of 56, the features replicated into the
   padding), resized to twice CLIP's token grid and normalised again; the
   scope-constrained correlation is taken there, without CorrCLIP's mask
   merging.
2. Retrieval from a memory bank (``ov_eva/memory_bank.py``): every region
   of the image (each label of its mask at the input size, the unsegmented
   one included) is pooled in VFM space, its ``num_support`` nearest keys
   are searched in the bank's FAISS index, and the mean of their stored
   CLIP region features, L2-normalised, scores the texts; with an
   auxiliary store (DFN-B) its retrieved features score the texts encoded
   by the auxiliary CLIP, and the two support logits are averaged. The
   image's own logits (at the input size, windows merged) become
   ``alpha * own + (1 - alpha) * support`` before the decision.

Every constant is the official default (``corrclip_segmentor.py``,
``vfms/factory.py``, ``configs/base_config.py`` at commit 103bc18).
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmseg.registry import MODELS
from PIL import Image
from torch import Tensor

from .. import memory_bank as mb
from ..clip_encoder import CLIPTower, autocast_dtype
from ..hub import torch_hub_load
from ..registry import BACKENDS, build_mask_source
from ..text_bank import TextBank
from .corrclip import (DEFAULT_DINO, IMAGENET_MEAN, IMAGENET_STD,
                       MASK_PAD_VALUE, PAD_MULTIPLE, CorrCLIPEncoder,
                       scope_attention)
from .vfm import build_vfm, load_vfm_weights, vfm_config, vfm_features

ALPHA = 0.5  # weight of the image's own logits against the support's
NUM_SUPPORT = 20
# the official VFM names (the bank's index is <bank>_<name>.faiss) and how
# each is loaded: RADIO through torch.hub (repo or local clone) as the
# official code; DINOv2 (= hub dinov2_vitl14_reg) / DINOv3 through
# transformers
VFMS = dict(
    radiov3=dict(kind='radio', name='NVlabs/RADIO', version='c-radio_v3-l'),
    radiov2_5=dict(kind='radio', name='NVlabs/RADIO', version='radio_v2.5-l'),
    dinov2=dict(kind='dino', name='facebook/dinov2-with-registers-large'),
    dinov3=dict(kind='dino', name='facebook/dinov3-vitl16-pretrain-lvd1689m'))
VFMS['radiov2.5'] = VFMS.pop('radiov2_5')
DEFAULT_BANK = dict(
    root='memory_bank',
    name='coco',
    main='metaclip_b',
    aux='dfnclip_b',
    num_support=NUM_SUPPORT,
    alpha=ALPHA,
    enabled=True,
    # the builder's: the DINO of the stores' CorrCLIP features
    store_dino=dict(DEFAULT_DINO))
DEFAULT_AUX_CLIP = dict(name='hf-hub:apple/DFN2B-CLIP-ViT-B-16')


class DenseVFM(torch.nn.Module):
    """``extract_dense`` of the official ``vfms/factory.py``: an RGB image
    at its own size -> (1, C, h, w) float32 dense features.

    Args:
        type: official name, a key of ``VFMS``; names the bank's index.
        name: RADIO: torch.hub repo (``NVlabs/RADIO``) or a local clone;
            DINO: transformers hub id, local folder or tiny test name.
        pretrained: DINO weights (hub id / folder; None: random);
            RADIO: unused (``version`` names its weights).
        version: RADIO's ``radio_model(version=...)``: a release name or
            a local checkpoint file.
    """

    def __init__(self,
                 type: str = 'radiov3',
                 name: Optional[str] = None,
                 pretrained: Optional[str] = '',
                 version: Optional[str] = None):
        super().__init__()
        if type not in VFMS:
            raise ValueError(f'model.clip.vfm.type={type!r}: use one of '
                             f'{sorted(VFMS)} (the official VFM names)')
        spec = VFMS[type]
        self.type, self.kind = type, spec['kind']
        self.name = name or spec['name']
        self.version = version or spec.get('version')
        self.external = {}  # RADIO: loaded on first use, outside the state
        if self.kind == 'dino':
            self.pretrained = self.name if pretrained == '' else pretrained
            self.dino = build_vfm(vfm_config(self.name, self.pretrained))
            self.loaded = self.pretrained is None

    def load(self) -> None:
        if self.kind == 'radio':
            self.radio()
        elif not self.loaded:
            load_vfm_weights(self.dino, self.pretrained)
            self.loaded = True

    def radio(self) -> torch.nn.Module:
        """RADIO's ``radio_model(version=...)`` through torch.hub, from the
        hub repo or a local clone (``name``); once."""
        if 'radio' not in self.external:
            model = torch_hub_load(
                self.name,
                'radio_model',
                f'RADIO model.clip.vfm.name={self.name}',
                'clone https://github.com/NVlabs/RADIO and set '
                'model.clip.vfm.name to that folder and model.clip.vfm.'
                'version to a checkpoint file of it (docs/corrclipv2.md)',
                version=self.version,
                progress=True)
            self.external['radio'] = model.eval().requires_grad_(False)
        return self.external['radio']

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if any(key.startswith(prefix + 'dino.') for key in state_dict):
            self.loaded = True  # a checkpoint brought them: not fetched

    @torch.no_grad()
    def forward(self,
                image: np.ndarray,
                device,
                dtype: Optional[torch.dtype] = None) -> Tensor:
        """(H, W, 3) uint8 RGB -> (1, C, h, w) float32 features; ``dtype``:
        under autocast to it (the official code runs its VFM under fp16
        autocast on CUDA), None: float32."""
        device = torch.device(device)
        with torch.autocast(
                device.type, dtype=dtype, enabled=dtype is not None):
            return self._features(image, device)

    def _features(self, image: np.ndarray, device) -> Tensor:
        self.load()
        # a copy: torch wants a writable array
        pixels = torch.from_numpy(np.array(image)).to(device)
        pixels = pixels.permute(2, 0, 1)[None].float() / 255.0
        height, width = pixels.shape[-2:]
        if self.kind == 'radio':
            model = self.radio().to(device)
            size = model.get_nearest_supported_resolution(height, width)
            pixels = F.interpolate(
                pixels, tuple(size), mode='bilinear', align_corners=False)
            return model(pixels, feature_fmt='NCHW')[1].float().contiguous()
        mean = torch.tensor(IMAGENET_MEAN, device=device)[:, None, None]
        std = torch.tensor(IMAGENET_STD, device=device)[:, None, None]
        pixels = (pixels - mean) / std
        patch = self.dino.config.patch_size
        size = (max(patch,
                    round(height / patch) * patch),
                max(patch,
                    round(width / patch) * patch))
        if size != (height, width):
            pixels = F.interpolate(
                pixels, size, mode='bilinear', align_corners=False)
        # contiguous as the official ``.float().contiguous()``: the tokens
        # come channels-last, and every later full-size pass (and the L2
        # norm's summation order) follows the layout
        return vfm_features(self.dino, pixels).float().contiguous()


def describe_vfm(identity: dict) -> str:
    """'dinov2 facebook/dinov2-... (weights W)' of a VFM record."""
    return (f"{identity['type']} {identity['name']!r} "
            f"(weights {identity['weights']!r})")


def read_rgb(path: str, exif: bool = False) -> np.ndarray:
    """The image file as (H, W, 3) uint8 RGB, as the official code reads
    it (PIL; the bank builder also applies the EXIF orientation)."""
    image = Image.open(path)
    if exif:
        from PIL import ImageOps
        image = ImageOps.exif_transpose(image)
    return np.asarray(image.convert('RGB'))


class Support(NamedTuple):
    """One batch's retrieval: the windows' guides (region labels, then the
    VFM features, at the input size) and per image the labels of its
    regions and their support features (main, aux or None)."""
    guides: Tensor
    regions: List[Tuple[Tensor, Tensor, Optional[Tensor]]]


@BACKENDS.register_module()
@MODELS.register_module()
class CorrCLIPv2Encoder(CorrCLIPEncoder):
    """CLIP dense features by CorrCLIPv2 (see the module docstring).

    Args:
        vfm: the VFM, ``DenseVFM``'s arguments (``type`` one of ``VFMS``).
        bank: the memory bank: ``root`` (the official ``memory_bank``),
            ``name`` (``coco``), ``main`` / ``aux`` (store encoders,
            ``metaclip_b`` / ``dfnclip_b``; ``aux=None``: no auxiliary
            store, the official ``use_aux_model=False``), ``num_support``,
            ``alpha``, ``enabled`` (False: CorrCLIP with the VFM
            correlation, the official ``use_support_embedding=False``).
        aux_clip: the auxiliary CLIP (its text tower scores the auxiliary
            store), ``dict(name=..., pretrained=...)`` as ``model.clip``.
        masks, correction, pad_multiple and the CLIP tower's arguments: as
            ``CorrCLIPEncoder``'s.
    """

    needs_region_masks = True

    def __init__(self,
                 vfm: Optional[dict] = None,
                 bank: Optional[dict] = None,
                 aux_clip: Optional[dict] = None,
                 masks: Optional[dict] = None,
                 correction: bool = True,
                 pad_multiple: int = PAD_MULTIPLE,
                 **kwargs):
        kwargs.setdefault('patch_fit', 'pad_centre')
        CLIPTower.__init__(self, **kwargs)
        if not isinstance(pad_multiple, int) or pad_multiple < 1:
            raise ValueError(f'model.clip.pad_multiple={pad_multiple!r}: '
                             'give a positive whole number of pixels')
        self.pad_multiple, self.correction = pad_multiple, correction
        self.mask_source = build_mask_source(masks)
        self.vfm = DenseVFM(**(vfm or {}))
        unknown = set(bank or {}) - set(DEFAULT_BANK)
        if unknown:
            raise ValueError(f'model.clip.bank: unknown keys {sorted(unknown)}'
                             f'; use {sorted(DEFAULT_BANK)}')
        self.bank = dict(DEFAULT_BANK, **(bank or {}))
        self.aux = None
        if self.bank['enabled'] and self.bank['aux']:
            aux = dict(DEFAULT_AUX_CLIP, **(aux_clip or {}))
            aux.setdefault('autocast', self.autocast)
            self.aux = CLIPTower(**aux)
        self.opened = {}  # the bank's stores and index, on first use
        self.aux_text_banks = {}

    @property
    def retrieval(self):
        """What the segmentor asks for the logits (``supported_logits``):
        the VFM features of every image ride with the windows, and with a
        bank the support is fused."""
        return self

    def load_pretrained(self) -> None:
        """The weights (CLIP, auxiliary CLIP, VFM) where no checkpoint
        brought them; not the bank (tools/export_checkpoint.py needs
        none)."""
        CLIPTower.load_pretrained(self)
        if self.aux is not None:
            self.aux.load_pretrained()
        self.vfm.load()

    def ready(self) -> None:
        """Called by ``preflight.prepare`` before the first image (with or
        without a checkpoint): the weights and RADIO loaded, the bank
        opened and checked against the VFM, so that a mistake stops the
        run at once."""
        self.load_pretrained()
        if self.bank['enabled']:
            self.open_bank()

    # ----------------------------------------------------------- the bank
    def open_bank(self) -> dict:
        """The bank's index and stores, checked against the VFM and the
        CLIPs; opened once."""
        if self.opened:
            return self.opened
        layout = mb.BankLayout(self.bank['root'], self.bank['name'])
        vfm = self.vfm.type
        path = layout.index(vfm)
        if not path.exists():
            built = layout.indexed_vfms()
            raise FileNotFoundError(
                f'memory bank {self.bank["name"]!r} under '
                f'{str(layout.root)!r} has no index for VFM {vfm!r} '
                f'({path.name})' +
                (f'; it was built with {built}: set model.clip.vfm.type '
                 f'to {built[0]!r} or rebuild the bank with {vfm!r}'
                 if built else '; build it with tools/build_memory_bank.py'
                 ' or download the official files'))
        record = mb.read_vfm_record(layout, vfm)
        mine = self.vfm_identity()
        if record is not None and record != mine:
            raise ValueError(
                f'memory bank {self.bank["name"]!r} ({str(path)!r}) was '
                f'built with VFM {describe_vfm(record)}, model.clip.vfm is '
                f'{describe_vfm(mine)}: set model.clip.vfm.name='
                f'{record["name"]} (and its weights) or rebuild the bank '
                'with this VFM (tools/build_memory_bank.py)')
        index = mb.BankIndex(path)
        stores = dict(
            main=mb.open_store(
                layout.clip_store(self.bank['main']), self.embed_dim))
        if self.aux is not None:
            stores['aux'] = mb.open_store(
                layout.clip_store(self.bank['aux']), self.aux.embed_dim)
        self.opened.update(index=index, **stores)
        print_log(
            f'memory bank {self.bank["name"]}: {index.size} regions, '
            f'{index.dim}-d {vfm} keys ({path})',
            logger='current')
        return self.opened

    def vfm_identity(self) -> dict:
        vfm = self.vfm
        return dict(
            type=vfm.type,
            name=vfm.name,
            weights=vfm.version if vfm.kind == 'radio' else vfm.pretrained)

    # ------------------------------------------------------- the windows
    def forward(self,
                images: Tensor,
                guides: Optional[Tensor] = None) -> Tensor:
        """(B, 3, H, W) CLIP-normalised windows and their (B, 1 + C, H, W)
        guides (region labels, VFM features) -> (B, D, h, w) L2-normalised
        features at twice CLIP's token grid of the padded windows."""
        if guides is None or guides.shape[1] < 2:
            raise ValueError('CorrCLIPv2 features need the region masks and '
                             'VFM features of the images (model.clip.masks)')
        self.load_pretrained()
        rows, cols = self.fit(*images.shape[-2:])
        pad = (cols.pad_before, cols.pad_after, rows.pad_before,
               rows.pad_after)
        images = F.pad(images, pad)
        masks = F.pad(guides[:, :1].round().int(), pad, value=MASK_PAD_VALUE)
        vfm = guides[:, 1:].float()
        if any(pad):  # a copy of a GB-sized window otherwise
            vfm = F.pad(vfm, pad, mode='replicate')
        patch = self.patch_size
        grid = (images.shape[-2] // patch[0] * 2,
                images.shape[-1] // patch[1] * 2)
        vfm = F.interpolate(
            vfm, size=grid, mode='bilinear', align_corners=False)
        vfm = F.normalize(vfm.flatten(2).transpose(1, 2), dim=-1)
        visual = self.image_tower(autocast_dtype(self.autocast, images.device))
        out = []
        for i in range(len(images)):
            labels = F.interpolate(
                masks[i:i + 1].float(), size=grid, mode='nearest').int()[0, 0]
            attn = scope_attention(vfm[i] @ vfm[i].T, labels)
            out.append(
                self._branches(visual, images[i:i + 1], labels, attn, grid))
        x = F.normalize(torch.stack(out).float(), dim=-1)
        return x.transpose(1, 2).reshape(len(images), -1, *grid)

    # ---------------------------------------------------------- retrieval
    @torch.no_grad()
    def retrieve(self, inputs: Tensor, samples, guides: Tensor) -> Support:
        """The VFM features of each image (read from its file, as the
        official code) at the input size, and its regions' support."""
        self.load_pretrained()
        full = None  # (B, 1 + C, H, W): region labels, then VFM features
        regions = []
        for i, sample in enumerate(samples):
            meta = sample.metainfo
            if meta.get('img_path') is None:
                raise ValueError(
                    'CorrCLIPv2 reads each image file for its VFM features, '
                    'as the official code: give image paths, not arrays')
            height, width = meta.get('img_shape', inputs.shape[-2:])[:2]
            # in the image tower's precision (model.clip.autocast)
            feats = self.vfm(
                read_rgb(meta['img_path']), inputs.device,
                autocast_dtype(self.autocast, inputs.device))
            if full is None:  # one buffer, written once (a GB at ADE size)
                full = inputs.new_empty(
                    (len(samples), 1 + feats.shape[1], *inputs.shape[-2:]))
                full[:, :1] = guides
            if (height, width) != tuple(inputs.shape[-2:]):
                full[i, 1:] = 0  # the batch's padding
            # resized to the input and L2-normalised straight into the
            # buffer (F.normalize's ``out``: the same arithmetic, no copy)
            feats = F.normalize(
                F.interpolate(
                    feats, (height, width),
                    mode='bilinear',
                    align_corners=False),
                dim=1,
                out=full[i:i + 1, 1:, :height, :width])
            labels = guides[i, 0, :height, :width]
            if self.bank['enabled']:
                regions.append(self.support(feats, labels))
        return Support(full, regions)

    def support(self, feats: Tensor, labels: Tensor):
        """(labels, main, aux) support features of every region of one
        image: VFM-pooled queries, Top-K keys, the mean of their stored
        CLIP features (L2-normalised)."""
        bank = self.open_bank()
        values = torch.unique(labels)
        queries = F.normalize(mb.region_means(feats, labels, values), dim=-1)
        if queries.shape[1] != bank['index'].dim:
            raise ValueError(
                f'model.clip.vfm {self.vfm.type!r} gives {queries.shape[1]}'
                f'-d features and the bank index holds {bank["index"].dim}-d '
                'keys: the bank was built with another VFM; rebuild it or '
                'change model.clip.vfm')
        rows = bank['index'].search(queries.cpu().numpy(),
                                    self.bank['num_support'])

        def mean_rows(store: Tensor) -> Tensor:
            means = [
                store[torch.from_numpy(r[r >= 0])].float().mean(0)
                for r in rows
            ]
            return F.normalize(torch.stack(means), dim=-1).to(feats.device)

        aux = mean_rows(bank['aux']) if 'aux' in bank else None
        return values, mean_rows(bank['main']), aux

    def aux_text(self, texts: Sequence[str], templates) -> Tensor:
        key = tuple(templates)
        if key not in self.aux_text_banks:
            self.aux_text_banks[key] = TextBank(self.aux, list(templates))
        return self.aux_text_banks[key].embed(list(texts))

    def supported_logits(self, segmentor, inputs: Tensor, samples,
                         guides: Tensor, text: Tensor, queries,
                         mapping) -> Tensor:
        """The segmentor's (B, S, H, W) logits of ``text`` (its queries,
        then the kept vocabulary terms of ``mapping``) fused with the
        support: ``segmentor.inference`` on the guides of ``retrieve``,
        then ``fuse_support``."""
        support = self.retrieve(inputs, samples, guides)
        logits = segmentor.inference(inputs, text, support.guides)
        if not self.bank['enabled']:  # the official use_support_embedding
            return logits
        aux_text = None
        if self.aux is not None:
            # the same texts and templates as the class bank's (the
            # terms in the order of the head's ``map_terms``)
            bank = segmentor.class_bank
            aux_text = self.aux_text(queries.queries, bank.text_bank.templates)
            terms = list(
                dict.fromkeys(t for s in samples
                              for t, _ in s.metainfo.get('ov_eva_terms', [])))
            kept = [terms[i] for i in mapping.kept]
            if kept:
                aux_text = torch.cat(
                    [aux_text,
                     self.aux_text(kept, bank.term_bank.templates)])
        scale = segmentor.decode_head.logit_scale or self.logit_scale
        return self.fuse_support(logits, support, text, aux_text, scale)

    def fuse_support(self, logits: Tensor, support: Support, text: Tensor,
                     aux_text: Optional[Tensor], scale: float) -> Tensor:
        """``alpha * logits + (1 - alpha) * scale * support`` at the
        input size, the support being each region's retrieved features
        scored against ``text`` (and the auxiliary ones against
        ``aux_text``, averaged)."""
        alpha = self.bank['alpha']
        out = []
        for i, (values, main, aux) in enumerate(support.regions):
            region_logits = main @ text.to(main).T
            if aux is not None:
                region_logits = 0.5 * (
                    region_logits + aux @ aux_text.to(aux).T)
            labels = support.guides[i, 0].round().long()
            index = torch.searchsorted(values.long(), labels.flatten())
            index = index.clamp_max(len(values) - 1)
            pixels = (region_logits * scale)[index].T.reshape(
                -1, *labels.shape)
            out.append(alpha * logits[i] + (1 - alpha) * pixels.to(logits))
        return torch.stack(out)


class CorrCLIPStoreEncoder(CorrCLIPEncoder):
    """The CLIP features of a bank's stores, as the official builder
    (``memory_bank_builder/generate_clip_embeddings.py``) computes them:
    CorrCLIP with DINO ViT-B/8's correlation at DINO's grid, without the
    mask merging, and not normalised (regions are averaged first)."""

    normalize_features = False

    @staticmethod
    def _correlation(dino_feats: Tensor, grid: Tuple[int, int],
                     masks: Tensor) -> Tuple[Tensor, Tensor]:
        masks = F.interpolate(
            masks.float(), size=grid, mode='nearest').int()[0, 0]
        return masks, scope_attention(dino_feats @ dino_feats.T, masks)
