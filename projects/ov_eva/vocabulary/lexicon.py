"""A vocabulary without any MLLM: rank a lexicon of concept names by CLIP
image-text similarity and keep the best.

The image and ``grid x grid`` windows of it are embedded with the CLIP image
tower (global embeddings, each view resized to the model's input size); a
name scores the max cosine similarity over the views, so small things that
fill a window still rank. Lexicon embeddings come from a ``TextBank``: they
are computed once per CLIP model (text weights and template set) and cached
on disk. Offline, deterministic and free.
"""
import hashlib
import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import VOCABULARIES
from ..text_bank import TextBank, resolve_templates
from .base import VocabularySource
from .cache import Term
from .terms import clean_term

SHIPPED_LEXICON = Path(__file__).parent / 'lexicon' / 'concepts.txt'


def read_lexicon(path: Union[str, Path]) -> List[str]:
    """Concept names from a UTF-8 text file, one a line (blank lines and
    ``#`` comments skipped), cleaned like MLLM terms and de-duplicated in
    their first order; a clear error naming the file when it is unreadable,
    holds no name, or holds a line that is no plausible term."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(
            f'cannot read lexicon file {str(path)!r} ({error}); '
            'give a UTF-8 text file, one concept name a line') from error
    names: Dict[str, None] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        name = clean_term(line)
        if name is None:
            raise ValueError(f'lexicon file {str(path)!r}, line {number}: '
                             f'{line.strip()[:80]!r} is not a concept name '
                             '(at most 6 words and 60 characters)')
        names.setdefault(name)
    if not names:
        raise ValueError(f'lexicon file {str(path)!r} holds no concept name; '
                         'give one name a line')
    return list(names)


def window_boxes(height: int, width: int,
                 grid: int) -> List[Tuple[int, int, int, int]]:
    """(top, bottom, left, right) of the whole image, then of a ``grid x
    grid`` tiling of it (windows that would be empty are left out)."""
    boxes = [(0, height, 0, width)]
    ys = np.linspace(0, height, grid + 1).round().astype(int)
    xs = np.linspace(0, width, grid + 1).round().astype(int)
    for i in range(grid):
        for j in range(grid):
            if ys[i + 1] > ys[i] and xs[j + 1] > xs[j]:
                boxes.append(
                    (int(ys[i]), int(ys[i + 1]), int(xs[j]), int(xs[j + 1])))
    return boxes


@VOCABULARIES.register_module()
class LexiconVocabulary(VocabularySource):
    """The ``top_k`` lexicon names closest to the image in CLIP space.

    Needs the segmentor's CLIP model: ``OVEVASegmentor`` calls ``bind``.

    Args:
        lexicon: None for the shipped lexicon (``lexicon/concepts.txt``, a
            few thousand names from public label sets; see SOURCES.md there)
            or a text file, one concept name a line.
        top_k: names kept per image.
        window_grid: the image is scored whole and as ``window_grid x
            window_grid`` windows (0: whole image only).
        templates: text-bank template set of the lexicon embeddings (a name
            in ``TEMPLATE_SETS`` or a list); small, since every name is
            embedded once per CLIP model.
        text_cache_dir: disk cache of the lexicon embeddings (see
            ``TextBank``): None for ``$OV_EVA_CACHE``, False for none.
        **kwargs: ``cache_file`` and ``strict`` of ``VocabularySource``.
    """
    source_name = 'lexicon'
    max_concurrency = 1
    needs_encoder = True

    def __init__(self,
                 lexicon: Union[None, str, Path] = None,
                 top_k: int = 32,
                 window_grid: int = 2,
                 templates: Union[str, List[str]] = 'single',
                 text_cache_dir: Union[None, bool, str, Path] = None,
                 **kwargs):
        super().__init__(**kwargs)
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f'top_k must be an integer >= 1, got {top_k!r}')
        if not isinstance(window_grid, int) or window_grid < 0:
            raise ValueError('window_grid must be an integer >= 0, got '
                             f'{window_grid!r}')
        resolve_templates(templates)  # fail at construction, not mid-run
        self.lexicon_file = Path(lexicon or SHIPPED_LEXICON)
        self.names = read_lexicon(self.lexicon_file)
        self.lexicon_digest = hashlib.sha256('\n'.join(
            self.names).encode()).hexdigest()[:16]
        self.top_k, self.window_grid = top_k, window_grid
        self.templates = templates
        self.text_cache_dir = text_cache_dir
        self.encoder = None
        self.text_bank: Optional[TextBank] = None
        self._embeddings: Optional[torch.Tensor] = None
        self._model_id: Optional[str] = None
        self._embed_lock = threading.Lock()

    def bind(self, encoder) -> None:
        """Keep the segmentor's ``DenseCLIPEncoder`` and a text bank for the
        lexicon on it; the lexicon is embedded on first use."""
        self.encoder = encoder
        self.text_bank = TextBank(
            encoder, self.templates, cache_dir=self.text_cache_dir)
        self._embeddings, self._model_id = None, None

    def _require_encoder(self):
        if self.encoder is None:
            raise RuntimeError(
                'LexiconVocabulary needs a CLIP encoder: build it through '
                'OVEVASegmentor(vocabulary=...) or call bind(encoder)')
        return self.encoder

    @property
    def model_id(self) -> str:
        """The CLIP model and a hash of its weights, taken on first use
        (like the text bank's key, so weights loaded after ``bind`` count).
        """
        encoder = self._require_encoder()
        if self._model_id is None:
            self._model_id = f'{encoder.name}:{encoder.fingerprint()}'
        return self._model_id

    def params(self) -> Dict:
        templates = self.templates if isinstance(self.templates,
                                                 str) else list(self.templates)
        return dict(
            top_k=self.top_k,
            window_grid=self.window_grid,
            templates=templates,
            lexicon=self.lexicon_digest)

    def lexicon_embeddings(self) -> torch.Tensor:
        """(N, D) text embeddings of the lexicon names (from the text bank's
        memory or disk cache after the first time)."""
        self._require_encoder()
        with self._embed_lock:
            if self._embeddings is None:
                self._embeddings = self.text_bank.embed(self.names)
        return self._embeddings

    @torch.no_grad()
    def image_embeddings(self, rgb: np.ndarray) -> torch.Tensor:
        """(V, D) L2-normalised CLIP embeddings of the whole image and its
        windows, each resized to the model's input size."""
        model = self._require_encoder().model
        visual = model.visual
        param = next(model.parameters())
        size = visual.image_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        cfg = getattr(visual, 'preprocess_cfg', None) or {}
        if cfg.get('mean') is None or cfg.get('std') is None:
            from open_clip.constants import (OPENAI_DATASET_MEAN,
                                             OPENAI_DATASET_STD)
            cfg = dict(mean=OPENAI_DATASET_MEAN, std=OPENAI_DATASET_STD)
        mean = torch.tensor(cfg['mean'], dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(cfg['std'], dtype=torch.float32).view(3, 1, 1)
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(
            2, 0, 1).float() / 255
        views = []
        for top, bottom, left, right in window_boxes(*rgb.shape[:2],
                                                     self.window_grid):
            view = F.interpolate(
                image[None, :, top:bottom, left:right],
                size=size,
                mode='bicubic',
                align_corners=False,
                antialias=True).clamp(0, 1)[0]
            views.append((view - mean) / std)
        batch = torch.stack(views).to(param.device, param.dtype)
        return F.normalize(model.encode_image(batch).float(), dim=-1)

    def scores(self, rgb: np.ndarray) -> torch.Tensor:
        """(N,) score of every lexicon name: the max cosine similarity over
        the views."""
        images = self.image_embeddings(rgb)
        texts = self.lexicon_embeddings()
        if texts.device != images.device:  # the model moved after first use
            texts = self._embeddings = texts.to(images.device)
        return (images @ texts.float().T).max(dim=0).values.cpu()

    def generate(self, rgb, classes, usage):
        scores = self.scores(rgb).tolist()
        order = sorted(
            range(len(self.names)), key=lambda i: (-scores[i], self.names[i]))
        return [Term(self.names[i], None) for i in order[:self.top_k]], []
