"""Workspaces of the fake Segment: full isolation by write key, so parallel CI jobs can share one server.

A `Workspace` holds what one Segment workspace has: its sources (write keys), the message store
and profiles (`SegmentBackend`), an Engage space with its own "Engage" source, and the Mailjet
destination's settings with its delivery records (`DeliveryPipeline`). Listeners (delivery,
Engage) are wired inside a workspace, so nothing crosses from one to another.

`Workspaces` is the registry, keyed by write key. The default workspace holds the bundle's write
key and the config's sources; control calls without a write key act on it, and a tracking call
with a write key no source owns is stored there as discarded (`unknown_write_key`), as before.
A new workspace starts as the default one does after a reset: the config's Engage definitions
and the Mailjet destination set up with the bundle's authentication key and list (with the
destination left off, `--no-enable`, without the key: `DeliveryPipeline.from_config`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from ..common.clock import Clock
from ..config import BundleConfig, BundleUrls
from .delivery import CLOCK_OWNER, DeliveryPipeline
from .engage import Audience, ComputationState, DefinitionError, EngageSpace, check_key
from .models import SegmentBackend, Source
from .storage import SegmentStore, WorkspaceRecorder, WorkspaceState, workspace_id


class WorkspaceError(ValueError):
    """A request about workspaces or sources that cannot be done; `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Workspace:
    """Sources, messages, profiles, Engage and delivery of one fake Segment workspace."""

    def __init__(
        self, write_key: str, sources: list[Source], config: BundleConfig, clock: Clock, urls: BundleUrls, owner: str
    ) -> None:
        self.write_key = write_key  # the key it was created with; its id and Engage space derive from it
        self.id = workspace_id(write_key)
        # Clock timers (retries, Engage syncs) carry this owner: resetting one workspace cancels its own.
        self.owner = owner
        self.backend = SegmentBackend.with_sources(config, clock, sources)
        self.engage = EngageSpace(self.backend, config, clock, owner=owner, space_key=write_key)
        self.pipeline = DeliveryPipeline.from_config(config, clock, urls, owner=owner)
        self.backend.add_listener(lambda stored: self.pipeline.submit(stored.message))
        self.recorder: WorkspaceRecorder | None = None

    def attach(self, store: SegmentStore) -> None:
        """Write every change of this workspace to `store` from now on."""
        self.recorder = store.recorder(self)
        self.backend.recorder = self.recorder.message_stored
        self.pipeline.changes = self.recorder
        self.engage.changes = self.recorder

    def reset(self) -> None:
        """Forget messages, profiles, deliveries; Engage and the destination back to the config. Sources stay."""
        self.clear()
        if self.recorder is not None:
            self.recorder.cleared()

    def add_source(self, source: Source) -> None:
        self.backend.add_source(source)
        if self.recorder is not None:
            self.recorder.sources_changed()

    def export(self, with_rows: bool = True) -> WorkspaceState:
        """The state to keep (storage) or export (snapshot); messages and deliveries only `with_rows`."""
        return WorkspaceState(
            self.write_key,
            list(self.backend.sources),
            self.pipeline.destination.to_json(),
            self.engage.engine.export_state(),
            list(self.backend.messages) if with_rows else [],
            self.pipeline.all_records() if with_rows else [],
            self.pipeline.dropped,
        )

    def restore(self, state: WorkspaceState) -> None:
        """Take `state` (sources already placed by the registry); nothing is delivered or synced again."""
        self.clear()
        self.backend.restore(state.messages)
        self.engage.restore(state.engage)  # after the messages: it re-evaluates the restored profiles
        self.pipeline.restore(state.destination, state.deliveries, state.deliveries_dropped)

    def close(self) -> None:
        """Stop its timers and its writes to the store (the workspace is being removed: a call still
        under way in it wrote its rows back, and a restart brought the workspace back); the caller
        awaits `pipeline.aclose()`."""
        self.clear()
        self.engage.close()
        self.recorder = self.backend.recorder = self.pipeline.changes = self.engage.changes = None

    def clear(self) -> None:
        """Reset in memory only (the storage is told by `reset`, or rewritten by the caller)."""
        self.backend.reset()
        self.engage.reset()
        self.pipeline.reset()


def check_source(name: Any, write_key: Any) -> None:
    """WorkspaceError unless `name` and `write_key` can make a source (uniqueness is the caller's)."""
    if not isinstance(name, str) or not name.strip():
        raise WorkspaceError('"name" must be a non-empty string')
    if not isinstance(write_key, str) or not write_key.strip() or write_key != write_key.strip():
        raise WorkspaceError('"write_key" must be a non-empty string without surrounding spaces')
    if ":" in write_key:
        # Basic auth's username ends at the first colon: calls signed with this key would come in
        # under a shorter one and be stored discarded (unknown_write_key).
        raise WorkspaceError('"write_key" must not contain \':\' (Basic auth could not carry it)')


# Computed traits whose value is a number (or null: an average of nothing, a sum beyond a double).
_NUMERIC = ("count", "sum", "avg")


def check_importable(states: list[WorkspaceState]) -> None:
    """WorkspaceError naming the place of what a snapshot holds that the API could never have made.

    A snapshot import's only: a database an older segjet wrote may hold what later rules refuse (a
    key 'email', a write key with ':'), and it still loads.
    """
    for index, state in enumerate(states):
        where = f"state.workspaces[{index}]"
        for number, source in enumerate(state.sources):
            try:
                check_source(source.name, source.write_key)
            except WorkspaceError as exc:
                raise WorkspaceError(f"{where}.sources[{number}]: {exc}") from None
        _check_definable(state.engage, where)
        for number, computation in enumerate(state.engage):
            _check_told(computation, f"{where}.engage[{number}]")
        _check_messages(state, where)


def _check_definable(engage: list[ComputationState], where: str) -> None:
    # Parsed as POST engage/audiences|traits parses them, keys unique and no definition depending
    # on itself (storage.py); what is left of the control API's rules is the keys it refuses.
    for index, computation in enumerate(engage):
        try:
            check_key(computation.definition.key)
        except DefinitionError as exc:
            raise WorkspaceError(f"{where}.engage[{index}].definition: {exc}") from None


def _check_told(computation: ComputationState, where: str) -> None:
    definition = computation.definition
    listed: set[str] = set()
    for user_id in computation.members:
        if user_id in listed:
            raise WorkspaceError(f"{where}.members: {user_id!r} is listed twice")
        listed.add(user_id)
    if isinstance(definition, Audience):
        if computation.values:
            raise WorkspaceError(f"{where}.values: an audience tells membership only; values are a computed trait's")
        return
    if computation.members:
        raise WorkspaceError(f"{where}.members: a computed trait tells values; members are an audience's")
    if definition.computed in _NUMERIC:
        for user_id, value in computation.values.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise WorkspaceError(
                    f"{where}.values[{user_id!r}]: a {definition.computed} is a number or null, got {value!r}"
                )


def _check_messages(state: WorkspaceState, where: str) -> None:
    """Each message accepted, or from a known source, from a source of the workspace.

    A repeated messageId is not checked: ingestion accepts one again 24 h on, or sooner after the
    clock was set back past the window's sweep, and the clock's history is not in the snapshot."""
    keys = {source.write_key for source in state.sources}
    for index, stored in enumerate(state.messages):
        # Engage's own source holds ':', which no source of the workspace may: its messages are
        # made inside the workspace.
        engage = ":" in stored.source.write_key
        if (stored.accepted or stored.source.known) and not engage and stored.source.write_key not in keys:
            raise WorkspaceError(
                f"{where}.messages[{index}].source: write key {stored.source.write_key!r} is no source of the workspace"
            )


class Workspaces:
    """The registry: workspaces by id, and by the write keys of their sources."""

    def __init__(self, config: BundleConfig, clock: Clock, urls: BundleUrls) -> None:
        self.config = config
        self.clock = clock
        self.urls = urls
        self.store: SegmentStore | None = None
        self._config_sources = Source.of_config(config)
        self.default = Workspace(config.write_key, list(self._config_sources), config, clock, urls, CLOCK_OWNER)
        self._by_id: dict[str, Workspace] = {self.default.id: self.default}
        self._by_key: dict[str, Workspace] = {source.write_key: self.default for source in self._config_sources}
        self._closing: set[asyncio.Task[None]] = set()  # connection pools of removed workspaces, closing

    def __iter__(self) -> Iterator[Workspace]:
        return iter(list(self._by_id.values()))

    def for_write_key(self, write_key: str) -> Workspace | None:
        return self._by_key.get(write_key)

    def for_tracking(self, write_key: str) -> Workspace:
        """Where a tracking call with this write key is stored (an unknown key: the default workspace)."""
        return self._by_key.get(write_key, self.default)

    def attach(self, store: SegmentStore) -> None:
        """Keep every workspace in `store`: restore what it holds, then write every change to it."""
        states = store.load()
        self.restore(states)
        self.store = store
        for workspace in self:
            workspace.attach(store)
            # Settings rows are rewritten (a new database gets its default workspace); the
            # messages and deliveries loaded are already there.
            store.settings_changed(workspace)
        for state in states:
            # Restoring drops the oldest finished records past the delivery log's cap before the
            # store listens: their rows go now, or every start would load and drop them again.
            workspace = self._by_id[workspace_id(state.write_key)]
            kept = {record.seq for record in workspace.pipeline.all_records()}
            for record in state.deliveries:
                if record.seq not in kept:
                    store.delivery_dropped(workspace, record, workspace.pipeline.dropped)
        store.flush()

    def add_source(self, name: str, write_key: str, workspace: str | None = None) -> tuple[Source, Workspace]:
        """A new source in a new workspace, or in the workspace with id `workspace`."""
        check_source(name, write_key)
        if write_key in self._by_key:
            raise WorkspaceError(f"write key {write_key!r} is already used by a source", status=409)
        source = Source.named(name, write_key)
        if workspace is None:
            target = self._create(write_key, [source])
        else:
            if not isinstance(workspace, str) or workspace not in self._by_id:
                raise WorkspaceError(f"no workspace with id {workspace!r}", status=404)
            target = self._by_id[workspace]
            target.add_source(source)
        self._by_key[write_key] = target
        return source, target

    def reset(self) -> None:
        """The whole service back to its start: added workspaces removed, the default one reset."""
        for workspace in self:
            if workspace is not self.default:
                workspace.close()
                del self._by_id[workspace.id]
                if self.store is not None:
                    self.store.workspace_removed(workspace.id)
                self._start_retiring(workspace.pipeline)
        self._by_key = {source.write_key: self.default for source in self._config_sources}
        self.default.backend.replace_sources(self._config_sources)
        self.default.reset()

    async def quiesce(self) -> None:
        """Return once no delivery sent before the last reset is still out, in any workspace (removed
        ones included): a reset answers only then (see DeliveryPipeline.quiesce)."""
        if self._closing:
            await asyncio.wait(self._closing)
        for workspace in self:  # one after the other: their requests are out together anyway
            await workspace.pipeline.quiesce()

    def _start_retiring(self, pipeline: DeliveryPipeline) -> None:
        """Close a removed workspace's pipeline once its requests in flight are answered (cancelled,
        they would leave the destination still writing their results to Mailjet); every quiesce,
        a reset's or an import's, waits for it meanwhile."""
        task = asyncio.get_running_loop().create_task(self._retire(pipeline))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _retire(pipeline: DeliveryPipeline) -> None:
        await pipeline.quiesce()
        await pipeline.aclose()

    def export(self) -> list[WorkspaceState]:
        return [workspace.export() for workspace in self]

    def restore(self, states: list[WorkspaceState]) -> list[Workspace]:
        """Make the workspaces hold `states` (already validated); answer the workspaces removed.

        The default workspace always stays (with the config's sources); one absent from `states`
        is left as after a reset. The caller closes the removed ones' connections.
        """
        config_keys = {source.write_key for source in self._config_sources}
        for state in states:
            if workspace_id(state.write_key) == self.default.id:
                continue
            for source in state.sources:
                if source.write_key in config_keys:
                    # The source would go to the default workspace, and the messages sent with its
                    # key stay in this one; with its own key, the workspace is left unreachable.
                    raise WorkspaceError(
                        f"workspace {workspace_id(state.write_key)} has a source with write key {source.write_key!r},"
                        " which --write-key or --config gives the default workspace; remove that source from --config"
                        " or give another --write-key"
                    )
        wanted = {workspace_id(state.write_key) for state in states}
        removed = [ws for ws in self if ws.id not in wanted and ws is not self.default]
        for workspace in removed:
            workspace.close()
            del self._by_id[workspace.id]
        self._by_key = {source.write_key: self.default for source in self._config_sources}
        self.default.backend.replace_sources(self._config_sources)
        if self.default.id not in wanted:
            self.default.clear()
        for state in states:
            # The config's write keys stay with the default workspace whatever the state says.
            sources = [source for source in state.sources if source.write_key not in self._by_key]
            workspace = self._by_id.get(workspace_id(state.write_key))
            if workspace is None:
                workspace = self._create(state.write_key, sources)
            elif workspace is self.default:
                workspace.backend.replace_sources(self._config_sources + sources)
            else:
                workspace.backend.replace_sources(sources)
            for source in sources:
                self._by_key[source.write_key] = workspace
            workspace.restore(state)
        return removed

    async def replace(self, states: list[WorkspaceState]) -> None:
        """A snapshot import: hold exactly `states` (validated), in memory and in the database.
        WorkspaceError, with nothing changed, for what the API could never have made (`check_importable`).

        The database is rewritten at once, before anything else can write to it (a save left to
        run while deliveries in flight are answered mixed old and new rows). Those deliveries are
        then answered, as at a reset, before the import answers.
        """
        check_importable(states)
        removed = self.restore(states)
        if self.store is not None:
            # Every imported message, not the capped feed that holds the newest: the profiles were
            # built from them all, and a restart rebuilds them from the database.
            imported = {workspace_id(state.write_key): state.messages for state in states}
            self.store.replace([
                dataclasses.replace(kept, messages=imported.get(workspace_id(kept.write_key), [])) for kept in self.export()
            ])
        for workspace in removed:
            self._start_retiring(workspace.pipeline)
        await self.quiesce()
        self.resume()

    def resume(self) -> None:
        """Send restored deliveries that were not waiting for a retry; in the event loop."""
        for workspace in self:
            workspace.pipeline.resume()

    async def aclose(self) -> None:
        """App shutdown: stop every timer and worker, close the connections and the database."""
        if self._closing:
            await asyncio.wait(self._closing)  # workspaces removed by a reset, still retiring
        for workspace in self:
            workspace.engage.close()
            await workspace.pipeline.aclose()
        if self.store is not None:
            self.store.close()

    def _create(self, write_key: str, sources: Iterable[Source]) -> Workspace:
        key = workspace_id(write_key)
        workspace = Workspace(
            write_key, list(sources), self.config, self.clock, self.urls, owner=f"{CLOCK_OWNER}:{key}"
        )
        self._by_id[key] = workspace
        if self.store is not None:
            workspace.attach(self.store)
            self.store.settings_changed(workspace)
        return workspace
