"""What every vocabulary source shares: cache keys, the cache round trip,
failure handling, and (for MLLMs) the method's two-stage iterative querying.

A source turns (image, target classes) into a ``VocabularyEntry``. Subclasses
implement ``generate``; MLLM sources only implement ``ask`` (one chat turn).
"""
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import mmcv
import numpy as np

from ..text_bank import default_cache_dir
from .cache import Term, VocabularyCache, VocabularyEntry
from .pricing import BudgetExhausted
from .prompts import PROMPT_VERSION, expand_prompt, perceive_prompt
from .terms import AnswerError, clean_term, clean_terms, parse_json

ImageInput = Union[str, Path, np.ndarray]
Classes = Sequence[Sequence[str]]  # each class: its synonyms, name first


class VocabularyFailure(RuntimeError):
    """No vocabulary for one image (raised with ``strict=True``)."""


class FatalVocabularyError(RuntimeError):
    """No vocabulary for any image (bad key, dead server): stop the run."""


def image_digest(image: ImageInput) -> str:
    """Content hash: file bytes for a path, pixels for an array."""
    digest = hashlib.sha256()
    if isinstance(image, np.ndarray):
        digest.update(str((image.shape, image.dtype.str)).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    else:
        try:
            digest.update(Path(image).read_bytes())
        except OSError as error:
            raise VocabularyFailure(
                f'cannot read image {str(image)!r}: {error}') from error
    return digest.hexdigest()[:32]


def read_rgb(path: Union[str, Path]) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, decoded as mmseg's
    ``LoadImageFromFile`` decodes it; ValueError saying what is wrong."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f'cannot read the file ({error.strerror})')
    try:  # BGR: mmcv's RGB conversion fails obscurely on undecodable data
        bgr = mmcv.imfrombytes(data, flag='color', channel_order='bgr')
    except Exception as error:
        raise ValueError(f'not a decodable image ({error})')
    if bgr is None:
        raise ValueError('not a decodable image (corrupt, or not an image)')
    return np.ascontiguousarray(bgr[..., ::-1])


def load_rgb(image: ImageInput) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a path or an array; a clear error naming the
    file when it is not a readable image."""
    if not isinstance(image, np.ndarray):
        try:
            return read_rgb(image)
        except ValueError as error:
            raise VocabularyFailure(
                f'cannot read image {str(image)!r}: {error}') from None
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, 2)
    return np.ascontiguousarray(rgb[..., :3]).astype(np.uint8)


def shrink(rgb: np.ndarray, max_side: Optional[int]) -> np.ndarray:
    """The long side shrunk to ``max_side`` (never enlarged)."""
    height, width = rgb.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    return cv2.resize(
        rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
        interpolation=cv2.INTER_AREA)


def classes_digest(classes: Classes) -> str:
    return hashlib.sha256(json.dumps([list(c) for c in classes
                                      ]).encode()).hexdigest()[:16]


@dataclass
class FetchResult:
    """What ``fetch`` did for one image."""
    status: str  # 'hit', 'new', 'failed' or 'skipped' (budget reached)
    entry: Optional[VocabularyEntry] = None
    error: Optional[str] = None
    usage: Dict[str, int] = field(default_factory=dict)

    @property
    def terms(self) -> List[Term]:
        return self.entry.terms if self.entry else []


class VocabularySource:
    """Base of all sources.

    Args:
        cache_file: the SQLite vocabulary cache; None uses
            ``$OV_EVA_CACHE/vocabulary.sqlite``, False keeps nothing.
        strict: raise ``VocabularyFailure`` when an image gets no
            vocabulary, instead of falling back to the class names alone.
    """
    source_name = 'base'
    prompt_version = 'none'
    max_concurrency = 1
    needs_encoder = False  # True: bind() must hand it the CLIP encoder

    def __init__(self,
                 cache_file: Union[None, bool, str, Path] = None,
                 strict: bool = False):
        self.cache_file = None if cache_file is False else Path(
            cache_file or default_cache_dir() / 'vocabulary.sqlite')
        self.strict = strict
        self._cache: Optional[VocabularyCache] = None
        self._lock = threading.Lock()

    @property
    def cache(self) -> Optional[VocabularyCache]:
        """Opened on first use, so that building a config touches no file."""
        if self._cache is None and self.cache_file is not None:
            with self._lock:
                if self._cache is None:
                    self._cache = VocabularyCache(self.cache_file)
        return self._cache

    def bind(self, encoder) -> None:
        """Called by the segmentor with its ``DenseCLIPEncoder``; sources
        that rank text with CLIP (the lexicon) keep it, others ignore it."""

    @property
    def model_id(self) -> str:
        return self.source_name

    def params(self) -> Dict:
        """Parameters that change the result: part of the cache key."""
        return {}

    def redact(self, text: str) -> str:
        """Remove secrets (API keys) from text that will be logged or
        stored."""
        return text

    def key(self, image: str, classes: str) -> str:
        material = json.dumps([
            self.source_name, self.model_id, self.prompt_version, classes,
            self.params(), image
        ],
                              sort_keys=True)
        return hashlib.sha256(material.encode()).hexdigest()[:40]

    def lookup(
            self, image: ImageInput, classes: Classes
    ) -> Tuple[str, str, str, Optional[VocabularyEntry]]:
        image_hash, class_hash = image_digest(image), classes_digest(classes)
        key = self.key(image_hash, class_hash)
        cached = self.cache.get(key) if self.cache is not None else None
        return key, image_hash, class_hash, cached

    def fetch(self, image: ImageInput, classes: Classes) -> FetchResult:
        """The image's vocabulary: from the cache, else generated and stored.
        A failure is recorded (never stored as a vocabulary) and returned, or
        raised with ``strict=True``."""
        try:
            key, image_hash, class_hash, cached = self.lookup(image, classes)
        except VocabularyFailure as error:
            return self._failed(None, None, str(error))
        if cached is not None:
            return FetchResult('hit', cached)
        start = time.monotonic()
        usage: Dict[str, int] = {}
        try:
            terms, raw = self.generate(load_rgb(image), classes, usage)
        except FatalVocabularyError:
            raise
        except BudgetExhausted as error:
            return self._skipped(key, image_hash, str(error), usage)
        except Exception as error:  # one image's failure, not the run's
            message = self.redact(f'{type(error).__name__}: {error}')
            return self._failed(key, image_hash, message, usage)
        entry = VocabularyEntry(
            key=key,
            image=image_hash,
            source=self.source_name,
            model=self.model_id,
            prompt_version=self.prompt_version,
            classes=class_hash,
            params=self.params(),
            terms=terms,
            raw_answers=[self.redact(a) for a in raw],
            usage=usage,
            latency=time.monotonic() - start)
        if self.cache is not None:
            self.cache.put(entry)
        return FetchResult('new', entry, usage=usage)

    def _skipped(self, key, image_hash, message, usage=None) -> FetchResult:
        """The budget stopped this image: class names only, recorded (not
        cached as a vocabulary) so that a rerun with more budget asks it."""
        message = f'skipped: {message}'
        if key is not None and self.cache is not None:
            self.cache.record_failure(key, image_hash, message)
        return FetchResult('skipped', error=message, usage=usage or {})

    def _failed(self, key, image_hash, message, usage=None) -> FetchResult:
        if key is not None and self.cache is not None:
            self.cache.record_failure(key, image_hash, message)
        if self.strict:
            # from None: the message is redacted, the error it was made of
            # (a server's text, which may echo the API key) is not
            raise VocabularyFailure(message) from None
        return FetchResult('failed', error=message, usage=usage or {})

    def generate(self, rgb: np.ndarray, classes: Classes,
                 usage: Dict[str, int]) -> Tuple[List[Term], List[str]]:
        """(terms, raw answers) for one RGB image; add token counts to
        ``usage``."""
        raise NotImplementedError


def match_class(name: str, classes: Classes) -> Optional[str]:
    """The target class an MLLM's class key names (by any synonym), as the
    class's display name; None when it names none."""
    name = clean_term(name)
    for synonyms in classes:
        if name in (clean_term(s) for s in synonyms):
            return synonyms[0]
    return None


class MLLMVocabulary(VocabularySource):
    """Two-stage, iterative querying of a multi-modal LLM (method step 3).

    Args:
        k: new terms asked per class and round.
        rounds: stage-2 rounds at most; stops early when one adds nothing.
        max_terms: cap on the vocabulary of one image.
    """
    prompt_version = PROMPT_VERSION

    def __init__(self,
                 k: int = 5,
                 rounds: int = 2,
                 max_terms: int = 64,
                 cache_file=None,
                 strict: bool = False):
        super().__init__(cache_file=cache_file, strict=strict)
        if k < 1 or rounds < 1 or max_terms < 1:
            raise ValueError('k, rounds and max_terms must be >= 1')
        self.k, self.rounds, self.max_terms = k, rounds, max_terms

    def params(self) -> Dict:
        return dict(k=self.k, rounds=self.rounds, max_terms=self.max_terms)

    def ask(self, rgb: np.ndarray, prompt: str, usage: Dict[str, int]) -> str:
        """One chat turn: image + prompt -> answer text."""
        raise NotImplementedError

    def generate(self, rgb, classes, usage):
        talk = self.dialogue(classes)
        try:
            prompt = next(talk)
            while True:
                prompt = talk.send(self.ask(rgb, prompt, usage))
        except StopIteration as done:
            return done.value

    def dialogue(self, classes: Classes):
        """The method's conversation as a generator: it yields each prompt
        and is sent the answer; it returns ``(terms, raw answers)`` (or
        raises ``AnswerError``); with no target classes
        (``model.classes='auto'``) stage 1 alone. The online path drives it
        with ``ask``, the Batch API path drives many at once, one batch per
        step."""
        names = [synonyms[0] for synonyms in classes]
        raw: List[str] = []
        answer = yield perceive_prompt()
        raw.append(answer)
        try:
            perceived = clean_terms(_term_list(answer), limit=self.max_terms)
        except AnswerError:
            perceived = []  # stage 2 can still answer
        if not names:
            if not perceived:
                raise AnswerError('no usable terms in the answer: ' +
                                  answer[:80])
            return [Term(text, None) for text in perceived], raw
        terms: List[Term] = []
        held: Dict[str, List[str]] = {}
        for _ in range(self.rounds):
            answer = yield expand_prompt(names, perceived, held, self.k)
            raw.append(answer)
            try:
                proposals = parse_json(answer, dict)
            except AnswerError:
                break
            added = 0
            for name, items in proposals.items():
                target = match_class(name, classes) if isinstance(
                    name, str) else None
                items = items if isinstance(items, list) else [items]
                for text in clean_terms(items, limit=self.k):
                    if len(terms) >= self.max_terms or any(t.text == text
                                                           for t in terms):
                        continue
                    terms.append(Term(text, target))
                    held.setdefault(target or str(name)[:60], []).append(text)
                    added += 1
            if added == 0 or len(terms) >= self.max_terms:
                break
        for text in perceived:  # stage-1 terms, no suggested class
            if len(terms) < self.max_terms and all(t.text != text
                                                   for t in terms):
                terms.append(Term(text, None))
        if not terms:
            raise AnswerError('no usable terms in any answer: ' +
                              ' | '.join(a[:80] for a in raw))
        return terms, raw


def _term_list(answer: str) -> list:
    """Stage 1 answers ``{"terms": [...]}``; a bare list is accepted too."""
    value = parse_json(answer, (dict, list))
    if isinstance(value, dict):
        value = value.get(
            'terms',
            next((v for v in value.values() if isinstance(v, list)), []))
    return value if isinstance(value, list) else []
