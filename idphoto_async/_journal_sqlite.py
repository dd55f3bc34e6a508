"""The resume journal in SQLite: one row per input key, updated in transactions.

Files beside ``PATH``: ``PATH`` (the database, WAL mode), ``PATH-wal`` and ``PATH-shm``
(SQLite's, removed on a clean close), and ``PATH-lock``, held while a batch runs: the
single-writer lock and a reserve of disk space released when the disk fills up, so that the
record of a paid task can still be committed (removed on close).

Every record is committed before the call returns, except ``downloaded``, which joins the
transaction of the next record; ``created`` and ``failed`` protect money and are
synced to disk before the call returns (see `Journal`).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread

from ._journal_legacy import JournalState, fold_jsonl, parse_time
from ._journal_lock import LockFile
from ._journal_types import Entry, ErrorInfo, JournalWriteError

__all__ = [
    "JOURNAL_NAME",
    "LEGACY_JOURNAL_NAME",
    "Journal",
    "JournalWatch",
    "dump_journal",
    "journal_events",
    "read_journal",
]

JOURNAL_NAME: Final = ".idphoto-journal.sqlite3"
LEGACY_JOURNAL_NAME: Final = ".idphoto-journal.jsonl"
RESERVE_BYTES: Final = 4 << 20
"""Disk space held beside the journal and released to commit once the disk is full."""
SCHEMA_VERSION: Final = 1
_CHECKPOINT_EVERY: Final = 500
"""Commits between two checkpoints (the WAL stays a few MB)."""
CACHE_KIB: Final = 1024
"""The journal connection's page cache: a lookup in a million rows reads the rest from the
operating system's cache (a few microseconds), and memory does not grow with the rows."""
SYNC_GAP: Final = 0.05
"""Seconds between two syncs of the WAL: ``created`` waits at most this long for its own."""
_DEFER_MAX: Final = 64
"""Deferred records (``downloaded``) held before they are committed anyway."""
_SQLITE_HEADER: Final = b"SQLite format 3\x00"
_SQLITE_FULL: Final = 13
_SQLITE_READONLY: Final = 8
_SQLITE_CANTOPEN: Final = 14
_SQLITE_NOTADB: Final = 26

_SCHEMA: Final = """
CREATE TABLE inputs (
    key TEXT PRIMARY KEY,               -- input identity + options (see input_key)
    input TEXT NOT NULL,                -- the path or URL as given
    status TEXT NOT NULL,               -- creating, created, downloaded, failed (done: imported)
    task_id TEXT,
    created_at TEXT,                    -- ISO 8601, when the create answered
    done INTEGER NOT NULL DEFAULT 0,    -- the task reached state 1 (set with downloaded)
    output TEXT,                        -- relative to the output directory
    error_type TEXT,
    error_message TEXT,
    error_state INTEGER,
    error_http_status INTEGER,
    error_permanent INTEGER,
    error_task_may_exist INTEGER,
    pending_create INTEGER NOT NULL DEFAULT 0,  -- a create was sent, no answer recorded yet
    in_doubt INTEGER NOT NULL DEFAULT 0,        -- earlier creates that never answered
    steps INTEGER NOT NULL DEFAULT 1,           -- records written for this key
    updated_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX inputs_in_doubt ON inputs (key) WHERE pending_create + in_doubt > 0;
CREATE TABLE meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
INSERT INTO meta VALUES ('schema', 1);
"""

_CLEAR_ERROR: Final = (
    "error_type = NULL, error_message = NULL, error_state = NULL, error_http_status = NULL, "
    "error_permanent = NULL, error_task_may_exist = NULL"
)
_SQL: Final = {
    "creating": "INSERT INTO inputs (key, input, status, pending_create, updated_at) "
    "VALUES (?, ?, 'creating', 1, ?) ON CONFLICT (key) DO UPDATE SET input = excluded.input, "
    "status = 'creating', in_doubt = in_doubt + pending_create, pending_create = 1, "
    "steps = steps + 1, updated_at = excluded.updated_at",
    "created": "INSERT INTO inputs (key, input, status, task_id, created_at, updated_at) "
    "VALUES (?, ?, 'created', ?, ?, ?) ON CONFLICT (key) DO UPDATE SET input = excluded.input, "
    "status = 'created', task_id = excluded.task_id, created_at = excluded.created_at, "
    f"done = 0, output = NULL, {_CLEAR_ERROR}, pending_create = 0, "
    "steps = steps + 1, updated_at = excluded.updated_at",
    "downloaded": "INSERT INTO inputs (key, input, status, task_id, done, output, updated_at) "
    "VALUES (?, ?, 'downloaded', ?, 1, ?, ?) ON CONFLICT (key) DO UPDATE SET "
    "input = excluded.input, status = 'downloaded', done = 1, "
    f"task_id = coalesce(excluded.task_id, task_id), output = excluded.output, {_CLEAR_ERROR}, "
    "steps = steps + 1, updated_at = excluded.updated_at",
    "failed": "INSERT INTO inputs (key, input, status, task_id, error_type, error_message, "
    "error_state, error_http_status, error_permanent, error_task_may_exist, updated_at) "
    "VALUES (?, ?, 'failed', ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
    "input = excluded.input, status = 'failed', task_id = coalesce(excluded.task_id, task_id), "
    "error_type = excluded.error_type, error_message = excluded.error_message, "
    "error_state = excluded.error_state, error_http_status = excluded.error_http_status, "
    "error_permanent = excluded.error_permanent, "
    "error_task_may_exist = excluded.error_task_may_exist, pending_create = 0, "
    "steps = steps + 1, updated_at = excluded.updated_at",
}
_IMPORT: Final = (
    "INSERT INTO inputs (key, input, status, task_id, created_at, done, output, error_type, "
    "error_message, error_state, error_http_status, error_permanent, error_task_may_exist, "
    "pending_create, in_doubt, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ENTRY_COLUMNS: Final = (
    "task_id, created_at, done, output, error_type, error_message, error_state, "
    "error_http_status, error_permanent, error_task_may_exist, pending_create"
)
_IN_DOUBT: Final = (
    "SELECT coalesce(sum(pending_create + in_doubt), 0) FROM inputs "
    "WHERE pending_create + in_doubt > 0"
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _entry(row: tuple[Any, ...]) -> Entry:
    (task_id, created_at, done, output, etype, message, state, status, permanent, may_exist,
     pending) = row  # fmt: skip
    failure = None
    if etype is not None:
        failure = ErrorInfo(
            type=etype,
            message=message or "",
            state=state,
            http_status=status,
            permanent=bool(permanent),
            task_may_exist=bool(may_exist),
        )
    return Entry(
        task_id=task_id,
        created_at=parse_time(created_at),
        done=bool(done),
        output=output,
        failure=failure,
        pending_create=bool(pending),
    )


def _import_row(key: str, entry: Entry, input: str, doubted: int, now: str) -> tuple[Any, ...]:
    failure = entry.failure
    status = (
        "failed" if failure else "downloaded" if entry.output else "done" if entry.done
        else "created" if entry.task_id else "creating"
    )  # fmt: skip
    return (
        key, input, status, entry.task_id,
        entry.created_at.isoformat() if entry.created_at else None,
        int(entry.done), entry.output,
        failure and failure.type, failure and failure.message, failure and failure.state,
        failure and failure.http_status, failure and int(failure.permanent),
        failure and int(failure.task_may_exist),
        int(entry.pending_create), doubted, now,
    )  # fmt: skip


def _sqlite_code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0)) & 0xFF


def _looks_like_sqlite(path: Path) -> bool:
    """True for a SQLite file or an empty/missing one (never touch anything else)."""
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return True
    return head in (b"", _SQLITE_HEADER)


class Journal:
    """The resume journal of a batch: indexed lookups and transactional updates per input.

    Use as an async context manager (opening may raise `JournalLockedError` or
    `JournalWriteError`). ``path`` ending in ``.jsonl`` names a journal of an earlier version:
    the database is then ``path`` with the suffix ``.sqlite3``, and the JSON lines are imported
    into it when it is created (as is ``.idphoto-journal.jsonl`` beside the default name).

    Each record is committed by the calling task (``synchronous=NORMAL``: written to the
    WAL, which survives a killed process, like the one ``write()`` of a JSON line);
    ``downloaded`` waits for the transaction of the next record (a kill loses at most a poll
    and a download of each, never a task id). ``created`` and ``failed`` wait for an
    ``fdatasync`` of the WAL in a worker thread (what ``synchronous=FULL`` does), shielded
    from cancellation, so they survive a power loss before the batch goes on; concurrent
    ones share one sync (at most one every `SYNC_GAP` seconds). Checkpoints run in that
    thread too, on a connection of their own.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        given = Path(path)
        self.legacy_path: Path | None
        if given.suffix == ".jsonl":
            self.path = given.with_suffix(".sqlite3")
            self.legacy_path = given
        else:
            self.path = given
            legacy = given.with_name(LEGACY_JOURNAL_NAME)
            self.legacy_path = legacy if given.name == JOURNAL_NAME else None
        self.imported = 0
        """Entries imported from the JSON-lines journal when this database was created."""
        self._in_doubt = 0
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._wal_fd: int | None = None
        self._lock: LockFile | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._committed = 0
        self._synced = 0
        self._syncing: anyio.Event | None = None
        self._last_sync = -math.inf
        self._since_checkpoint = 0
        self._checkpointing: anyio.Event | None = None
        self._failed = False
        self._failed_reason: str | None = None
        self._pending: list[tuple[str, tuple[Any, ...]]] = []
        self._pending_keys: set[str] = set()

    @property
    def in_doubt(self) -> int:
        """Creates an earlier run may have sent without learning the task id (at open)."""
        return self._in_doubt

    # -- open / close ---------------------------------------------------------------------

    async def __aenter__(self) -> Journal:
        self._limiter = anyio.CapacityLimiter(1)
        await anyio.to_thread.run_sync(self._open, limiter=self._limiter)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close, limiter=self._limiter)

    def _open(self) -> None:
        path = self.path
        if path.is_dir():
            raise JournalWriteError.unusable(path, "it is a directory")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalWriteError.unusable(path, exc.strerror or str(exc)) from None
        if not _looks_like_sqlite(path):
            raise JournalWriteError.unusable(path, "it is not an idphoto journal (SQLite)")
        try:
            self._lock = LockFile.acquire(path.with_name(path.name + "-lock"), path)
        except OSError as exc:
            raise JournalWriteError.unusable(path, exc.strerror or str(exc)) from None
        try:
            self._connect()
            self._lock.reserve(RESERVE_BYTES)
        except BaseException:
            self._close()
            raise

    def _connect(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._open_error(exc) from None
        self._conn = conn
        try:
            conn.execute("PRAGMA busy_timeout = 10000")  # readers may hold a lock briefly
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")  # memory flat at any size
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalWriteError.unusable(self.path, f"SQLite refused WAL mode ({mode})")
            conn.execute("PRAGMA synchronous = FULL")  # the schema and the import
            conn.execute("BEGIN IMMEDIATE")
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
                for statement in _SCHEMA.split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                self._import_legacy(conn)
            conn.execute("COMMIT")
            schema = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if not schema or int(schema[0]) > SCHEMA_VERSION:
                raise JournalWriteError.unusable(
                    self.path, "it was written by a newer version of idphoto-async"
                )
            conn.execute("PRAGMA synchronous = NORMAL")  # durable records: see _sync
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # in the worker thread instead
            self._in_doubt = int(conn.execute(_IN_DOUBT).fetchone()[0])
            self._checkpointer = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
            self._checkpointer.execute("PRAGMA busy_timeout = 10000")
            self._wal_fd = os.open(self._wal_path, os.O_RDONLY)
            _sync_directory(self.path.parent)
        except sqlite3.Error as exc:
            raise self._open_error(exc) from None
        except OSError as exc:
            raise JournalWriteError.unusable(self.path, exc.strerror or str(exc)) from None

    @property
    def _wal_path(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    def _open_error(self, exc: sqlite3.Error) -> JournalWriteError:
        code = _sqlite_code(exc)
        if code == _SQLITE_FULL:
            return JournalWriteError.write_failed(self.path, None, task_id=None, kept=False)
        if code in (_SQLITE_READONLY, _SQLITE_CANTOPEN):
            return JournalWriteError.unusable(self.path, "it cannot be written")
        if code == _SQLITE_NOTADB:
            return JournalWriteError.unusable(self.path, "it is not an idphoto journal (SQLite)")
        return JournalWriteError.unusable(self.path, str(exc))

    def _import_legacy(self, conn: sqlite3.Connection) -> None:
        """Fold the JSON-lines journal of an earlier version into the new database."""
        legacy = self.legacy_path
        if legacy is None or not legacy.is_file():
            return
        state: JournalState = fold_jsonl(legacy)
        now = _now()
        conn.executemany(
            _IMPORT,
            (
                _import_row(key, entry, state.inputs.get(key, ""), state.doubted[key], now)
                for key, entry in state.entries.items()
            ),
        )
        conn.execute("INSERT INTO meta VALUES ('imported_from', ?)", (str(legacy),))
        self.imported = len(state.entries)

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error, OSError):  # a full disk: they cost a poll
                self._flush()
        for conn in (self._checkpointer, self._conn):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()  # the last one checkpoints and removes the -wal file
        self._checkpointer = self._conn = None
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()

    # -- reads ----------------------------------------------------------------------------

    async def lookup(self, key: str) -> Entry | None:
        """What the journal knows about ``key`` (one read of the primary key's B-tree)."""
        if key in self._pending_keys:
            self._flush()
        row = self._connection.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM inputs WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else _entry(row)

    @property
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the journal is not open")
        return self._conn

    # -- writes ---------------------------------------------------------------------------

    async def _write(
        self,
        sql: str,
        params: tuple[Any, ...],
        *,
        durable: bool,
        task_id: str | None = None,
        deferred: bool = False,
    ) -> None:
        """Commit one record; a durable one is synced to disk before this returns.

        A ``deferred`` record (``downloaded``: losing one costs a poll and a
        download, never a charge) waits in memory and is committed in the transaction of
        the next record that is not, or of the `_DEFER_MAX`-th, or at close. ``task_id`` is
        the task this record saves, named if it cannot be written.
        """
        while self._checkpointing is not None:  # a commit now would starve the checkpoint
            await self._checkpointing.wait()
        self._pending.append((sql, params))
        if deferred and not self._failed:
            self._pending_keys.add(params[0])
            if len(self._pending) < _DEFER_MAX:
                return
        records, self._pending = self._pending, []
        self._pending_keys.clear()
        try:
            self._commit(records)
        except (sqlite3.Error, OSError) as exc:
            full = _is_full(exc)
            kept = False
            if full and self._lock is not None and self._lock.release_reserve():
                with contextlib.suppress(sqlite3.Error, OSError):
                    self._commit(records)
                    kept = True
            self._failed = True
            self._failed_reason = None if full else str(exc)
            if kept and durable:
                await self._sync_shielded()
            raise self._error(task_id, kept=kept) from None
        if durable:
            await self._sync_shielded()
        if self._since_checkpoint >= _CHECKPOINT_EVERY and self._checkpointing is None:
            await self._checkpoint_alone()
        if self._failed:  # committed, but the disk is full: the run must still stop
            raise self._error(task_id, kept=True)

    def _error(self, task_id: str | None, *, kept: bool) -> JournalWriteError:
        return JournalWriteError.write_failed(
            self.path, self._failed_reason, task_id=task_id, kept=kept
        )

    def _commit(self, records: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Commit ``records`` in one transaction (all or none)."""
        conn = self._connection
        if len(records) == 1:
            conn.execute(*records[0])  # one statement: its own transaction
        else:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in records:
                    conn.execute(sql, params)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        self._committed += 1
        self._since_checkpoint += 1

    def _flush(self) -> None:
        """Commit the deferred records now (a lookup of theirs, the close). Blocking."""
        records, self._pending = self._pending, []
        self._pending_keys.clear()
        if records:
            self._commit(records)

    async def _sync_shielded(self) -> None:
        """Wait until every commit so far is on disk (group commit, shielded).

        One task at a time syncs, at most every `SYNC_GAP` seconds; the others wait for the
        sync that covers their commit, so at QPS 200 one ``fdatasync`` serves a few photos.
        """
        upto = self._committed
        with anyio.CancelScope(shield=True):
            while self._synced < upto:
                if self._syncing is not None:
                    await self._syncing.wait()
                    continue
                self._syncing = event = anyio.Event()
                try:
                    delay = self._last_sync + SYNC_GAP - anyio.current_time()
                    if delay > 0:
                        await anyio.sleep(delay)
                    await anyio.to_thread.run_sync(
                        self._sync, self._committed, limiter=self._limiter
                    )
                finally:
                    self._last_sync = anyio.current_time()
                    self._syncing = None
                    event.set()

    def _sync(self, upto: int) -> None:
        """Make every commit up to number ``upto`` durable (in the worker thread)."""
        if self._synced >= upto or self._wal_fd is None:
            return  # a sync that started after that commit covered it
        target = self._committed  # every commit so far is in the WAL file already
        try:
            os.fdatasync(self._wal_fd) if hasattr(os, "fdatasync") else os.fsync(self._wal_fd)
        except OSError as exc:
            self._failed = True
            self._failed_reason = exc.strerror or str(exc)
            raise self._error(None, kept=False) from None
        self._synced = target

    async def _checkpoint_alone(self) -> None:
        """Checkpoint in the worker thread while this journal's commits wait (shielded).

        A commit during a checkpoint leaves frames it has not copied, and SQLite restarts
        the WAL from its start only after a checkpoint that copied every frame: with
        commits every few milliseconds, a concurrent checkpoint never catches up and the
        WAL (and its index, mapped in memory) grows with every record.
        """
        self._checkpointing = event = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._checkpoint, limiter=self._limiter)
        finally:
            self._checkpointing = None
            event.set()

    def _checkpoint(self) -> None:
        """Copy the WAL into the database without blocking the writer (in the worker thread)."""
        self._since_checkpoint = 0
        if self._checkpointer is not None:
            with contextlib.suppress(sqlite3.Error):  # e.g. a full disk: the WAL just grows
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def creating(self, key: str, input: str) -> None:
        """A create request is about to be sent."""
        await self._write(_SQL["creating"], (key, input, _now()), durable=False)

    async def created(self, key: str, input: str, task_id: str, created_at: datetime) -> None:
        """The create returned ``task_id`` (durable on disk before this returns)."""
        params = (key, input, task_id, created_at.isoformat(), _now())
        await self._write(_SQL["created"], params, durable=True, task_id=task_id)

    async def downloaded(self, key: str, input: str, task_id: str | None, output: str) -> None:
        """The task succeeded and its result is stored at ``output``."""
        params = (key, input, task_id, output, _now())
        await self._write(_SQL["downloaded"], params, durable=False, deferred=True)

    async def failed(self, key: str, input: str, task_id: str | None, info: ErrorInfo) -> None:
        """The input failed (durable on disk before this returns)."""
        params = (
            key, input, task_id, info.type, info.message, info.state, info.http_status,
            int(info.permanent), int(info.task_may_exist), _now(),
        )  # fmt: skip
        await self._write(_SQL["failed"], params, durable=True, task_id=task_id)


def _is_full(exc: sqlite3.Error | OSError) -> bool:
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return _sqlite_code(exc) == _SQLITE_FULL


def _sync_directory(directory: Path) -> None:
    """Make the journal's files' names durable (a new file is lost with its directory entry)."""
    if os.name != "posix":  # pragma: no cover
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


class JournalWatch:
    """Counts a journal's committed records from another process (for tests and tools).

    Keeps one read-only connection, opened once the journal exists; it reads every row, so
    it is for watching small runs, not for a batch. Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None

    def events(self) -> int:
        """Records committed so far (0 while the journal does not exist yet)."""
        if self._conn is None:
            if not self.path.exists():
                return 0
            try:
                self._conn = _read_only(self.path)
            except sqlite3.Error:
                return 0
        try:
            row = self._conn.execute("SELECT coalesce(sum(steps), 0) FROM inputs").fetchone()
        except sqlite3.Error:
            return 0  # being created
        return int(row[0])

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> JournalWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def journal_events(path: str | os.PathLike[str]) -> int:
    """How many records a journal has committed (0 if it does not exist yet); see
    `JournalWatch` to ask often."""
    with JournalWatch(path) as watch:
        return watch.events()


def read_journal(path: str | os.PathLike[str]) -> JournalState:
    """Every entry of a SQLite journal, loaded whole (for inspection and tests, not a batch)."""
    state = JournalState()
    conn = _read_only(Path(path))
    try:
        for key, input, *row in conn.execute(f"SELECT key, input, {_ENTRY_COLUMNS} FROM inputs"):
            state.entries[key] = _entry(tuple(row))
            state.inputs[key] = input
        state.in_doubt = int(conn.execute(_IN_DOUBT).fetchone()[0])
    finally:
        conn.close()
    return state


def dump_journal(path: str | os.PathLike[str]) -> str:
    """The whole journal as SQL text (as ``sqlite3 PATH .dump`` prints it)."""
    conn = _read_only(Path(path))
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()
