"""CorrCLIPv2 memory banks in the official files and formats.

A bank named ``NAME`` under a root folder (official: ``memory_bank/``)::

    masks/NAME/MASKS/<stem>.npz          region masks, ``instance_mask``
    manifests/NAME.manifest.txt          line i (0-based) = region id i,
                                         '<stem>#<k>'
    manifests/NAME.images.tsv            '<stem>\t<first id>\t<regions>'
    clip_embeddings/NAME_<encoder>.pt    (N, D) float16, row = region id
    vfm_embeddings/NAME_<vfm>.pt         (N, C) float16, the VFM keys
    vfm_embeddings/NAME_<vfm>.faiss      FAISS IndexIDMap2 over the keys

(zdk258/CorrCLIP, CorrCLIPv2/memory_bank_builder: manifest.py,
pt_store.py, generate_vfm_embeddings.py). A region is a nonzero label of
an image's mask, in increasing order; its id is fixed once registered, so
a bank grows by appending images. Stores are written row by row into a
memory-mapped ``.f16.npy`` with a ``.done.npy`` of written rows (what a
killed build resumes from) and saved as ``.pt`` once complete. Reading
memory-maps the ``.pt`` (the official loader reads it all into RAM).
"""
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .optional import require

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tiff')
# the official index (generate_vfm_embeddings.py, ``update_faiss_cache``):
# always IndexIDMap2(IndexIVFPQ(IndexFlatIP(d), d, nlist, m=32, nbits=8)),
# nlist = int(8 sqrt(N)), trained on all N keys of the first build, then
# only added to; searched with nprobe = min(256, nlist) (corrclip_segmentor)
FAISS_M, FAISS_NBITS, FAISS_NLIST_FACTOR, MAX_NPROBE = 32, 8, 8, 256
# IVFPQ trains 2**nbits codes per sub-quantiser: FAISS refuses fewer keys
# (the official builder stops there); ``exact=True`` (the builder's
# --exact-index, not the official index) makes an exact IndexFlatIP instead
MIN_IVFPQ_REGIONS = 2**FAISS_NBITS
ONE_THREAD_BELOW = 100000  # keys: see ``train``


class IndexTooSmall(ValueError):
    """Too few regions to train the official IVFPQ index."""


def check_index_size(regions: int, exact: bool = False) -> None:
    """An ``IndexTooSmall`` when ``regions`` cannot train the official
    IVFPQ index (and no exact index is asked for)."""
    if not exact and regions < MIN_IVFPQ_REGIONS:
        raise IndexTooSmall(
            f'the bank has {regions} regions: the official IVFPQ index (m '
            f'{FAISS_M}, {FAISS_NBITS} bits) trains {MIN_IVFPQ_REGIONS} codes '
            f'per sub-quantiser and needs at least {MIN_IVFPQ_REGIONS}; add '
            'images, or pass --exact-index for an exact IndexFlatIP (not the '
            "official builder's index)")


class BankLayout:
    """The official file names of bank ``name`` under ``root``."""

    def __init__(self, root, name: str):
        self.root, self.name = Path(root).expanduser(), name

    def masks(self, mask_model: str) -> Path:
        return self.root / 'masks' / self.name / mask_model

    @property
    def manifest(self) -> Path:
        return self.root / 'manifests' / f'{self.name}.manifest.txt'

    @property
    def images(self) -> Path:
        return self.root / 'manifests' / f'{self.name}.images.tsv'

    def clip_store(self, encoder: str) -> Path:
        return self.root / 'clip_embeddings' / f'{self.name}_{encoder}.pt'

    def vfm_store(self, vfm: str) -> Path:
        return self.root / 'vfm_embeddings' / f'{self.name}_{vfm}.pt'

    def index(self, vfm: str) -> Path:
        return self.root / 'vfm_embeddings' / f'{self.name}_{vfm}.faiss'

    def vfm_record(self, vfm: str) -> Path:
        """Ours, beside the index: the VFM that built it (name, weights,
        dimension); published banks have none."""
        return self.root / 'vfm_embeddings' / f'{self.name}_{vfm}.vfm.json'

    def indexed_vfms(self) -> List[str]:
        folder = self.root / 'vfm_embeddings'
        prefix = f'{self.name}_'
        return sorted(p.stem[len(prefix):]
                      for p in folder.glob(f'{prefix}*.faiss'))


# --------------------------------------------------------------------------
# the manifest


def read_images(layout: BankLayout) -> List[Tuple[str, int, int]]:
    """[(stem, first id, regions)] in the order the images were added."""
    if not layout.images.exists():
        return []
    rows = []
    for line in layout.images.read_text().splitlines():
        if line:
            stem, start, count = line.split('\t')
            rows.append((stem, int(start), int(count)))
    return rows


def mask_regions(mask: np.ndarray) -> np.ndarray:
    """The region labels of a mask as the official builder enumerates
    them: the nonzero values of an (H, W) label map in increasing order
    (1..n for an (n, H, W) boolean stack)."""
    if mask.ndim == 3:
        return np.arange(1, mask.shape[0] + 1)
    values = np.unique(mask)
    return values[values != 0]


def label_map(mask: np.ndarray) -> np.ndarray:
    """An (H, W) label map from either official mask layout."""
    if mask.ndim == 2:
        return mask.astype(np.int64)
    labels = np.zeros(mask.shape[1:], dtype=np.int64)
    for k, region in enumerate(mask, start=1):
        labels[region.astype(bool)] = k
    return labels


def read_mask(path) -> np.ndarray:
    with np.load(path) as data:
        return data['instance_mask']


def extend_manifest(layout: BankLayout, stems: Sequence[str],
                    mask_dir: Path) -> List[Tuple[str, int, int]]:
    """Append the images of ``stems`` not registered yet (sorted, those
    with a mask and at least one region) and return all images."""
    images = read_images(layout)
    known = {stem for stem, _, _ in images}
    next_id = images[-1][1] + images[-1][2] if images else 0
    layout.manifest.parent.mkdir(parents=True, exist_ok=True)
    with open(layout.manifest, 'a') as manifest, \
            open(layout.images, 'a') as image_rows:
        for stem in sorted(set(stems) - known):
            path = mask_dir / f'{stem}.npz'
            if not path.exists():
                continue
            count = len(mask_regions(read_mask(path)))
            if count == 0:  # as the official: no region, no row
                continue
            # regions first: a kill between the two writes leaves ids that
            # no image claims yet, which the next run rewrites
            manifest.write(''.join(f'{stem}#{k}\n' for k in range(count)))
            image_rows.write(f'{stem}\t{next_id}\t{count}\n')
            images.append((stem, next_id, count))
            next_id += count
    return images


def repair_manifest(layout: BankLayout) -> None:
    """After a kill: drop region lines beyond the registered images."""
    images = read_images(layout)
    total = images[-1][1] + images[-1][2] if images else 0
    if layout.manifest.exists():
        lines = layout.manifest.read_text().splitlines()
        if len(lines) != total:
            layout.manifest.write_text(''.join(f'{line}\n'
                                               for line in lines[:total]))


# --------------------------------------------------------------------------
# stores


class SlotStore:
    """A store written by region id: ``<base>.f16.npy`` (N, D) float16 and
    ``<base>.done.npy`` (N,) bool while building, ``<base>.pt`` when
    complete; an existing ``.pt`` seeds the first rows of a grown bank."""

    def __init__(self, pt_path: Path, rows: int, dim: int):
        self.pt_path = Path(pt_path)
        base = str(self.pt_path)[:-len('.pt')]
        self.data_path = Path(base + '.f16.npy')
        self.done_path = Path(base + '.done.npy')
        self.rows, self.dim = int(rows), int(dim)

    def complete(self) -> bool:
        if not self.pt_path.exists() or self.data_path.exists():
            return False
        stored = open_store(self.pt_path)
        return tuple(stored.shape) == (self.rows, self.dim)

    def create(self) -> None:
        self.pt_path.parent.mkdir(parents=True, exist_ok=True)
        seed = None
        if self.pt_path.exists() and not self.data_path.exists():
            seed = open_store(self.pt_path)
            if seed.shape[0] > self.rows or seed.shape[1] != self.dim:
                raise ValueError(
                    f'store {str(self.pt_path)!r} is {tuple(seed.shape)}, '
                    f'the manifest says ({self.rows}, {self.dim}); delete '
                    'it to rebuild it')
        for path, dtype, shape in ((self.data_path, np.float16, (self.rows,
                                                                 self.dim)),
                                   (self.done_path, bool, (self.rows, ))):
            if path.exists():
                held = np.load(path, mmap_mode='r')
                if held.shape != shape:
                    raise ValueError(
                        f'{str(path)!r} is {held.shape}, expected {shape}: '
                        'the manifest changed; delete it and run again')
                continue
            np.lib.format.open_memmap(
                path, mode='w+', dtype=dtype, shape=shape).flush()
        if seed is not None:
            data = np.load(self.data_path, mmap_mode='r+')
            data[:len(seed)] = seed.numpy()
            done = np.load(self.done_path, mmap_mode='r+')
            done[:len(seed)] = True
            data.flush()
            done.flush()

    def done(self) -> np.ndarray:
        return np.array(np.load(self.done_path, mmap_mode='r'))

    def write(self, first: int, vectors: Tensor) -> None:
        """Rows ``first ...`` (one image's regions), data before flag."""
        data = np.load(self.data_path, mmap_mode='r+')
        data[first:first + len(vectors)] = vectors.half().cpu().numpy()
        data.flush()
        done = np.load(self.done_path, mmap_mode='r+')
        done[first:first + len(vectors)] = True
        done.flush()

    def finalize(self) -> bool:
        """Save the ``.pt`` once every row is written; False before."""
        if not self.done().all():
            return False
        data = torch.from_numpy(
            np.array(np.load(self.data_path, mmap_mode='r')))
        partial = self.pt_path.with_suffix('.pt.partial')
        torch.save(data, partial)
        os.replace(partial, self.pt_path)
        self.data_path.unlink()
        self.done_path.unlink()
        return True


def open_store(path, dim: Optional[int] = None) -> Tensor:
    """An (N, D) float16 store, memory-mapped: rows are read from disk
    (the page cache) when indexed, never the whole file at once."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f'memory-bank store {str(path)!r} does not exist: build the bank '
            '(tools/build_memory_bank.py) or download the official files '
            'into <root>/clip_embeddings/')
    store = torch.load(path, map_location='cpu', mmap=True, weights_only=True)
    if not isinstance(store, Tensor) or store.dim() != 2 or \
            store.dtype != torch.float16:
        raise ValueError(f'memory-bank store {str(path)!r} is not an (N, D) '
                         'float16 tensor')
    if dim is not None and store.shape[1] != dim:
        raise ValueError(
            f'memory-bank store {str(path)!r} holds {store.shape[1]}-d '
            f'features and the CLIP model gives {dim}-d ones: use the store '
            'of the same CLIP (model.clip.bank.main / aux)')
    return store


# --------------------------------------------------------------------------
# the FAISS index


def faiss_module():
    return require('faiss', 'a CorrCLIPv2 memory bank (FAISS index)')


def train(faiss, index, vectors: np.ndarray) -> None:
    """``index.train(vectors)``, on one OpenMP thread below
    ``ONE_THREAD_BELOW`` vectors: there FAISS's threads cost more than they
    save and spin on a busy CPU (2 cores shared: 2000 x 32 keys 20 s with
    two threads, 1.5 s with one)."""
    threads = faiss.omp_get_max_threads()
    if len(vectors) < ONE_THREAD_BELOW:
        faiss.omp_set_num_threads(1)
    try:
        index.train(vectors)
    finally:
        faiss.omp_set_num_threads(threads)


def update_index(index_path: Path, keys: Tensor, exact: bool = False) -> int:
    """Add the key rows not in the IDMap2 index yet, as the official
    ``update_faiss_cache``: a new index gets all of them, IVFPQ trained on
    them (``exact``: an exact IndexFlatIP instead); an existing one (of
    either kind) only the new rows, untrained again. Returns the number
    added."""
    faiss = faiss_module()
    index, existing = None, np.zeros(0, dtype=np.int64)
    if index_path.exists():
        index = faiss.read_index(str(index_path))
        existing = faiss.vector_to_array(index.id_map).astype(np.int64)
    new = np.setdiff1d(np.arange(len(keys)), existing)
    if len(new) == 0:
        return 0
    vectors = keys[torch.from_numpy(new)].float().numpy()
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
    vectors = np.ascontiguousarray(vectors, dtype='float32')
    dim = vectors.shape[1]
    if index is None:
        check_index_size(len(keys), exact)
        if exact:
            inner = faiss.IndexFlatIP(dim)
        else:
            if dim % FAISS_M:
                raise ValueError(f'FAISS IVFPQ: m={FAISS_M} does not divide '
                                 f'the VFM dimension {dim}')
            nlist = max(1, int(FAISS_NLIST_FACTOR * np.sqrt(len(keys))))
            inner = faiss.IndexIVFPQ(
                faiss.IndexFlatIP(dim), dim, nlist, FAISS_M, FAISS_NBITS)
            train(faiss, inner, vectors)
        index = faiss.IndexIDMap2(inner)
    index.add_with_ids(vectors, new.astype(np.int64))
    partial = index_path.with_suffix('.faiss.partial')
    faiss.write_index(index, str(partial))
    os.replace(partial, index_path)
    return len(new)


class BankIndex:
    """The IDMap2 index searched as the official code searches it: the
    inner index for positions (``nprobe = min(256, nlist)`` for IVF), then
    ``id_map`` to store rows (-1: no neighbour)."""

    def __init__(self, path: Path):
        faiss = faiss_module()
        index = faiss.read_index(str(path))
        self.id_map = faiss.vector_to_array(index.id_map).astype(np.int64)
        self.outer = index  # owns the inner index: keep it alive
        self.inner = faiss.downcast_index(index.index)
        if hasattr(self.inner, 'nlist'):
            self.inner.nprobe = min(MAX_NPROBE, self.inner.nlist)
        self.dim, self.size = index.d, index.ntotal

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        _, positions = self.inner.search(
            np.ascontiguousarray(queries, dtype='float32'), k)
        rows = self.id_map[np.clip(positions, 0, len(self.id_map) - 1)]
        return np.where(positions >= 0, rows, -1)


def read_vfm_record(layout: BankLayout, vfm: str) -> Optional[Dict]:
    path = layout.vfm_record(vfm)
    return json.loads(path.read_text()) if path.exists() else None


# --------------------------------------------------------------------------
# region pooling


def region_means(features: Tensor,
                 labels: Tensor,
                 values: Tensor,
                 normalize_pixels: bool = False,
                 chunk: int = 128) -> Tensor:
    """(R, C) mean of the (1, C, h, w) ``features``, bilinearly resized to
    the (H, W) ``labels``' size, over the pixels of each label of the
    increasing ``values``; ``normalize_pixels``: L2-normalise every
    pixel's feature first. Channels go ``chunk`` at a time, so memory stays at
    ``chunk * H * W`` floats (and the (R, H * W) region indicator) whatever
    C is. The sums are one matrix product per chunk (a scatter-add is ~20x
    slower on CPU for a thousand channels)."""
    size = tuple(labels.shape[-2:])
    channels = features.shape[1]
    flat = labels.flatten().to(values.dtype)
    index = torch.searchsorted(values, flat).clamp_max(len(values) - 1)
    keep = values[index] == flat  # other labels' pixels: in no region
    # (R, H * W): 1 where a pixel belongs to a region
    member = torch.zeros(len(values), flat.numel(), device=features.device)
    member[index[keep], keep.nonzero()[:, 0]] = 1
    counts = member.sum(1)

    def upsampled(start: int) -> Tensor:
        part = features[0, start:start + chunk].float()
        if tuple(part.shape[-2:]) == size:  # bilinear at scale 1: itself
            return part
        return F.interpolate(
            part[None], size=size, mode='bilinear', align_corners=False)[0]

    norm = None
    if normalize_pixels:
        squares = torch.zeros(size, device=features.device)
        for start in range(0, channels, chunk):
            squares += upsampled(start).pow(2).sum(0)
        norm = squares.sqrt().clamp_min(1e-12).flatten()
    sums = torch.empty(len(values), channels, device=features.device)
    for start in range(0, channels, chunk):
        part = upsampled(start).flatten(1)
        if norm is not None:
            part = part / norm
        sums[:, start:start + chunk] = member @ part.T
    return sums / counts[:, None].clamp_min(1)
