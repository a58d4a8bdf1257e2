"""Vocabularies from GPT-4o or any OpenAI-compatible server (vLLM, Ollama,
LM Studio, llama.cpp serving LLaVA, Janus-Pro, Qwen-VL, ...), online or
through the Batch API (``batch.py``), with an estimate before the run and a
hard budget (``pricing.py``)."""
import base64
import math
import os
import threading
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..optional import require
from ..registry import VOCABULARIES
from .base import (Classes, FatalVocabularyError, FetchResult, ImageInput,
                   MLLMVocabulary, VocabularyFailure, shrink)
from .batch import BatchAPI
from .pricing import (Budget, Estimate, PriceTable, TextCounter, image_tokens,
                      sent_size)
from .prompts import SYSTEM, expand_prompt, perceive_prompt
from .terms import AnswerError

DETAILS = ('low', 'high', 'auto')


def encode_image(rgb: np.ndarray, max_side: int, quality: int = 90) -> str:
    """A JPEG data URL, the long side shrunk to ``max_side`` (tokens cost
    money)."""
    ok, data = cv2.imencode('.jpg',
                            shrink(rgb, max_side)[..., ::-1],
                            [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError('JPEG encoding failed')
    return 'data:image/jpeg;base64,' + base64.b64encode(
        data.tobytes()).decode()


class CostEstimate:
    """What a run will cost, before it starts (a mixin of
    ``OpenAIVocabulary``: its counter, prices, cache and budget)."""

    def estimate(self, images: Sequence[ImageInput],
                 classes: Classes) -> Estimate:
        """Calls, tokens and dollars to fetch ``images`` (nothing sent)."""
        est = Estimate(
            model=self.model,
            detail=self.detail,
            max_image_side=self.max_image_side,
            text_method=self.counter.method,
            price_date=self.price_table.date,
            batch_discount=self.price_table.batch_discount)
        names = [synonyms[0] for synonyms in classes]
        text_tokens = self.counter.chat(SYSTEM, perceive_prompt()) + sum(
            self.counter.chat(SYSTEM, expand_prompt(names, [], {}, self.k))
            for _ in range(self.rounds))
        image_total = 0
        for image in images:
            est.images += 1
            try:
                cached = self.lookup(image, classes)[3]
                width, height = image_size(image)
            except (VocabularyFailure, ValueError):
                est.unreadable += 1
                continue
            if cached is not None:
                est.cached += 1
            else:
                image_total += self.image_tokens(width, height)
        asked, calls = est.to_ask, 1 + self.rounds
        est.calls_max = asked * calls
        est.input_tokens = image_total * calls + asked * text_tokens
        est.image_tokens_per_call = image_total / asked if asked else 0.0
        est.output_bound = est.calls_max * self.max_tokens
        stats = self.cache.usage_stats(
            self.source_name, self.model) if self.cache is not None else {}
        if stats.get('entries'):
            est.calls_expected = asked * stats['requests'] / stats['entries']
            est.output_observed = (
                est.calls_expected * stats['completion_tokens'] /
                stats['requests'])
        est.cost_bound = self.price(est.input_tokens, est.output_bound)
        if est.output_observed is not None and est.cost_bound is not None:
            est.cost_expected = self.price(
                est.input_tokens * est.calls_expected / max(1, est.calls_max),
                est.output_observed)
        if self.budget.active:
            est.notes.append(f'budget: {self.budget.state()}')
        if self.batch:
            est.notes.append('Batch API mode (batch prices apply)')
        if est.unreadable:
            est.notes.append(f'{est.unreadable} images unreadable')
        return est


@VOCABULARIES.register_module()
class OpenAIVocabulary(BatchAPI, CostEstimate, MLLMVocabulary):
    """Chat-completions MLLM through the ``openai`` client.

    Args:
        model: model name on the server (``'gpt-4o'``, ``'llava-1.5-7b'``).
        base_url: server URL; None uses ``$OPENAI_BASE_URL`` or OpenAI.
        api_key_env: environment variable holding the key; the key is read
            from the environment only and never logged or stored. Local
            servers without a key get a placeholder.
        max_image_side: long side of the image sent, in pixels.
        timeout: seconds per request; max_retries: retries of timeouts,
            429 (honouring Retry-After), 5xx and connection errors, with the
            client's exponential back-off.
        json_mode: ask for ``response_format=json_object``; servers that
            refuse it are asked again without, and remembered.
        concurrency: requests in flight during prefetch.
        max_consecutive_failures: after this many images in a row fail to
            reach the server at all, stop the run (a dead server or bad URL).
        prices: USD per million tokens, ``dict(input=2.5, output=10.0)``,
            overriding the price table's entry for ``model``.
        price_file: a price table shaped like ``vocabulary/prices.json``
            (the dated table shipped with OV-EVA when None).
        detail: ``'low'``, ``'high'`` or ``'auto'`` (the server decides;
            estimated as high): how finely the model looks at the image,
            and what it costs (part of the cache key unless ``'auto'``).
        max_cost: hard budget in dollars for this run (online or batch
            prices); once the next request would pass it, no new request
            starts, requests in flight finish, and the remaining images get
            class names only, recorded as skipped (a rerun with a larger
            budget continues). Needs a price for ``model``.
        max_total_tokens: the same cap in tokens (input + output).
        batch: fetch through OpenAI's Batch API (half price, results within
            24 h): the first prompt of every uncached image in one batch,
            then one batch per stage-2 round; resumable (batch ids live in
            the vocabulary cache). Only the prefetch asks in this mode.
        batch_poll_seconds: pause between two looks at a running batch.
        batch_retries: times a failed batch line is asked again (in the
            next batch) before the image is recorded as failed.
        batch_max_bytes: a step's requests are split into batch files of
            at most this size (OpenAI takes files up to 200 MB and 50,000
            requests).
    """
    source_name = 'openai'

    def __init__(self,
                 model: str = 'gpt-4o',
                 base_url: Optional[str] = None,
                 api_key_env: str = 'OPENAI_API_KEY',
                 max_image_side: int = 768,
                 timeout: float = 60.0,
                 max_retries: int = 4,
                 temperature: float = 0.0,
                 max_tokens: int = 1024,
                 json_mode: bool = True,
                 concurrency: int = 16,
                 max_consecutive_failures: int = 8,
                 prices: Optional[Dict[str, float]] = None,
                 price_file: Optional[str] = None,
                 detail: str = 'auto',
                 max_cost: Optional[float] = None,
                 max_total_tokens: Optional[int] = None,
                 batch: bool = False,
                 batch_poll_seconds: float = 30.0,
                 batch_retries: int = 1,
                 batch_max_bytes: int = 180_000_000,
                 **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.base_url = base_url or os.environ.get('OPENAI_BASE_URL') or None
        self.api_key_env = api_key_env
        if not os.environ.get(api_key_env) and self.base_url is None:
            raise ValueError(
                f'OpenAIVocabulary needs an API key: set the environment '
                f'variable {api_key_env} (keys are never read from configs), '
                'or set base_url to a local OpenAI-compatible server')
        self.max_image_side, self.timeout = max_image_side, timeout
        self.max_retries, self.temperature = max_retries, temperature
        self.max_tokens, self.json_mode = max_tokens, json_mode
        self.max_concurrency = concurrency
        self.max_consecutive_failures = max_consecutive_failures
        if detail not in DETAILS:
            raise ValueError(f'detail must be one of {", ".join(DETAILS)}, '
                             f'not {detail!r}')
        self.detail = detail
        self.price_table = PriceTable(price_file)
        entry = self.price_table.model(model)
        self.prices = dict(entry or {}, **(prices or {}))
        if not {'input', 'output'} <= set(self.prices):
            self.prices = None
        self.budget = Budget(max_cost, max_total_tokens)
        if max_cost is not None and self.prices is None:
            raise ValueError(
                f'max_cost needs the price of {model!r}, which the price '
                f'table ({self.price_table.path}) lacks: set prices='
                'dict(input=..., output=...) (USD per 1M tokens), or use '
                'max_total_tokens')
        self.batch = bool(batch)
        self.batch_poll_seconds = batch_poll_seconds
        self.batch_retries = batch_retries
        self.batch_max_bytes = batch_max_bytes
        self._counter: Optional[TextCounter] = None
        self._cache_mean_output: Optional[float] = None
        self._client = None
        self._client_pid = None
        self._client_lock = threading.Lock()
        self._unreachable = 0

    @property
    def model_id(self) -> str:
        return self.model

    def params(self) -> Dict:
        params = dict(super().params(), max_image_side=self.max_image_side)
        if self.detail != 'auto':  # 'auto' is what was always sent
            params['detail'] = self.detail
        return params

    def _key(self) -> str:
        return os.environ.get(self.api_key_env) or 'no-key'

    def redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env)
        return text.replace(key, '***') if key else text

    @property
    def client(self):
        """One client per process (forked workers must not share sockets)."""
        with self._client_lock:
            if self._client is None or self._client_pid != os.getpid():
                openai = require('openai', 'OpenAIVocabulary')
                self._client = openai.OpenAI(
                    api_key=self._key(),
                    base_url=self.base_url,
                    timeout=self.timeout,
                    max_retries=self.max_retries)
                self._client_pid = os.getpid()
            return self._client

    def body(self, rgb: np.ndarray, prompt: str) -> Dict:
        """The chat-completions request for one image and prompt."""
        image_url = dict(url=encode_image(rgb, self.max_image_side))
        if self.detail != 'auto':
            image_url['detail'] = self.detail
        messages = [
            dict(role='system', content=SYSTEM),
            dict(
                role='user',
                content=[
                    dict(type='text', text=prompt),
                    dict(type='image_url', image_url=image_url)
                ])
        ]
        return dict(
            model=self.model,
            messages=messages,
            temperature=self.temperature,
            max_tokens=self.max_tokens)

    @property
    def counter(self) -> TextCounter:
        if self._counter is None:
            self._counter = TextCounter(self.model)
        return self._counter

    def image_tokens(self, width: int, height: int) -> int:
        """Input tokens of an image of this size, as this source sends it."""
        prices = self.prices or {}
        return image_tokens(*sent_size(width, height, self.max_image_side),
                            self.detail, int(prices.get('image_base', 85)),
                            int(prices.get('image_tile', 170)))

    def request_bound(self, shape: Sequence[int],
                      prompt: str) -> Tuple[int, int]:
        """(input tokens estimated, output tokens at most) of one request
        about an image of ``shape`` (H, W, ...)."""
        return (self.counter.chat(SYSTEM, prompt) +
                self.image_tokens(shape[1], shape[0]), self.max_tokens)

    def _reserve(self, shape, prompt, batch=False):
        """Hold this request's expected cost in the budget (see
        ``pricing.Budget``), or raise ``BudgetExhausted``."""
        if not self.budget.active:
            return None
        tokens_in, tokens_out = self.request_bound(shape, prompt)
        mean = self.budget.mean_output()
        if mean is None and self._cache_mean_output is None:
            stats = self.cache.usage_stats(
                self.source_name,
                self.model) if self.cache is not None else {}
            self._cache_mean_output = (
                stats['completion_tokens'] /
                stats['requests'] if stats.get('requests') else -1)
        if mean is None and self._cache_mean_output >= 0:
            mean = self._cache_mean_output
        if mean is not None:
            tokens_out = min(tokens_out, math.ceil(mean))
        expected_in = math.ceil(tokens_in * self.budget.input_ratio())
        return self.budget.reserve(
            self.price(expected_in, tokens_out, batch) or 0.0,
            expected_in + tokens_out,
            wait=not batch,
            estimated_input=tokens_in)

    def price(self,
              tokens_in: float,
              tokens_out: float,
              batch: bool = False) -> Optional[float]:
        """Dollars for these tokens (None: no price for the model)."""
        if not self.prices:
            return None
        cost = (tokens_in * self.prices['input'] +
                tokens_out * self.prices['output']) / 1e6
        return cost * self.price_table.batch_discount if batch else cost

    def _settle(self, held, response, batch=False) -> None:
        """Replace the held expectation by the server's bill; an answer
        without usage figures is charged the expectation."""
        if held is None:
            return
        used = getattr(response, 'usage', None)
        tokens_in = int(getattr(used, 'prompt_tokens', 0) or 0)
        tokens_out = int(getattr(used, 'completion_tokens', 0) or 0)
        if response is not None and not tokens_in + tokens_out:
            self.budget.settle(held, held[0], held[1], billed=True)
            return
        self.budget.settle(
            held,
            self.price(tokens_in, tokens_out, batch) or 0.0,
            tokens_in + tokens_out,
            tokens_out if used is not None else None,
            input_tokens=tokens_in)

    def ask(self, rgb, prompt, usage):
        openai = require('openai', 'OpenAIVocabulary')
        kwargs = self.body(rgb, prompt)
        held = self._reserve(rgb.shape, prompt)  # BudgetExhausted: no room
        response = None
        try:
            try:
                response = self.client.chat.completions.create(
                    **kwargs, **self._format())
            except openai.BadRequestError as error:
                if not self.json_mode or 'response_format' not in str(error):
                    raise
                self.json_mode = False  # server lacks JSON mode
                response = self.client.chat.completions.create(**kwargs)
        except openai.AuthenticationError as error:
            raise FatalVocabularyError(
                f'the server rejected the API key ({error.status_code}); '
                f'check the environment variable {self.api_key_env}') from None
        except (openai.APIConnectionError, openai.APITimeoutError):
            self._note_unreachable()
            raise
        finally:
            self._settle(held, response)
        self._unreachable = 0
        self._count(response, usage)
        if not response.choices:
            raise AnswerError('answer with no choices')
        message = response.choices[0].message
        # redacted before anything cuts it short: a cut key is not replaced
        refusal = self.redact(getattr(message, 'refusal', None) or '')
        if refusal:
            raise AnswerError(f'model refused: {refusal[:200]}')
        if not message.content:
            raise AnswerError('empty answer')
        return self.redact(message.content)

    def _format(self) -> Dict:
        return dict(response_format=dict(
            type='json_object')) if self.json_mode else {}

    def _note_unreachable(self) -> None:
        with self._client_lock:
            self._unreachable += 1
            dead = self._unreachable >= self.max_consecutive_failures
        if dead:
            where = self.base_url or 'the OpenAI API'
            raise FatalVocabularyError(
                f'{self._unreachable} requests in a row could not reach '
                f'{where} (connection refused or timed out after retries). '
                'Start the server or fix vocabulary.base_url / '
                'OPENAI_BASE_URL; finished entries are kept in the cache.')

    @staticmethod
    def _count(response, usage: Dict[str, int]) -> None:
        used = getattr(response, 'usage', None)
        usage['requests'] = usage.get('requests', 0) + 1
        for ours, theirs in (('prompt_tokens', 'prompt_tokens'),
                             ('completion_tokens', 'completion_tokens')):
            usage[ours] = usage.get(ours, 0) + int(
                getattr(used, theirs, 0) or 0)

    def cost(self, usage: Dict[str, int]) -> Optional[float]:
        return self.price(
            usage.get('prompt_tokens', 0), usage.get('completion_tokens', 0),
            self.batch)

    def fetch(self, image, classes) -> FetchResult:
        if not self.batch:
            return super().fetch(image, classes)
        # batch mode asks nothing online (that would cost twice the price):
        # what the batch run did not fetch falls back to the class names
        try:
            cached = self.lookup(image, classes)[3]
        except VocabularyFailure as error:
            return self._failed(None, None, str(error))
        if cached is not None:
            return FetchResult('hit', cached)
        return FetchResult(
            'failed',
            error='batch mode: no vocabulary in the cache (run the prefetch '
            'or tools/build_vocabulary.py --batch)')


def image_size(image: ImageInput) -> Tuple[int, int]:
    """(width, height) of an image array or file (its header only)."""
    if isinstance(image, np.ndarray):
        return image.shape[1], image.shape[0]
    from PIL import Image
    try:
        with Image.open(Path(image)) as opened:
            return opened.size
    except Exception as error:
        raise ValueError(f'cannot read image {str(image)!r}: {error}')
