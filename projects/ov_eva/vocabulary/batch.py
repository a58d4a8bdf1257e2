"""OpenAI's Batch API for the MLLM vocabulary: half the online price,
results within 24 hours.

The method's conversation (``MLLMVocabulary.dialogue``) is driven for all
images at once: the first prompt of every uncached image goes into one
batch (split into files under ``batch_max_bytes``), then each stage-2 round
of all images into a further batch. Everything that must survive a killed
run lives in the vocabulary cache: each image's answers so far
(``dialogues``) and every batch with its requests and state (``batches``,
written before ``batches.create`` as a placeholder naming the uploaded
file), so a rerun polls the batches it left running instead of paying
twice. Failed lines and failed or expired batches are asked again in the
next batch, ``batch_retries`` times, then recorded like the online path's
failures. Mixed into ``OpenAIVocabulary``, whose client, budget, prices and
request bodies it uses.
"""
import json
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..optional import require
from .base import (Classes, FatalVocabularyError, FetchResult, ImageInput,
                   VocabularyFailure, load_rgb)
from .cache import VocabularyEntry
from .pricing import BudgetExhausted
from .terms import AnswerError

BATCH_DONE = ('completed', 'failed', 'expired', 'cancelled')
BATCH_MAX_REQUESTS = 50000  # OpenAI's limit per batch


class BatchAPI:
    """``prefetch_batch`` and its helpers (see the module docstring)."""

    def prefetch_batch(self,
                       images: Sequence[ImageInput],
                       classes: Classes,
                       progress: bool = True,
                       report: Callable[[str], None] = print):
        """Fetch every uncached image through the Batch API: one batch per
        step of the conversation, for all images at that step. Returns a
        ``PrefetchSummary``; every step's answers are in the cache as soon
        as they are read, so a killed run resumes where it was."""
        if self.cache is None:
            raise ValueError('batch mode keeps its state in the vocabulary '
                             'cache: give a cache_file')
        start = time.monotonic()
        order, todo = self._plan(images, classes)
        self._results: Dict[str, FetchResult] = {}
        self._held: Dict[str, Tuple[float, int, int]] = {}
        self._resume(todo, classes, progress, report)
        while True:
            prompts = self._advance(todo, classes)
            if not prompts:
                break
            submitted = self._submit_step(prompts, todo)
            if not submitted:
                break
            for batch_id, ids in submitted:
                report(f'batch {batch_id}: {len(ids)} requests submitted')
            for batch_id, ids in submitted:
                self._collect(batch_id, ids, todo, classes, progress)
        return self._summary(order, start)

    def _plan(self, images: Sequence[ImageInput], classes: Classes):
        """Per image its key, or its ``FetchResult`` when cached or
        unreadable; and the state of each image to ask (its answers so
        far, from a killed run's cache rows)."""
        order: List = []
        todo: Dict[str, Dict] = {}
        for image in images:
            try:
                key, image_hash, class_hash, cached = self.lookup(
                    image, classes)
            except VocabularyFailure as error:
                order.append(self._failed(None, None, str(error)))
                continue
            if cached is not None:
                order.append(FetchResult('hit', cached))
                continue
            order.append(key)
            if key not in todo:
                state = self.cache.dialogue(key) or dict(
                    answers=[], usage={}, failures=0)
                todo[key] = dict(
                    state,
                    image=image,
                    image_hash=image_hash,
                    class_hash=class_hash,
                    new={})
        return order, todo

    def _resume(self, todo: Dict[str, Dict], classes: Classes,
                progress: bool, report: Callable[[str], None]) -> None:
        """A killed run's batches first: poll them, never submit them
        again."""
        for batch in self.cache.batches(open_only=True):
            if batch['model'] != self.model or not any(
                    r.rsplit(':', 1)[0] in todo for r in batch['requests']):
                continue
            if batch['id'].startswith('pending:'):
                batch['id'] = self._find_pending(batch)
                if batch['id'] is None:
                    continue
            report(f'resuming batch {batch["id"]} ({batch["state"]}, '
                   f'{len(batch["requests"])} requests)')
            self._collect(batch['id'], batch['requests'], todo, classes,
                          progress)

    def _submit_step(self, prompts: Dict, todo: Dict[str, Dict]) -> list:
        """One step's requests in batches under ``batch_max_bytes`` and
        the Batch API's request cap: [(batch id, its request ids)]."""
        lines, ids, size, submitted = [], [], 0, []
        for key, (custom_id, prompt) in prompts.items():
            line = self._request_line(key, custom_id, prompt, todo)
            if line is None:
                continue
            if lines and (size + len(line) >= self.batch_max_bytes
                          or len(lines) >= BATCH_MAX_REQUESTS):
                submitted.append((self._submit(lines, ids), ids))
                lines, ids, size = [], [], 0
            lines.append(line)
            ids.append(custom_id)
            size += len(line) + 1
        if lines:
            submitted.append((self._submit(lines, ids), ids))
        return submitted

    def _request_line(self, key: str, custom_id: str, prompt: str,
                      todo: Dict[str, Dict]) -> Optional[str]:
        """One request's JSON line, its cost held against the budget;
        None (and the image done) when the budget or the image says no."""
        state = todo[key]
        try:
            rgb = load_rgb(state['image'])
            self._held[custom_id] = self._reserve(
                rgb.shape, prompt, batch=True)
        except BudgetExhausted as error:
            self._done(
                key,
                todo,
                self._skipped(key, state['image_hash'], str(error),
                              state['new']),
                keep=True)
            return None
        except VocabularyFailure as error:
            self._done(key, todo,
                       self._failed(key, state['image_hash'], str(error)))
            return None
        return json.dumps(
            dict(
                custom_id=custom_id,
                method='POST',
                url='/v1/chat/completions',
                body=self.body(rgb, prompt)))

    def _summary(self, order: List, start: float):
        from .prefetch import PrefetchSummary
        summary = PrefetchSummary()
        counted = set()
        for item in order:
            if isinstance(item, str):
                result = self._results[item]
                if item in counted:  # the same image twice: bill it once
                    result = FetchResult(result.status, result.entry,
                                         result.error)
                counted.add(item)
                item = result
            summary.add(item)
        summary.seconds = time.monotonic() - start
        summary.cost = self.cost(summary.to_dict())
        return summary

    def _advance(self, todo: Dict[str, Dict],
                 classes: Classes) -> Dict[str, Tuple[str, str]]:
        """Replay each image's answers through ``dialogue``: its next
        prompt, or its finished entry (stored, and the image done)."""
        prompts = {}
        for key, state in list(todo.items()):
            talk = self.dialogue(classes)
            try:
                prompt = next(talk)
                for answer in state['answers']:
                    prompt = talk.send(answer)
            except StopIteration as finished:
                terms, raw = finished.value
                entry = VocabularyEntry(
                    key=key,
                    image=state['image_hash'],
                    source=self.source_name,
                    model=self.model_id,
                    prompt_version=self.prompt_version,
                    classes=state['class_hash'],
                    params=self.params(),
                    terms=terms,
                    raw_answers=list(raw),
                    usage=dict(state['usage'], batch=1))
                self.cache.put(entry)
                self._done(key, todo,
                           FetchResult('new', entry, usage=state['new']))
            except AnswerError as error:
                self._done(
                    key, todo,
                    self._failed(key, state['image_hash'],
                                 f'AnswerError: {error}', state['new']))
            else:
                prompts[key] = (f'{key}:{len(state["answers"])}', prompt)
        return prompts

    def _done(self, key, todo, result: FetchResult, keep=False) -> None:
        """The image is through this run; ``keep``: its answers so far stay
        for a rerun (skipped by the budget)."""
        self._results[key] = result
        todo.pop(key, None)
        if not keep:
            self.cache.drop_dialogue(key)

    def _api(self, what: str, call):
        """A Batch/Files API call; a rejected key or an unreachable server
        ends the run (the batch ids so far stay in the cache)."""
        openai = require('openai', 'the Batch API')
        try:
            return call()
        except openai.AuthenticationError as error:
            raise FatalVocabularyError(
                f'the server rejected the API key ({error.status_code}); '
                f'check the environment variable {self.api_key_env}') from None
        except openai.APIError as error:
            where = self.base_url or 'the OpenAI API'
            raise FatalVocabularyError(
                self.redact(f'Batch API {what} at {where} failed: '
                            f'{type(error).__name__}: {error}. Batches '
                            'already submitted are kept in the cache; rerun '
                            'to resume them.')) from None

    def _submit(self, lines: List[str], ids: List[str]) -> str:
        data = ('\n'.join(lines) + '\n').encode()
        upload = self._api(
            'upload', lambda: self.client.files.create(
                file=('ov_eva_batch.jsonl', data, 'application/jsonl'),
                purpose='batch'))
        # recorded before it is created: a run killed in between finds the
        # batch by its input file on the rerun (see _find_pending)
        pending = f'pending:{upload.id}'
        self.cache.add_batch(pending, self.model, 'creating', ids)
        batch = self._api(
            'create', lambda: self.client.batches.create(
                input_file_id=upload.id,
                endpoint='/v1/chat/completions',
                completion_window='24h',
                metadata=dict(source='ov-eva')))
        self.cache.rename_batch(pending, batch.id, batch.status)
        return batch.id

    def _find_pending(self, row: Dict) -> Optional[str]:
        """The batch a killed run may have created from its uploaded file
        (None: it never was; the placeholder is dropped)."""
        file_id = row['id'].split(':', 1)[1]
        try:
            found = next((b for b in self.client.batches.list()
                          if b.input_file_id == file_id), None)
        except Exception:  # no listing on this server: assume not created
            found = None
        if found is None:
            self.cache.drop_batch(row['id'])
            return None
        self.cache.rename_batch(row['id'], found.id, found.status)
        return found.id

    def _collect(self, batch_id: str, ids: List[str], todo: Dict[str, Dict],
                 classes: Classes, progress: bool) -> None:
        """Poll a batch to its end, then read its answers and errors."""
        from mmengine.utils import ProgressBar
        bar = ProgressBar(len(ids)) if progress and ids else None
        shown = 0
        while True:
            batch = self._api('poll',
                              lambda: self.client.batches.retrieve(batch_id))
            self.cache.set_batch_state(batch_id, batch.status)
            counts = getattr(batch, 'request_counts', None)
            finished = (counts.completed + counts.failed) if counts else 0
            if bar is not None and finished > shown:
                bar.update(min(finished, len(ids)) - shown)
                shown = min(finished, len(ids))
            if batch.status in BATCH_DONE:
                break
            time.sleep(self.batch_poll_seconds)
        if bar is not None:
            print()
        answered = set()
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = self._api(
                'download', lambda: self.client.files.content(file_id)).text
            for line in content.splitlines():
                if line.strip():
                    answered.add(self._read_line(line, todo))
        why = self.redact(f'batch {batch_id} {batch.status}' + (
            f': {batch.errors}' if getattr(batch, 'errors', None) else ''))
        for custom_id in ids:
            if custom_id not in answered:
                self._line_failed(custom_id, todo, f'{why}, no result')
        self.cache.set_batch_state(batch_id, 'done')

    def _read_line(self, line: str, todo: Dict[str, Dict]) -> Optional[str]:
        try:
            record = json.loads(line)
            custom_id = str(record['custom_id'])
        except (ValueError, KeyError, TypeError):
            return None
        response = record.get('response') or {}
        body = response.get('body') or {}
        if record.get('error') or response.get('status_code') != 200:
            error = record.get('error') or body.get('error') or {}
            message = error.get('message') if isinstance(error,
                                                         dict) else error
            self._line_failed(
                custom_id, todo, f'HTTP {response.get("status_code")}: '
                f'{message}')
            return custom_id
        usage = body.get('usage') or {}
        key, step = custom_id.rsplit(':', 1)
        state = todo.get(key)
        if state is None or int(step) != len(state['answers']):
            return custom_id  # already read (a resumed run)
        held = self._held.pop(custom_id, None)
        tokens_in = int(usage.get('prompt_tokens', 0) or 0)
        tokens_out = int(usage.get('completion_tokens', 0) or 0)
        if held is not None and not tokens_in + tokens_out:
            self.budget.settle(held, held[0], held[1], billed=True)
        elif held is not None:
            self.budget.settle(
                held,
                self.price(tokens_in, tokens_out, True) or 0.0,
                tokens_in + tokens_out,
                tokens_out,
                input_tokens=tokens_in)
        for bill in (state['usage'], state['new']):
            bill['requests'] = bill.get('requests', 0) + 1
            for name in ('prompt_tokens', 'completion_tokens'):
                bill[name] = bill.get(name, 0) + int(usage.get(name, 0) or 0)
        choices = body.get('choices') or [{}]
        message = choices[0].get('message') or {}
        refusal = self.redact(message.get('refusal') or '')
        if refusal or not message.get('content'):
            self._line_failed(
                custom_id, todo, f'model refused: {refusal[:200]}'
                if refusal else 'empty answer')
            return custom_id
        state['answers'].append(self.redact(message['content']))
        self.cache.put_dialogue(key, state['image_hash'], state['answers'],
                                state['usage'], state['failures'])
        return custom_id

    def _line_failed(self, custom_id: str, todo: Dict[str, Dict],
                     message: str) -> None:
        """A request of a batch got no answer: asked again in the next
        batch, up to ``batch_retries`` times, then the image fails."""
        key, step = custom_id.rsplit(':', 1)
        state = todo.get(key)
        if state is None or int(step) != len(state['answers']):
            return
        held = self._held.pop(custom_id, None)
        if held is not None:
            self.budget.settle(held, 0.0, 0)
        state['failures'] += 1
        message = self.redact(message)
        if state['failures'] > self.batch_retries:
            self._done(
                key, todo,
                self._failed(key, state['image_hash'], f'Batch API: {message}',
                             state['new']))
        else:
            self.cache.put_dialogue(key, state['image_hash'], state['answers'],
                                    state['usage'], state['failures'])
