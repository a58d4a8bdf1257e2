"""A loopback server that speaks OpenAI's chat-completions protocol, for the
tests and the prefetch benchmark: the real ``openai`` client talks to it over
real HTTP, and it can be told to misbehave in every way a real server does.
Test support, not part of the installed package: the tests import it
(setup.cfg's pytest ``pythonpath = tools``), and so does
``tools/benchmark_vocabulary.py`` (a script's own folder is on its path).

Behaviours (``server.behaviour``: a name, or a callable ``(index, body) ->
name`` for per-request plans): ``good``, ``malformed`` (prose, no JSON),
``rate_limit`` (429 + Retry-After), ``error`` (500), ``hang`` (answers after
``hang_seconds``), ``refuse``, ``junk`` (a non-JSON HTTP body), ``empty``
(no content), ``absurd`` (hundreds of junk terms), ``no_json_mode`` (400 to
``response_format``, good otherwise), ``auth`` (401).

``echo_auth=True`` makes it a worst-case leaky proxy, for the secrets tests:
every error body (401, 429, 500, 400), the ``junk`` body and the text of
``malformed`` and ``refuse`` answers repeat the ``Authorization`` header the
request came with (``invalid api key: Bearer sk-...``).

It also speaks the Batch API: ``POST /v1/files`` (multipart upload),
``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches``
(the list) and ``GET /v1/batches/{id}``. Each line of a batch is answered
like a chat request (the same ``behaviour``: answer faults land in the
output file, HTTP faults in the error file); ``batch_seconds`` keeps a
batch ``in_progress`` that long (a slow completion, with growing
``request_counts``) and ``batch_status`` (a status, or a callable ``(batch
index) -> status``) ends it ``completed``, ``failed`` (no output) or
``expired``.
"""
import email.parser
import email.policy
import itertools
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional, Union

FAULTS = ('malformed', 'rate_limit', 'error', 'hang', 'refuse', 'junk',
          'empty')


def good_answer(prompt: str) -> str:
    """A deterministic, valid answer to either stage's prompt."""
    match = re.search(r'Target classes: (\[.*?\])\n', prompt)
    if match is None:  # stage 1
        return json.dumps({'terms': ['Wooden floor', 'white  ceiling', '']})
    classes = json.loads(match.group(1))
    held = re.search(r'give only new ones\): (\{.*\})\n', prompt)
    round_index = 1 if held else 0
    if round_index:  # a second round adds one term per class, then stops
        held_terms = json.loads(held.group(1))
        if any(len(v) > 2 for v in held_terms.values()):
            return '{}'
    return json.dumps({
        name: [f'{name} variant {round_index}',
               f'{name} close-up'][:2 - round_index]
        for name in classes[:3]
    })


class FakeOpenAIServer:
    """``with FakeOpenAIServer() as server: ... server.base_url``.

    Args:
        behaviour: what every request gets (see the module docstring).
        latency: seconds before each answer.
        hang_seconds: how long ``hang`` waits before answering.
        retry_after: the ``Retry-After`` of ``rate_limit``.
        fail_rate: share of requests given a random fault of ``FAULTS``.
        seed: of that random choice.
        echo_auth: put the request's ``Authorization`` header into error
            bodies and bad answers, as a leaky proxy might.
        batch_seconds: how long a batch stays in progress.
        batch_status: how a batch ends (or ``(batch index) -> status``).
        bill: ``(prompt_tokens, completion_tokens)`` reported for every
            answer; None: about a token per 4 characters (+85 for the
            image).
    """

    def __init__(self,
                 behaviour: Union[str, Callable[[int, Dict], str]] = 'good',
                 latency: float = 0.0,
                 hang_seconds: float = 5.0,
                 retry_after: float = 1.0,
                 fail_rate: float = 0.0,
                 seed: int = 0,
                 echo_auth: bool = False,
                 batch_seconds: float = 0.0,
                 batch_status: Union[str, Callable[[int], str]] = 'completed',
                 bill: Optional[tuple] = None):
        self.behaviour = behaviour
        self.latency, self.hang_seconds = latency, hang_seconds
        self.retry_after = retry_after
        self.fail_rate = fail_rate
        self.echo_auth = echo_auth
        self._random = random.Random(seed)
        self.lock = threading.Lock()
        self.requests: List[Dict] = []  # one record per request
        self.in_flight = 0
        self.max_in_flight = 0
        self.batch_seconds, self.batch_status = batch_seconds, batch_status
        self.bill = bill
        self.files: Dict[str, bytes] = {}
        self.batches: List[Dict] = []  # one record per batch created
        self.api_calls: List[str] = []  # 'POST /v1/files', ...
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(('127.0.0.1', 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f'http://127.0.0.1:{self._server.server_address[1]}/v1'

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def count(self, outcome: Optional[str] = None) -> int:
        with self.lock:
            return sum(1 for r in self.requests
                       if outcome is None or r['outcome'] == outcome)

    def custom_ids(self) -> List[List[str]]:
        """The request ids of every batch created, in order."""
        with self.lock:
            return [list(b['custom_ids']) for b in self.batches]

    def _choose(self, index: int, body: Dict) -> str:
        if callable(self.behaviour):
            return self.behaviour(index, body)
        if self.fail_rate and self._random.random() < self.fail_rate:
            return self._random.choice(FAULTS)
        return self.behaviour

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                with server.lock:
                    server.api_calls.append(f'GET {self.path}')
                parts = self.path.rstrip('/').split('/')
                if self.path.startswith('/v1/files/') and parts[-1] == \
                        'content' and parts[-2] in server.files:
                    return self._send(200, server.files[parts[-2]])
                if self.path.split('?')[0] in ('/v1/batches', '/v1/batches/'):
                    with server.lock:
                        ids = [b['id'] for b in server.batches]
                    return self._send(
                        200,
                        dict(
                            object='list',
                            data=[server._batch_view(i) for i in ids][::-1],
                            has_more=False))
                if self.path.startswith('/v1/batches/'):
                    batch = server._batch_view(parts[-1])
                    if batch is not None:
                        return self._send(200, batch)
                self._error(404, f'no such object: {self.path}')

            def do_POST(self):
                length = int(self.headers.get('Content-Length', 0))
                raw = self.rfile.read(length)
                if self.path.startswith(('/v1/files', '/v1/batches')):
                    with server.lock:
                        server.api_calls.append(f'POST {self.path}')
                    return self._batch_api(raw)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                with server.lock:
                    index = len(server.requests)
                    record = dict(
                        index=index,
                        path=self.path,
                        auth=self.headers.get('Authorization', ''),
                        body=body,
                        outcome=None)
                    server.requests.append(record)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight,
                                               server.in_flight)
                    outcome = server._choose(index, body)
                    record['outcome'] = outcome
                try:
                    if server.latency:
                        time.sleep(server.latency)
                    self._respond(outcome, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): fine
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _send(self, status, payload, headers=()):
                data = payload if isinstance(
                    payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _batch_api(self, raw):
                if self.path == '/v1/files':
                    data = _multipart_file(
                        self.headers.get('Content-Type', ''), raw)
                    if data is None:
                        return self._error(400, 'no file in the upload')
                    with server.lock:
                        file_id = f'file-{next(server._ids)}'
                        server.files[file_id] = data
                    return self._send(
                        200,
                        dict(
                            id=file_id,
                            object='file',
                            bytes=len(data),
                            created_at=int(time.time()),
                            filename='batch.jsonl',
                            purpose='batch',
                            status='processed'))
                if self.path == '/v1/batches':
                    try:
                        body = json.loads(raw)
                        data = server.files[body['input_file_id']]
                    except (ValueError, KeyError):
                        return self._error(400, 'unknown input_file_id')
                    return self._send(
                        200,
                        server._create_batch(
                            body, data, self.headers.get('Authorization', '')))
                self._error(404, f'no such endpoint: {self.path}')

            def _respond(self, outcome, body):
                if outcome == 'hang':
                    deadline = time.monotonic() + server.hang_seconds
                    while time.monotonic() < deadline and \
                            not server._stop.is_set():
                        time.sleep(0.05)
                self._send(*server._answer(
                    outcome, body, self.headers.get('Authorization', '')))

            def _echo(self, text, between=': '):
                """``text``, plus the Authorization header with echo_auth."""
                return server._echo(text,
                                    self.headers.get('Authorization',
                                                     ''), between)

            def _error(self, status, message, headers=()):
                self._send(*server._error_reply(
                    status, message, self.headers.get('Authorization', ''),
                    headers))

        return Handler

    def _echo(self, text, auth, between=': '):
        return text + between + auth if self.echo_auth else text

    def _error_reply(self, status, message, auth, headers=()):
        return status, dict(
            error=dict(message=self._echo(message, auth),
                       type='server_error')), headers

    def _answer(self, outcome: str, body: Dict, auth: str):
        """(HTTP status, payload, headers) of a chat request."""
        prompt = _prompt_text(body)
        if outcome == 'rate_limit':
            return self._error_reply(429, 'rate limited', auth,
                                     [('Retry-After', str(self.retry_after))])
        if outcome == 'error':
            return self._error_reply(500, 'internal error', auth)
        if outcome == 'auth':
            return self._error_reply(401, 'invalid api key', auth)
        if outcome == 'junk':
            return 200, self._echo('<html>gateway', auth,
                                   ' ').encode() + b'</html>', ()
        if outcome == 'no_json_mode' and 'response_format' in body:
            return self._error_reply(
                400, 'response_format json_object is not supported', auth)
        content, refusal = {
            'malformed': (self._echo('Sure! Terms: wall, floor [unclosed',
                                     auth, ' (sent by '), None),
            'refuse': (None,
                       self._echo("I'm sorry, I can't help with that.", auth,
                                  ' Your key: ')),
            'empty': ('', None),
            'absurd': (json.dumps({
                'terms': [
                    f'junk term number {i} \u0007' if i % 2 else 'x' * 300
                    for i in range(400)
                ]
            }), None),
        }.get(outcome, (good_answer(prompt), None))
        tokens_in, tokens_out = self.bill or (len(prompt) // 4 + 85,
                                              len(content or '') // 4)
        return (200,
                dict(
                    id=f'chatcmpl-{time.time_ns()}',
                    object='chat.completion',
                    created=int(time.time()),
                    model=body.get('model', 'fake'),
                    choices=[
                        dict(
                            index=0,
                            finish_reason='stop',
                            message=dict(
                                role='assistant',
                                content=content,
                                refusal=refusal))
                    ],
                    usage=dict(
                        prompt_tokens=tokens_in,
                        completion_tokens=tokens_out,
                        total_tokens=tokens_in + tokens_out)), ())

    def _create_batch(self, body: Dict, data: bytes, auth: str) -> Dict:
        """Answer every line now; ``_batch_view`` reveals it in time."""
        lines = [json.loads(line) for line in data.splitlines() if line]
        outputs, errors = [], []
        for line in lines:
            request = line.get('body', {})
            with self.lock:
                index = len(self.requests)
                record = dict(
                    index=index,
                    path='batch',
                    auth=auth,
                    body=request,
                    outcome=None)
                self.requests.append(record)
                outcome = self._choose(index, request)
                record['outcome'] = outcome
            status, payload, _ = self._answer(outcome, request, auth)
            if not isinstance(payload, dict):  # junk: not even JSON
                status, payload, _ = self._error_reply(502, 'bad gateway',
                                                       auth)
            result = dict(
                id=f'batch_req_{index}',
                custom_id=line.get('custom_id'),
                response=dict(status_code=status, body=payload),
                error=None)
            (outputs if status == 200 else errors).append(result)
        with self.lock:
            number = len(self.batches)
            final = self.batch_status(number) if callable(
                self.batch_status) else self.batch_status
            batch = dict(
                id=f'batch_{next(self._ids)}',
                input_file_id=body.get('input_file_id'),
                endpoint=body.get('endpoint'),
                completion_window=body.get('completion_window'),
                custom_ids=[line.get('custom_id') for line in lines],
                outputs=outputs,
                errors=errors,
                final=final,
                created=time.time(),
                auth=auth)
            self.batches.append(batch)
        return self._batch_view(batch['id'])

    def _batch_view(self, batch_id: str) -> Optional[Dict]:
        """The batch object as a client polling now sees it."""
        with self.lock:
            batch = next((b for b in self.batches if b['id'] == batch_id),
                         None)
            if batch is None:
                return None
            total = len(batch['custom_ids'])
            elapsed = time.time() - batch['created']
            done = elapsed >= self.batch_seconds
            status = batch['final'] if done else 'in_progress'
            view = dict(
                id=batch['id'],
                object='batch',
                endpoint=batch['endpoint'],
                input_file_id=batch['input_file_id'],
                completion_window=batch['completion_window'],
                created_at=int(batch['created']),
                status=status,
                output_file_id=None,
                error_file_id=None,
                errors=None,
                request_counts=dict(
                    total=total,
                    completed=len(batch['outputs']) if done else int(
                        len(batch['outputs']) * elapsed /
                        max(self.batch_seconds, 1e-9)),
                    failed=len(batch['errors']) if done else 0))
            if status == 'failed':
                view['errors'] = dict(
                    object='list',
                    data=[
                        dict(
                            code='injected_failure',
                            message='the batch failed (test server)')
                    ])
                view['request_counts'].update(completed=0, failed=total)
                return view
            if done:
                for name, rows in (('output_file_id', batch['outputs']),
                                   ('error_file_id', batch['errors'])):
                    if rows:
                        if name not in batch:
                            batch[name] = f'file-{next(self._ids)}'
                            self.files[batch[name]] = ''.join(
                                json.dumps(r) + '\n' for r in rows).encode()
                        view[name] = batch[name]
            return view


def _multipart_file(content_type: str, raw: bytes) -> Optional[bytes]:
    """The bytes of the ``file`` field of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f'Content-Type: {content_type}\r\n\r\n'.encode() + raw)
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        if part.get_param('name', header='content-disposition') == 'file':
            return part.get_payload(decode=True)
    return None


def _prompt_text(body: Dict) -> str:
    parts = []
    for message in body.get('messages', []):
        content = message.get('content')
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [
                c.get('text', '') for c in content if isinstance(c, dict)
            ]
    return '\n'.join(parts)
