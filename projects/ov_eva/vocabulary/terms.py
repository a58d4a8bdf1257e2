"""Parsing MLLM answers and cleaning their terms. A term is data, never code:
it is only ever length-limited, normalised and compared as a string."""
import ast
import json
import re
import unicodedata
from typing import Any, Iterable, List, Optional

MAX_WORDS = 6
MAX_CHARS = 60
MAX_ANSWER_CHARS = 32_000  # a vocabulary answer is a few hundred bytes
_FENCE = re.compile(r'```(?:json|JSON)?\s*(.*?)```', re.S)


class AnswerError(ValueError):
    """An MLLM answer holds no usable JSON of the expected shape."""


def _candidates(text: str) -> Iterable[str]:
    """The answer itself, fenced blocks in it, and its outermost bracketed
    spans (answers often wrap JSON in prose)."""
    yield text.strip()
    for block in _FENCE.findall(text):
        yield block.strip()
    for opener, closer in (('{', '}'), ('[', ']')):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            yield text[start:end + 1]


def parse_json(text: str, expected) -> Any:
    """The first JSON value of type ``expected`` in ``text``: strict JSON
    first, then Python-literal syntax (single quotes, trailing commas)."""
    if not isinstance(text, str) or not text.strip():
        raise AnswerError('empty answer')
    if len(text) > MAX_ANSWER_CHARS:
        raise AnswerError(f'answer of {len(text)} characters is absurd '
                          f'(limit {MAX_ANSWER_CHARS})')
    for candidate in _candidates(text):
        for loads in (json.loads, ast.literal_eval):
            try:
                value = loads(candidate)
            except (ValueError, SyntaxError, TypeError, MemoryError,
                    RecursionError):
                continue
            if isinstance(value, expected):
                return value
    kinds = expected if isinstance(expected, tuple) else (expected, )
    names = ' or '.join(k.__name__ for k in kinds)
    raise AnswerError(f'no JSON {names} in answer: {text[:120]!r}')


def clean_term(term: Any) -> Optional[str]:
    """Strip, lower-case, collapse white space; None for anything that is not
    a plausible short noun phrase (non-strings, punctuation only, over-long,
    non-printable)."""
    if not isinstance(term, str):
        return None
    if any(
            unicodedata.category(ch)[0] == 'C' and ch not in '\t\n '
            for ch in term):
        return None
    term = ' '.join(term.lower().split()).strip(' .,;:!?"\'`-*_')
    if not term or not any(ch.isalnum() for ch in term):
        return None
    if len(term) > MAX_CHARS or len(term.split()) > MAX_WORDS:
        return None
    return term


def clean_terms(terms: Iterable[Any],
                limit: Optional[int] = None) -> List[str]:
    """Cleaned, de-duplicated terms in their first order, at most ``limit``.
    """
    out: List[str] = []
    for term in terms:
        term = clean_term(term)
        if term is not None and term not in out:
            out.append(term)
            if limit is not None and len(out) >= limit:
                break
    return out
