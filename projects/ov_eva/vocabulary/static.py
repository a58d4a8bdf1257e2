"""A fixed, hand-written vocabulary: the same terms for every image."""
from typing import Dict, List

from ..registry import VOCABULARIES
from .base import FetchResult, VocabularySource
from .cache import Term, VocabularyEntry
from .terms import clean_terms


@VOCABULARIES.register_module()
class StaticVocabulary(VocabularySource):
    """Extra names of your own per class, e.g. ``terms=dict(floor=['parquet
    floor', 'carpet'])``, used for every image (no model, no cache). Handy
    for a domain you know, and for ablations.

    Args:
        terms: class display name -> its extra terms; the key ``None`` or
            ``''`` holds terms left to CLIP's class mapping.
    """
    source_name = 'static'

    def __init__(self, terms: Dict[str, List[str]]):
        super().__init__(cache_file=False)
        self.terms = [
            Term(text, name or None) for name, items in (terms or {}).items()
            for text in clean_terms(items)
        ]
        if not self.terms:
            raise ValueError('StaticVocabulary needs at least one term, e.g. '
                             "terms=dict(floor=['parquet floor'])")

    def fetch(self, image, classes) -> FetchResult:
        known = {synonyms[0] for synonyms in classes}
        unknown = {t.suggested_class for t in self.terms} - known - {None}
        if unknown:
            raise ValueError(f'StaticVocabulary names classes that are not '
                             f'target classes: {sorted(unknown)}')
        return FetchResult(
            'hit',
            VocabularyEntry(
                key='static',
                image='',
                source=self.source_name,
                model='static',
                prompt_version='none',
                classes='',
                terms=list(self.terms)))
