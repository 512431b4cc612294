"""The bundle: fake Segment, fake Mailjet and the Mailjet destination, wired together.

All three are real uvicorn servers on real sockets in one event loop, sharing one virtual
clock. `Bundle` runs inside a caller's loop (`segjet up`); `BackgroundBundle` runs it on a
thread of its own (tests, the pytest plugin, `segjet demo`).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import math
import os
import socket
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from starlette.applications import Starlette

from destination.app import create_app as create_destination_app
from destination.keyring import MailjetAccount

from .common.clock import EARLIEST, LATEST, Clock, iso
from .common.server import LoopThread, Runner, bind, url_of
from .config import BundleConfig, BundleUrls
from .mailjet.routes import create_app as create_mailjet_app
from .mailjet.service import MailjetService
from .segment.routes import create_app as create_segment_app
from .segment.workspaces import Workspaces


# With --data-dir, what the bundle itself keeps across restarts (each fake keeps its own state):
# the generated authentication key (the fake Segment's destination settings and Mailjet's App
# Connections page hold it) and the shared virtual clock's offset, so that retries and syncs
# scheduled in virtual time are still due when they should be.
BUNDLE_STATE_FILE = "bundle.json"
LOCK_FILE = "segjet.lock"

log = logging.getLogger("segjet.bundle")


def _read_bundle_state(data_dir: str) -> dict[str, Any]:
    try:
        state = json.loads((Path(data_dir) / BUNDLE_STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{Path(data_dir) / BUNDLE_STATE_FILE}: {exc}") from exc
    return state if isinstance(state, dict) else {}


def remembered_auth_key(data_dir: str) -> str | None:
    """The authentication key a start on `data_dir` without --auth-key takes: the one its state is
    wired with (generated at the first start), or the one a start was moving it to when it was
    killed (the next start finishes that move); None for a new data dir."""
    state = _read_bundle_state(data_dir)
    return _key_in(state, "moving_to") or _key_in(state, "auth_key")


def _key_in(state: dict[str, Any], field: str) -> str | None:
    """bundle.json's `field` ("auth_key", "moving_to") when it holds a key."""
    key = state.get(field)
    return key if isinstance(key, str) and key else None


def _restored_time(offset_seconds: float) -> datetime:
    """Real time plus the saved clock offset, kept within the clock's range (with a warning).

    The virtual clock runs on while the bundle is stopped, so a clock set at its upper limit is past
    it at the next start; a data dir must never stop the bundle from starting.
    """
    now = datetime.now(timezone.utc)
    try:
        saved: datetime | None = now + timedelta(seconds=offset_seconds)
    except OverflowError:  # an offset edited by hand, beyond datetime's range: out of range too
        saved = None
    if saved is None:
        moment = LATEST if offset_seconds > 0 else EARLIEST
    else:
        moment = min(max(saved, EARLIEST), LATEST)
    if moment != saved:
        log.warning("segjet: the virtual clock saved in the data dir is out of range; it starts at %s", iso(moment))
    return moment


def data_dir_held(data_dir: str) -> bool:
    """Whether another segjet holds `data_dir` now (its lock taken); asked without making anything."""
    try:
        with (Path(data_dir) / LOCK_FILE).open("r", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released as the file closes
    except BlockingIOError:
        return True
    except OSError:
        return False  # no data dir, or no lock file: nobody holds it
    return False


def _lock_data_dir(data_dir: str) -> TextIO:
    """Hold DIR/segjet.lock for the bundle's life: two bundles on one data dir would each write over
    what the other answered 2xx for (ids, rows), and neither would notice."""
    path = Path(data_dir)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # readable by this user only: keys, databases
        lock = (path / LOCK_FILE).open("a+", encoding="utf-8")
    except OSError as exc:
        raise OSError(f"--data-dir {data_dir}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip()
        lock.close()
        raise OSError(f"--data-dir {data_dir} is in use by another segjet{f' (pid {holder})' if holder else ''}") from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def _bind(host: str, port: int, server: str, flag: str) -> socket.socket:
    try:
        return bind(host, port)
    except OSError as exc:
        raise OSError(f"{server} cannot listen on {host}:{port}: {exc.strerror or exc} ({flag}; 0 picks a free port)") from None


class AppConnectionKeys:
    """The destination's keys in a bundle: each fake Mailjet account's, as its App Connections →
    Segment page shows it now, as real Mailjet knows the keys it hands out. A key changed there
    (`PUT /_emulator/app-connections/segment`, a snapshot import, an added account) is the one the
    destination takes from then on, and the one it replaced is refused."""

    def __init__(self, service: MailjetService, mailjet_url: str) -> None:
        self.service = service
        self.mailjet_url = mailjet_url

    def account_for(self, auth_key: str) -> MailjetAccount | None:
        tenant = self.service.tenant_with_authentication_key(auth_key)
        if tenant is None:
            return None
        return MailjetAccount(self.mailjet_url, tenant.account.api_key, tenant.account.secret_key)


class Bundle:
    def __init__(self, config: BundleConfig) -> None:
        # A copy: a start may take the authentication key the stored state holds (_take_page_key).
        self.config = replace(config)
        self.clock = Clock()
        self._lock: TextIO | None = None
        # The authentication key the stored state is wired with; it stays the one bundle.json names
        # until `_follow_auth_key` has moved the state to this start's key (a start that fails before,
        # on a port in use say, must leave the next one something to follow).
        self._wired_auth_key = config.auth_key
        # The key a move of the stored state was going to when a kill cut it short: the tiles may
        # hold it already, the page and `_wired_auth_key` not yet. Kept in bundle.json until done.
        self._moving_to: str | None = None
        if config.data_dir:
            self._lock = _lock_data_dir(config.data_dir)
            state = _read_bundle_state(config.data_dir)
            self._wired_auth_key = _key_in(state, "auth_key") or config.auth_key
            self._moving_to = _key_in(state, "moving_to")
            offset = state.get("clock_offset_seconds")
            if isinstance(offset, (int, float)) and not isinstance(offset, bool) and not math.isnan(offset):
                self.clock.set(_restored_time(offset))
            self.clock.on_move = self._save_state
            self._save_state()
        self.runner = Runner()
        self.urls: BundleUrls | None = None
        self._mailjet: MailjetService | None = None  # once made: its configured account's key is the one in use
        self._list_id = config.list_id  # the default workspace's Mailjet tile's, once started
        self._clock_task: asyncio.Task[None] | None = None
        self.started = False

    async def start(self) -> dict[str, Any]:
        """Serve; a start that fails (a port in use, a damaged database) holds nothing afterwards: not
        the sockets, not the data dir (a new Bundle on it in this process would be refused "in use").
        A bundle starts once: stopped, or its start failed, it is done; make another."""
        self.ensure_not_started()
        self.started = True
        sockets: list[socket.socket] = []
        try:
            return await self._start(sockets)
        except BaseException:
            for sock in sockets:
                sock.close()  # the ones no server took yet (closing one twice does nothing)
            try:
                await self.runner.stop()
            except Exception:  # a server that failed to start fails its wait too: the first error is the one raised
                log.debug("segjet: stopping the servers of a failed start", exc_info=True)
            await self._stopped()
            raise

    def ensure_not_started(self) -> None:
        # Its servers keep the first run's closed sockets: started again, it answered with URLs,
        # and its stop then failed (EBADF) with tasks left pending.
        if self.started:
            raise RuntimeError("a Bundle starts once: make another to start again")

    async def _start(self, sockets: list[socket.socket]) -> dict[str, Any]:
        config = self.config
        for port, server, flag in (
            (config.segment_port, "the fake Segment", "--segment-port"),
            (config.mailjet_port, "the fake Mailjet", "--mailjet-port"),
            (config.destination_port, "the destination", "--destination-port"),
        ):
            sockets.append(_bind(config.host, port, server, flag))
        segment_sock, mailjet_sock, destination_sock = sockets
        self.urls = BundleUrls(url_of(segment_sock), url_of(mailjet_sock), url_of(destination_sock))
        mailjet_app = create_mailjet_app(config, self.clock, self.urls)
        self._mailjet = mailjet_app.state.service
        replaced = self._take_page_key()  # before the fake Segment wires its tiles with the config's key
        # Tiles made from now on (a new workspace's, a reset's) write to the list the configured
        # account's App Connections page holds, as a user would pick: --list-id on new state, the
        # stored one on a restart (the flag's list, which the restored account may not have, made
        # every delivery of such a tile fail).
        app_connection = self._mailjet.default.account.app_connection
        segment_app = create_segment_app(replace(config, list_id=app_connection.list_id), self.clock, self.urls)
        self._follow_auth_key(segment_app, mailjet_app, replaced)
        if self._secret_key_in_use() != config.mailjet_secret_key:
            # A restart keeps stored state: the account answers with the secret it was made with.
            log.warning("segjet: the data dir's Mailjet account %s keeps its secret key, not the one configured"
                        " (--mailjet-secret-key)", config.mailjet_api_key)
        # A restored tile keeps the list it was given (`--list-id` makes new state only).
        self._list_id = int(segment_app.state.pipeline.destination.settings["listId"])
        self.runner.add("segment", segment_app, segment_sock)
        self.runner.add("mailjet", mailjet_app, mailjet_sock)
        keys = AppConnectionKeys(mailjet_app.state.service, self.urls.mailjet_url)
        self.runner.add("destination", create_destination_app(keys), destination_sock)
        self._clock_task = asyncio.create_task(self.clock.run_forever(), name="segjet-clock")
        await self.runner.start()
        return self.info()

    def _take_page_key(self) -> str | None:
        """Take the key the configured account's App Connections page holds, when this start was given
        the key bundle.json names (`segjet up` without --auth-key) and the page holds another; answer
        the key it replaces (None: nothing changed).

        They differ when a run that changed the page (a PUT, a snapshot import) ended without its
        stop writing bundle.json (a kill): the change was answered 2xx, so it is kept, whatever way
        the run ended. Or when a start made another account the configured one (MailjetService.install
        gave it the bundle's key, the stored account a fresh one), and this one goes back to it. The
        page's key is the one in use from now on: the config's, which resets and new workspaces wire.
        """
        page_key = self._auth_key_in_use()
        if self.config.auth_key != self._wired_auth_key or page_key == self._wired_auth_key:
            return None
        replaced = self._wired_auth_key
        self.config.auth_key = self._wired_auth_key = page_key
        self._save_state()
        return replaced

    def _follow_auth_key(self, segment_app: Starlette, mailjet_app: Starlette, replaced: str | None) -> None:
        """Re-wire state stored with the previous start's authentication key to this start's.

        This start's key (`--auth-key`, or a new BundleConfig's generated one) is the one `info()`
        and the ready file give, while the restored Mailjet tiles of the fake Segment and the
        configured account's App Connections page still hold the old one: a tile set up with the
        given key would fail "unknown authentication key". A key a user set (another value) is
        theirs and stays, as App Connections' segmentUrl does. After `_take_page_key`, the tiles
        move only when another account holds the key replaced: they follow the configured account.
        """
        service = mailjet_app.state.service
        workspaces = segment_app.state.workspaces
        if replaced is not None:
            if service.tenant_with_authentication_key(replaced) is not None:
                self._move_tiles(workspaces, {replaced}, self.config.auth_key)
            return
        if self.config.auth_key == self._wired_auth_key and self._moving_to is None:
            return
        connection_key = service.default.account.app_connection.authentication_key
        new = self.config.auth_key
        stale = {self._wired_auth_key, connection_key, self._moving_to} - {new, None}
        # Announced first: the tiles, the page and bundle.json are three writes, and a kill between
        # them left the tiles on one key and the page on another, which no later start mended.
        self._moving_to = new
        self._save_state()
        self._move_tiles(workspaces, stale, new)
        if connection_key != new:
            service.update_app_connection(service.default, {"authenticationKey": new})
            service.changes.save()
        self._wired_auth_key = new
        self._moving_to = None
        self._save_state()

    @staticmethod
    def _move_tiles(workspaces: Workspaces, stale: set[str], new: str) -> None:
        """Give every Mailjet tile that holds a `stale` key the `new` one, stored at once."""
        for workspace in workspaces:
            if workspace.pipeline.destination.settings.get("apiKey") in stale:
                workspace.pipeline.configure({"settings": {"apiKey": new}})
        if workspaces.store is not None:
            workspaces.store.flush()

    def _auth_key_in_use(self) -> str:
        """The key the destination takes for the configured account: its App Connections page's."""
        assert self._mailjet is not None
        return self._mailjet.default.account.app_connection.authentication_key

    def _secret_key_in_use(self) -> str:
        """The configured account's secret, which a restored account keeps whatever the config says."""
        assert self._mailjet is not None
        return self._mailjet.default.account.secret_key

    def info(self) -> dict[str, Any]:
        assert self.urls is not None, "the bundle is not started"
        return {
            "segment_url": self.urls.segment_url,
            "mailjet_url": self.urls.mailjet_url,
            "destination_url": self.urls.destination_url,
            "dashboard_url": self.urls.segment_url + "/",
            "write_key": self.config.write_key,
            "mailjet_api_key": self.config.mailjet_api_key,
            "mailjet_secret_key": self._secret_key_in_use(),
            # The page's, not the config's: a restored page keeps the key a PUT or an import gave it.
            "auth_key": self._auth_key_in_use(),
            "list_id": self._list_id,
            "control_token": self.config.control_token,
        }

    def _save_state(self) -> None:
        assert self.config.data_dir is not None
        path = Path(self.config.data_dir) / BUNDLE_STATE_FILE
        state: dict[str, Any] = {"auth_key": self._wired_auth_key, "clock_offset_seconds": self.clock.offset.total_seconds()}
        if self._moving_to is not None:
            state["moving_to"] = self._moving_to
        # Written aside and renamed: a kill mid-write leaves the previous file whole.
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(state) + "\n", encoding="utf-8")
        os.replace(temporary, path)

    async def wait(self) -> None:
        await self.runner.wait()
        await self._stopped()

    async def stop(self) -> None:
        await self.runner.stop()
        await self._stopped()

    async def _stopped(self) -> None:
        """The servers are down: stop the clock, note the key in use for the next start (a PUT or a
        snapshot import may have changed it), and let another bundle have the data dir."""
        if self._lock is not None and self._mailjet is not None:
            self._wired_auth_key = self._auth_key_in_use()
            self._save_state()
        if self._clock_task is not None:
            self._clock_task.cancel()
            try:
                await self._clock_task
            except asyncio.CancelledError:
                pass
            self._clock_task = None
        if self._lock is not None:
            self._lock.close()  # closing the file releases its lock
            self._lock = None


class BackgroundBundle:
    """A bundle on its own thread and event loop; `start()` returns once every server answers."""

    def __init__(self, config: BundleConfig) -> None:
        self.bundle = Bundle(config)
        self._loop_thread: LoopThread | None = None

    def start(self) -> dict[str, Any]:
        self.bundle.ensure_not_started()  # before a second thread takes the place of the running one's
        self._loop_thread = LoopThread("segjet-bundle")
        try:
            return self._loop_thread.run(self.bundle.start())
        except BaseException:
            # The bundle let go of what it held; its thread goes too (`with` calls no stop() then).
            self._loop_thread.close()
            self._loop_thread = None
            raise

    def stop(self) -> None:
        if self._loop_thread is not None:
            self._loop_thread.run(self.bundle.stop())
            self._loop_thread.close()
            self._loop_thread = None

    def __enter__(self) -> dict[str, Any]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
