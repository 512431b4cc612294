"""The fake Segment's state as JSON, kept in SQLite (`segjet up --data-dir DIR`) or exported as a snapshot.

One form of the state serves both: the snapshot's `state` is `{"workspaces": [workspace...]}`, and
the database holds the same JSON, a row per message, per delivery record and per (definition,
userId) Engage told something, plus one row per workspace for the rest. Loading the database
reassembles the JSON and goes through the same parser as importing a snapshot, which validates
everything before anything is applied.

A workspace in JSON:
    {"id": "ws_...", "write_key": the key it was created with (its id and Engage space derive from it),
     "sources": [{"name", "writeKey"}], "destination": {"enabled", "settings"},
     "engage": [{"definition": {...}, "synced", "members": [userId...], "values": {userId: value}}],
     "messages": [stored message...], "deliveries": [delivery record...]}
The database's workspace row adds "deliveries_dropped": how many delivery records the cap dropped
since the last reset (their rows are deleted). A snapshot does not carry it: an import starts the
count again, as it does the events feed's (which a restart recounts from the messages, all kept).

What is not kept, because it is rebuilt: profiles and the dedupe window (replayed from the
messages), Engage's pending work (every profile is re-evaluated at the next sync, which sends only
what differs from the state kept), and the journal (it is a debugging aid).

Writes: models report changes (`recorder` of the backend, `changes` of the pipeline and the Engage
space) to a `WorkspaceRecorder`; `SegmentStore.flush()` writes everything pending in one
transaction. A sync writes the `engage_state` rows of the userIds it changed, not the workspace
row (schema 1 kept every member list in it, so each identify with Engage realtime cost O(all
members)). The app flushes before each response starts (so a 200 from the tracking API means
the message is in the database) and on the next loop turn after changes made by timers and
delivery workers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

from ..common.clock import EARLIEST, LATEST, iso, parse_iso
from ..common.json_body import MAX_DEPTH, fits_depth
from ..common import snapshot
from ..common.sqlite import DatabaseFileError, open_database, require_tables, transaction
from .delivery import STATES, DeliveryRecord, DestinationConfig, DestinationConfigError
from .engage import ComputationState, DefinitionError, Told, check_dependencies, definition_from_json
from .models import ACCEPTED, DISCARDED, Source, StoredMessage, ingest_problem

SNAPSHOT_VERSION = 1
SERVICE = "segment"
# A message's receivedAt is the virtual clock's time, which keeps between the clock's limits (past
# the upper one only by the real time run since it was set there). Further out, rebuilding the
# dedupe window from it overflowed datetime halfway through an import.
RECEIVED_AT_RANGE = (EARLIEST, LATEST + timedelta(days=366))
DATABASE_NAME = "segment.sqlite3"
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS workspaces (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    data TEXT NOT NULL  -- the workspace's JSON without messages, deliveries, Engage members and values, plus deliveries_dropped
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY,  -- arrival order
    workspace TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_workspace ON messages (workspace, seq);
CREATE TABLE IF NOT EXISTS deliveries (
    workspace TEXT NOT NULL,
    seq INTEGER NOT NULL,  -- DeliveryRecord.seq
    data TEXT NOT NULL,
    PRIMARY KEY (workspace, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS engage_state (
    -- What Engage last told the destination, per definition and userId; a row only for something
    -- told. A rowid table: loading in rowid order gives back the order values were first told.
    workspace TEXT NOT NULL,
    computation TEXT NOT NULL,  -- the definition's key
    user_id TEXT NOT NULL,
    member INTEGER NOT NULL,  -- 1: an audience member; 0: a computed trait's value
    value TEXT,  -- the computed trait's value as JSON (an audience: NULL)
    PRIMARY KEY (workspace, computation, user_id)
);
"""

# Version 1 kept each definition's members and values inside the workspace row; migrating a file
# from it creates this table (as version 2 has it: a later version migrates on from there).
_ENGAGE_STATE_V2 = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS engage_state"):]


class SnapshotError(ValueError):
    """State that cannot be loaded; the message names the JSON path at fault."""


@dataclass
class WorkspaceState:
    """Everything one workspace keeps, as objects; `workspace_to_json`/`workspace_from_json` convert."""

    write_key: str
    sources: list[Source]
    destination: dict[str, Any]
    engage: list[ComputationState]
    messages: list[StoredMessage] = field(default_factory=list)
    deliveries: list[DeliveryRecord] = field(default_factory=list)
    deliveries_dropped: int = 0  # the database's only, not a snapshot's (see the module's docstring)


# ---------------------------------------------------------------------------------------------
# Objects → JSON


def message_to_json(stored: StoredMessage) -> dict[str, Any]:
    # The times are not repeated: the message carries `receivedAt` and the corrected `timestamp`
    # as ingestion rendered them (a stub for a non-object batch item has `receivedAt` only).
    return {
        "message": stored.message,
        "source": stored.source.to_json(),
        "status": stored.status,
        "discard_reason": stored.discard_reason,
        "violations": list(stored.violations),
    }


def delivery_to_json(record: DeliveryRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "messageId": record.message_id,
        "type": record.type,
        "userId": record.user_id,
        "event": record.event,
        "body": record.body,
        "state": record.state,
        "reason": record.reason,
        "next_attempt_at": _iso_or_none(record.next_attempt_at),
        "attempts": list(record.attempts),
    }


def computation_to_json(state: ComputationState) -> dict[str, Any]:
    return {
        "definition": state.definition.to_json(),
        "synced": state.synced,
        "members": state.members,
        "values": state.values,
    }


def workspace_settings_to_json(state: WorkspaceState) -> dict[str, Any]:
    """The workspace without its messages and deliveries."""
    return {
        "id": workspace_id(state.write_key),
        "write_key": state.write_key,
        "sources": [{"name": source.name, "writeKey": source.write_key} for source in state.sources],
        "destination": state.destination,
        "engage": [computation_to_json(computation) for computation in state.engage],
    }


def workspace_to_json(state: WorkspaceState) -> dict[str, Any]:
    return {
        **workspace_settings_to_json(state),
        "messages": [message_to_json(stored) for stored in state.messages],
        "deliveries": [delivery_to_json(record) for record in state.deliveries],
    }


def _settings_row(state: WorkspaceState) -> dict[str, Any]:
    """The database's `workspaces.data`: the settings without Engage's members and values, which
    `engage_state` holds a row each (`_engage_rows`), and with the delivery log's dropped count."""
    document = workspace_settings_to_json(state)
    document["engage"] = [{"definition": item["definition"], "synced": item["synced"]} for item in document["engage"]]
    document["deliveries_dropped"] = state.deliveries_dropped
    return document


def _engage_rows(state: WorkspaceState) -> list[tuple[str, str, int, str | None]]:
    """(computation, user_id, member, value) of every userId the workspace's definitions told something."""
    return [row for computation in state.engage
            for row in _told_rows(computation.definition.key, computation.members, computation.values)]


def _told_rows(key: str, members: Iterable[str], values: Mapping[str, Any]) -> list[tuple[str, str, int, str | None]]:
    """One definition's (computation, user_id, member, value) rows: members, then values."""
    return [(key, user_id, 1, None) for user_id in members] + [
        (key, user_id, 0, _dumps(value)) for user_id, value in values.items()
    ]


def snapshot_document(workspaces: list[WorkspaceState], exported_at: datetime) -> dict[str, Any]:
    state = {"workspaces": [workspace_to_json(workspace) for workspace in workspaces]}
    return snapshot.snapshot_document(SERVICE, SNAPSHOT_VERSION, exported_at, state)


def workspace_id(write_key: str) -> str:
    """A workspace's id, derived from the write key it was created with (stable across restarts)."""
    return "ws_" + hashlib.sha256(f"workspace:{write_key}".encode()).hexdigest()[:20]


def _iso_or_none(moment: datetime | None) -> str | None:
    return iso(moment) if moment is not None else None


# ---------------------------------------------------------------------------------------------
# JSON → objects, validating everything (a snapshot may be hand-edited)


@snapshot.gc_paused()
def state_from_snapshot(document: Any) -> list[WorkspaceState]:
    """The workspaces of a snapshot document; SnapshotError on a wrong format, service, version or state."""
    return state_from_json(snapshot.snapshot_state(document, SERVICE, SNAPSHOT_VERSION, SnapshotError))


def state_from_json(state: Any) -> list[WorkspaceState]:
    state = _object(state, "state")
    workspaces = _list(state.get("workspaces"), "state.workspaces")
    parsed = [workspace_from_json(item, f"state.workspaces[{index}]") for index, item in enumerate(workspaces)]
    owners: dict[str, str] = {}
    for index, workspace in enumerate(parsed):
        for source in workspace.sources:
            if source.write_key in owners:
                raise SnapshotError(
                    f"state.workspaces[{index}]: write key {source.write_key!r} already belongs to {owners[source.write_key]}"
                )
            owners[source.write_key] = f"state.workspaces[{index}]"
    return parsed


def workspace_from_json(data: Any, where: str) -> WorkspaceState:
    data = _object(data, where)
    write_key = _string(data.get("write_key"), f"{where}.write_key")
    sources = []
    for index, item in enumerate(_list(data.get("sources"), f"{where}.sources")):
        item = _object(item, f"{where}.sources[{index}]")
        name = _string(item.get("name"), f"{where}.sources[{index}].name")
        sources.append(Source.named(name, _string(item.get("writeKey"), f"{where}.sources[{index}].writeKey")))
    if write_key not in [source.write_key for source in sources]:
        raise SnapshotError(f"{where}.sources must include the workspace's write_key {write_key!r}")
    destination = _object(data.get("destination"), f"{where}.destination")
    try:
        # Validated by the same rules as PUT destinations/mailjet, applied to a neutral base.
        DestinationConfig("http://validation.invalid", False, {"apiKey": "", "listId": "1"}).merged(destination)
    except DestinationConfigError as exc:
        raise SnapshotError(f"{where}.destination: {exc}") from exc
    engage = [
        computation_from_json(item, f"{where}.engage[{index}]")
        for index, item in enumerate(_list(data.get("engage"), f"{where}.engage"))
    ]
    keys = [computation.definition.key for computation in engage]
    if len(set(keys)) != len(keys):
        raise SnapshotError(f"{where}.engage: two definitions share a key")
    try:
        check_dependencies(computation.definition for computation in engage)
    except DefinitionError as exc:
        raise SnapshotError(f"{where}.engage: {exc}") from exc
    messages = [
        message_from_json(item, f"{where}.messages[{index}]")
        for index, item in enumerate(_list(data.get("messages", []), f"{where}.messages"))
    ]
    deliveries = [
        delivery_from_json(item, f"{where}.deliveries[{index}]")
        for index, item in enumerate(_list(data.get("deliveries", []), f"{where}.deliveries"))
    ]
    if [record.seq for record in deliveries] != sorted({record.seq for record in deliveries}):
        raise SnapshotError(f"{where}.deliveries: seq must be unique and increasing")
    return WorkspaceState(write_key, sources, destination, engage, messages, deliveries)


def computation_from_json(data: Any, where: str) -> ComputationState:
    data = _object(data, where)
    try:
        definition = definition_from_json(data.get("definition"))
    except DefinitionError as exc:
        raise SnapshotError(f"{where}.definition: {exc}") from exc
    synced = data.get("synced")
    if not isinstance(synced, bool):
        raise SnapshotError(f"{where}.synced must be true or false")
    members = [_string(user, f"{where}.members[{index}]") for index, user in enumerate(_list(data.get("members", []), f"{where}.members"))]
    values = _object(data.get("values", {}), f"{where}.values")
    return ComputationState(definition, synced, members, dict(values))


def message_from_json(data: Any, where: str) -> StoredMessage:
    data = _object(data, where)
    message = _deep_enough(_object(data.get("message"), f"{where}.message"), f"{where}.message")
    if not isinstance(message.get("messageId"), str):
        raise SnapshotError(f"{where}.message.messageId must be a string")
    source = _object(data.get("source"), f"{where}.source")
    source_id = source.get("id")
    if source_id is not None and not isinstance(source_id, str):
        raise SnapshotError(f"{where}.source.id must be a string or null")
    name = source.get("name")
    if name is not None and not isinstance(name, str):
        raise SnapshotError(f"{where}.source.name must be a string or null")
    status = data.get("status")
    if status not in (ACCEPTED, DISCARDED):
        raise SnapshotError(f"{where}.status must be {ACCEPTED!r} or {DISCARDED!r}")
    reason = data.get("discard_reason")
    if (reason is None) != (status == ACCEPTED) or (reason is not None and not isinstance(reason, str)):
        raise SnapshotError(f"{where}.discard_reason must be a string for a discarded message, null otherwise")
    violations = _list(data.get("violations", []), f"{where}.violations")
    # An accepted message is filed on a profile on restore, which relies on what ingestion checked.
    problem = ingest_problem(message) if status == ACCEPTED else None
    if problem is not None:
        raise SnapshotError(
            f"{where}.message: ingestion would have discarded it ({problem}), yet status is {ACCEPTED!r}"
        )
    # Checked here so that a bad time is refused with its place; the backend parses them again on restore.
    _received_at(message, f"{where}.message.receivedAt")
    if "timestamp" in message:
        _time(message["timestamp"], f"{where}.message.timestamp")
    return StoredMessage(
        message,
        Source(name, _string(source.get("writeKey"), f"{where}.source.writeKey"), source_id),
        discard_reason=reason,
        violations=tuple(violations),
    )


def delivery_from_json(data: Any, where: str) -> DeliveryRecord:
    data = _object(data, where)
    seq = data.get("seq")
    # Bounded: it is a SQLite key, and the workspace's next records are numbered on from it.
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= snapshot.MAX_ID:
        raise SnapshotError(f"{where}.seq must be a positive integer of at most {snapshot.MAX_ID}")
    state = data.get("state")
    if state not in STATES:
        raise SnapshotError(f"{where}.state must be one of {', '.join(STATES)}, got {state!r}")
    next_attempt_at = _optional_time(data.get("next_attempt_at"), f"{where}.next_attempt_at")
    if state == "retrying" and next_attempt_at is None:
        raise SnapshotError(f"{where}: a retrying record needs next_attempt_at")
    for name in ("type", "userId", "event", "reason"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise SnapshotError(f"{where}.{name} must be a string or null")
    body = _deep_enough(_object(data.get("body"), f"{where}.body"), f"{where}.body")
    _received_at(body, f"{where}.body.receivedAt")  # its retry window counts from it
    return DeliveryRecord(
        seq=seq,
        message_id=_string(data.get("messageId"), f"{where}.messageId"),
        type=data.get("type"),
        user_id=data.get("userId"),
        event=data.get("event"),
        body=body,
        state=state,
        reason=data.get("reason"),
        next_attempt_at=next_attempt_at,
        attempts=tuple(_object(item, f"{where}.attempts[{index}]") for index, item in enumerate(_list(data.get("attempts", []), f"{where}.attempts"))),
    )


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SnapshotError(f"{where} must be a JSON object")
    return value


def _deep_enough(value: dict[str, Any], where: str) -> dict[str, Any]:
    # A snapshot may nest deeper than a body (decode_snapshot); what it holds may not.
    if not fits_depth(value):
        raise SnapshotError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise SnapshotError(f"{where} must be a list")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise SnapshotError(f"{where} must be a non-empty string")
    return value


def _time(value: Any, where: str) -> datetime:
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise SnapshotError(f"{where}: {exc}") from exc


def _received_at(message: dict[str, Any], where: str) -> None:
    """Refuse a receivedAt that is no time, or one outside the virtual clock's range."""
    received_at = _time(message.get("receivedAt"), where)
    if not RECEIVED_AT_RANGE[0] <= received_at <= RECEIVED_AT_RANGE[1]:
        raise SnapshotError(
            f"{where}: must be between {iso(RECEIVED_AT_RANGE[0])} and {iso(RECEIVED_AT_RANGE[1])}, the virtual clock's range"
        )


def _optional_time(value: Any, where: str) -> datetime | None:
    return None if value is None else _time(value, where)


# ---------------------------------------------------------------------------------------------
# The database


class Workspace(Protocol):
    """What the store reads from a workspace (workspaces.Workspace)."""

    id: str

    def export(self, with_rows: bool = True) -> WorkspaceState: ...


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _row(data: Any, what: str) -> dict[str, Any]:
    """A stored row's JSON object; SnapshotError (not a crash at start) for one damaged by hand."""
    try:
        value = snapshot.read_stored_json(data)
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"{what}: the stored row is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise SnapshotError(f"{what}: the stored row is not a JSON object")
    return value


def _json_value(data: Any, what: str) -> Any:
    """A stored JSON value; SnapshotError (not a crash at start) for one damaged by hand."""
    try:
        return snapshot.read_stored_json(data)
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"{what}: the stored value is not JSON ({exc})") from None


_ENGAGE_UPSERT = (
    "INSERT INTO engage_state (workspace, computation, user_id, member, value) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (workspace, computation, user_id) DO UPDATE SET member = excluded.member, value = excluded.value"
)


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    """Schema 1 → 2: each definition's `members` and `values` move from the workspace row to
    `engage_state`. A row or item that is not as version 1 wrote it is left as it is, for `load`
    to refuse with its place."""
    require_tables(db, ("workspaces", "messages", "deliveries"))  # not another program's file
    db.execute(_ENGAGE_STATE_V2)
    for workspace, data in db.execute("SELECT id, data FROM workspaces").fetchall():
        try:
            document = json.loads(data)
        except (TypeError, ValueError, RecursionError):
            continue
        engage = document.get("engage") if isinstance(document, dict) else None
        if not isinstance(engage, list):
            continue
        rows: list[tuple[str, str, str, int, str | None]] = []
        for item in engage:
            definition = item.get("definition") if isinstance(item, dict) else None
            key = definition.get("key") if isinstance(definition, dict) else None
            members, values = (item.get("members", []), item.get("values", {})) if key is not None else (None, None)
            if (not isinstance(key, str) or not isinstance(members, list) or not isinstance(values, dict)
                    or not all(isinstance(user_id, str) for user_id in members) or set(members) & set(values)):
                continue
            rows += [(workspace, *row) for row in _told_rows(key, members, values)]
            item.pop("members", None)
            item.pop("values", None)
        db.executemany(_ENGAGE_UPSERT, rows)
        db.execute("UPDATE workspaces SET data = ? WHERE id = ?", (_dumps(document), workspace))


class SegmentStore:
    """`DIR/segment.sqlite3`: load at start, write what changed in one transaction per flush."""

    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / DATABASE_NAME
        self.db = open_database(self.path, SCHEMA, SCHEMA_VERSION, migrations={1: _migrate_1_to_2})
        self._cleared: set[str] = set()  # workspaces whose rows go before this flush's writes
        self._settings: dict[str, Workspace] = {}  # workspaces whose settings row is rewritten
        self._messages: list[tuple[str, StoredMessage]] = []
        self._deliveries: dict[tuple[str, int], DeliveryRecord] = {}
        self._dropped: set[tuple[str, int]] = set()
        self._dropped_counts: dict[str, int] = {}  # each workspace's delivery log's count, for its row
        # Engage: definitions deleted (their rows go), then what syncs told per (workspace, key).
        self._untold: set[tuple[str, str]] = set()
        self._told: dict[tuple[str, str], dict[str, Told]] = {}
        self._flush_scheduled = False

    @snapshot.gc_paused()
    def load(self) -> list[WorkspaceState]:
        """The state kept in the database, parsed and validated as a snapshot's state is."""
        try:
            workspaces, dropped_counts = [], []
            for workspace, data in self.db.execute("SELECT id, data FROM workspaces ORDER BY position").fetchall():
                document = _row(data, f"workspace {workspace}")
                # Absent from a row an older segjet wrote: nothing counted then.
                dropped = document.pop("deliveries_dropped", 0)
                if not isinstance(dropped, int) or isinstance(dropped, bool) or dropped < 0:
                    raise SnapshotError(f"workspace {workspace}: deliveries_dropped must be a non-negative integer")
                dropped_counts.append(dropped)
                told: dict[str, tuple[list[str], dict[str, Any]]] = {}
                for computation, user_id, member, value in self.db.execute(
                    "SELECT computation, user_id, member, value FROM engage_state WHERE workspace = ? ORDER BY rowid",
                    (workspace,),
                ):
                    members, values = told.setdefault(computation, ([], {}))
                    if member:
                        members.append(user_id)
                    else:
                        values[user_id] = _json_value(value, f"workspace {workspace}: {computation!r} of {user_id!r}")
                engage = document.get("engage")
                for item in engage if isinstance(engage, list) else []:
                    definition = item.get("definition") if isinstance(item, dict) else None
                    key = definition.get("key") if isinstance(definition, dict) else None
                    if isinstance(key, str):
                        # A row still holding them (a version-1 item the migration could not move)
                        # keeps its own, and is validated as such.
                        members, values = told.get(key, ([], {}))
                        item.setdefault("members", members)
                        item.setdefault("values", values)
                document["messages"] = [
                    _row(row[0], f"a message of workspace {workspace}")
                    for row in self.db.execute("SELECT data FROM messages WHERE workspace = ? ORDER BY seq", (workspace,))
                ]
                document["deliveries"] = [
                    _row(row[0], f"a delivery record of workspace {workspace}")
                    for row in self.db.execute("SELECT data FROM deliveries WHERE workspace = ? ORDER BY seq", (workspace,))
                ]
                workspaces.append(document)
            states = state_from_json({"workspaces": workspaces})
            for state, dropped in zip(states, dropped_counts):
                state.deliveries_dropped = dropped
            return states
        except sqlite3.DatabaseError as exc:  # damaged pages past the header: "database disk image is malformed"
            raise DatabaseFileError(f"{self.path}: {exc}; use another --data-dir or delete the file") from None
        except SnapshotError as exc:
            raise SnapshotError(f"{self.path}: {exc}") from exc

    def replace(self, workspaces: list[WorkspaceState]) -> None:
        """Make the database hold exactly `workspaces` (a snapshot import), in one transaction."""
        self._discard_pending()
        with transaction(self.db):
            for table in ("workspaces", "messages", "deliveries", "engage_state"):
                self.db.execute(f"DELETE FROM {table}")
            for position, state in enumerate(workspaces):
                key = workspace_id(state.write_key)
                self.db.execute(
                    "INSERT INTO workspaces (id, position, data) VALUES (?, ?, ?)",
                    (key, position, _dumps(_settings_row(state))),
                )
                self.db.executemany(_ENGAGE_UPSERT, [(key, *row) for row in _engage_rows(state)])
                self.db.executemany(
                    "INSERT INTO messages (workspace, data) VALUES (?, ?)",
                    [(key, _dumps(message_to_json(stored))) for stored in state.messages],
                )
                self.db.executemany(
                    "INSERT INTO deliveries (workspace, seq, data) VALUES (?, ?, ?)",
                    [(key, record.seq, _dumps(delivery_to_json(record))) for record in state.deliveries],
                )

    def recorder(self, workspace: Workspace) -> WorkspaceRecorder:
        return WorkspaceRecorder(self, workspace)

    # -- pending changes -----------------------------------------------------------------------

    def settings_changed(self, workspace: Workspace) -> None:
        self._settings[workspace.id] = workspace
        self._schedule_flush()

    def message_stored(self, workspace: Workspace, stored: StoredMessage) -> None:
        self._messages.append((workspace.id, stored))
        self._schedule_flush()

    def delivery_changed(self, workspace: Workspace, record: DeliveryRecord) -> None:
        self._deliveries[(workspace.id, record.seq)] = record
        self._dropped.discard((workspace.id, record.seq))
        self._schedule_flush()

    def delivery_dropped(self, workspace: Workspace, record: DeliveryRecord, dropped: int) -> None:
        """The cap pushed `record` out: its row goes; `dropped` is the workspace's count with it."""
        self._deliveries.pop((workspace.id, record.seq), None)
        self._dropped.add((workspace.id, record.seq))
        self._dropped_counts[workspace.id] = dropped
        self._schedule_flush()

    def engage_told(self, workspace: Workspace, computation: str, told: Mapping[str, Told]) -> None:
        """A sync changed what `computation` (a definition's key) told these userIds."""
        self._told.setdefault((workspace.id, computation), {}).update(told)
        self._schedule_flush()

    def engage_removed(self, workspace: Workspace, computation: str) -> None:
        """The definition was deleted: its rows go (before any told afterwards, under a new one)."""
        self._told.pop((workspace.id, computation), None)
        self._untold.add((workspace.id, computation))
        self._schedule_flush()

    def workspace_cleared(self, workspace: Workspace) -> None:
        """The workspace was reset: its messages and deliveries go; what it holds now is written."""
        self._forget_pending(workspace.id)
        self._cleared.add(workspace.id)
        self.settings_changed(workspace)

    def workspace_removed(self, workspace_key: str) -> None:
        self._forget_pending(workspace_key)
        self._settings.pop(workspace_key, None)
        self._cleared.add(workspace_key)
        self._schedule_flush()

    def flush(self) -> None:
        """Write everything pending in one transaction (a no-op when nothing is)."""
        self._flush_scheduled = False
        if not (self._cleared or self._settings or self._messages or self._deliveries or self._dropped
                or self._dropped_counts or self._untold or self._told):
            return
        cleared, settings, messages = self._cleared, self._settings, self._messages
        deliveries, dropped, dropped_counts = self._deliveries, self._dropped, self._dropped_counts
        untold, told = self._untold, self._told
        self._discard_pending()
        try:
            self._write(cleared, settings, messages, deliveries, dropped, dropped_counts, untold, told)
        except BaseException:
            # Rolled back (a full disk, say): kept for the next flush, or the messages a 200 or a
            # 500 answered would be in memory (a retry of them a duplicate) and never on disk.
            # Nothing was recorded meanwhile: a flush runs without yielding to the event loop.
            self._cleared, self._settings, self._messages = cleared, settings, messages
            self._deliveries, self._dropped, self._dropped_counts = deliveries, dropped, dropped_counts
            self._untold, self._told = untold, told
            raise

    def _write(
        self,
        cleared: set[str],
        settings: dict[str, Workspace],
        messages: list[tuple[str, StoredMessage]],
        deliveries: dict[tuple[str, int], DeliveryRecord],
        dropped: set[tuple[str, int]],
        dropped_counts: dict[str, int],
        untold: set[tuple[str, str]],
        told: dict[tuple[str, str], dict[str, Told]],
    ) -> None:
        with transaction(self.db):
            for key in cleared:
                self.db.execute("DELETE FROM messages WHERE workspace = ?", (key,))
                self.db.execute("DELETE FROM deliveries WHERE workspace = ?", (key,))
                self.db.execute("DELETE FROM engage_state WHERE workspace = ?", (key,))
                if key not in settings:
                    self.db.execute("DELETE FROM workspaces WHERE id = ?", (key,))
            if untold:
                self.db.executemany("DELETE FROM engage_state WHERE workspace = ? AND computation = ?", sorted(untold))
            for key, workspace in settings.items():
                data = _dumps(_settings_row(workspace.export(with_rows=False)))
                self.db.execute(
                    "INSERT INTO workspaces (id, position, data)"
                    " VALUES (?, (SELECT COALESCE(MAX(position), -1) + 1 FROM workspaces), ?)"
                    " ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                    (key, data),
                )
            if messages:
                self.db.executemany(
                    "INSERT INTO messages (workspace, data) VALUES (?, ?)",
                    [(key, _dumps(message_to_json(stored))) for key, stored in messages],
                )
            if deliveries:
                self.db.executemany(
                    "INSERT OR REPLACE INTO deliveries (workspace, seq, data) VALUES (?, ?, ?)",
                    [(key, seq, _dumps(delivery_to_json(record))) for (key, seq), record in deliveries.items()],
                )
            if dropped:
                self.db.executemany("DELETE FROM deliveries WHERE workspace = ? AND seq = ?", sorted(dropped))
            if dropped_counts:
                # Only the count, not the whole settings row: writing that exports Engage's members,
                # O(all members), and once the log is full every message drops a record.
                self.db.executemany(
                    "UPDATE workspaces SET data = json_set(data, '$.deliveries_dropped', ?) WHERE id = ?",
                    [(count, key) for key, count in dropped_counts.items()],
                )
            upserts, deletes = [], []
            for (key, computation), users in told.items():
                for user_id, state in users.items():
                    if state is None:
                        deletes.append((key, computation, user_id))
                    else:
                        member, value = state
                        upserts.append((key, computation, user_id, 1 if member else 0, None if member else _dumps(value)))
            if deletes:
                self.db.executemany(
                    "DELETE FROM engage_state WHERE workspace = ? AND computation = ? AND user_id = ?", deletes
                )
            if upserts:
                self.db.executemany(_ENGAGE_UPSERT, upserts)

    def close(self) -> None:
        self.flush()
        self.db.close()

    def _schedule_flush(self) -> None:
        # Changes made outside a request (timers, delivery workers) are written on the next loop
        # turn; a request's own changes are flushed before its response starts (FlushBeforeAnswer).
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # building the app, or a unit test: the next explicit flush() writes it
        self._flush_scheduled = True
        loop.call_soon(self.flush)

    def _forget_pending(self, workspace_key: str) -> None:
        self._messages = [(key, stored) for key, stored in self._messages if key != workspace_key]
        self._deliveries = {ids: record for ids, record in self._deliveries.items() if ids[0] != workspace_key}
        self._dropped = {ids for ids in self._dropped if ids[0] != workspace_key}
        self._dropped_counts.pop(workspace_key, None)
        # Its engage_state rows all go with the clear; what is told after it is written after.
        self._untold = {ids for ids in self._untold if ids[0] != workspace_key}
        self._told = {ids: told for ids, told in self._told.items() if ids[0] != workspace_key}

    def _discard_pending(self) -> None:
        self._cleared, self._settings, self._messages = set(), {}, []
        self._deliveries, self._dropped, self._dropped_counts, self._untold, self._told = {}, set(), {}, set(), {}


class WorkspaceRecorder:
    """One workspace's view of the store: the hooks its backend, pipeline and Engage space call."""

    def __init__(self, store: SegmentStore, workspace: Workspace) -> None:
        self.store = store
        self.workspace = workspace

    def message_stored(self, stored: StoredMessage) -> None:
        self.store.message_stored(self.workspace, stored)

    def delivery_changed(self, record: DeliveryRecord) -> None:
        self.store.delivery_changed(self.workspace, record)

    def delivery_dropped(self, record: DeliveryRecord, dropped: int) -> None:
        self.store.delivery_dropped(self.workspace, record, dropped)

    def destination_changed(self) -> None:
        self.store.settings_changed(self.workspace)

    def engage_changed(self) -> None:
        """Definitions or their `synced` changed (the workspace row; members and values are not in it)."""
        self.store.settings_changed(self.workspace)

    def engage_told(self, computation: str, told: Mapping[str, Told]) -> None:
        self.store.engage_told(self.workspace, computation, told)

    def engage_removed(self, computation: str) -> None:
        self.store.engage_removed(self.workspace, computation)

    def sources_changed(self) -> None:
        self.store.settings_changed(self.workspace)

    def cleared(self) -> None:
        self.store.workspace_cleared(self.workspace)
