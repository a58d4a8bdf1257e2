"""A loopback server that speaks OpenAI's chat-completions protocol, for the
tests and the prefetch benchmark: the real ``openai`` client talks to it over
real HTTP, and it can be told to misbehave in every way a real server does.

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
"""
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
    """

    def __init__(self,
                 behaviour: Union[str, Callable[[int, Dict], str]] = 'good',
                 latency: float = 0.0,
                 hang_seconds: float = 5.0,
                 retry_after: float = 1.0,
                 fail_rate: float = 0.0,
                 seed: int = 0,
                 echo_auth: bool = False):
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

            def do_POST(self):
                length = int(self.headers.get('Content-Length', 0))
                try:
                    body = json.loads(self.rfile.read(length))
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

            def _echo(self, text, between=': '):
                """``text``, plus the Authorization header with echo_auth."""
                if not server.echo_auth:
                    return text
                return text + between + self.headers.get('Authorization', '')

            def _error(self, status, message, headers=()):
                self._send(
                    status,
                    dict(
                        error=dict(
                            message=self._echo(message), type='server_error')),
                    headers)

            def _respond(self, outcome, body):
                prompt = _prompt_text(body)
                if outcome == 'rate_limit':
                    return self._error(
                        429, 'rate limited',
                        [('Retry-After', str(server.retry_after))])
                if outcome == 'error':
                    return self._error(500, 'internal error')
                if outcome == 'auth':
                    return self._error(401, 'invalid api key')
                if outcome == 'junk':
                    return self._send(
                        200,
                        self._echo('<html>gateway', ' ').encode() + b'</html>')
                if outcome == 'no_json_mode' and 'response_format' in body:
                    return self._error(
                        400, 'response_format json_object is not supported')
                if outcome == 'hang':
                    deadline = time.monotonic() + server.hang_seconds
                    while time.monotonic() < deadline and \
                            not server._stop.is_set():
                        time.sleep(0.05)
                content, refusal = {
                    'malformed':
                    (self._echo('Sure! Terms: wall, floor [unclosed',
                                ' (sent by '), None),
                    'refuse': (None,
                               self._echo("I'm sorry, I can't help with that.",
                                          ' Your key: ')),
                    'empty': ('', None),
                    'absurd': (json.dumps({
                        'terms': [
                            f'junk term number {i} \u0007' if i % 2 else 'x' *
                            300 for i in range(400)
                        ]
                    }), None),
                }.get(outcome, (good_answer(prompt), None))
                self._send(
                    200,
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
                            prompt_tokens=len(prompt) // 4 + 85,
                            completion_tokens=len(content or '') // 4,
                            total_tokens=len(prompt) // 4 + 85 +
                            len(content or '') // 4)))

        return Handler


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
