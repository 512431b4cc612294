"""The fake Segment's state as JSON, kept in SQLite (`segjet up --data-dir DIR`) or exported as a snapshot.

One form of the state serves both: the snapshot's `state` is `{"workspaces": [workspace...]}`, and
the database holds the same JSON, a row per message and per delivery record plus one row per
workspace for the rest. Loading the database goes through the same parser as importing a snapshot,
which validates everything before anything is applied.

A workspace in JSON:
    {"id": "ws_...", "write_key": the key it was created with (its id and Engage space derive from it),
     "sources": [{"name", "writeKey"}], "destination": {"enabled", "settings"},
     "engage": [{"definition": {...}, "synced", "members": [userId...], "values": {userId: value}}],
     "messages": [stored message...], "deliveries": [delivery record...]}

What is not kept, because it is rebuilt: profiles and the dedupe window (replayed from the
messages), Engage's pending work (every profile is re-evaluated at the next sync, which sends only
what differs from the state kept), and the journal (it is a debugging aid).

Writes: models report changes (`recorder` of the backend, `changes` of the pipeline and the Engage
space) to a `WorkspaceRecorder`; `SegmentStore.flush()` writes everything pending in one
transaction. The app flushes before each response starts (so a 200 from the tracking API means
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
from typing import Any, Protocol

from ..common.clock import EARLIEST, LATEST, iso, parse_iso
from ..common.json_body import MAX_DEPTH, fits_depth
from ..common import snapshot
from ..common.sqlite import DatabaseFileError, open_database, transaction
from .delivery import STATES, DeliveryRecord, DestinationConfig, DestinationConfigError
from .engage import ComputationState, DefinitionError, check_dependencies, definition_from_json
from .models import ACCEPTED, DISCARDED, Source, StoredMessage, ingest_problem

SNAPSHOT_VERSION = 1
SERVICE = "segment"
# A message's receivedAt is the virtual clock's time, which keeps between the clock's limits (past
# the upper one only by the real time run since it was set there). Further out, rebuilding the
# dedupe window from it overflowed datetime halfway through an import.
RECEIVED_AT_RANGE = (EARLIEST, LATEST + timedelta(days=366))
DATABASE_NAME = "segment.sqlite3"
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS workspaces (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    data TEXT NOT NULL  -- the workspace's JSON without messages and deliveries
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
"""


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
        "first_attempt_at": _iso_or_none(record.first_attempt_at),
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
    """The workspace without its messages and deliveries (the database's `workspaces.data`)."""
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
    received_at = _time(message.get("receivedAt"), f"{where}.message.receivedAt")
    if not RECEIVED_AT_RANGE[0] <= received_at <= RECEIVED_AT_RANGE[1]:
        raise SnapshotError(
            f"{where}.message.receivedAt: must be between {iso(RECEIVED_AT_RANGE[0])} and {iso(RECEIVED_AT_RANGE[1])}, "
            "the virtual clock's range"
        )
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
    return DeliveryRecord(
        seq=seq,
        message_id=_string(data.get("messageId"), f"{where}.messageId"),
        type=data.get("type"),
        user_id=data.get("userId"),
        event=data.get("event"),
        body=_deep_enough(_object(data.get("body"), f"{where}.body"), f"{where}.body"),
        state=state,
        reason=data.get("reason"),
        next_attempt_at=next_attempt_at,
        first_attempt_at=_optional_time(data.get("first_attempt_at"), f"{where}.first_attempt_at"),
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
        value = json.loads(data)
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"{what}: the stored row is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise SnapshotError(f"{what}: the stored row is not a JSON object")
    return value


class SegmentStore:
    """`DIR/segment.sqlite3`: load at start, write what changed in one transaction per flush."""

    def __init__(self, data_dir: Path | str) -> None:
        self.path = Path(data_dir) / DATABASE_NAME
        self.db = open_database(self.path, SCHEMA, SCHEMA_VERSION)
        self._cleared: set[str] = set()  # workspaces whose rows go before this flush's writes
        self._settings: dict[str, Workspace] = {}  # workspaces whose settings row is rewritten
        self._messages: list[tuple[str, StoredMessage]] = []
        self._deliveries: dict[tuple[str, int], DeliveryRecord] = {}
        self._dropped: set[tuple[str, int]] = set()
        self._flush_scheduled = False

    def load(self) -> list[WorkspaceState]:
        """The state kept in the database, parsed and validated as a snapshot's state is."""
        try:
            workspaces = []
            for workspace, data in self.db.execute("SELECT id, data FROM workspaces ORDER BY position").fetchall():
                document = _row(data, f"workspace {workspace}")
                document["messages"] = [
                    _row(row[0], f"a message of workspace {workspace}")
                    for row in self.db.execute("SELECT data FROM messages WHERE workspace = ? ORDER BY seq", (workspace,))
                ]
                document["deliveries"] = [
                    _row(row[0], f"a delivery record of workspace {workspace}")
                    for row in self.db.execute("SELECT data FROM deliveries WHERE workspace = ? ORDER BY seq", (workspace,))
                ]
                workspaces.append(document)
            return state_from_json({"workspaces": workspaces})
        except sqlite3.DatabaseError as exc:  # damaged pages past the header: "database disk image is malformed"
            raise DatabaseFileError(f"{self.path}: {exc}; use another --data-dir or delete the file") from None
        except SnapshotError as exc:
            raise SnapshotError(f"{self.path}: {exc}") from exc

    def replace(self, workspaces: list[WorkspaceState]) -> None:
        """Make the database hold exactly `workspaces` (a snapshot import), in one transaction."""
        self._discard_pending()
        with transaction(self.db):
            for table in ("workspaces", "messages", "deliveries"):
                self.db.execute(f"DELETE FROM {table}")
            for position, state in enumerate(workspaces):
                key = workspace_id(state.write_key)
                self.db.execute(
                    "INSERT INTO workspaces (id, position, data) VALUES (?, ?, ?)",
                    (key, position, _dumps(workspace_settings_to_json(state))),
                )
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

    def delivery_dropped(self, workspace: Workspace, record: DeliveryRecord) -> None:
        self._deliveries.pop((workspace.id, record.seq), None)
        self._dropped.add((workspace.id, record.seq))
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
        if not (self._cleared or self._settings or self._messages or self._deliveries or self._dropped):
            return
        cleared, settings, messages = self._cleared, self._settings, self._messages
        deliveries, dropped = self._deliveries, self._dropped
        self._discard_pending()
        try:
            self._write(cleared, settings, messages, deliveries, dropped)
        except BaseException:
            # Rolled back (a full disk, say): kept for the next flush, or the messages a 200 or a
            # 500 answered would be in memory (a retry of them a duplicate) and never on disk.
            # Nothing was recorded meanwhile: a flush runs without yielding to the event loop.
            self._cleared, self._settings, self._messages = cleared, settings, messages
            self._deliveries, self._dropped = deliveries, dropped
            raise

    def _write(
        self,
        cleared: set[str],
        settings: dict[str, Workspace],
        messages: list[tuple[str, StoredMessage]],
        deliveries: dict[tuple[str, int], DeliveryRecord],
        dropped: set[tuple[str, int]],
    ) -> None:
        with transaction(self.db):
            for key in cleared:
                self.db.execute("DELETE FROM messages WHERE workspace = ?", (key,))
                self.db.execute("DELETE FROM deliveries WHERE workspace = ?", (key,))
                if key not in settings:
                    self.db.execute("DELETE FROM workspaces WHERE id = ?", (key,))
            for key, workspace in settings.items():
                data = _dumps(workspace_settings_to_json(workspace.export(with_rows=False)))
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

    def _discard_pending(self) -> None:
        self._cleared, self._settings, self._messages = set(), {}, []
        self._deliveries, self._dropped = {}, set()


class WorkspaceRecorder:
    """One workspace's view of the store: the hooks its backend, pipeline and Engage space call."""

    def __init__(self, store: SegmentStore, workspace: Workspace) -> None:
        self.store = store
        self.workspace = workspace

    def message_stored(self, stored: StoredMessage) -> None:
        self.store.message_stored(self.workspace, stored)

    def delivery_changed(self, record: DeliveryRecord) -> None:
        self.store.delivery_changed(self.workspace, record)

    def delivery_dropped(self, record: DeliveryRecord) -> None:
        self.store.delivery_dropped(self.workspace, record)

    def destination_changed(self) -> None:
        self.store.settings_changed(self.workspace)

    def engage_changed(self) -> None:
        self.store.settings_changed(self.workspace)

    def sources_changed(self) -> None:
        self.store.settings_changed(self.workspace)

    def cleared(self) -> None:
        self.store.workspace_cleared(self.workspace)
