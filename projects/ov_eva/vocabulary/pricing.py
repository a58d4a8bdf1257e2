"""What an MLLM run will cost, and a hard cap on what it may cost.

* ``PriceTable``: USD per million tokens and the image-token rule of each
  model, from the dated ``prices.json`` shipped here (or a file of the same
  form given as ``price_file``), optionally overridden per source
  (``prices=dict(input=..., output=...)``). Batch requests cost
  ``batch_discount`` (0.5) of the online price.
* ``image_tokens``: OpenAI's published rule for GPT-4o-class models (see
  ``prices.json`` for the source): ``detail='low'`` costs the base tokens;
  ``'high'`` (and ``'auto'``, counted as high: an upper bound) fits the image
  in 2048x2048, shrinks its shortest side to 768 and pays per 512 px tile.
* ``TextCounter``: the model's tokenizer through ``tiktoken`` when it is
  installed *and* its encoding file is already cached (never a download),
  else about 4 characters a token; ``method`` says which.
* ``Budget``: ``max_cost`` dollars and/or ``max_total_tokens`` tokens. A
  request starts when what is spent, what the requests in flight are
  expected to cost and this request's own expected cost fit under the cap
  (input: the estimate, scaled by what the server reported against the
  estimate for this run's finished requests; output: their mean, else the
  cache's mean, else ``max_tokens``). When it does not fit but requests
  are in flight, it waits for them (their expectation is then replaced by
  the reported bill);
  when nothing is in flight it is refused (``BudgetExhausted``), except the
  run's first request while nothing is spent (its bill is unknown). Until
  the server has billed one request, one runs at a time.
  So a run stops within one request of the cap: short of it by less than
  one request, past it only by what answers bill beyond the expectation.
"""
import hashlib
import json
import math
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

PRICE_FILE = Path(__file__).with_name('prices.json')
TIKTOKEN_URL = 'https://openaipublic.blob.core.windows.net/encodings/'
MESSAGE_OVERHEAD = 3  # tokens per chat message, plus 3 priming the reply


class BudgetExhausted(RuntimeError):
    """No new request may start: the run's budget is spent."""


class PriceTable:
    """Prices and image-token rules of the models in a ``prices.json``."""

    def __init__(self, path: Union[None, str, Path] = None):
        self.path = Path(path) if path else PRICE_FILE
        try:
            data = json.loads(self.path.read_text())
            self.models: Dict[str, Dict] = dict(data['models'])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f'price_file {str(self.path)!r} is not a price table '
                f'({error}); give a JSON file shaped like '
                f'{PRICE_FILE.name} shipped with OV-EVA') from None
        self.date = str(data.get('date', 'undated'))
        self.batch_discount = float(data.get('batch_discount', 0.5))

    def model(self, name: str) -> Optional[Dict]:
        """The entry of ``name``, or of the longest model name it starts
        with (``gpt-4o-2024-08-06`` -> ``gpt-4o``); None when unknown."""
        if name in self.models:
            return self.models[name]
        known = [m for m in self.models if name.startswith(m + '-')]
        return self.models[max(known, key=len)] if known else None


def image_tokens(width: int,
                 height: int,
                 detail: str = 'auto',
                 base: int = 85,
                 tile: int = 170) -> int:
    """Input tokens of one image of ``width`` x ``height`` pixels as sent."""
    if detail == 'low':
        return base
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return base + tile * math.ceil(round(width) / 512) * math.ceil(
        round(height) / 512)


def sent_size(width: int, height: int,
              max_side: Optional[int]) -> Tuple[int, int]:
    """The size ``base.shrink`` gives an image (long side <= max_side)."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _encoding_name(model: str) -> str:
    if model.startswith(('gpt-4o', 'gpt-4.1', 'gpt-5', 'o1', 'o3', 'o4')):
        return 'o200k_base'
    return 'cl100k_base'


def tiktoken_cached(name: str) -> bool:
    """Whether tiktoken would load ``name`` from its cache (no download)."""
    cache = os.environ.get('TIKTOKEN_CACHE_DIR',
                           os.environ.get('DATA_GYM_CACHE_DIR'))
    if cache == '':
        return False  # caching disabled: tiktoken would download
    cache = cache or os.path.join(tempfile.gettempdir(), 'data-gym-cache')
    url = f'{TIKTOKEN_URL}{name}.tiktoken'
    return os.path.isfile(
        os.path.join(cache,
                     hashlib.sha1(url.encode()).hexdigest()))


class TextCounter:
    """Counts text tokens for ``model``; ``method`` names how."""

    def __init__(self, model: str):
        self._encoding = None
        name = _encoding_name(model)
        try:
            import tiktoken
        except ImportError:
            reason = 'tiktoken not installed'
        else:
            if tiktoken_cached(name):
                try:
                    self._encoding = tiktoken.get_encoding(name)
                    reason = ''
                except Exception as error:  # a damaged cached file
                    reason = f'tiktoken {name}: {type(error).__name__}'
            else:
                reason = f'tiktoken {name} file not cached'
        self.method = (f'tiktoken {name}' if self._encoding is not None else
                       f'approx. 4 characters/token ({reason})')

    def __call__(self, text: str) -> int:
        if self._encoding is not None:
            return len(self._encoding.encode(text))
        return math.ceil(len(text) / 4)

    def chat(self, *texts: str) -> int:
        """Tokens of a chat whose messages hold ``texts``."""
        return sum(self(t) + MESSAGE_OVERHEAD for t in texts) + 3


class Budget:
    """A run's spending cap (thread-safe); None caps nothing."""

    def __init__(self,
                 max_cost: Optional[float] = None,
                 max_total_tokens: Optional[int] = None):
        for name, value in (('max_cost', max_cost), ('max_total_tokens',
                                                     max_total_tokens)):
            if value is not None and value < 0:
                raise ValueError(f'{name} must be >= 0, not {value}')
        self.max_cost, self.max_total_tokens = max_cost, max_total_tokens
        self.spent_cost = 0.0
        self.spent_tokens = 0
        self._held_cost = 0.0
        self._held_tokens = 0
        self.refused = 0  # requests not started for the budget
        self.settled = 0  # requests finished with a reported bill
        self.settled_output = 0  # their output tokens
        self._billed = False  # a request finished with a bill
        self._estimated_input = 0  # of those, input estimated
        self._reported_input = 0  # and input reported
        self._in_flight = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def share(self, parts: int) -> None:
        """Keep 1/``parts`` of the caps (each of ``parts`` processes that
        fetch a shard of the images holds one share)."""
        with self._lock:
            if self.max_cost is not None:
                self.max_cost /= parts
            if self.max_total_tokens is not None:
                self.max_total_tokens //= parts

    @property
    def active(self) -> bool:
        return self.max_cost is not None or self.max_total_tokens is not None

    def _over(self, cost: float, tokens: int) -> List[str]:
        over = []
        if self.max_cost is not None and (self.spent_cost + self._held_cost +
                                          cost > self.max_cost):
            over.append(f'max_cost ${self.max_cost:g}')
        if self.max_total_tokens is not None and (self.spent_tokens +
                                                  self._held_tokens + tokens
                                                  > self.max_total_tokens):
            over.append(f'max_total_tokens {self.max_total_tokens}')
        return over

    def _reached(self) -> bool:
        return (self.max_cost is not None and self.spent_cost >= self.max_cost
                ) or (self.max_total_tokens is not None
                      and self.spent_tokens >= self.max_total_tokens)

    def reserve(self,
                cost: float,
                tokens: int,
                wait: bool = True,
                estimated_input: int = 0) -> Tuple[float, int, int]:
        """Hold the expected bill of one request, or raise
        ``BudgetExhausted``; ``wait``: while requests are in flight, wait
        for them to settle instead of refusing (not in batch mode, which
        holds a whole batch before sending it)."""
        with self._changed:
            while True:
                over = self._over(cost, tokens)
                first = (not self._billed and not self._in_flight
                         and not self._reached())
                if wait and not self._billed and self._in_flight:
                    # one request at a time until the server has billed
                    # one: what it bills calibrates every expectation
                    self._changed.wait()
                    continue
                if not over or first:
                    self._held_cost += cost
                    self._held_tokens += tokens
                    self._in_flight += 1
                    return cost, tokens, estimated_input
                if not wait or not self._in_flight:
                    self.refused += 1
                    raise BudgetExhausted(
                        f'budget reached ({" and ".join(over)}; spent '
                        f'${self.spent_cost:.4f}, {self.spent_tokens} '
                        'tokens)')
                self._changed.wait()

    def settle(self,
               held: Tuple[float, int, int],
               cost: float,
               tokens: int,
               output: Optional[int] = None,
               input_tokens: int = 0,
               billed: bool = False) -> None:
        """Replace a held expectation by what the server reported
        (``output``, ``input_tokens``: its token counts; ``output`` None
        when they are unknown; ``billed``: it was answered all the
        same)."""
        with self._changed:
            self._held_cost -= held[0]
            self._held_tokens -= held[1]
            self._in_flight -= 1
            self.spent_cost += cost
            self.spent_tokens += tokens
            self._billed = self._billed or billed or output is not None
            if output is not None:
                self.settled += 1
                self.settled_output += output
                if held[2]:
                    self._estimated_input += held[2]
                    self._reported_input += input_tokens
            self._changed.notify_all()

    def input_ratio(self) -> float:
        """Input tokens the server reported over those estimated, for
        this run's finished requests (1 before the first)."""
        with self._lock:
            return (self._reported_input /
                    self._estimated_input if self._estimated_input else 1.0)

    def mean_output(self) -> Optional[float]:
        """Mean output tokens of this run's finished requests."""
        with self._lock:
            return (self.settled_output /
                    self.settled if self.settled else None)

    def state(self) -> str:
        caps = []
        if self.max_cost is not None:
            caps.append(f'${self.spent_cost:.4f} of max_cost '
                        f'${self.max_cost:g}')
        if self.max_total_tokens is not None:
            caps.append(f'{self.spent_tokens} of max_total_tokens '
                        f'{self.max_total_tokens}')
        return ', '.join(caps)


@dataclass
class Estimate:
    """What a run over some images is expected to ask and cost."""
    model: str = ''
    images: int = 0
    cached: int = 0
    unreadable: int = 0
    calls_max: int = 0  # perceive + every stage-2 round
    calls_expected: Optional[float] = None  # from the cache's mean
    input_tokens: int = 0  # at calls_max
    image_tokens_per_call: float = 0.0  # mean over the images to ask
    output_bound: int = 0  # calls_max x max_tokens
    output_observed: Optional[float] = None  # cache's mean x calls
    cost_bound: Optional[float] = None  # online, output at the bound
    cost_expected: Optional[float] = None  # online, observed output
    batch_discount: float = 0.5
    detail: str = 'auto'
    max_image_side: Optional[int] = None
    text_method: str = ''
    price_date: str = ''
    notes: List[str] = field(default_factory=list)

    @property
    def to_ask(self) -> int:
        return self.images - self.cached - self.unreadable

    def format(self) -> str:
        text = (f'vocabulary estimate ({self.model}): {self.images} images, '
                f'{self.cached} cached, {self.to_ask} to ask; calls <= '
                f'{self.calls_max}')
        if self.calls_expected is not None:
            text += f' (~{self.calls_expected:.0f} at the cache\'s mean)'
        text += (f'; input ~{self.input_tokens} tokens ('
                 f'{self.image_tokens_per_call:.0f} image tokens/call at '
                 f'detail={self.detail}, long side <= '
                 f'{self.max_image_side or "original"} px; text by '
                 f'{self.text_method}); output <= {self.output_bound} tokens')
        if self.output_observed is not None:
            text += f' (~{self.output_observed:.0f} at the cache\'s mean)'
        if self.cost_bound is None:
            text += '; no price for this model (local server?)'
        else:
            half = self.batch_discount
            text += (f'; cost <= ${self.cost_bound:.4f} online, <= '
                     f'${self.cost_bound * half:.4f} batch')
            if self.cost_expected is not None:
                text += (f' (~${self.cost_expected:.4f} / '
                         f'${self.cost_expected * half:.4f} at the cache\'s '
                         'mean output)')
            text += f'; prices of {self.price_date}'
        if self.notes:
            text += '; ' + '; '.join(self.notes)
        return text

    def to_dict(self) -> Dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}
