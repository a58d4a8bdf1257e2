"""The four steps of a CorrCLIPv2 memory bank (``tools/build_memory_bank.py``).

As the official ``memory_bank_builder`` (``generate_mask.py``,
``build_manifest.py``, ``generate_clip_embeddings.py``,
``generate_vfm_embeddings.py``), from a CorrCLIPv2 config:

1. masks: each image's region masks from ``model.clip.masks``, saved as
   ``masks/NAME/MASKS/<stem>.npz`` (written whole, then renamed);
2. manifest: the new images' regions registered (ids never change);
3. CLIP stores, one per encoder (``bank.main`` with the config's CLIP,
   ``bank.aux`` with ``aux_clip``): CorrCLIP features (DINO ViT-B/8
   correlation, ``CorrCLIPStoreEncoder``) of the image rescaled to short
   side 448, windows 336 at stride 112, resized back to the image and
   averaged over each region, L2-normalised;
4. the VFM store (each region's mean of the pixel-normalised VFM features
   at the image's size) and its FAISS index.

Every step skips what is done, so a killed build resumes and a build on a
folder with new images extends the bank. Work is split between the
processes of a distributed launch (``rank::world``).
"""
import json
import os
import signal
from pathlib import Path
from typing import Callable, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import memory_bank as mb
from . import windows
from .backends.corrclipv2 import CorrCLIPStoreEncoder, read_rgb
from .clip_encoder import CLIPTower

# Kill-and-resume test hook: the process SIGKILLs itself after writing this
# many images' rows (counted over all stores), as a crash would leave it.
KILL_AFTER_ENV = 'OV_EVA_BANK_KILL_AFTER'
_written = [0]
# the official builder's settings (generate_clip_embeddings.py)
SHORT_SIDE, CROP, STRIDE = 448, 336, 112
CLIP_MEAN_255 = (122.771, 116.746, 104.094)
CLIP_STD_255 = (68.501, 66.632, 70.323)


def list_images(folder: Path) -> List[Path]:
    """Images under ``folder`` (recursive), one per stem, sorted."""
    found = {}
    for path in sorted(Path(folder).rglob('*')):
        if path.suffix.lower() in mb.IMAGE_EXTENSIONS:
            found.setdefault(path.stem, path)
    return [found[stem] for stem in sorted(found)]


def save_mask(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + '.partial.npz')
    np.savez_compressed(partial, instance_mask=labels)
    os.replace(partial, path)


def make_masks(source, images: Sequence[Path], folder: Path,
               progress: Callable) -> None:
    """Step 1 for the images without a mask file yet."""
    todo = [p for p in images if not (folder / f'{p.stem}.npz').exists()]
    for path in progress(todo, 'masks'):
        height, width = read_rgb(str(path)).shape[:2]
        meta = dict(img_path=str(path), ori_shape=(height, width))
        labels = source.get(meta, torch.device('cpu'))
        save_mask(folder / f'{path.stem}.npz', labels.cpu().numpy())


def store_encoder(tower: CLIPTower, dino: dict) -> CorrCLIPStoreEncoder:
    """The store's CorrCLIP on ``tower``'s CLIP (its loaded weights)."""
    # a fixed seed: random (test) DINO weights do not depend on which
    # stores a run builds, so a resumed build equals an uninterrupted one
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = CorrCLIPStoreEncoder(
            name=tower.name,
            pretrained=None,
            quick_gelu=tower.quick_gelu,
            autocast=tower.autocast,
            dino=dict(dino))
    CLIPTower.load_pretrained(tower)  # the CLIP alone, not the bank
    encoder.model.load_state_dict(tower.model.state_dict())
    encoder.load_pretrained()  # DINO's
    return encoder.to(tower.model.logit_scale.device)


@torch.no_grad()
def clip_regions(encoder: CorrCLIPStoreEncoder,
                 image: np.ndarray,
                 labels: Tensor,
                 values: Tensor,
                 short_side: int = SHORT_SIDE,
                 crop: int = CROP) -> Tensor:
    """(R, D) L2-normalised CLIP features of the regions ``values`` of
    ``labels`` (at the image's size): the image rescaled to ``short_side``
    (the official ``--slide_short``), windows of ``crop`` (``--slide_crop``)
    at stride 112."""
    import mmcv
    device = encoder.model.logit_scale.device
    scaled = mmcv.imrescale(
        image, (2048, short_side), interpolation='bilinear', backend='cv2')
    pixels = torch.from_numpy(np.ascontiguousarray(scaled)).to(device)
    mean = torch.tensor(CLIP_MEAN_255, device=device)[:, None, None]
    std = torch.tensor(CLIP_STD_255, device=device)[:, None, None]
    pixels = ((pixels.permute(2, 0, 1).float() - mean) / std)[None]
    labels = labels.to(device)
    guides = F.interpolate(
        labels[None, None].float(), size=pixels.shape[-2:],
        mode='nearest').int()
    feats = windows.slide(lambda x, g: encoder(x, g), encoder.fit, pixels,
                          guides, (crop, crop), (STRIDE, STRIDE), 1)
    return F.normalize(mb.region_means(feats, labels, values), dim=-1)


@torch.no_grad()
def vfm_regions(vfm, device, image: np.ndarray, labels: Tensor,
                values: Tensor) -> Tensor:
    """(R, C) mean pixel-normalised VFM features of the regions."""
    labels = labels.to(device)
    feats = vfm(image, device)
    return mb.region_means(feats, labels, values, normalize_pixels=True)


def fill_store(store: mb.SlotStore, rows, paths: dict, mask_dir: Path,
               regions: Callable, progress: Callable, what: str) -> None:
    """Write the rows of the images ``rows`` ((stem, first, count)) not
    written yet; ``regions(image, labels, values)`` gives their
    features."""
    done = store.done()
    todo = [r for r in rows if not done[r[1]:r[1] + r[2]].all()]
    for stem, first, count in progress(todo, what):
        mask = mb.read_mask(mask_dir / f'{stem}.npz')
        values = torch.from_numpy(mb.mask_regions(mask))
        if len(values) != count:
            raise ValueError(f'mask {stem}.npz has {len(values)} regions, '
                             f'the manifest {count}: the masks changed '
                             'after the bank was started; use a new --name')
        image = read_rgb(str(paths[stem]), exif=True)
        labels = torch.from_numpy(mb.label_map(mask))
        feats = regions(image, labels, values)
        store.write(first, feats)
        _written[0] += 1
        if _written[0] == int(os.environ.get(KILL_AFTER_ENV, 0)):
            os.kill(os.getpid(), signal.SIGKILL)


def write_vfm_record(layout: mb.BankLayout, identity: dict) -> None:
    path = layout.vfm_record(identity['type'])
    path.write_text(json.dumps(identity, indent=1) + '\n')
