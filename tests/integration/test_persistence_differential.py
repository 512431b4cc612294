"""Differential test of persistence: what a bundle shows before a restart on its --data-dir, or before a
snapshot export, it shows after the restart, or after the import into a fresh bundle.

A seeded generator drives a random sequence of state-changing calls over real HTTP (tracking calls,
workspaces, destination settings, Engage, the clock, faults, Mailjet REST, sends, email events,
webhooks, App Connections, accounts, resets, snapshots re-imported in place), ending with work left
waiting (delivery and webhook retries, simulated events). Then everything readable through the
control and public APIs is read, the bundle restarts, and it is read again; separately, a fresh
bundle on its own data dir imports both snapshots, is read, restarts, and is read again.
Normalised away: only what may differ (the servers' URLs, which change with port 0 and which
records of past attempts keep; the journal and the fault rules are not read, as they are not kept).
After the restart the clock moves past every retry window: nothing finished before is sent again,
and everything still waiting resumes.

The virtual clock runs on in real time, so `settle` moves it past work due within seconds before
reading. The feed is far below --events-capacity: a snapshot keeps only the feed (README).
Each sequence runs with Engage syncing every 2 h (the default) and in realtime mode, where a
restart's restore syncs at once: what it finds to send or to record would show as a difference.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from emulator.bundle import BackgroundBundle
from emulator.common.clock import iso, parse_iso
from emulator.common.server import serve_in_background
from emulator.config import BundleConfig

AUTH_KEY = "differential-auth-key"
WAIT_SECONDS = 15
# A handful of fixed seeds keeps CI fast and repeatable; set these to explore more sequences
# (e.g. SEGJET_DIFFERENTIAL_SEEDS=1-200 SEGJET_DIFFERENTIAL_STEPS=120).
_SEEDS = os.environ.get("SEGJET_DIFFERENTIAL_SEEDS", "1-3").partition("-")
SEEDS = list(range(int(_SEEDS[0]), int(_SEEDS[2] or _SEEDS[0]) + 1))
STEPS = int(os.environ.get("SEGJET_DIFFERENTIAL_STEPS", "45"))
EVENTS = ["Order Completed", "Product Viewed"]
PLANS = ["free", "pro", "team"]
SYNC_INTERVAL = timedelta(hours=2)  # the bundle's default --engage-sync-interval
# How long a read and a restart may take: work due sooner is made to happen before the read.
QUIET = timedelta(seconds=20)
RETRY_PERIOD = timedelta(seconds=31)  # Mailjet retries a webhook every 30 s


class Hooks:
    """Webhook endpoints outside the bundle (they live across its restarts): /ok answers 200, /fail 500."""

    def __init__(self) -> None:
        self.app = Starlette(routes=[Route("/{path:path}", self.endpoint, methods=["POST"])])

    async def endpoint(self, request: Request) -> Response:
        await request.body()
        status = 200 if request.path_params["path"].startswith("ok") else 500
        return JSONResponse({"status": status}, status_code=status)


@pytest.fixture(scope="module")
def hooks_url() -> Iterator[str]:
    loop_thread, runner, urls = serve_in_background({"hooks": Hooks().app})
    yield urls["hooks"]
    loop_thread.run(runner.stop())
    loop_thread.close()


def config(data_dir: Path, sync_interval: str) -> BundleConfig:
    return BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, auth_key=AUTH_KEY, seed=11,
                        data_dir=str(data_dir), engage_sync_interval=sync_interval)


class Client:
    """HTTP to one started bundle; every answer must be below 500 (a 500 is a defect whatever the call)."""

    def __init__(self, info: dict[str, Any]) -> None:
        STARTED.append(info)
        self.info = info
        self.segment = info["segment_url"]
        self.mailjet = info["mailjet_url"]
        self.auth = (info["mailjet_api_key"], info["mailjet_secret_key"])
        self.http = httpx.Client(timeout=WAIT_SECONDS)

    def call(self, method: str, url: str, body: Any = None, auth: Any = None, **params: Any) -> httpx.Response:
        answer = self.http.request(method, url, json=body, auth=auth, params=params or None)
        assert answer.status_code < 500, f"{method} {url} {body!r}: {answer.status_code} {answer.text}"
        return answer

    def seg(self, method: str, path: str, body: Any = None, **params: Any) -> httpx.Response:
        return self.call(method, self.segment + path, body, **params)

    def mj(self, method: str, path: str, body: Any = None, api: tuple[str, str] | None = None, **params: Any) -> httpx.Response:
        return self.call(method, self.mailjet + path, body, auth=api or self.auth, **params)

    def close(self) -> None:
        self.http.close()


class Driver:
    """Applies random state-changing calls; remembers ids so later calls can refer to earlier objects."""

    def __init__(self, client: Client, rng: random.Random, hooks_url: str) -> None:
        self.c = client
        self.rng = rng
        self.hooks = hooks_url
        self.write_keys = [client.info["write_key"]]
        self.workspaces: list[str] = []
        self.sent_bodies: list[tuple[str, dict[str, Any]]] = []
        self.users = [f"u{n}" for n in range(5)]
        self.lists = [1]
        self.message_ids: list[int] = []
        self.jobs: list[int] = []
        self.accounts = [(client.info["mailjet_api_key"], client.info["mailjet_secret_key"])]
        self.counter = 0
        self.faulted = False

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    # --- Segment ---------------------------------------------------------------------------

    def message(self) -> dict[str, Any]:
        rng, user = self.rng, self.rng.choice(self.users)
        kind = rng.choice(["identify", "identify", "track", "track", "alias", "anon", "discard", "page"])
        message: dict[str, Any] = {"messageId": self.fresh("m")}
        if kind == "identify":
            traits = {"email": f"{user}{rng.choice(['', '.b'])}@example.com", "plan": rng.choice(PLANS),
                      "age": rng.randint(18, 70)}
            message.update(type="identify", userId=user, traits=traits)
        elif kind == "track":
            message.update(type="track", userId=user, event=rng.choice(EVENTS),
                           properties={"revenue": rng.choice([5, 12.5, 40, "x"])})
        elif kind == "alias":
            message.update(type="alias", userId=user, previousId=f"anon-{rng.randint(0, 3)}")
        elif kind == "anon":
            message.update(type="identify", anonymousId=f"anon-{rng.randint(0, 3)}",
                           traits={"plan": rng.choice(PLANS)})
        elif kind == "page":
            message.update(type="page", userId=user, name="Home")
        else:
            message.update(rng.choice([{"type": "track", "userId": user}, {"type": "identify", "traits": {"a": 1}}]))
        return message

    def track_call(self) -> None:
        rng = self.rng
        key = rng.choice(self.write_keys + ["unknown-key"] * (rng.random() < 0.1))
        if rng.random() < 0.15 and self.sent_bodies:
            key, body = rng.choice(self.sent_bodies)  # a duplicate messageId
            path = "/v1/batch" if "batch" in body else f"/v1/{body['type']}"
        elif rng.random() < 0.25:
            body = {"batch": [self.message() for _ in range(rng.randint(1, 4))]}
            path = "/v1/batch"
        else:
            body = self.message()
            path = f"/v1/{body.get('type', 'track')}"
        self.sent_bodies.append((key, body))
        self.c.call("POST", self.c.segment + path, body, auth=(key, ""))

    def add_source(self) -> None:
        key = self.fresh("wk")
        body: dict[str, Any] = {"name": key, "write_key": key}
        if self.workspaces and self.rng.random() < 0.4:
            body["workspace"] = self.rng.choice(self.workspaces)
        answer = self.c.seg("POST", "/_emulator/sources", body)
        assert answer.status_code == 201, answer.text
        if "workspace" not in body:
            self.workspaces.append(answer.json()["workspace"])
        self.write_keys.append(key)

    def destination(self) -> None:
        rng = self.rng
        update = rng.choice([{"enabled": rng.random() < 0.7}, {"settings": {"listId": str(rng.choice(self.lists))}}])
        self.c.seg("PUT", "/_emulator/destinations/mailjet", update, writeKey=rng.choice(self.write_keys))

    def engage(self) -> None:
        rng, key = self.rng, self.rng.choice(self.write_keys)
        choice = rng.random()
        if choice < 0.3:
            rule = rng.choice([{"trait": "plan", "equals": rng.choice(PLANS)},
                               {"event": rng.choice(EVENTS), "within": rng.choice(["1h", "30d"]), "at_least": 1},
                               {"any": [{"trait": "age", "gt": 40}, {"not": {"trait": "plan", "exists": True}}]}])
            self.c.seg("POST", "/_emulator/engage/audiences", {"name": self.fresh("Audience"), "rule": rule}, writeKey=key)
        elif choice < 0.5:
            trait = {"name": self.fresh("Trait"), "computed": rng.choice(["count", "sum", "last", "most_frequent"]),
                     "event": rng.choice(EVENTS), "property": "revenue", "within": "90d"}
            self.c.seg("POST", "/_emulator/engage/traits", trait, writeKey=key)
        elif choice < 0.65:
            audiences = self.c.seg("GET", "/_emulator/engage/audiences", writeKey=key).json()["audiences"]
            if audiences:
                self.c.seg("DELETE", f"/_emulator/engage/audiences/{rng.choice(audiences)['key']}", writeKey=key)
        else:
            self.c.seg("POST", "/_emulator/engage/sync", writeKey=key)

    def clock(self) -> None:
        self.c.seg("POST", "/_emulator/clock", {"advance": self.rng.choice(["2s", "40s", "3m", "31m", "2h", "1d"])})

    def fault(self) -> None:
        if self.rng.random() < 0.3:
            self.c.mj("DELETE", "/_emulator/faults")
            self.faulted = False
            return
        self.faulted = True  # the driver's own managecontact calls would get the fault's 503 too
        rule = {"method": "POST", "path": "/v3/REST/contactslist/*/managecontact",
                "status": self.rng.choice([503, 429, 400]), "times": self.rng.randint(1, 4)}
        self.c.mj("POST", "/_emulator/faults", rule)

    # --- Mailjet ---------------------------------------------------------------------------

    def email(self) -> str:
        return f"{self.rng.choice(self.users)}@example.com"

    def mailjet_rest(self) -> None:
        rng, api = self.rng, self.rng.choice(self.accounts)
        choice = rng.randrange(11)
        if choice == 0:
            self.c.mj("POST", "/v3/REST/contact", {"Email": self.email(), "Name": rng.choice(["Ada", "Bob"])}, api)
        elif choice == 1:
            self.c.mj("PUT", f"/v3/REST/contact/{self.email()}", {"Name": self.fresh("Name")}, api)
        elif choice == 2:
            self.c.mj("POST", "/v3/REST/contactmetadata",
                      {"Name": rng.choice(["plan", "score", "vip"]), "Datatype": rng.choice(["str", "int", "bool"])}, api)
        elif choice == 3:
            self.c.mj("PUT", f"/v3/REST/contactdata/{self.email()}",
                      {"Data": [{"Name": rng.choice(["plan", "score"]), "Value": rng.choice(["pro", "3"])}]}, api)
        elif choice == 4:
            answer = self.c.mj("POST", "/v3/REST/contactslist", {"Name": self.fresh("List")}, api)
            if answer.status_code == 201 and api == self.accounts[0]:
                self.lists.append(answer.json()["Data"][0]["ID"])
        elif choice == 5:
            target = rng.choice(self.lists)
            if rng.random() < 0.5:
                self.c.mj("PUT", f"/v3/REST/contactslist/{target}", {"Name": self.fresh("Renamed")}, api)
            elif target != 1:
                self.c.mj("DELETE", f"/v3/REST/contactslist/{target}", None, api)
        elif choice == 6 and not self.faulted:
            body = {"Email": self.email(), "Action": rng.choice(["addforce", "addnoforce", "remove", "unsub"])}
            self.c.mj("POST", f"/v3/REST/contactslist/{rng.choice(self.lists)}/managecontact", body, api)
        elif choice == 7:
            contacts = [{"Email": self.email()} for _ in range(rng.randint(1, 3))]
            answer = self.c.mj("POST", f"/v3/REST/contactslist/{rng.choice(self.lists)}/managemanycontacts",
                               {"Action": "addnoforce", "Contacts": contacts}, api)
            if answer.status_code == 201 and api == self.accounts[0]:
                self.jobs.append(answer.json()["Data"][0]["JobID"])
        elif choice == 8:
            self.c.mj("POST", "/v3/REST/eventcallbackurl",
                      {"EventType": rng.choice(["sent", "open", "click", "bounce"]), "Version": rng.choice([1, 2]),
                       "Url": f"{self.hooks}/{rng.choice(['ok', 'fail'])}/{self.fresh('h')}"}, api)
        elif choice == 9:
            hooks = self.c.mj("GET", "/v3/REST/eventcallbackurl", None, api).json()["Data"]
            if hooks:
                hook = rng.choice(hooks)
                if rng.random() < 0.5:
                    self.c.mj("DELETE", f"/v3/REST/eventcallbackurl/{hook['ID']}", None, api)
                else:
                    self.c.mj("PUT", f"/v3/REST/eventcallbackurl/{hook['ID']}",
                              {"Url": f"{self.hooks}/{rng.choice(['ok', 'fail'])}/{self.fresh('h')}"}, api)
        else:
            self.c.mj("POST", "/v3/REST/listrecipient",
                      {"ContactAlt": self.email(), "ListID": rng.choice(self.lists), "IsUnsubscribed": rng.random() < 0.3}, api)

    def mailjet_send(self) -> None:
        rng = self.rng
        choice = rng.randrange(6)
        if choice <= 1:
            body = {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": self.email()}],
                                  "Subject": "Hi", "HTMLPart": '<p><a href="https://shop.example.com/o">o</a></p>'}]}
            answer = self.c.mj("POST", "/v3.1/send", body)
            if answer.status_code == 200:
                self.message_ids.append(answer.json()["Messages"][0]["To"][0]["MessageID"])
        elif choice == 2 and self.message_ids:
            event = rng.choice([{"event": "open"}, {"event": "click", "url": "https://shop.example.com/o"},
                                {"event": "bounce"}, {"event": "unsub"}, {"event": "spam"}])
            self.c.mj("POST", f"/_emulator/messages/{rng.choice(self.message_ids)}/events", event)
        elif choice == 3:
            self.c.mj("PUT", "/_emulator/simulation",
                      {"open_rate": rng.choice([0, 0.5, 1]), "click_rate": rng.choice([0, 0.5]),
                       "delay": rng.choice(["10m", "2h"]), "seed": rng.randint(0, 9)})
        elif choice == 4:
            self.c.mj("PUT", "/_emulator/app-connections/segment",
                      {"writeKey": rng.choice(self.write_keys), "sendEvents": rng.random() < 0.7})
        elif choice == 5:
            if rng.random() < 0.5 or len(self.accounts) > 2:
                self.c.mj("POST", "/_emulator/campaigns",
                          {"list_id": rng.choice(self.lists), "subject": "News", "html": "<p>news</p>"})
            else:
                pair = (self.fresh("acct"), "secret")
                answer = self.c.mj("POST", "/_emulator/accounts", {"api_key": pair[0], "secret_key": pair[1]})
                assert answer.status_code == 201, answer.text
                self.accounts.append(pair)

    def leave_work_pending(self) -> None:
        """End with work waiting at the restart: delivery retries, webhook retries, simulated events."""
        c = self.c
        c.mj("POST", "/_emulator/faults", {"method": "POST", "path": "/v3/REST/contactslist/*/managecontact", "status": 503})
        self.faulted = True
        c.seg("PUT", "/_emulator/destinations/mailjet", {"enabled": True})
        self.rng.choice([lambda: None, self.mailjet_send])()
        for user in self.rng.sample(self.users, 2):
            body = {"type": "identify", "userId": user, "messageId": self.fresh("m"), "traits": {"email": f"{user}@example.com"}}
            c.call("POST", c.segment + "/v1/identify", body, auth=(self.write_keys[0], ""))
        c.mj("POST", "/v3/REST/eventcallbackurl", {"EventType": "sent", "Url": f"{self.hooks}/fail/{self.fresh('h')}"})
        c.mj("POST", "/v3/REST/eventcallbackurl", {"EventType": "open", "Url": f"{self.hooks}/ok/{self.fresh('h')}", "Version": 2})
        c.mj("PUT", "/_emulator/simulation", {"open_rate": 1, "click_rate": 0.5, "delay": "10m", "seed": 3})
        c.mj("PUT", "/_emulator/app-connections/segment", {"writeKey": self.write_keys[0], "sendEvents": True})
        body = {"Messages": [{"From": {"Email": "shop@example.com"}, "To": [{"Email": self.email()}],
                              "Subject": "Last", "HTMLPart": '<p><a href="https://shop.example.com/o">o</a></p>'}]}
        self.message_ids.append(c.mj("POST", "/v3.1/send", body).json()["Messages"][0]["To"][0]["MessageID"])

    def reset_or_reimport(self) -> None:
        """Resets (one workspace, one account, rarely everything) and a snapshot re-imported in place."""
        rng, c = self.rng, self.c
        choice = rng.randrange(6)
        if choice == 0:
            c.seg("POST", "/_emulator/reset", writeKey=rng.choice(self.write_keys))
        elif choice == 1:
            c.mj("POST", "/_emulator/reset", apiKey=rng.choice(self.accounts)[0])
        elif choice == 2:
            c.seg("PUT", "/_emulator/snapshot", c.seg("GET", "/_emulator/snapshot").json())
        elif choice == 3:
            c.mj("PUT", "/_emulator/snapshot", c.mj("GET", "/_emulator/snapshot").json())
        elif choice == 4 and rng.random() < 0.3:
            # Everything: added workspaces and accounts go, and so do the driver's ids of them.
            c.seg("POST", "/_emulator/reset")
            c.mj("POST", "/_emulator/reset")
            self.write_keys, self.workspaces = self.write_keys[:1], []
            self.accounts, self.lists, self.message_ids, self.jobs = self.accounts[:1], [1], [], []
            self.faulted = False
        else:
            api = rng.choice(self.accounts)
            kind = rng.randrange(4)
            if kind == 0:
                props = c.mj("GET", "/v3/REST/contactmetadata", None, api).json()["Data"]
                if props:
                    c.mj("DELETE", f"/v3/REST/contactmetadata/{rng.choice(props)['ID']}", None, api)
            elif kind == 1:
                recipients = c.mj("GET", "/v3/REST/listrecipient", None, api).json()["Data"]
                if recipients:
                    target = rng.choice(recipients)["ID"]
                    if rng.random() < 0.5:
                        c.mj("DELETE", f"/v3/REST/listrecipient/{target}", None, api)
                    else:
                        c.mj("PUT", f"/v3/REST/listrecipient/{target}", {"IsUnsubscribed": rng.random() < 0.5}, api)
            elif kind == 2:
                lists = [{"ListID": rng.choice(self.lists), "Action": rng.choice(["addforce", "remove", "unsub"])}]
                c.mj("POST", f"/v3/REST/contact/{self.email()}/managecontactslists", {"ContactsLists": lists}, api)
            else:
                c.mj("PUT", "/_emulator/app-connections/segment", {"listId": rng.choice(self.lists)})

    def step(self) -> None:
        actions: list[tuple[float, Callable[[], None]]] = [
            (6, self.track_call), (0.6, self.add_source), (1, self.destination), (1.5, self.engage),
            (1, self.clock), (0.6, self.fault), (3, self.mailjet_rest), (3, self.mailjet_send),
            (0.8, self.reset_or_reimport),
        ]
        total = sum(weight for weight, _ in actions)
        draw = self.rng.uniform(0, total)
        for weight, action in actions:
            draw -= weight
            if draw <= 0:
                action()
                return
        actions[-1][1]()


# Every bundle started in a test, for `read_everything` to name their servers' URLs.
STARTED: list[dict[str, Any]] = []


def read_everything(client: Client, write_keys: list[str], accounts: list[tuple[str, str]], jobs: list[int]) -> dict[str, Any]:
    """Everything readable through the control and public APIs, with the servers' URLs normalised.

    Each start gets new ports (port 0). Records of what was sent keep the URL it went to (delivery
    attempts), so every started bundle's URLs are normalised, not only this one's.
    """
    seen: dict[str, Any] = {}
    workspaces: dict[str, Any] = {}
    for key in write_keys:
        sources = client.seg("GET", "/_emulator/sources", writeKey=key).json()
        if sources["workspace"] in workspaces:
            continue
        events = client.seg("GET", "/_emulator/events", limit=10_000, writeKey=key).json()
        users = sorted({e["userId"] for e in events["events"] if isinstance(e.get("userId"), str) and e["userId"]})
        workspaces[sources["workspace"]] = {
            "sources": sources,
            "events": events,
            "deliveries": client.seg("GET", "/_emulator/deliveries", limit=10_000, writeKey=key).json(),
            "destination": client.seg("GET", "/_emulator/destinations/mailjet", writeKey=key).json(),
            "audiences": client.seg("GET", "/_emulator/engage/audiences", writeKey=key).json(),
            "traits": client.seg("GET", "/_emulator/engage/traits", writeKey=key).json(),
            "profiles": {user: client.seg("GET", f"/_emulator/profiles/{user}", writeKey=key).json() for user in users},
        }
    seen["segment"] = workspaces
    seen["segment_snapshot"] = client.seg("GET", "/_emulator/snapshot").json()["state"]
    mailjet: dict[str, Any] = {}
    for api in accounts:
        account: dict[str, Any] = {}
        for resource in ("contact", "contactslist", "listrecipient", "contactmetadata", "contactdata", "eventcallbackurl"):
            account[resource] = client.mj("GET", f"/v3/REST/{resource}", None, api, Limit=1000).json()
        account["contact_lists"] = {
            contact["ID"]: client.mj("GET", f"/v3/REST/contact/{contact['ID']}/getcontactslists", None, api).json()
            for contact in account["contact"]["Data"]
        }
        for name in ("app-connections/segment", "messages", "email-events", "simulation"):
            account[name] = client.mj("GET", f"/_emulator/{name}", None, api, apiKey=api[0]).json()
        mailjet[api[0]] = account
    mailjet["jobs"] = [client.mj("GET", f"/v3/REST/contact/managemanycontacts/{job}").json() for job in jobs]
    mailjet["accounts"] = client.mj("GET", "/_emulator/accounts").json()
    seen["mailjet"] = mailjet
    seen["mailjet_snapshot"] = client.mj("GET", "/_emulator/snapshot").json()["state"]
    text = json.dumps(seen, sort_keys=True)
    # One token for all: ports are reused from one start to the next, so a URL cannot tell which server it was.
    for info in [client.info, *STARTED]:
        for name in ("segment_url", "mailjet_url", "destination_url"):
            text = text.replace(info[name], "{bundle}")
    return json.loads(text)


def pending_times(state: Any, key: str = "") -> Iterator[datetime]:
    """When the work shown in `state` is due: retries, scheduled sends and simulated events."""
    if isinstance(state, dict):
        if state.get("state") in ("delivered", "failed", "skipped"):
            return  # a finished record may keep the time of its last retry
        for name, value in state.items():
            yield from pending_times(value, name)
    elif isinstance(state, list):
        if key == "plan":  # a message's simulated events: [at, event, fields]
            yield from (parse_iso(entry[0]) for entry in state)
        else:
            for value in state:
                yield from pending_times(value, key)
    elif isinstance(state, str) and key in ("next_attempt_at", "due", "sent_due"):
        yield parse_iso(state)


def next_engage_syncs(state: dict[str, Any], now: datetime) -> Iterator[datetime]:
    """Each workspace's next scheduled Engage sync: every 2 h from its earliest definition's creation."""
    for workspace in state["segment"].values():
        created = [parse_iso(d["created_at"]) for d in workspace["audiences"]["audiences"] + workspace["traits"]["traits"]]
        if created:
            start = min(created)
            yield start + SYNC_INTERVAL * (math.floor((now - start) / SYNC_INTERVAL) + 1)


def _windows(rule: Any) -> Iterator[tuple[str, timedelta]]:
    """(event, window) of every windowed event condition in an audience rule."""
    if isinstance(rule, dict):
        if isinstance(rule.get("event"), str) and rule.get("within"):
            yield rule["event"], _window(rule["within"])
        for value in rule.values():
            yield from _windows(value)
    elif isinstance(rule, list):
        for value in rule:
            yield from _windows(value)


def _window(text: str) -> timedelta:
    return timedelta(days=int(text[:-1])) if text.endswith("d") else timedelta(hours=int(text[:-1]))


def engage_lapses(state: dict[str, Any], now: datetime) -> Iterator[datetime]:
    """When an event leaves a window some definition reads, after `now`: a realtime sync acts then,
    and a profile's computed view (read at each call) may change. Every read event's, a superset."""
    for workspace in state["segment"].values():
        windows: dict[str, set[timedelta]] = {}
        for audience in workspace["audiences"]["audiences"]:
            for event, window in _windows(audience["rule"]):
                windows.setdefault(event, set()).add(window)
        for trait in workspace["traits"]["traits"]:
            if trait["within"]:
                windows.setdefault(trait["event"], set()).add(_window(trait["within"]))
        for profile in workspace["profiles"].values():
            for event in profile.get("events", ()):  # a userId only discarded messages carried has none
                for window in windows.get(event["event"], ()) if event["type"] == "track" else ():
                    lapse = parse_iso(event["timestamp"]) + window + timedelta(milliseconds=1)
                    if lapse > now:
                        yield lapse


def settle(client: Client, read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Read until two reads agree (answers in flight land) and nothing is due in the next seconds.

    The virtual clock runs on in real time, so work due within a few seconds could happen between
    this read and the next (across the restart): the clock is moved past it first, and past all
    work due within one webhook retry period, so that retries every 30 s fall into one phase and a
    quiet gap opens.
    """
    deadline = time.monotonic() + 2 * WAIT_SECONDS
    previous = read()
    while True:
        time.sleep(0.15)
        current = read()
        now = parse_iso(client.seg("GET", "/_emulator/clock").json()["now"])
        dues = [*pending_times(current), *next_engage_syncs(current, now), *engage_lapses(current, now)]
        assert time.monotonic() < deadline, (
            f"the state never settled at {iso(now)}: due {sorted(map(iso, dues))[:5]}; changing:\n"
            + "\n".join(differences(previous, current)[:10]))
        if current != previous:
            previous = current
            continue
        if not any(due < now + QUIET for due in dues):
            return current
        target = max(due for due in dues if due < now + RETRY_PERIOD) + timedelta(seconds=1)
        client.seg("POST", "/_emulator/clock", {"set": iso(max(target, now))})
        previous = read()


def differences(before: Any, after: Any, path: str = "") -> list[str]:
    """Where two JSON values differ, as short readable lines (the first few are enough)."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after), key=str):
            if key not in after:
                found.append(f"{path}.{key}: missing after")
            elif key not in before:
                found.append(f"{path}.{key}: new after = {json.dumps(after[key])[:200]}")
            else:
                found += differences(before[key], after[key], f"{path}.{key}")
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [line for index, (a, b) in enumerate(zip(before, after)) for line in differences(a, b, f"{path}[{index}]")]
    if before != after:
        return [f"{path}: {json.dumps(before)[:200]} != {json.dumps(after)[:200]}"]
    return []


def unfinished(state: dict[str, Any]) -> list[str]:
    return [
        record["messageId"]
        for workspace in state["segment"].values()
        for record in workspace["deliveries"]["deliveries"]
        if record["state"] in ("queued", "retrying")
    ]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("sync_interval", ["2h", "realtime"])
def test_a_restart_and_a_snapshot_import_show_what_was_shown_before(
    tmp_path: Path, hooks_url: str, sync_interval: str, seed: int
) -> None:
    rng = random.Random(seed)
    bundle = BackgroundBundle(config(tmp_path / "data", sync_interval))
    client = Client(bundle.start())
    driver = Driver(client, rng, hooks_url)
    try:
        for _ in range(STEPS):
            driver.step()
        driver.leave_work_pending()

        def read_from(current: Client) -> Callable[[], dict[str, Any]]:
            return lambda: read_everything(current, driver.write_keys, driver.accounts, driver.jobs)

        before = settle(client, read_from(client))
        segment_snapshot = client.seg("GET", "/_emulator/snapshot").json()
        mailjet_snapshot = client.mj("GET", "/_emulator/snapshot").json()
        moment = client.seg("GET", "/_emulator/clock").json()["now"]
    finally:
        bundle.stop()
        client.close()

    # A restart on the same data dir.
    bundle = BackgroundBundle(config(tmp_path / "data", sync_interval))
    client = Client(bundle.start())
    try:
        after = read_from(client)()
        changed = differences(before, after)
        assert not changed, f"seed {seed}: the restart changed what is shown:\n" + "\n".join(changed[:40])
        # Resumed, not only restored: past every retry window nothing is left waiting, and what was
        # delivered before the restart was not sent again.
        client.seg("POST", "/_emulator/clock", {"advance": "5h"})
        resumed = settle(client, read_from(client))
        assert unfinished(resumed) == [], f"seed {seed}: deliveries never resumed"
        client.seg("POST", "/_emulator/clock", {"advance": "25h"})
        resumed = settle(client, read_from(client))
        events = [event for name, account in resumed["mailjet"].items() if name not in ("jobs", "accounts")
                  for event in account["email-events"]["email_events"]]
        waiting = [event for event in events if (event.get("webhook") or {}).get("state") in ("pending", "retrying")
                   or (event.get("segment") or {}).get("state") in ("queued", "retrying")]
        assert waiting == [], f"seed {seed}: webhooks or forwards never resumed"
        assert {event["event"] for event in events} >= {"sent", "open"}, f"seed {seed}: the simulated open never came"
        for workspace, shown in before["segment"].items():
            # Records are only appended (far below the cap): the same index is the same record.
            later = resumed["segment"][workspace]["deliveries"]["deliveries"]
            for record, now in zip(shown["deliveries"]["deliveries"], later):
                if record["state"] in ("delivered", "failed", "skipped"):
                    assert now == record, f"seed {seed}: sent again after the restart: {json.dumps(record)} -> {json.dumps(now)}"
    finally:
        bundle.stop()
        client.close()

    # A snapshot import into a fresh bundle on a data dir of its own, then its restart.
    for life in ("import", "restart after the import"):
        bundle = BackgroundBundle(config(tmp_path / "imported", sync_interval))
        client = Client(bundle.start())
        try:
            if life == "import":
                # Snapshots do not hold the clock: the fresh bundle's is set where the first one's stood.
                client.seg("POST", "/_emulator/clock", {"set": moment})
                client.mj("PUT", "/_emulator/snapshot", mailjet_snapshot)
                client.seg("PUT", "/_emulator/snapshot", segment_snapshot)
            imported = read_from(client)()
            changed = differences(before, imported)
            assert not changed, f"seed {seed}: the {life} changed what is shown:\n" + "\n".join(changed[:40])
        finally:
            bundle.stop()
            client.close()
