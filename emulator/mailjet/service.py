"""The fake Mailjet's accounts, each with its REST state, its email events and its outbox.

A `Tenant` is one account (one API key pair) and everything it owns; tenants share nothing but
the clock and the HTTP client, so a send, a REST call or a control call scoped to one account never
sees another's data. `MailjetService` is what the routes scope by API key, what a reset replaces,
and what storage and snapshots save and restore.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from destination.http_rules import basic_username_problem

from ..common.clock import Clock
from ..config import BundleConfig, new_authentication_key
from .events import EmailEvents
from .models import Account, AppConnection, Changes, MailjetBackend
from .outbound import HttpTransport, Outbox


class AccountError(ValueError):
    """A request about accounts that cannot be done; `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Tenant:
    account: Account
    events: EmailEvents
    outbox: Outbox

    def follow_bundle_segment(self) -> None:
        """Unless a user gave App Connections a URL of their own, point it at the bundle's Segment of
        this run, and with it the Segment deliveries still waiting: a restored state (a restart, a
        snapshot import) names the Segment of the run that stored it, whose port may be gone
        (--segment-port 0), and they would retry against it forever."""
        account = self.account
        connection, url = account.app_connection, account.bundle_segment_url
        if connection.segment_url_explicit:
            return
        if connection.segment_url != url:
            connection.segment_url = url
            account.touch("account", 0)
        self.outbox.segment.retarget(url)

    def resume_timers(self) -> None:
        """Arm every timer a restored state needs (jobs, sends, simulated events, deliveries)."""
        self.account.resume_timers()
        self.events.resume_timers()
        self.outbox.resume_timers()

    def close(self) -> None:
        """The account is being replaced: its timers stop and attempts in flight are dropped."""
        self.account.timers.cancel_all()
        self.outbox.close()


class MailjetService:
    def __init__(self, config: BundleConfig, clock: Clock, base_url: str, segment_url: str, transport: HttpTransport | None = None) -> None:
        self.config = config
        self.clock = clock
        self.backend = MailjetBackend(config, clock, base_url, segment_url)
        self.transport = transport or HttpTransport()
        self.tenants: dict[str, Tenant] = {}
        # Calls replaced accounts had in flight; their answers are dropped, but they still land where they went.
        self._retiring: set[asyncio.Task[None]] = set()
        self.install({api_key: self.attach(account) for api_key, account in self.backend.accounts.items()})

    @property
    def changes(self) -> Changes:
        return self.backend.changes

    @property
    def default(self) -> Tenant:
        return self.tenants[self.config.mailjet_api_key]

    def tenant(self, api_key: str) -> Tenant | None:
        return self.tenants.get(api_key)

    def tenant_with_authentication_key(self, auth_key: str) -> Tenant | None:
        """The account whose App Connections → Segment page shows `auth_key` now (keys are unique)."""
        for tenant in self.tenants.values():
            if tenant.account.app_connection.authentication_key == auth_key:
                return tenant
        return None

    def update_app_connection(self, tenant: Tenant, changes: dict[str, Any]) -> AppConnection:
        """`Account.update_app_connection`, refusing (AccountError 409) another account's
        authentication key: the key says which account the destination writes to; the Segment
        forwards still waiting follow a new segmentUrl."""
        auth_key = changes.get("authenticationKey")
        owner = self.tenant_with_authentication_key(auth_key) if isinstance(auth_key, str) else None
        if owner is not None and owner is not tenant:
            raise AccountError(f"authenticationKey is the account {owner.account.api_key!r}'s; each account has its own", 409)
        try:
            connection = tenant.account.update_app_connection(changes)
        except ValueError as exc:
            raise AccountError(str(exc)) from exc
        # What still waits goes to the URL the page names now, as a webhook's waiting retries go to
        # its new URL: a forward retrying against a wrong one held every later event for 17 minutes.
        tenant.outbox.segment.retarget(connection.segment_url)
        return connection

    def attach(self, account: Account) -> Tenant:
        """The email events and outbox of an account; not registered until `install`."""
        events = EmailEvents(account, self.clock, self.config.seed)
        outbox = Outbox(account, self.transport)
        events.listeners.append(outbox.route)
        return Tenant(account, events, outbox)

    def new_tenant(self, api_key: str, secret_key: str, api_key_id: int, auth_key: str) -> Tenant:
        return self.attach(self.backend.new_account(api_key, secret_key, api_key_id, auth_key))

    def install(self, tenants: dict[str, Tenant]) -> None:
        """Replace every account at once (startup, snapshot import) and arm the new ones' timers.

        The server's configured account is always there: a fresh one is added when `tenants` lacks it,
        with the bundle's authentication key, and an account of `tenants` that holds that key gets
        a fresh one instead (keys are unique: the bundle's account is the configured one).
        """
        for tenant in self.tenants.values():
            self._retire(tenant)
        tenants = dict(tenants)
        if self.config.mailjet_api_key not in tenants:
            config = self.config
            for tenant in tenants.values():
                if tenant.account.app_connection.authentication_key == config.auth_key:
                    tenant.account.update_app_connection({"authenticationKey": new_authentication_key()})
            fresh = self.new_tenant(config.mailjet_api_key, config.mailjet_secret_key, _free_key_id(tenants), config.auth_key)
            tenants[config.mailjet_api_key] = fresh
        self.tenants = tenants
        self.backend.accounts = {api_key: tenant.account for api_key, tenant in tenants.items()}
        for tenant in tenants.values():
            tenant.follow_bundle_segment()
            tenant.resume_timers()

    def reset(self) -> None:
        """Back to one fresh configured account; every other account is gone."""
        for tenant in self.tenants.values():
            self._retire(tenant)
        self.backend.reset()
        self.tenants = {api_key: self.attach(account) for api_key, account in self.backend.accounts.items()}

    def reset_account(self, api_key: str) -> Tenant:
        """One account back to fresh (same keys, same Segment authentication key); the others keep everything."""
        old = self.tenants[api_key]
        self._retire(old)
        self.changes.wipe(api_key)
        account = old.account
        fresh = self.new_tenant(api_key, account.secret_key, account.api_key_id, account.app_connection.authentication_key)
        self.tenants[api_key] = fresh
        self.backend.accounts[api_key] = fresh.account
        return fresh

    def create_account(self, api_key: Any, secret_key: Any) -> Tenant:
        """A new account with its own contact list and its own Segment authentication key;
        AccountError 400 for keys no call could use, 409 for an API key taken."""
        if not isinstance(api_key, str) or not api_key or not isinstance(secret_key, str) or not secret_key:
            raise AccountError("api_key and secret_key must be non-empty strings")
        if (problem := basic_username_problem(api_key)) is not None:
            raise AccountError(f"api_key {problem}")
        if api_key in self.tenants:
            raise AccountError(f"an account with API key {api_key!r} already exists", 409)
        tenant = self.new_tenant(api_key, secret_key, _free_key_id(self.tenants), new_authentication_key())
        self.tenants[api_key] = tenant
        self.backend.accounts[api_key] = tenant.account
        return tenant

    def _retire(self, tenant: Tenant) -> None:
        tenant.close()
        # Finished ones go: a snapshot import retires accounts too, and no reset may follow to clear them.
        self._retiring = {task for task in self._retiring if not task.done()}
        self._retiring.update(self.transport.in_flight(tenant.account))

    async def quiesce(self) -> None:
        """Return once every webhook or Segment call that a replaced account had in flight has its
        answer (within its timeout: 5 s, 15 s), so none lands after a reset has answered. The calls
        stay listed until they end: a reset arriving while another waits waits for them too."""
        self._retiring = {task for task in self._retiring if not task.done()}
        if self._retiring:
            await asyncio.wait(self._retiring)

    async def aclose(self) -> None:
        await self.transport.aclose()


def _free_key_id(tenants: dict[str, Tenant]) -> int:
    return max((tenant.account.api_key_id for tenant in tenants.values()), default=0) + 1
