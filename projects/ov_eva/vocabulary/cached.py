"""Replaying a vocabulary cache without calling any model."""
from typing import Optional

from ..registry import VOCABULARIES
from .base import FetchResult, VocabularySource, classes_digest, image_digest


@VOCABULARIES.register_module()
class CachedVocabulary(VocabularySource):
    """Serves the newest cached vocabulary of each (image, class set), for
    exact reproduction (e.g. from an imported JSON Lines export) and CI.

    Args:
        source / model: only replay entries of this source / model.
        on_missing: ``'class_names'`` (fall back, counted as a failure in
            summaries) or ``'error'``.
    """
    source_name = 'cached'

    def __init__(self,
                 cache_file=None,
                 source: Optional[str] = None,
                 model: Optional[str] = None,
                 on_missing: str = 'class_names'):
        if on_missing not in ('class_names', 'error'):
            raise ValueError("on_missing must be 'class_names' or 'error'")
        super().__init__(cache_file=cache_file, strict=on_missing == 'error')
        if self.cache_file is None:
            raise ValueError('CachedVocabulary needs a cache_file to replay')
        self.source, self.model = source, model

    def fetch(self, image, classes) -> FetchResult:
        try:
            image_hash = image_digest(image)
        except Exception as error:
            return self._failed(None, None, str(error))
        entry = self.cache.latest(image_hash, classes_digest(classes),
                                  self.source, self.model)
        if entry is not None:
            return FetchResult('hit', entry)
        # nothing recorded: a replay must not write to the cache it replays
        return self._failed(
            None, None, f'no cached vocabulary for image {image_hash} '
            f'in {self.cache_file}')
