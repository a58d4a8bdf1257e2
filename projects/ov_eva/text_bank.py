"""Template-averaged text embeddings, cached by content.

Each text is embedded as the mean of its prompt templates, then cached in
memory and on disk under (model, text-tower weights, template set), so a
second run encodes no text at all. Class lists live in ``class_lists``.
"""
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.logging import print_log
from open_clip.zero_shot_metadata import (OPENAI_IMAGENET_TEMPLATES,
                                          SIMPLE_IMAGENET_TEMPLATES)
from torch import Tensor

from .class_lists import (CLASS_NAME_DIR, ClassSpec,  # noqa: F401
                          load_classes, parse_class_lines, read_class_file)

TEMPLATE_SETS = {
    'imagenet80': [t('{}') for t in OPENAI_IMAGENET_TEMPLATES],
    'simple7': [t('{}') for t in SIMPLE_IMAGENET_TEMPLATES],
    'single': ['a photo of a {}.'],
    'bare': ['{}'],
}


def default_cache_dir() -> Path:
    root = os.environ.get('OV_EVA_CACHE') or Path.home() / '.cache' / 'ov_eva'
    return Path(root)


def resolve_templates(templates: Union[str, Sequence[str]]) -> List[str]:
    if isinstance(templates, str):
        if templates not in TEMPLATE_SETS:
            raise ValueError(f'unknown template set {templates!r}; use one '
                             f'of {list(TEMPLATE_SETS)} or a list of '
                             "strings with '{}'")
        return TEMPLATE_SETS[templates]
    templates = list(templates)
    if not templates or any('{}' not in t for t in templates):
        raise ValueError("templates must be non-empty strings holding '{}'")
    return templates


class TextBank:
    """Template-averaged text embeddings with a memory and disk cache.

    Args:
        encoder: object with ``encode_text(texts) -> (N, D)`` and
            ``text_fingerprint()`` (a ``DenseCLIPEncoder``).
        templates: a name in ``TEMPLATE_SETS`` or a list of templates.
        cache_dir: folder of the disk cache; None uses ``$OV_EVA_CACHE`` or
            ``~/.cache/ov_eva``; False disables the disk cache.
    """

    def __init__(self,
                 encoder,
                 templates: Union[str, Sequence[str]] = 'imagenet80',
                 cache_dir: Union[None, bool, str, Path] = None):
        self.encoder = encoder
        self.templates = resolve_templates(templates)
        self.cache_dir = None if cache_dir is False else Path(
            cache_dir or default_cache_dir()) / 'text'
        self._key: Optional[str] = None
        self._memory: Dict[str, Tensor] = {}
        self.encoded_count = 0  # texts actually run through the encoder

    @property
    def key(self) -> str:
        """(model, text weights, template set): computed once, on first use,
        so that weights loaded after construction are the ones hashed."""
        if self._key is None:
            digest = hashlib.sha256(self.encoder.text_fingerprint().encode())
            digest.update('\n'.join(self.templates).encode())
            self._key = digest.hexdigest()[:24]
            self._memory.update(self._load_disk())
        return self._key

    @property
    def cache_file(self) -> Optional[Path]:
        return None if self.cache_dir is None else \
            self.cache_dir / f'{self.key}.pt'

    def _load_disk(self) -> Dict[str, Tensor]:
        path = self.cache_file
        if path is None or not path.is_file():
            return {}
        try:
            return torch.load(path, map_location='cpu', weights_only=True)
        except Exception as error:  # a torn or foreign file: recompute
            print_log(
                f'ignoring unreadable text cache {path}: {error}',
                logger='current',
                level=30)
            return {}

    def _save_disk(self, new: Dict[str, Tensor]) -> None:
        path = self.cache_file
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        merged = {**self._load_disk(), **new}  # keep other processes' texts
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix='.tmp')
        os.close(fd)
        try:
            torch.save(merged, tmp)
            os.replace(tmp, path)  # atomic: readers see old or new, not torn
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def embed(self, texts: Sequence[str]) -> Tensor:
        """(N, D) L2-normalised embeddings, on the encoder's device."""
        key = self.key  # noqa: F841 (loads the disk cache once)
        missing = [t for t in dict.fromkeys(texts) if t not in self._memory]
        if missing:
            new = self._encode(missing)
            self._memory.update(new)
            self._save_disk(new)
        device = self.encoder.model.logit_scale.device
        return torch.stack([self._memory[t] for t in texts]).to(device)

    def _encode(self, texts: List[str]) -> Dict[str, Tensor]:
        prompts = [tpl.format(t) for t in texts for tpl in self.templates]
        chunk = 1024
        progress = None
        if len(prompts) > chunk:  # minutes on a CPU: say so, show progress
            print_log(
                f'encoding {len(prompts)} prompts ({len(texts)} texts x '
                f'{len(self.templates)} templates), once: they are cached in '
                f'{self.cache_dir or "memory"}',
                logger='current')
            from mmengine.utils import ProgressBar
            progress = ProgressBar(len(prompts), file=sys.stderr)
        parts = []
        for start in range(0, len(prompts), chunk):
            parts.append(
                self.encoder.encode_text(prompts[start:start + chunk]))
            if progress is not None:
                progress.update(len(parts[-1]))
        if progress is not None:
            sys.stderr.write('\n')
        emb = torch.cat(parts).float()
        emb = emb.reshape(len(texts), len(self.templates), -1).mean(1)
        emb = torch.nn.functional.normalize(emb, dim=-1).cpu()
        self.encoded_count += len(texts)
        return dict(zip(texts, emb))
