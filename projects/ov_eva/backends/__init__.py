"""Dense-feature backends, one module each, chosen by ``model.clip.type``:

- ``DenseCLIPEncoder`` (``clip_variants.py``, the default): CLIP alone, its
  last block replaced by a training-free variant (MaskCLIP, SCLIP,
  ClearCLIP, NACLIP);
- ``ProxyCLIPEncoder`` (``proxyclip.py``): CLIP's values mixed by the patch
  similarity of a frozen vision foundation model (DINO, DINOv2);
- ``CorrCLIPEncoder`` (``corrclip.py``): CLIP's values mixed by DINO's patch
  correlation within class-agnostic region masks (SAM2), with CorrCLIP's
  spatial and semantic branches and map correction;
- ``CorrCLIPv2Encoder`` (``corrclipv2.py``): CorrCLIP with a VFM (RADIO,
  DINOv2, DINOv3) correlation and support retrieved from a memory bank
  (``ov_eva.memory_bank``), fused with the image's own logits.

Each is a ``CLIPTower`` (``ov_eva.clip_encoder``): the segmentor sees the
same interface (``forward``, ``fit``, ``encode_text``, ``logit_scale``)
whichever it is, and the CLIP weights keep their ``clip.model.*`` keys.
"""
from ..registry import BACKENDS, build_backend
from .clip_variants import DenseCLIPEncoder
from .corrclip import CorrCLIPEncoder
from .corrclipv2 import CorrCLIPv2Encoder
from .proxyclip import ProxyCLIPEncoder

__all__ = [
    'BACKENDS', 'build_backend', 'DenseCLIPEncoder', 'ProxyCLIPEncoder',
    'CorrCLIPEncoder', 'CorrCLIPv2Encoder'
]
