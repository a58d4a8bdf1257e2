"""The vocabulary cache: one SQLite file (WAL), one row per (image, source,
model, prompt version, class set, parameters).

Every write is its own transaction, so a run killed at any moment keeps every
finished entry and a rerun resumes; SQLite's locking lets many processes
(distributed ranks, parallel prefetchers) share one file. Failures live in
their own table and are never served as vocabularies, so a rerun retries
them. Nothing secret is stored: no API key, no server address.

Batch API runs keep their state here too: each image's conversation so far
(``dialogues``: the answers received, the usage billed) and every batch
submitted (``batches``: its id, state and the requests it holds), so a
killed run polls its running batch again instead of paying twice.
"""
import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

FORMAT = 'ov-eva-vocabulary-cache'
FORMAT_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    source TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    classes TEXT NOT NULL,
    params TEXT NOT NULL,
    terms TEXT NOT NULL,
    raw_answers TEXT NOT NULL,
    usage TEXT NOT NULL,
    latency REAL NOT NULL,
    created REAL NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_image ON entries (image, classes);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dialogues (
    key TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    answers TEXT NOT NULL,
    usage TEXT NOT NULL,
    failures INTEGER NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    state TEXT NOT NULL,
    requests TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
"""


class CacheError(RuntimeError):
    """The cache file cannot be used as it is; the message says why."""


@dataclass
class Term:
    text: str
    suggested_class: Optional[str] = None


@dataclass
class VocabularyEntry:
    """One image's vocabulary and how it was obtained."""
    key: str
    image: str  # content hash of the image
    source: str
    model: str
    prompt_version: str
    classes: str  # digest of the target class set
    params: Dict = field(default_factory=dict)
    terms: List[Term] = field(default_factory=list)
    raw_answers: List[str] = field(default_factory=list)
    usage: Dict[str, int] = field(default_factory=dict)
    latency: float = 0.0
    created: float = field(default_factory=time.time)
    status: str = 'ok'

    def to_json(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Dict) -> 'VocabularyEntry':
        data = dict(data)
        data['terms'] = [Term(**t) for t in data.get('terms', [])]
        return cls(**data)


_JSON_FIELDS = ('params', 'terms', 'raw_answers', 'usage')
_COLUMNS = ('key', 'image', 'source', 'model', 'prompt_version', 'classes',
            'params', 'terms', 'raw_answers', 'usage', 'latency', 'created',
            'status')


class VocabularyCache:
    """Thread- and process-safe store of ``VocabularyEntry`` rows."""

    def __init__(self, path: Union[str, Path], timeout: float = 60.0):
        self.path = Path(path).expanduser()
        self.timeout = timeout
        self._local = threading.local()
        self._check_or_create()

    # connections are per thread: sqlite3 objects must not cross threads
    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, 'conn', None)
        if conn is None or getattr(self._local, 'pid', None) != os.getpid():
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None)
            conn.execute(f'PRAGMA busy_timeout={int(self.timeout * 1000)}')
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _check_or_create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not self.path.exists():
                self._publish_new_file()
            conn = self._connect()
            # Check and complete under one write lock: an empty database
            # (a file made by hand, or by an older OV-EVA) is ours to fill.
            with self._transaction(conn):
                tables = {
                    r[0]
                    for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type='table'")
                }
                if tables:
                    self._check_format(conn, tables)
                self._create_schema(conn)
            if conn.execute('PRAGMA journal_mode').fetchone()[0] != 'wal':
                self._switch_to_wal(conn)
        except sqlite3.DatabaseError as error:
            raise CacheError(
                f'{self.path} is not a readable OV-EVA vocabulary cache '
                f'({error}); it was left untouched. Move it away, or point '
                'vocabulary.cache_file elsewhere.') from error

    def _publish_new_file(self) -> None:
        """Build a complete WAL database aside and hard-link it into place.

        The link is atomic and never replaces a file, so processes that
        open a new cache at once all find either nothing or a finished
        database; the losers of the race simply use the winner's file.
        """
        staging = self.path.with_name(
            f'.{self.path.name}.{os.getpid()}.{threading.get_ident()}.new')
        conn = sqlite3.connect(staging, isolation_level=None)
        try:
            conn.execute('PRAGMA journal_mode=WAL')
            with self._Tx(conn):
                self._create_schema(conn)
        finally:
            conn.close()
        try:
            os.link(staging, self.path)
        except OSError:
            # a peer linked first (FileExistsError), or this file system
            # has no hard links: either way the caller opens self.path,
            # completing an empty file in place
            pass
        finally:
            for suffix in ('', '-wal', '-shm'):
                Path(f'{staging}{suffix}').unlink(missing_ok=True)

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        for statement in _SCHEMA.strip().split(';'):
            if statement.strip():
                conn.execute(statement)
        conn.execute('INSERT OR IGNORE INTO meta VALUES (?, ?), (?, ?)',
                     ('format', FORMAT, 'version', str(FORMAT_VERSION)))

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        # WAL (readers never block the writer, a killed writer leaves no
        # torn page) needs a moment alone with the file; SQLite answers
        # "locked" at once instead of waiting, so wait here.
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn.execute('PRAGMA journal_mode=WAL')
                return
            except sqlite3.OperationalError as error:
                if ('locked' not in str(error) or time.monotonic() > deadline):
                    raise
                time.sleep(0.05)

    def _check_format(self, conn: sqlite3.Connection, tables: set) -> None:
        meta = dict(conn.execute(
            'SELECT name, value FROM meta')) if 'meta' in tables else {}
        if meta.get('format') != FORMAT:
            raise CacheError(
                f'{self.path} is an SQLite file but not an OV-EVA '
                'vocabulary cache; it was left untouched. Point the '
                'cache elsewhere (vocabulary.cache_file).')
        if int(meta.get('version', 0)) > FORMAT_VERSION:
            raise CacheError(
                f'{self.path} was written by a newer OV-EVA (cache '
                f'format {meta["version"]}); upgrade OV-EVA or use '
                'another cache file.')

    class _Tx:

        def __init__(self, conn):
            self.conn = conn

        def __enter__(self):
            self.conn.execute('BEGIN IMMEDIATE')
            return self.conn

        def __exit__(self, kind, value, tb):
            self.conn.execute('COMMIT' if kind is None else 'ROLLBACK')

    def _transaction(self, conn=None):
        return self._Tx(conn or self._connect())

    def get(self, key: str) -> Optional[VocabularyEntry]:
        row = self._connect().execute(
            f'SELECT {", ".join(_COLUMNS)} FROM entries WHERE key = ?',
            (key, )).fetchone()
        return None if row is None else self._entry(row)

    def latest(self,
               image: str,
               classes: str,
               source: Optional[str] = None,
               model: Optional[str] = None) -> Optional[VocabularyEntry]:
        """Newest entry for an image and class set, from any source/model
        unless named (what ``CachedVocabulary`` replays)."""
        query = (f'SELECT {", ".join(_COLUMNS)} FROM entries '
                 'WHERE image = ? AND classes = ?')
        args = [image, classes]
        for column, value in (('source', source), ('model', model)):
            if value is not None:
                query += f' AND {column} = ?'
                args.append(value)
        row = self._connect().execute(query + ' ORDER BY created DESC',
                                      args).fetchone()
        return None if row is None else self._entry(row)

    def __contains__(self, key: str) -> bool:
        return self._connect().execute('SELECT 1 FROM entries WHERE key = ?',
                                       (key, )).fetchone() is not None

    def put(self, entry: VocabularyEntry) -> None:
        """Store a finished entry atomically and clear its failure record."""
        data = entry.to_json()
        values = [
            json.dumps(data[c]) if c in _JSON_FIELDS else data[c]
            for c in _COLUMNS
        ]
        with self._transaction() as conn:
            conn.execute(
                f'INSERT OR REPLACE INTO entries ({", ".join(_COLUMNS)}) '
                f'VALUES ({", ".join("?" * len(_COLUMNS))})', values)
            conn.execute('DELETE FROM failures WHERE key = ?', (entry.key, ))

    def record_failure(self, key: str, image: str, error: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                'INSERT INTO failures VALUES (?, ?, ?, 1, ?) '
                'ON CONFLICT(key) DO UPDATE SET error = excluded.error, '
                'attempts = attempts + 1, updated = excluded.updated',
                (key, image, error[:2000], time.time()))

    def usage_stats(self, source: str, model: str) -> Dict[str, float]:
        """Entries, requests and tokens billed over the cached entries of
        one source and model (the estimate's observed means)."""
        totals = dict(
            entries=0, requests=0, prompt_tokens=0, completion_tokens=0)
        rows = self._connect().execute(
            'SELECT usage FROM entries WHERE source = ? AND model = ?',
            (source, model))
        for (usage, ) in rows:
            usage = json.loads(usage)
            if not usage.get('requests'):
                continue  # replayed or imported without usage
            totals['entries'] += 1
            for name in ('requests', 'prompt_tokens', 'completion_tokens'):
                totals[name] += int(usage.get(name, 0))
        return totals

    # Batch API state
    def dialogue(self, key: str) -> Optional[Dict]:
        row = self._connect().execute(
            'SELECT answers, usage, failures FROM dialogues WHERE key = ?',
            (key, )).fetchone()
        if row is None:
            return None
        return dict(
            answers=json.loads(row[0]),
            usage=json.loads(row[1]),
            failures=row[2])

    def put_dialogue(self, key: str, image: str, answers: List[str],
                     usage: Dict[str, int], failures: int) -> None:
        with self._transaction() as conn:
            conn.execute(
                'INSERT OR REPLACE INTO dialogues VALUES (?, ?, ?, ?, ?, ?)',
                (key, image, json.dumps(answers), json.dumps(usage), failures,
                 time.time()))

    def drop_dialogue(self, key: str) -> None:
        with self._transaction() as conn:
            conn.execute('DELETE FROM dialogues WHERE key = ?', (key, ))

    def add_batch(self, batch_id: str, model: str, state: str,
                  requests: List[str]) -> None:
        now = time.time()
        with self._transaction() as conn:
            conn.execute(
                'INSERT OR REPLACE INTO batches VALUES '
                '(?, ?, ?, ?, ?, ?)',
                (batch_id, model, state, json.dumps(requests), now, now))

    def rename_batch(self, old: str, new: str, state: str) -> None:
        """A placeholder row (``pending:<file id>``) becomes the batch."""
        with self._transaction() as conn:
            if new != old:  # a finished namesake (another server) goes
                conn.execute('DELETE FROM batches WHERE id = ?', (new, ))
            conn.execute(
                'UPDATE batches SET id = ?, state = ?, updated = ? '
                'WHERE id = ?', (new, state, time.time(), old))

    def drop_batch(self, batch_id: str) -> None:
        with self._transaction() as conn:
            conn.execute('DELETE FROM batches WHERE id = ?', (batch_id, ))

    def set_batch_state(self, batch_id: str, state: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                'UPDATE batches SET state = ?, updated = ? WHERE id = ?',
                (state, time.time(), batch_id))

    def batches(self, open_only: bool = False) -> List[Dict]:
        """Submitted batches, oldest first; ``open_only``: those whose
        results are not yet read into the dialogues."""
        rows = self._connect().execute(
            'SELECT id, model, state, requests, created FROM batches' +
            (" WHERE state != 'done'" if open_only else '') +
            ' ORDER BY created').fetchall()
        return [
            dict(
                id=r[0],
                model=r[1],
                state=r[2],
                requests=json.loads(r[3]),
                created=r[4]) for r in rows
        ]

    def failures(self) -> List[Tuple[str, str, str, int]]:
        return self._connect().execute(
            'SELECT key, image, error, attempts FROM failures ORDER BY key'
        ).fetchall()

    def __len__(self) -> int:
        return self._connect().execute(
            'SELECT COUNT(*) FROM entries').fetchone()[0]

    def __iter__(self) -> Iterator[VocabularyEntry]:
        cursor = self._connect().execute(
            f'SELECT {", ".join(_COLUMNS)} FROM entries ORDER BY key')
        for row in cursor:
            yield self._entry(row)

    def _entry(self, row) -> VocabularyEntry:
        data = dict(zip(_COLUMNS, row))
        for column in _JSON_FIELDS:
            data[column] = json.loads(data[column])
        return VocabularyEntry.from_json(data)

    def integrity_check(self) -> str:
        return self._connect().execute('PRAGMA integrity_check').fetchone()[0]

    def export_jsonl(self, path: Union[str, Path]) -> int:
        """Write every entry as one JSON line (atomically); returns count."""
        path = Path(path)
        tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
        count = 0
        with open(tmp, 'w', encoding='utf-8') as out:
            for entry in self:
                out.write(json.dumps(entry.to_json(), ensure_ascii=False))
                out.write('\n')
                count += 1
        os.replace(tmp, path)
        return count

    def import_jsonl(self, path: Union[str, Path]) -> int:
        """Add the entries of a JSON Lines export; returns count."""
        count = 0
        with open(path, encoding='utf-8') as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    entry = VocabularyEntry.from_json(json.loads(line))
                except (ValueError, TypeError) as error:
                    raise CacheError(f'{path}, line {number}: not a '
                                     f'vocabulary entry ({error})') from error
                self.put(entry)
                count += 1
        return count

    def close(self) -> None:
        conn = getattr(self._local, 'conn', None)
        if conn is not None:
            conn.close()
            self._local.conn = None
