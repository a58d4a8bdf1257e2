"""Vocabularies from GPT-4o or any OpenAI-compatible server (vLLM, Ollama,
LM Studio, llama.cpp serving LLaVA, Janus-Pro, Qwen-VL, ...)."""
import base64
import os
import threading
from typing import Dict, Optional

import cv2
import numpy as np

from ..registry import VOCABULARIES
from .base import FatalVocabularyError, MLLMVocabulary, shrink
from .prompts import SYSTEM
from .terms import AnswerError


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


@VOCABULARIES.register_module()
class OpenAIVocabulary(MLLMVocabulary):
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
            for the cost estimate in the prefetch summary.
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
        self.prices = prices
        self._client = None
        self._client_pid = None
        self._client_lock = threading.Lock()
        self._unreachable = 0

    @property
    def model_id(self) -> str:
        return self.model

    def params(self) -> Dict:
        return dict(super().params(), max_image_side=self.max_image_side)

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
                import openai
                self._client = openai.OpenAI(
                    api_key=self._key(),
                    base_url=self.base_url,
                    timeout=self.timeout,
                    max_retries=self.max_retries)
                self._client_pid = os.getpid()
            return self._client

    def ask(self, rgb, prompt, usage):
        import openai
        messages = [
            dict(role='system', content=SYSTEM),
            dict(
                role='user',
                content=[
                    dict(type='text', text=prompt),
                    dict(
                        type='image_url',
                        image_url=dict(
                            url=encode_image(rgb, self.max_image_side)))
                ])
        ]
        kwargs = dict(
            model=self.model,
            messages=messages,
            temperature=self.temperature,
            max_tokens=self.max_tokens)
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
        if not self.prices:
            return None
        return (usage.get('prompt_tokens', 0) * self.prices.get('input', 0) +
                usage.get('completion_tokens', 0) *
                self.prices.get('output', 0)) / 1e6
