"""Filling the vocabulary cache for many images with bounded concurrency
(or through the Batch API), after printing what it is expected to cost."""
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

from mmengine.utils import ProgressBar

from .base import Classes, FatalVocabularyError, ImageInput


@dataclass
class PrefetchSummary:
    images: int = 0
    hits: int = 0
    new: int = 0
    failed: int = 0
    skipped: int = 0  # the budget was reached: class names only
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    seconds: float = 0.0
    cost: Optional[float] = None
    errors: List[str] = field(default_factory=list)  # the first few
    estimate: Optional[Dict] = None  # Estimate.to_dict() before the run
    budget: Optional[str] = None  # what the budget allowed, when set
    mode: str = 'online'  # or 'batch' (Batch API prices)

    def add(self, result) -> None:
        self.images += 1
        if result.status == 'hit':
            self.hits += 1
        elif result.status == 'new':
            self.new += 1
        elif result.status == 'skipped':
            self.skipped += 1
        else:
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(result.error or 'unknown error')
        self.prompt_tokens += result.usage.get('prompt_tokens', 0)
        self.completion_tokens += result.usage.get('completion_tokens', 0)
        self.requests += result.usage.get('requests', 0)

    def merge(self, other: 'PrefetchSummary') -> 'PrefetchSummary':
        out = PrefetchSummary()
        for name in ('images', 'hits', 'new', 'failed', 'skipped',
                     'prompt_tokens', 'completion_tokens', 'requests'):
            setattr(out, name, getattr(self, name) + getattr(other, name))
        out.seconds = max(self.seconds, other.seconds)
        costs = [c for c in (self.cost, other.cost) if c is not None]
        out.cost = sum(costs) if costs else None
        out.errors = (self.errors + other.errors)[:5]
        out.estimate = self.estimate or other.estimate
        out.mode = self.mode
        out.budget = '; '.join(
            b for b in (self.budget, other.budget) if b) or None
        return out

    def format(self) -> str:
        text = (f'vocabulary prefetch: {self.images} images, {self.hits} '
                f'cache hits, {self.new} new, {self.failed} failed '
                f'(class names only)')
        if self.skipped or self.budget:
            text += f', {self.skipped} skipped by the budget'
        text += (f'; {self.requests} requests, tokens in '
                 f'{self.prompt_tokens}, out {self.completion_tokens} (server '
                 'reported)')
        if self.estimate:
            text += (f' vs estimated in ~{self.estimate["input_tokens"]}, '
                     f'out <= {self.estimate["output_bound"]} for '
                     f'<= {self.estimate["calls_max"]} calls')
        text += f'; {self.seconds:.1f} s'
        if self.cost is not None:
            text += f'; cost ${self.cost:.4f} at the price table\'s prices'
            bound = (self.estimate or {}).get('cost_bound')
            if bound is not None:
                if self.mode == 'batch':
                    bound *= self.estimate['batch_discount']
                text += f' (estimated <= ${bound:.4f} {self.mode})'
        if self.budget:
            text += f'; budget: {self.budget}'
            if self.skipped:
                text += (f'; BUDGET REACHED: {self.skipped} images got class '
                         'names only (recorded as skipped; rerun with a '
                         'larger budget to continue)')
        if self.errors:
            text += '; first failures: ' + ' | '.join(e[:160]
                                                      for e in self.errors)
        return text

    def to_dict(self) -> Dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def prefetch(source,
             images: Sequence[ImageInput],
             classes: Classes,
             concurrency: Optional[int] = None,
             progress: bool = True,
             report: Callable[[str], None] = print) -> PrefetchSummary:
    """``source.fetch`` every image, at most ``concurrency`` at a time
    (default: the source's own limit), or through the Batch API when the
    source is in batch mode. Sources that can (``OpenAIVocabulary``) first
    ``report`` their estimate of calls, tokens and dollars, before any
    request. A fatal error (bad key, dead server) stops the run; every
    finished entry is already in the cache."""
    estimate = getattr(source, 'estimate', None)
    estimate = estimate(images, classes) if estimate is not None else None
    if estimate is not None:
        report(estimate.format())
    if getattr(source, 'batch', False):
        try:
            summary = source.prefetch_batch(images, classes, progress, report)
            summary.mode = 'batch'
        except FatalVocabularyError as error:
            raise FatalVocabularyError(
                f'{error} (finished entries are kept in the cache)') from None
    else:
        summary = _prefetch(source, images, classes, concurrency, progress)
    summary.estimate = estimate.to_dict() if estimate is not None else None
    budget = getattr(source, 'budget', None)
    if budget is not None and budget.active:
        summary.budget = budget.state()
    return summary


def _prefetch(source, images, classes, concurrency, progress):
    concurrency = max(1, concurrency or source.max_concurrency)
    summary = PrefetchSummary()
    bar = ProgressBar(len(images)) if progress and images else None
    start = time.monotonic()
    pending = list(images)[::-1]
    with ThreadPoolExecutor(concurrency, 'vocabulary') as pool:
        running = set()
        try:
            while pending or running:
                while pending and len(running) < concurrency:
                    running.add(
                        pool.submit(source.fetch, pending.pop(), classes))
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    summary.add(future.result())
                    if bar is not None:
                        bar.update()
        except FatalVocabularyError as error:
            for future in running:
                future.cancel()
            raise FatalVocabularyError(
                f'{error} (stopped after {summary.images} images: '
                f'{summary.new} new entries saved)') from None
    summary.seconds = time.monotonic() - start
    cost = getattr(source, 'cost', None)
    if cost is not None:
        summary.cost = cost(summary.to_dict())
    if bar is not None:
        print()  # ProgressBar leaves the cursor on its line
    return summary
