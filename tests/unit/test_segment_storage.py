"""The fake Segment's state through SQLite and through snapshots: every kind of state round-trips.

Workspaces are driven on a real event loop (delivery needs one); the destination is a closed
port, so deliveries stay `retrying` and nothing depends on another server.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from emulator.common.clock import Clock
from emulator.common.sqlite import DatabaseFileError, SchemaVersionError, open_database, transaction
from emulator.config import BundleConfig, BundleUrls
from emulator.mailjet.storage import FILE_NAME as MAILJET_FILE_NAME, MailjetStore
from emulator.segment.models import TrackingRequest
from emulator.segment.storage import (
    DATABASE_NAME,
    SnapshotError,
    SegmentStore,
    snapshot_document,
    state_from_snapshot,
)
from emulator.segment.workspaces import Workspaces

KEY = "storage-key"
CI_KEY = "storage-ci-key"
# Nothing listens on port 9: every delivery attempt fails at once with a connection error.
URLS = BundleUrls("http://127.0.0.1:9", "http://127.0.0.1:9", "http://127.0.0.1:9")
START = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def config(data_dir: Path | None = None) -> BundleConfig:
    return BundleConfig(
        write_key=KEY,
        engage_sync_interval="manual",
        sources=[{"name": "mobile", "write_key": "storage-mobile"}],
        engage_audiences=[{"name": "Has Email", "rule": {"trait": "email", "exists": True}}],
        data_dir=str(data_dir) if data_dir else None,
    )


def open_workspaces(clock: Clock, data_dir: Path | None) -> Workspaces:
    workspaces = Workspaces(config(data_dir), clock, URLS)
    if data_dir is not None:
        workspaces.attach(SegmentStore(data_dir))
    return workspaces


def send(workspaces: Workspaces, write_key: str, call_type: str | None, body: dict[str, Any]) -> None:
    call = TrackingRequest(call_type, body, len(json.dumps(body)), write_key)
    workspaces.for_tracking(write_key).backend.accept(call)


def state(workspaces: Workspaces, clock: Clock) -> dict[str, Any]:
    return snapshot_document(workspaces.export(), clock.now())["state"]


def state_after_restart(clock: Clock, data_dir: Path) -> dict[str, Any]:
    """What workspaces opened again on `data_dir` hold."""

    async def restarted() -> dict[str, Any]:
        workspaces = open_workspaces(clock, data_dir)
        shown = state(workspaces, clock)
        await workspaces.aclose()
        return shown

    return run(restarted())


async def populate(workspaces: Workspaces) -> None:
    """One of every kind of state, in two workspaces."""
    send(workspaces, KEY, "identify", {"userId": "u1", "anonymousId": "a1", "traits": {"email": "ada@example.com"}})
    send(workspaces, KEY, "track", {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 12}})
    send(workspaces, KEY, "track", {"anonymousId": "a2", "event": "Viewed"})
    send(workspaces, KEY, "alias", {"previousId": "a2", "userId": "u1"})
    send(workspaces, KEY, None, {"batch": [{"type": "identify", "userId": "u2", "traits": {"plan": 3}},
                                          {"type": "track", "userId": "u2"}]})  # the second is discarded
    send(workspaces, "nobody-has-this-key", "identify", {"userId": "u3"})  # discarded, in the default workspace
    send(workspaces, KEY, "identify", {"userId": "u1", "messageId": "fixed-id", "traits": {"plan": "pro"}})
    send(workspaces, KEY, "track", {"userId": "u1", "event": "Odd", "context": {"ip": 5}})  # kept, with its violation
    default = workspaces.default
    default.engage.define_trait({"name": "Orders", "computed": "count", "event": "Order Completed", "within": "30d"})
    default.engage.define_audience({"name": "Big Spenders", "rule": {"event": "Order Completed",
                                                                     "where": {"property": "revenue", "gt": 10}}})
    default.engage.sync()
    default.pipeline.configure({"settings": {"listId": "7"}})
    _, ci = workspaces.add_source("ci", CI_KEY)
    workspaces.add_source("ci-mobile", "storage-ci-mobile", ci.id)
    send(workspaces, CI_KEY, "identify", {"userId": "c1", "traits": {"email": "c1@example.com"}})
    ci.pipeline.configure({"enabled": False})
    await wait_until_settled(workspaces)


def populated_database(clock: Clock, tmp_path: Path) -> None:
    """A database in `tmp_path` holding `populate`'s state, its workspaces closed."""

    async def first_life() -> None:
        workspaces = open_workspaces(clock, tmp_path)
        await populate(workspaces)
        await workspaces.aclose()

    run(first_life())


async def wait_until_settled(workspaces: Workspaces) -> None:
    # Connection refused comes back at once. Settled: each user's first message is retrying, and
    # the user's later ones wait queued behind it (delivery keeps a user's order).
    for _ in range(2000):
        records = [record for workspace in workspaces for record in workspace.pipeline.all_records()]
        retrying = {record.user_id for record in records if record.state == "retrying"}
        if all(record.user_id in retrying for record in records if record.state == "queued"):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("deliveries never settled")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.set(START)
    return clock


# -- the SQLite helper -------------------------------------------------------------------------


def test_open_database_writes_the_schema_and_its_version_then_refuses_another_version(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.sqlite3"
    schema = "CREATE TABLE IF NOT EXISTS things (name TEXT);\nCREATE TABLE IF NOT EXISTS others (n INTEGER);"
    db = open_database(path, schema, 3)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    with transaction(db):
        db.execute("INSERT INTO things VALUES ('kept')")
    db.close()
    again = open_database(path, schema, 3)
    assert again.execute("SELECT name FROM things").fetchall() == [("kept",)]
    again.close()
    with pytest.raises(SchemaVersionError, match="schema version 3.*reads version 4"):
        open_database(path, schema, 4)


def test_a_database_damaged_where_loading_does_not_read_is_refused_at_open(tmp_path: Path) -> None:
    # A damaged index page: a table scan (what loading does) reads fine, and the first write at
    # start crashed `segjet up` with a traceback ("database disk image is malformed"), no file named.
    path = tmp_path / "x.sqlite3"
    schema = "CREATE TABLE IF NOT EXISTS things (name TEXT PRIMARY KEY);"
    db = open_database(path, schema, 1)
    with transaction(db):
        db.executemany("INSERT INTO things VALUES (?)", [(f"thing-{index:05}",) for index in range(2000)])
    [(index_page,)] = db.execute("SELECT rootpage FROM sqlite_master WHERE type = 'index'").fetchall()
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with path.open("r+b") as file:
        file.seek((index_page - 1) * page_size)
        file.write(b"\xff" * page_size)
    assert len(sqlite3.connect(path).execute("SELECT name FROM things").fetchall()) == 2000
    with pytest.raises(DatabaseFileError, match=f"{path}: damaged .*; use another --data-dir or delete the file"):
        open_database(path, schema, 1)


_OPEN_READ_ONLY = """
import sys
from emulator.common.sqlite import DatabaseFileError, open_database
try:
    open_database(sys.argv[1], "CREATE TABLE IF NOT EXISTS things (name TEXT);", 1)
except DatabaseFileError as exc:
    print(exc)
"""


def test_a_database_file_that_cannot_be_written_is_refused_at_open(tmp_path: Path) -> None:
    # SQLite opens a file it may not write read-only, silently: the first write at start crashed
    # `segjet up` with "attempt to write a readonly database" and a traceback.
    path = tmp_path / "x.sqlite3"
    open_database(path, "CREATE TABLE IF NOT EXISTS things (name TEXT);", 1).close()
    path.chmod(0o444)
    command = [sys.executable, "-c", _OPEN_READ_ONLY, str(path)]
    if os.geteuid() == 0:  # root writes any file; without its capabilities the mode applies
        if shutil.which("setpriv") is None:
            pytest.skip("root without setpriv: a file's mode cannot be made to apply")
        command = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{path}: attempt to write a readonly database\n"


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    db = open_database(tmp_path / "x.sqlite3", "CREATE TABLE IF NOT EXISTS things (name TEXT UNIQUE);", 1)
    with pytest.raises(sqlite3.IntegrityError):
        with transaction(db):
            db.execute("INSERT INTO things VALUES ('a')")
            db.execute("INSERT INTO things VALUES ('a')")
    assert db.execute("SELECT count(*) FROM things").fetchone()[0] == 0


def test_a_transaction_sqlite_already_rolled_back_raises_its_own_error(tmp_path: Path) -> None:
    # On some errors (a full disk) SQLite rolls back itself: the ROLLBACK after it failed, and its
    # "cannot rollback - no transaction is active" was the error a request's 500 reported.
    db = open_database(tmp_path / "x.sqlite3", "CREATE TABLE IF NOT EXISTS things (name TEXT);", 1)
    with pytest.raises(sqlite3.OperationalError, match="^database or disk is full$"):
        with transaction(db):
            db.execute("INSERT INTO things VALUES ('a')")
            db.execute("ROLLBACK")  # as SQLite does on SQLITE_FULL
            raise sqlite3.OperationalError("database or disk is full")
    assert not db.in_transaction and db.execute("SELECT count(*) FROM things").fetchone()[0] == 0


def test_a_transaction_whose_commit_fails_is_rolled_back_and_the_next_one_runs(tmp_path: Path) -> None:
    schema = (
        "CREATE TABLE IF NOT EXISTS parents (id INTEGER PRIMARY KEY);\n"
        "CREATE TABLE IF NOT EXISTS children (parent INTEGER REFERENCES parents(id) DEFERRABLE INITIALLY DEFERRED);"
    )
    db = open_database(tmp_path / "x.sqlite3", schema, 1)
    db.execute("PRAGMA foreign_keys = ON")
    with pytest.raises(sqlite3.IntegrityError):
        with transaction(db):
            db.execute("INSERT INTO children VALUES (7)")  # checked only at COMMIT
    assert not db.in_transaction
    with transaction(db):
        db.execute("INSERT INTO parents VALUES (7)")
        db.execute("INSERT INTO children VALUES (7)")
    assert db.execute("SELECT count(*) FROM children").fetchone()[0] == 1


def test_the_segment_database_of_another_schema_version_is_refused(tmp_path: Path, clock: Clock) -> None:
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(SchemaVersionError, match="99"):
        SegmentStore(tmp_path)


@pytest.mark.parametrize("open_store", [SegmentStore, MailjetStore])
def test_a_file_that_is_no_sqlite_database_is_refused_with_its_path(tmp_path: Path, open_store: Any) -> None:
    # sqlite3.DatabaseError went up as a traceback: `segjet up` reports ValueErrors only.
    for name in (DATABASE_NAME, MAILJET_FILE_NAME):
        (tmp_path / name).write_bytes(b"not a database at all, some notes\n" * 10)
    with pytest.raises(DatabaseFileError, match="file is not a database; use another --data-dir") as raised:
        open_store(tmp_path)
    assert str(tmp_path) in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_a_damaged_segment_database_is_refused_with_its_path(tmp_path: Path, clock: Clock) -> None:
    populated_database(clock, tmp_path)
    path = tmp_path / DATABASE_NAME
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    content = bytearray(path.read_bytes())
    page = 4096
    assert len(content) > 2 * page
    content[page:] = b"\xff" * (len(content) - page)  # the header page whole, every other page garbage
    path.write_bytes(bytes(content))
    with pytest.raises(DatabaseFileError, match=r"segment.sqlite3: damaged \(.*\); use another --data-dir"):
        SegmentStore(tmp_path).load()


def test_the_other_fakes_database_is_refused_not_read(tmp_path: Path) -> None:
    # Both files are at schema version 1: the segment store then crashed on "no such table".
    MailjetStore(tmp_path / "mj").close()
    (tmp_path / "mj" / MAILJET_FILE_NAME).rename(tmp_path / DATABASE_NAME)
    with pytest.raises(DatabaseFileError, match="is not a database of this service .*no table deliveries, messages, workspaces"):
        SegmentStore(tmp_path)
    SegmentStore(tmp_path / "seg").close()
    (tmp_path / "seg" / DATABASE_NAME).rename(tmp_path / MAILJET_FILE_NAME)
    with pytest.raises(DatabaseFileError, match="no table rows"):
        MailjetStore(tmp_path)


@pytest.mark.parametrize(
    ("open_store", "name"), [(SegmentStore, DATABASE_NAME), (MailjetStore, MAILJET_FILE_NAME)]
)
@pytest.mark.parametrize(
    ("user_version", "table", "words"),
    [
        # What most programs leave: user_version 0. Such a file was taken over (segjet's tables
        # added beside the program's), or, when a table had one of segjet's names, refused only
        # after being switched to WAL and stamped, with "no such column".
        (0, "foo (x)", r"is not a database of this service \(it has no schema version but has tables foo\);"),
        (0, "rows (id INTEGER PRIMARY KEY, note TEXT)", r"is not a database of this service .*has tables rows\)"),
        (0, "workspaces (id TEXT)", r"is not a database of this service .*has tables workspaces\)"),
        # Refused before too, but after the file was switched to WAL.
        (1, "foo (x)", "is not a database of this service"),
        (99, "foo (x)", "is not a database of this service"),
    ],
)
def test_another_programs_sqlite_file_is_refused_and_left_unchanged(
    tmp_path: Path, open_store: Any, name: str, user_version: int, table: str, words: str
) -> None:
    path = tmp_path / name
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE {table}")
    db.execute(f"INSERT INTO {table.split()[0]} DEFAULT VALUES")
    db.commit()
    db.execute(f"PRAGMA user_version = {user_version}")
    db.close()
    before = path.read_bytes()
    with pytest.raises(DatabaseFileError, match=words) as raised:
        open_store(tmp_path)
    assert str(path) in str(raised.value)
    assert path.read_bytes() == before
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [name]  # no -wal, no -journal left


def test_a_new_empty_file_is_taken_as_a_new_database(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    sqlite3.connect(path).close()  # a file of 0 bytes: SQLite's new, empty database
    db = open_database(path, "CREATE TABLE IF NOT EXISTS things (name TEXT);", 1)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()


@pytest.mark.parametrize(
    ("table", "data", "words"),
    [
        ("workspaces", "{not json", r"workspace ws_\w+: the stored row is not JSON"),
        ("workspaces", "[]", r"workspace ws_\w+: the stored row is not a JSON object"),
        ("messages", "7", r"a message of workspace ws_\w+: the stored row is not a JSON object"),
        ("deliveries", "", r"a delivery record of workspace ws_\w+: the stored row is not JSON"),
    ],
)
def test_a_damaged_segment_row_is_refused_with_the_file_and_the_row(
    tmp_path: Path, clock: Clock, table: str, data: str, words: str
) -> None:
    # A row that was not a JSON object crashed the start with a TypeError.
    populated_database(clock, tmp_path)
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    with db:
        db.execute(f"UPDATE {table} SET data = ? WHERE rowid = (SELECT MIN(rowid) FROM {table})"
                   if table != "deliveries" else
                   "UPDATE deliveries SET data = ? WHERE seq = (SELECT MIN(seq) FROM deliveries)", (data,))
    db.close()
    with pytest.raises(SnapshotError, match=f"{DATABASE_NAME}: {words}"):
        SegmentStore(tmp_path).load()


# -- round trips -------------------------------------------------------------------------------


def test_every_kind_of_state_survives_a_restart_on_the_same_database(tmp_path: Path, clock: Clock) -> None:
    async def first_life() -> tuple[dict[str, Any], dict[str, Any]]:
        workspaces = open_workspaces(clock, tmp_path)
        await populate(workspaces)
        kept = state(workspaces, clock)
        profile = workspaces.default.backend.profiles.get("u1").to_json()
        await workspaces.aclose()
        return kept, profile

    async def second_life() -> tuple[dict[str, Any], dict[str, Any], Workspaces]:
        workspaces = open_workspaces(clock, tmp_path)
        return state(workspaces, clock), workspaces.default.backend.profiles.get("u1").to_json(), workspaces

    before, profile_before = run(first_life())
    after, profile_after, workspaces = run(second_life())
    assert after == before
    assert profile_after == profile_before  # rebuilt from the messages, aliases and merges included
    kinds = {message["status"] for workspace in before["workspaces"] for message in workspace["messages"]}
    assert kinds == {"accepted", "discarded"}
    default, ci = before["workspaces"]
    assert {source["writeKey"] for source in ci["sources"]} == {CI_KEY, "storage-ci-mobile"}
    assert default["destination"]["settings"]["listId"] == "7" and ci["destination"]["enabled"] is False
    assert [entry["definition"]["key"] for entry in default["engage"]] == ["has_email", "orders", "big_spenders"]
    assert {record["state"] for record in default["deliveries"]} >= {"retrying", "skipped"}
    # Among what `after == before` compares, these are what a restart could lose unseen otherwise.
    assert any(message["violations"] for message in default["messages"])
    assert any(record["attempts"] for record in default["deliveries"])
    assert workspaces.for_write_key("storage-ci-mobile") is workspaces.for_write_key(CI_KEY)


def test_after_a_restart_dedupe_still_knows_the_ids_and_engage_sends_only_changes(tmp_path: Path, clock: Clock) -> None:
    async def first_life() -> None:
        workspaces = open_workspaces(clock, tmp_path)
        await populate(workspaces)
        await workspaces.aclose()

    async def second_life() -> tuple[str | None, int, list[dict[str, Any]]]:
        workspaces = open_workspaces(clock, tmp_path)
        send(workspaces, KEY, "identify", {"userId": "u1", "messageId": "fixed-id"})
        reason = workspaces.default.backend.messages[-1].discard_reason
        unchanged = workspaces.default.engage.sync()
        send(workspaces, KEY, "identify", {"userId": "u9", "traits": {"email": "new@example.com"}})
        changed = workspaces.default.engage.sync()
        await workspaces.aclose()
        return reason, len(unchanged.sent), changed.sent

    run(first_life())
    reason, unchanged, changed = run(second_life())
    assert reason == "duplicate_message_id"
    assert unchanged == 0
    assert [(message["userId"], message["traits"]) for message in changed] == [
        ("u9", {"has_email": True, "email": "new@example.com"})
    ]


def test_a_snapshot_round_trips_into_a_fresh_server_and_into_a_database(tmp_path: Path, clock: Clock) -> None:
    async def scenario() -> None:
        original = open_workspaces(clock, None)
        await populate(original)
        document = json.loads(json.dumps(snapshot_document(original.export(), clock.now())))
        await original.aclose()

        imported = open_workspaces(clock, tmp_path)  # a database, so the import is written too
        await imported.replace(state_from_snapshot(document))
        assert state(imported, clock) == document["state"]
        await imported.aclose()

        reopened = open_workspaces(clock, tmp_path)
        assert state(reopened, clock) == document["state"]
        await reopened.aclose()

    run(scenario())


def test_a_non_object_batch_item_round_trips_through_a_snapshot_and_a_database(tmp_path: Path, clock: Clock) -> None:
    # Stored as a stub with no timestamp (discarded bad_request), which the snapshot reader must take.
    async def scenario() -> None:
        original = open_workspaces(clock, None)
        send(original, KEY, None, {"batch": [5, "x", {"type": "track", "userId": "u", "event": "E"}]})
        document = json.loads(json.dumps(snapshot_document(original.export(), clock.now())))
        await original.aclose()

        imported = open_workspaces(clock, tmp_path)
        await imported.replace(state_from_snapshot(document))
        await imported.aclose()
        reopened = open_workspaces(clock, tmp_path)
        assert state(reopened, clock) == document["state"]
        assert [(stored.message.get("item"), stored.discard_reason) for stored in reopened.default.backend.events()] == [
            (5, "bad_request"), ("x", "bad_request"), (None, None)]
        await reopened.aclose()

    run(scenario())


def test_a_directory_where_the_database_file_goes_is_refused_with_its_path(tmp_path: Path) -> None:
    (tmp_path / DATABASE_NAME).mkdir()
    with pytest.raises(DatabaseFileError, match="unable to open database file") as raised:
        SegmentStore(tmp_path)
    assert str(tmp_path / DATABASE_NAME) in str(raised.value)


def test_an_import_removes_workspaces_the_snapshot_lacks_and_resets_a_missing_default(clock: Clock) -> None:
    async def scenario() -> None:
        workspaces = open_workspaces(clock, None)
        await populate(workspaces)
        document = snapshot_document(workspaces.export(), clock.now())
        ci_only = copy.deepcopy(document)
        ci_only["state"]["workspaces"] = ci_only["state"]["workspaces"][1:]
        await workspaces.replace(state_from_snapshot(ci_only))
        assert len(list(workspaces)) == 2
        assert list(workspaces.default.backend.messages) == []
        assert workspaces.for_write_key(CI_KEY) is not None
        empty = {**document, "state": {"workspaces": []}}
        await workspaces.replace(state_from_snapshot(empty))
        assert list(workspaces) == [workspaces.default] and workspaces.for_write_key(CI_KEY) is None
        await workspaces.aclose()

    run(scenario())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="other"), "format must be 'segjet-snapshot'"),
        (lambda d: d.update(service="mailjet"), "snapshot is of 'mailjet'"),
        (lambda d: d.update(version=2), "version 2 is not supported"),
        (lambda d: d.update(state=[]), "state must be a JSON object"),
        (lambda d: d["state"]["workspaces"][0]["messages"][0].update(status="maybe"),
         r"state.workspaces\[0\].messages\[0\].status"),
        (lambda d: d["state"]["workspaces"][0]["messages"][0].update(discard_reason="no_user_anon_id"),
         r"messages\[0\].discard_reason must be a string for a discarded message, null otherwise"),
        (lambda d: d["state"]["workspaces"][0]["messages"][5].update(discard_reason=None),
         r"messages\[5\].discard_reason must be a string for a discarded message"),
        (lambda d: d["state"]["workspaces"][0]["messages"][1]["message"].update(receivedAt="yesterday"),
         r"messages\[1\].message.receivedAt"),
        # Rebuilding the dedupe window overflowed datetime: PUT answered 500 with the state half replaced.
        (lambda d: d["state"]["workspaces"][0]["messages"][1]["message"].update(receivedAt="9999-12-31T23:59:59.000Z"),
         r"messages\[1\].message.receivedAt: .*between 1000-01-01T00:00:00.000Z and"),
        (lambda d: d["state"]["workspaces"][0]["messages"][1]["message"].update(receivedAt="0001-01-01T00:00:00.000Z"),
         r"messages\[1\].message.receivedAt: .*between"),
        (lambda d: d["state"]["workspaces"][0]["deliveries"][0].update(state="lost"),
         r"deliveries\[0\].state must be one of"),
        # Without it the record would never be retried after the restart, and its user's later
        # messages would wait behind it forever.
        (lambda d: d["state"]["workspaces"][0]["deliveries"][0].update(next_attempt_at=None),
         r"deliveries\[0\]: a retrying record needs next_attempt_at"),
        # Its 4-hour retry window counts from it: a retry of such a record failed in the pipeline.
        (lambda d: d["state"]["workspaces"][0]["deliveries"][0]["body"].pop("receivedAt"),
         r"deliveries\[0\].body.receivedAt"),
        # Its window's end overflowed datetime at the record's first retryable failure.
        (lambda d: d["state"]["workspaces"][0]["deliveries"][0]["body"].update(receivedAt="9999-12-31T23:00:00.000Z"),
         r"deliveries\[0\].body.receivedAt: must be between"),
        # Two records with one seq share one database row: one of them would be lost at the next start.
        (lambda d: d["state"]["workspaces"][0]["deliveries"][1].update(seq=d["state"]["workspaces"][0]["deliveries"][0]["seq"]),
         r"workspaces\[0\].deliveries: seq must be unique and increasing"),
        # Its id derives from that key; without a source holding it, calls signed with it would go elsewhere.
        (lambda d: d["state"]["workspaces"][1]["sources"].pop(0),
         r"workspaces\[1\].sources must include the workspace's write_key 'storage-ci-key'"),
        # Beyond SQLite's integer keys: the import failed half done (500) and every later save with it.
        (lambda d: d["state"]["workspaces"][0]["deliveries"][-1].update(seq=2**63),
         r"deliveries\[\d+\].seq must be a positive integer of at most 9007199254740992"),
        (lambda d: d["state"]["workspaces"][0]["engage"][0]["definition"].update(rule={"trait": "x", "nope": 1}),
         r"engage\[0\].definition: .*unknown operator"),
        (lambda d: d["state"]["workspaces"][0]["destination"]["settings"].update(listId="zero"),
         r"destination: settings.listId"),
        (lambda d: d["state"]["workspaces"][1]["sources"].append({"name": "x", "writeKey": KEY}),
         "already belongs to"),
        # Accepted messages the profiles could not take (PUT answered 500 with half the state replaced).
        (lambda d: d["state"]["workspaces"][0]["messages"][0]["message"].pop("type"),
         r"messages\[0\].message: ingestion would have discarded it \(invalid_type\)"),
        (lambda d: d["state"]["workspaces"][0]["messages"][3]["message"].pop("previousId"),
         r"messages\[3\].message: .*\(id_required\)"),
        (lambda d: d["state"]["workspaces"][0]["messages"][0]["message"].update(userId=["u1"]),
         r"messages\[0\].message: .*\(id_not_string\)"),
        (lambda d: d["state"]["workspaces"][0]["messages"][0]["message"].update(traits=[["email", "x"]]),
         r"messages\[0\].message: .*\(traits_not_object\)"),
        (lambda d: d["state"]["workspaces"][0]["messages"][1]["message"].update(properties=[1]),
         r"messages\[1\].message: .*\(properties_not_object\)"),
        # A definition reading its own value would flip at every sync.
        (lambda d: d["state"]["workspaces"][0]["engage"][2]["definition"].update(
            rule={"not": {"trait": "big_spenders", "equals": True}}),
         r"engage: 'big_spenders' would depend on its own value"),
        (lambda d: d["state"]["workspaces"][0]["engage"].append(copy.deepcopy(d["state"]["workspaces"][0]["engage"][0])),
         r"workspaces\[0\].engage: two definitions share a key"),
        (lambda d: d["state"]["workspaces"][0]["engage"][0].update(synced="yes"),
         r"engage\[0\].synced must be true or false"),
        (lambda d: d["state"]["workspaces"][0]["messages"][0]["message"].update(messageId=5),
         r"messages\[0\].message.messageId must be a string"),
        (lambda d: d["state"]["workspaces"][0]["messages"][0]["source"].update(id=5),
         r"messages\[0\].source.id must be a string or null"),
        (lambda d: d["state"]["workspaces"][0]["messages"][0]["source"].update(name=[]),
         r"messages\[0\].source.name must be a string or null"),
        (lambda d: d["state"]["workspaces"][0]["deliveries"][0].update(userId=5),
         r"deliveries\[0\].userId must be a string or null"),
        (lambda d: d["state"]["workspaces"][0]["deliveries"][0].update(messageId=""),
         r"deliveries\[0\].messageId must be a non-empty string"),
        # A kind that is no string was looked up in a dict: TypeError, and PUT snapshot answered 500.
        *[(lambda d, kind=kind: d["state"]["workspaces"][0]["engage"][0]["definition"].update(kind=kind),
           r"engage\[0\].definition: kind must be 'audience' or 'trait'") for kind in ([], {})],
    ],
)
def test_a_wrong_snapshot_is_refused_with_the_place_at_fault(clock: Clock, change: Any, message: str) -> None:
    async def make() -> dict[str, Any]:
        workspaces = open_workspaces(clock, None)
        await populate(workspaces)
        document = json.loads(json.dumps(snapshot_document(workspaces.export(), clock.now())))
        await workspaces.aclose()
        return document

    document = run(make())
    change(document)
    with pytest.raises(SnapshotError, match=message):
        state_from_snapshot(document)


def test_a_reset_workspace_is_cleared_in_the_database_and_the_others_stay(tmp_path: Path, clock: Clock) -> None:
    async def first_life() -> dict[str, Any]:
        workspaces = open_workspaces(clock, tmp_path)
        await populate(workspaces)
        workspaces.for_write_key(CI_KEY).reset()
        kept = state(workspaces, clock)
        await workspaces.aclose()
        return kept

    before = run(first_life())
    assert before["workspaces"][1]["messages"] == [] and before["workspaces"][0]["messages"]
    assert state_after_restart(clock, tmp_path) == before



def test_a_reset_forgets_the_unwritten_messages_and_keeps_the_workspaces_order(tmp_path: Path, clock: Clock) -> None:
    async def first_life() -> list[str]:
        workspaces = open_workspaces(clock, tmp_path)
        await populate(workspaces)
        workspaces.add_source("late", "storage-late-key")
        ci = workspaces.for_write_key(CI_KEY)
        # Not yet written when the reset comes (no flush in between): it must not reach the database.
        send(workspaces, CI_KEY, "identify", {"userId": "c2", "traits": {"email": "c2@example.com"}})
        ci.reset()
        order = [workspace.id for workspace in workspaces]
        await workspaces.aclose()
        return order

    async def second_life() -> tuple[list[str], list[Any]]:
        workspaces = open_workspaces(clock, tmp_path)
        kept = [workspace.id for workspace in workspaces], workspaces.for_write_key(CI_KEY).export()
        await workspaces.aclose()
        return kept[0], kept[1].messages + kept[1].deliveries

    order = run(first_life())
    assert run(second_life()) == (order, [])

def test_a_whole_reset_removes_the_added_workspaces_from_the_database(tmp_path: Path, clock: Clock) -> None:
    async def first_life() -> None:
        workspaces = open_workspaces(clock, tmp_path)
        await populate(workspaces)
        workspaces.reset()
        await workspaces.aclose()

    async def second_life() -> dict[str, Any]:
        workspaces = open_workspaces(clock, tmp_path)
        kept = state(workspaces, clock)
        assert workspaces.for_write_key(CI_KEY) is None
        await workspaces.aclose()
        return kept

    run(first_life())
    [default] = run(second_life())["workspaces"]
    assert default["messages"] == [] and default["deliveries"] == []
    assert [entry["definition"]["key"] for entry in default["engage"]] == ["has_email"]


class _FullDisk:
    """The store's connection, failing the next write as a full disk does."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.failing = True

    def execute(self, sql: str, *args: Any) -> Any:
        if self.failing and sql.startswith("INSERT"):
            self.failing = False
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    def executemany(self, sql: str, rows: Any) -> Any:
        if self.failing:
            self.failing = False
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.executemany(sql, rows)


def test_changes_a_failed_write_did_not_keep_are_written_by_the_next_flush(tmp_path: Path, clock: Clock) -> None:
    # They were dropped before the transaction: the call got a 500, its retry was a duplicate in
    # memory, and after a restart the accepted message was gone.
    async def first_life() -> list[str]:
        workspaces = open_workspaces(clock, tmp_path)
        store = workspaces.store
        assert store is not None
        send(workspaces, KEY, "identify", {"userId": "u1", "messageId": "kept-1"})
        real, store.db = store.db, _FullDisk(store.db)  # type: ignore[assignment]
        with pytest.raises(sqlite3.OperationalError):
            store.flush()
        store.db = real
        send(workspaces, KEY, "identify", {"userId": "u1", "messageId": "kept-1"})  # the client's retry
        store.flush()
        ids = [stored.message_id for stored in workspaces.default.backend.messages]
        await workspaces.aclose()
        return ids

    async def second_life() -> list[tuple[str, str | None]]:
        workspaces = open_workspaces(clock, tmp_path)
        kept = [(stored.message_id, stored.discard_reason) for stored in workspaces.default.backend.messages]
        await workspaces.aclose()
        return kept

    assert run(first_life()) == ["kept-1", "kept-1"]
    assert run(second_life()) == [("kept-1", None), ("kept-1", "duplicate_message_id")]


def test_delivery_records_a_restart_drops_past_the_cap_leave_the_database(tmp_path: Path, clock: Clock) -> None:
    # restore() dropped the oldest finished records past the cap before the store was attached:
    # their rows stayed, and were loaded and dropped (and counted in `dropped`) at every start.
    def with_cap(cap: int) -> Workspaces:
        workspaces = Workspaces(config(tmp_path), clock, URLS)
        workspaces.default.pipeline._max_records = cap  # the cap is not configurable; a small one here
        workspaces.attach(SegmentStore(tmp_path))
        return workspaces

    def rows() -> list[int]:
        db = sqlite3.connect(tmp_path / DATABASE_NAME)
        try:
            return [seq for (seq,) in db.execute("SELECT seq FROM deliveries ORDER BY seq")]
        finally:
            db.close()

    async def life(cap: int, pages: int = 0) -> tuple[list[int], int]:
        workspaces = with_cap(cap)
        for index in range(pages):  # a page call is skipped by the Mailjet destination: finished at once
            send(workspaces, KEY, "page", {"userId": f"p{index}", "name": "Home"})
        kept = [record.seq for record in workspaces.default.pipeline.all_records()]
        dropped = workspaces.default.pipeline.dropped
        await workspaces.aclose()
        return kept, dropped

    assert run(life(100, pages=5)) == ([1, 2, 3, 4, 5], 0)
    assert rows() == [1, 2, 3, 4, 5]
    assert run(life(2)) == ([4, 5], 3)
    assert rows() == [4, 5]
    assert run(life(2)) == ([4, 5], 3)  # nothing left to drop again: the count kept, not 6


def test_delivery_records_dropped_past_the_cap_while_serving_leave_the_database(tmp_path: Path, clock: Clock) -> None:
    # Otherwise the next start would load them again, and drop them again.
    async def life() -> tuple[list[int], int]:
        workspaces = Workspaces(config(tmp_path), clock, URLS)
        workspaces.default.pipeline._max_records = 2  # the cap is not configurable; a small one here
        workspaces.attach(SegmentStore(tmp_path))
        for index in range(5):  # a page call is skipped by the Mailjet destination: finished at once
            send(workspaces, KEY, "page", {"userId": f"p{index}", "name": "Home"})
        kept = [record.seq for record in workspaces.default.pipeline.all_records()]
        dropped = workspaces.default.pipeline.dropped
        await workspaces.aclose()
        return kept, dropped

    assert run(life()) == ([4, 5], 3)
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    try:
        assert [seq for (seq,) in db.execute("SELECT seq FROM deliveries ORDER BY seq")] == [4, 5]
    finally:
        db.close()


def test_the_delivery_records_dropped_count_survives_a_restart_until_a_reset_or_an_import(
    tmp_path: Path, clock: Clock
) -> None:
    # README: capped feeds count what they dropped "since the last reset", and a restart is none;
    # yet the deliveries feed started again at 0, its dropped rows deleted and the count not kept.
    async def life(pages: int = 0, then: str | None = None) -> int:
        workspaces = Workspaces(config(tmp_path), clock, URLS)
        workspaces.default.pipeline._max_records = 2  # the cap is not configurable; a small one here
        workspaces.attach(SegmentStore(tmp_path))
        for index in range(pages):  # a page call is skipped by the Mailjet destination: finished at once
            send(workspaces, KEY, "page", {"userId": f"p{index}", "name": "Home"})
        dropped = workspaces.default.pipeline.dropped
        if then == "reset":
            workspaces.default.reset()
        elif then == "import":
            document = json.loads(json.dumps(snapshot_document(workspaces.export(), clock.now())))
            await workspaces.replace(state_from_snapshot(document))
        await workspaces.aclose()
        return dropped

    assert run(life(pages=5)) == 3
    assert run(life(pages=1)) == 4  # the 3 kept across the restart, and one more
    assert run(life(then="import")) == 4
    assert run(life()) == 0  # an import starts the count again, as a reset does
    assert run(life(pages=3, then="reset")) == 3
    assert run(life()) == 0


@pytest.mark.parametrize("count", [-1, "3", 1.5, True, None])
def test_a_damaged_delivery_records_dropped_count_is_refused_with_the_file_and_the_workspace(
    tmp_path: Path, clock: Clock, count: Any
) -> None:
    populated_database(clock, tmp_path)
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    with db:
        db.execute("UPDATE workspaces SET data = json_set(data, '$.deliveries_dropped', json(?))", (json.dumps(count),))
    db.close()
    with pytest.raises(SnapshotError, match=rf"{DATABASE_NAME}: workspace ws_\w+: deliveries_dropped must be"):
        SegmentStore(tmp_path).load()


def test_a_sync_that_only_hands_a_merged_user_ids_state_to_the_survivor_is_written(tmp_path: Path, clock: Clock) -> None:
    # u1 and u2 were both told they have an email; an alias merges u2 into u1, and the sync drops
    # "u2" (the survivor was told already) with nothing to send. That sync wrote nothing, so after
    # a restart Engage showed u2 as a member again (2 != 1) until its next sync dropped it once more.
    async def first_life() -> dict[str, Any]:
        workspaces = open_workspaces(clock, tmp_path)
        for user_id in ("u1", "u2"):
            send(workspaces, KEY, "identify", {"userId": user_id, "traits": {"email": "ada@example.com"}})
        assert len(workspaces.default.engage.sync().sent) == 2
        workspaces.store.flush()
        send(workspaces, KEY, "alias", {"previousId": "u2", "userId": "u1"})
        assert workspaces.default.engage.sync().sent == []
        kept = state(workspaces, clock)
        await workspaces.aclose()
        return kept

    before = run(first_life())
    assert before["workspaces"][0]["engage"][0]["members"] == ["u1"]
    after = state_after_restart(clock, tmp_path)
    assert after["workspaces"][0]["engage"] == before["workspaces"][0]["engage"]
    assert after == before


# -- Engage members and values: a row per userId told ------------------------------------------


def test_a_sync_that_changes_one_member_of_a_large_audience_writes_that_member_not_the_others(
    tmp_path: Path, clock: Clock
) -> None:
    # Every sync that sent anything rewrote the workspace row, which held each definition's whole
    # member list: with --data-dir an identify cost O(all members) (py-spy: 70 % in flush).
    async def scenario() -> list[str]:
        workspaces = open_workspaces(clock, tmp_path)
        for n in range(2000):
            send(workspaces, KEY, "identify", {"userId": f"u{n}", "traits": {"email": f"u{n}@example.com"}})
        assert len(workspaces.default.engage.sync().sent) == 2000
        workspaces.store.flush()
        statements: list[str] = []
        workspaces.store.db.set_trace_callback(statements.append)
        send(workspaces, KEY, "identify", {"userId": "one-more", "traits": {"email": "one-more@example.com"}})
        assert len(workspaces.default.engage.sync().sent) == 1
        workspaces.store.flush()
        workspaces.store.db.set_trace_callback(None)
        await workspaces.aclose()
        return [s for s in statements if s.startswith(("INSERT", "DELETE", "UPDATE"))]

    written = run(scenario())
    # The identify, Engage's identify, at most their delivery records, and the one member's row.
    assert not [s for s in written if "workspaces" in s], written
    assert len([s for s in written if "engage_state" in s]) == 1, written
    assert len(written) <= 6 and max(map(len, written)) < 2000, written


def _engage_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    return document["workspaces"][0]["engage"]


def test_members_values_and_synced_come_back_after_a_restart_and_leavers_stay_gone(tmp_path: Path, clock: Clock) -> None:
    async def first_life() -> dict[str, Any]:
        workspaces = open_workspaces(clock, tmp_path)
        await populate(workspaces)
        default = workspaces.default
        send(workspaces, KEY, "identify", {"userId": "u2", "traits": {"email": "u2@example.com"}})
        send(workspaces, KEY, "track", {"userId": "u2", "event": "Order Completed", "properties": {"revenue": 1}})
        default.engage.sync()
        workspaces.store.flush()
        clock.advance(timedelta(days=31))  # the orders lapse: the counts go to 0
        send(workspaces, KEY, "identify", {"userId": "u1", "traits": {"email": None}})  # leaves has_email
        default.engage.sync()
        kept = state(workspaces, clock)
        await workspaces.aclose()
        return kept

    async def second_life() -> dict[str, Any]:
        workspaces = open_workspaces(clock, tmp_path)
        shown = state(workspaces, clock)
        assert workspaces.default.engage.sync().sent == []  # nothing differs from what was told
        await workspaces.aclose()
        return shown

    before = run(first_life())
    engage = {item["definition"]["key"]: item for item in _engage_of(before)}
    assert engage["has_email"]["members"] == ["u2"] and engage["big_spenders"]["members"] == ["u1"]
    assert engage["orders"]["values"] == {"u1": 0, "u2": 0} and engage["orders"]["synced"] is True
    assert run(second_life()) == before


def test_a_deleted_definition_leaves_no_rows_and_a_new_one_of_its_key_starts_empty(tmp_path: Path, clock: Clock) -> None:
    # Deleted and defined again within one flush: the old definition's members must not come back
    # under the new one after a restart.
    async def first_life() -> dict[str, Any]:
        workspaces = open_workspaces(clock, tmp_path)
        await populate(workspaces)
        engage = workspaces.default.engage
        engage.delete_audience("big_spenders")
        engage.delete_trait("orders")
        engage.define_audience({"name": "Orders", "rule": {"trait": "plan", "exists": True}})
        kept = state(workspaces, clock)
        await workspaces.aclose()
        return kept

    before = run(first_life())
    assert [(item["definition"]["key"], item["members"], item["values"]) for item in _engage_of(before)] == [
        ("has_email", ["u1"], {}), ("orders", [], {}),
    ]
    assert state_after_restart(clock, tmp_path) == before
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    try:
        assert sorted(db.execute("SELECT computation, user_id FROM engage_state")) == [("has_email", "u1")]
    finally:
        db.close()


def test_a_reset_and_an_import_replace_the_engage_rows(tmp_path: Path, clock: Clock) -> None:
    async def first_life() -> None:
        workspaces = open_workspaces(clock, tmp_path)
        await populate(workspaces)
        other = open_workspaces(clock, None)
        send(other, KEY, "identify", {"userId": "imported", "traits": {"email": "i@example.com"}})
        other.default.engage.sync()
        document = json.loads(json.dumps(snapshot_document(other.export(), clock.now())))
        await other.aclose()
        await workspaces.replace(state_from_snapshot(document))
        await workspaces.aclose()

    run(first_life())
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    try:
        assert list(db.execute("SELECT computation, user_id, member, value FROM engage_state")) == [
            ("has_email", "imported", 1, None)
        ]
    finally:
        db.close()

    async def second_life() -> None:
        workspaces = open_workspaces(clock, tmp_path)
        workspaces.default.reset()
        workspaces.store.flush()
        await workspaces.aclose()

    run(second_life())
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    try:
        assert list(db.execute("SELECT * FROM engage_state")) == []
    finally:
        db.close()


# -- schema version 1 (members and values inside the workspace row) ----------------------------

# Version 1's schema, as segjet wrote it before engage_state.
SCHEMA_V1 = """
CREATE TABLE workspaces (id TEXT PRIMARY KEY, position INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE messages (seq INTEGER PRIMARY KEY, workspace TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX messages_by_workspace ON messages (workspace, seq);
CREATE TABLE deliveries (workspace TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,
                         PRIMARY KEY (workspace, seq)) WITHOUT ROWID;
"""


def write_v1_database(path: Path, document: dict[str, Any]) -> None:
    """A version-1 file holding a snapshot's state, as version 1 laid it out: the workspace row is
    the workspace's JSON without messages and deliveries, Engage's members and values included."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_V1)
    with db:
        for position, workspace in enumerate(document["workspaces"]):
            row = {name: value for name, value in workspace.items() if name not in ("messages", "deliveries")}
            db.execute("INSERT INTO workspaces VALUES (?, ?, ?)", (workspace["id"], position, json.dumps(row)))
            db.executemany("INSERT INTO messages (workspace, data) VALUES (?, ?)",
                           [(workspace["id"], json.dumps(message)) for message in workspace["messages"]])
            db.executemany("INSERT INTO deliveries VALUES (?, ?, ?)",
                           [(workspace["id"], record["seq"], json.dumps(record)) for record in workspace["deliveries"]])
    db.execute("PRAGMA user_version = 1")
    db.close()


def test_a_version_1_database_is_migrated_in_place_and_shows_the_same_state(tmp_path: Path, clock: Clock) -> None:
    async def make() -> dict[str, Any]:
        workspaces = open_workspaces(clock, None)
        await populate(workspaces)
        kept = state(workspaces, clock)
        await workspaces.aclose()
        return kept

    async def open_again() -> dict[str, Any]:
        workspaces = open_workspaces(clock, tmp_path)
        shown = state(workspaces, clock)
        assert workspaces.default.engage.sync().sent == []  # what was told came through
        await workspaces.aclose()
        return shown

    before = run(make())
    assert any(item["members"] for item in _engage_of(before)) and any(item["values"] for item in _engage_of(before))
    write_v1_database(tmp_path / DATABASE_NAME, before)
    assert run(open_again()) == before
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        for (data,) in db.execute("SELECT data FROM workspaces"):
            assert all(set(item) == {"definition", "synced"} for item in json.loads(data)["engage"])
        assert db.execute("SELECT count(*) FROM engage_state").fetchone()[0] > 0
    finally:
        db.close()
    assert run(open_again()) == before  # and it opens again as version 2


def test_a_version_1_row_the_migration_cannot_read_is_left_for_load_to_refuse(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    db.executescript(SCHEMA_V1)
    with db:
        db.execute("INSERT INTO workspaces VALUES ('ws_x', 0, '{not json')")
    db.execute("PRAGMA user_version = 1")
    db.close()
    store = SegmentStore(tmp_path)
    try:
        with pytest.raises(SnapshotError, match=r"workspace ws_x: the stored row is not JSON"):
            store.load()
    finally:
        store.db.close()


def test_a_migration_that_fails_leaves_the_file_at_its_version(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite3"
    open_database(path, "CREATE TABLE IF NOT EXISTS things (name TEXT);", 1).close()

    def add_and_fail(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE others (n INTEGER)")
        raise sqlite3.OperationalError("disk I/O error")

    schema = "CREATE TABLE IF NOT EXISTS things (name TEXT);\nCREATE TABLE IF NOT EXISTS others (n INTEGER);"
    with pytest.raises(DatabaseFileError, match="disk I/O error"):
        open_database(path, schema, 2, migrations={1: add_and_fail})
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["things"]
    db.close()
    with pytest.raises(SchemaVersionError, match="schema version 1.*reads version 3"):
        open_database(path, schema, 3, migrations={1: lambda db: None})  # no step from 2 to 3
    migrated = open_database(path, schema, 2, migrations={1: lambda db: db.execute("CREATE TABLE others (n INTEGER)")})
    assert migrated.execute("PRAGMA user_version").fetchone()[0] == 2
    migrated.close()


@pytest.mark.parametrize("value", ["{not json", None])
def test_a_damaged_engage_value_is_refused_with_the_file_and_the_row(tmp_path: Path, clock: Clock, value: Any) -> None:
    populated_database(clock, tmp_path)
    db = sqlite3.connect(tmp_path / DATABASE_NAME)
    with db:
        db.execute("UPDATE engage_state SET value = ? WHERE computation = 'orders'", (value,))
    db.close()
    with pytest.raises(SnapshotError, match=rf"{DATABASE_NAME}: workspace ws_\w+: 'orders' of 'u1': the stored value is not JSON"):
        SegmentStore(tmp_path).load()
