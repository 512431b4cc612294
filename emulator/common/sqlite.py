"""Open a service's SQLite database for `segjet up --data-dir DIR`: WAL, pragmas, schema version.

Each fake keeps its own file (`DIR/segment.sqlite3`, `DIR/mailjet.sqlite3`) and its own schema;
this module only opens the file the same way for both. A file of an older schema version is
migrated in place when the service gives the steps (`migrations`), in one transaction with the new
version; any other version is refused rather than guessed at.

Durability: WAL with `synchronous=NORMAL` makes a committed transaction survive the process being
killed (SIGKILL, a crash): the commit is in the WAL file, in the OS page cache, before `commit()`
returns. It may be lost on a power cut, which an emulator does not need to survive.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

# Upgrades a database at schema version n to n + 1, inside the opening transaction.
Migration = Callable[[sqlite3.Connection], None]


class SchemaVersionError(ValueError):
    """The database was written by another schema version of the service."""


class NotThisService(Exception):
    """Raised by `require_tables` in a migration: the file lacks tables of the service's old schema."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(", ".join(missing))
        self.missing = missing


class DatabaseFileError(ValueError):
    """The file cannot serve as the service's database: not SQLite, damaged, another program's, or
    not openable. A ValueError, as SchemaVersionError: `segjet up` reports it as why it cannot start.
    """


def open_database(
    path: Path | str, schema: str, version: int, migrations: Mapping[int, Migration] | None = None
) -> sqlite3.Connection:
    """Open (creating if needed) the database at `path` with `schema` at `version`.

    `schema` is a script of `CREATE TABLE IF NOT EXISTS ...` statements, run on a new database.
    The version lives in `PRAGMA user_version`; 0 with no tables means a new file. A file at an
    older version n is upgraded by `migrations[n]`, `migrations[n + 1]`, ... up to `version`, in
    one transaction that also sets the version (a migration creates its own new tables, and should
    check with `require_tables` that the file is this service's). A file at a version no migration
    leads from raises SchemaVersionError naming both versions and the file; a file that is no SQLite
    database, is damaged, lacks a table of `schema`, has tables but no version (another program's)
    or cannot be opened raises DatabaseFileError. A refused file is left as it was.
    """
    if version < 1:
        raise ValueError("schema versions start at 1")
    steps = migrations or {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions; `transaction()` opens them explicitly.
    # check_same_thread=False: the app is built on one thread and served on the event loop's thread;
    # each service uses its connection from one thread at a time.
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:  # a directory at that path, no permission
        raise DatabaseFileError(f"{path}: {exc}") from None
    try:
        try:
            # Connection settings only: nothing is written to the file before it is accepted.
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            found = connection.execute("PRAGMA user_version").fetchone()[0]
            if found == 0:
                # Version 0 is also what most programs leave in their files: only an empty one is new.
                existing = _existing_tables(connection)
                if existing:
                    raise DatabaseFileError(
                        f"{path} is not a database of this service (it has no schema version but has tables "
                        f"{', '.join(sorted(existing))}); use another --data-dir or delete the file"
                    )
                with transaction(connection):
                    for statement in _statements(schema):
                        connection.execute(statement)
                    connection.execute(f"PRAGMA user_version = {int(version)}")
            elif found < version and all(step in steps for step in range(found, version)):
                _check_pages(connection, path)
                try:
                    with transaction(connection):
                        for step in range(found, version):
                            steps[step](connection)
                        connection.execute(f"PRAGMA user_version = {int(version)}")
                        _check_tables(connection, path, schema)  # refused: the migration is rolled back
                except NotThisService as exc:
                    raise DatabaseFileError(
                        f"{path} is not a database of this service (it has no table {', '.join(exc.missing)}); "
                        "use another --data-dir or delete the file"
                    ) from None
            elif found != version:
                existing = _existing_tables(connection)
                if existing and not set(_tables(schema)) & existing:
                    # Not an older or newer file of this service but another's (the other fake's,
                    # which may be at another version): said so, rather than "another version".
                    _check_tables(connection, path, schema)
                raise SchemaVersionError(
                    f"{path} was written by schema version {found}, this segjet reads version {version}; "
                    "use another --data-dir or delete the file"
                )
            else:
                _check_tables(connection, path, schema)
                _check_pages(connection, path)
            _check_writable(connection, version)
            connection.execute("PRAGMA journal_mode=WAL")  # persistent: kept in the file
        except sqlite3.OperationalError as exc:  # locked by another program, read-only: the file may be fine
            raise DatabaseFileError(f"{path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            # Not SQLite at all, or damaged: "file is not a database", "database disk image is malformed".
            raise DatabaseFileError(f"{path}: {exc}; use another --data-dir or delete the file") from None
    except BaseException:
        connection.close()
        raise
    return connection


@contextlib.contextmanager
def transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        # SQLite may have rolled back already (a full disk): a ROLLBACK then fails, and its error
        # ("no transaction is active") hid the one that said what went wrong.
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    try:
        connection.execute("COMMIT")
    except BaseException:
        # A COMMIT that fails (a deferred constraint, a full disk) can leave the transaction open,
        # and every later BEGIN would then fail too.
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _check_pages(connection: sqlite3.Connection, path: Path) -> None:
    """DatabaseFileError for damage loading would not read (an index page): the first write at start
    met it, after the file was accepted. `quick_check` reads every page (~0.15 s for 60 MB)."""
    problems = [problem for (problem,) in connection.execute("PRAGMA quick_check(1)")]
    if problems != ["ok"]:
        said = " ".join(" ".join(problems).split())  # one line: SQLite's text has its own line breaks
        raise DatabaseFileError(f"{path}: damaged ({said}); use another --data-dir or delete the file")


def _check_writable(connection: sqlite3.Connection, version: int) -> None:
    """sqlite3.OperationalError ("attempt to write a readonly database") when the file cannot be
    written: SQLite opens such a file read-only without a word, and the first write failed later."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(f"PRAGMA user_version = {int(version)}")  # the same value: a write, no change
    finally:
        connection.execute("ROLLBACK")


def require_tables(connection: sqlite3.Connection, tables: Iterable[str]) -> None:
    """For a migration: NotThisService unless the file has every one of `tables` (the old schema's)."""
    missing = sorted(set(tables) - _existing_tables(connection))
    if missing:
        raise NotThisService(missing)


def _check_tables(connection: sqlite3.Connection, path: Path, schema: str) -> None:
    # Another program's database (or the other fake's) can pass the version check; without this,
    # the first read of a missing table crashed.
    missing = sorted(set(_tables(schema)) - _existing_tables(connection))
    if missing:
        raise DatabaseFileError(
            f"{path} is not a database of this service (it has no table {', '.join(missing)}); "
            "use another --data-dir or delete the file"
        )


def _existing_tables(connection: sqlite3.Connection) -> set[str]:
    return {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _tables(schema: str) -> list[str]:
    return re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", schema, flags=re.IGNORECASE)


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our open transaction first; split the script so the schema and
    # its version are written in one transaction.
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in schema: {pending.strip()[:80]!r}")
    return [statement for statement in statements if statement]
