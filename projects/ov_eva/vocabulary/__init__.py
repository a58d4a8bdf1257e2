"""Vocabulary sources (registered in ``ov_eva.registry.VOCABULARIES``), their
prompts, term cleaning and the on-disk cache."""
from .base import (FatalVocabularyError, FetchResult, MLLMVocabulary,
                   VocabularyFailure, VocabularySource)
from .cache import CacheError, Term, VocabularyCache, VocabularyEntry
from .cached import CachedVocabulary
from .hf_source import HFVocabulary
from .lexicon import LexiconVocabulary
from .openai_source import OpenAIVocabulary
from .static import StaticVocabulary

__all__ = [
    'VocabularySource', 'MLLMVocabulary', 'OpenAIVocabulary',
    'CachedVocabulary', 'LexiconVocabulary', 'HFVocabulary',
    'StaticVocabulary', 'VocabularyCache', 'VocabularyEntry', 'Term',
    'FetchResult', 'VocabularyFailure', 'FatalVocabularyError', 'CacheError'
]
