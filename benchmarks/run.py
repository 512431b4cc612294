"""Every segjet benchmark in one run: a table on stdout, every figure in benchmarks/results/latest.json.

`make bench` (`python -m benchmarks.run`) runs it, for several minutes; `BENCH_QUICK=1 make bench`
runs small sizes for a few seconds each, only to prove the benchmarks still work (CI). Figures are
printed, never asserted.

Servers run in their own processes (`segjet up`, or `benchmarks/servers.py` for the ingestion
bundle with validation on and off, the bare endpoint, and moto), except the reset's: it runs where
the pytest plugin runs it, on a thread of this process. Load comes from `benchmarks/http_load.py`
in yet another process, or from this process; Engage is measured at model level. How
each figure is measured is said in the docstring or comments of its `bench_*` function.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig
from emulator.harness.client import SegjetClient

from . import engage_sync, stored_memory

QUICK = os.environ.get("BENCH_QUICK") == "1"
RESULTS = Path(__file__).parent / "results" / "latest.json"
WRITE_KEY = "segjet-write-key"
MAILJET_AUTH = ("segjet-api-key", "segjet-secret-key")
# Basic auth headers for the load generator, which sends pre-built bytes.
SEGMENT_AUTHORIZATION = "Basic c2VnamV0LXdyaXRlLWtleTo="  # "segjet-write-key:"
MAILJET_AUTHORIZATION = "Basic c2VnamV0LWFwaS1rZXk6c2VnamV0LXNlY3JldC1rZXk="  # "segjet-api-key:segjet-secret-key"


@dataclass(frozen=True)
class Sizes:
    load_seconds: float  # measuring window of each closed-loop load
    warmup_seconds: float
    ingest_rounds: int  # ingestion's servers measured in turn this many times
    roundtrip_seconds: float  # paced identifies at 200/s
    sustained_seconds: float
    startup_runs: int
    resets: int
    engage_profiles: tuple[int, ...]
    memory_events: int
    memory_contacts: int


FULL = Sizes(10, 2, 3, 20, 20, 5, 300, (10_000, 100_000), 1_000_000, 100_000)
SMALL = Sizes(2, 0.5, 1, 3, 4, 2, 50, (10_000,), 50_000, 5_000)
SIZES = SMALL if QUICK else FULL

# figure → (comparison, target). Figures without a target are context for the ones with one.
TARGETS: dict[str, tuple[str, float]] = {
    "ingest_ratio_vs_bare": (">=", 0.5),
    "roundtrip_p99_ms": ("<=", 50),
    "roundtrip_sustained_per_s": (">=", 1000),
    "mailjet_ratio_vs_moto": (">=", 10),
    "engage_change_ratio_100k": ("<=", 0.05),
    "startup_s": ("<=", 1),
    "reset_ms": ("<=", 5),
    "rss_bytes_per_event": ("<=", 1024),
    # Issue 10 measures "RSS after 1,000,000 stored events and 100,000 contacts": judged both ways.
    "rss_bytes_per_event_with_contacts": ("<=", 1024),
}

_work = Path(tempfile.mkdtemp(prefix="segjet-bench-"))
_counter = iter(range(1 << 30))


# ---------------------------------------------------------------------------------------------
# Processes.


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _segjet_up() -> list[str]:
    # `python -m emulator up` is `segjet up`, and imports the checkout it runs in.
    return _python("-m", "emulator", "up", "--segment-port", "0", "--mailjet-port", "0", "--destination-port", "0",
                   "--seed", "0")


def _environment() -> dict[str, str]:
    # The benchmarks measure the open control API and call /_emulator/* without a token: a
    # SEGJET_CONTROL_TOKEN in the caller's environment would make `segjet up` refuse those calls.
    return {name: value for name, value in os.environ.items() if name != "SEGJET_CONTROL_TOKEN"}


def _read_ready(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):  # not written yet, or half written
        return None


@contextlib.contextmanager
def server(command: list[str], timeout: float = 60) -> Iterator[tuple[dict[str, Any], subprocess.Popen]]:
    """Start a server process with `--ready-file`; yield what it wrote there, and its process."""
    name = f"server-{next(_counter)}"
    ready = _work / f"{name}.json"
    log = (_work / f"{name}.log").open("w")
    process = subprocess.Popen([*command, "--ready-file", str(ready)], stdout=log, stderr=subprocess.STDOUT,
                               env=_environment())
    try:
        deadline = time.monotonic() + timeout
        while (info := _read_ready(ready)) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not start; see {log.name}")
            time.sleep(0.01)
        yield info, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def load(spec: dict[str, Any], *options: str) -> dict[str, Any]:
    """Run benchmarks/http_load.py on `spec` in its own process; answer its JSON result."""
    spec_file = _work / f"spec-{next(_counter)}.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    done = subprocess.run(_python("-m", "benchmarks.http_load", str(spec_file), *options),
                          capture_output=True, text=True)
    if done.returncode:  # e.g. the server reset a connection: show why, not just the exit status
        raise RuntimeError(f"the load generator failed on {spec['url']}{spec['path']}:\n{done.stderr}")
    return json.loads(done.stdout)


def check_answers(spec: dict[str, Any], result: dict[str, Any]) -> None:
    """Only 2xx answers are throughput or latency: fail the figure rather than count an error.

    The load generator counts only 2xx answers in `requests`; its `statuses` has every answer of
    the run, warm-up included, so an error anywhere fails the figure."""
    bad = {status: count for status, count in result["statuses"].items() if not status.startswith("2")}
    if bad or not result["requests"]:
        raise RuntimeError(f"unexpected answers from {spec['url']}{spec['path']}: {result['statuses']}")


def closed_load(spec: dict[str, Any], connections: int, seconds: float | None = None,
                warmup: float | None = None) -> dict[str, Any]:
    result = load(spec, "--mode", "closed", "--connections", str(connections),
                  "--duration", str(SIZES.load_seconds if seconds is None else seconds),
                  "--warmup", str(SIZES.warmup_seconds if warmup is None else warmup))
    check_answers(spec, result)
    return result


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


# ---------------------------------------------------------------------------------------------
# Ingestion: /v1/batch with 100 track events, segjet (validation on, off) beside a bare endpoint.

EVENTS_PER_BATCH = 100
INGEST_CONNECTIONS = 8


def batch_body() -> str:
    """analytics-python's shape: 100 track calls with unique messageIds (@N@ is the request number).

    Each call has its own timestamp, different in every request, as a client's are (each event is
    stamped when it happens): parsing, checking and rendering timestamps is part of the cost, and
    caches keyed by timestamp must not make it look free. The fraction grows with the request
    number (".042" + "1234"), which RFC 3339 allows.
    """
    items = [
        {
            "type": "track", "userId": f"user-{i}", "event": "Order Completed",
            "properties": {"revenue": 42.5, "currency": "EUR", "order_id": f"o-@N@-{i}"},
            "context": {"library": {"name": "analytics-python", "version": "2.3.4"}},
            "timestamp": f"2025-03-01T12:00:00.{i:03d}@N@+00:00", "messageId": f"m-@N@-{i}", "integrations": {},
        }
        for i in range(EVENTS_PER_BATCH)
    ]
    return json.dumps({"batch": items, "sentAt": "2025-03-01T12:00:00.100+00:00", "writeKey": WRITE_KEY})


def ingest_spec(url: str) -> dict[str, Any]:
    return {"url": url, "method": "POST", "path": "/v1/batch", "body": batch_body(),
            "headers": {"Content-Type": "application/json", "Authorization": SEGMENT_AUTHORIZATION}}


def check_stored(segment_url: str) -> None:
    """Fail the figure if segjet discarded any of the events it answered 200 for.

    The tracking API answers 200 for a batch whose events it then discards (a duplicate messageId,
    a contract violation under --strict, ...), and a discarded event skips most of the work: such
    a rate would not be the ingestion rate. The feed keeps the newest 200,000 events, discarded
    ones included; a run stores more, but every request of a run has the same shape, so a rule
    that discards shows among the newest.
    """
    events = httpx.get(f"{segment_url}/_emulator/events", params={"status": "discarded", "limit": 1})
    events.raise_for_status()
    if events.json()["events"]:
        raise RuntimeError(f"segjet discarded ingested events, e.g. {events.json()['events'][0]}")


INGEST_SERVERS = {
    "validated": ("bundle",),
    "unvalidated": ("bundle", "--no-validate"),
    "bare": ("bare",),
}


def ingest_rate(*server_args: str) -> float:
    """Events/s a fresh `benchmarks.servers` server accepts in one closed-loop run."""
    with server(_python("-m", "benchmarks.servers", *server_args)) as (info, _):
        url = info.get("segment_url") or info["url"]
        rate = closed_load(ingest_spec(url), INGEST_CONNECTIONS)["per_s"] * EVENTS_PER_BATCH
        if "segment_url" in info:
            check_stored(url)
        return rate


def bench_ingest(figures: dict[str, Any]) -> None:
    """segjet (validation on, off) and the bare endpoint, each on a fresh server, in turn for
    SIZES.ingest_rounds rounds: a run's rate moves by up to 20 % on this VM, more than the effects
    compared, so each rate is the median of its rounds and the ratio the median of each round's
    validated / bare, measured back to back (`ingest_ratio_vs_bare_rounds` lists them)."""
    rates: dict[str, list[float]] = {label: [] for label in INGEST_SERVERS}
    for _ in range(SIZES.ingest_rounds):
        for label, server_args in INGEST_SERVERS.items():
            rates[label].append(ingest_rate(*server_args))
    ratios = [validated / bare for validated, bare in zip(rates["validated"], rates["bare"])]
    figures["ingest_events_per_s_validated"] = round(statistics.median(rates["validated"]))
    figures["ingest_events_per_s_unvalidated"] = round(statistics.median(rates["unvalidated"]))
    figures["ingest_bare_events_per_s"] = round(statistics.median(rates["bare"]))
    # Context: the bare endpoint keeping every event in its list. Its heap grows all the run, and it
    # slows as it grows, so its rate depends on the run's length; the ratio uses the bare endpoint
    # that keeps as many events as segjet's store.
    figures["ingest_bare_keep_all_events_per_s"] = round(ingest_rate("bare", "--keep-all"))
    figures["ingest_ratio_vs_bare"] = round(statistics.median(ratios), 3)
    figures["ingest_ratio_vs_bare_rounds"] = [round(ratio, 3) for ratio in ratios]


# ---------------------------------------------------------------------------------------------
# Fake Mailjet managecontact beside moto's SQS SendMessage.

MAILJET_CONNECTIONS = 8
# moto 5's SendMessage reads the queue's attributes, which scan every message in the queue: its cost
# grows with the queue's length (3.7 ms a call at 200 messages, 26 ms at 1,600, measured here), so
# one run on one queue gave a rate that fell the longer the run was (75/s over 12 s). moto is
# measured in slices of this length, each on a fresh queue (a few hundred messages at most), so that
# its figure does not depend on SIZES.load_seconds.
MOTO_SLICE_SECONDS = 1.0


def managecontact_spec(url: str) -> dict[str, Any]:
    body = {"Email": "bench-@N@@example.com", "Name": "Bench @N@", "Action": "addnoforce",
            "Properties": {"plan": "pro", "segment_user_id": "u-@N@"}}
    return {"url": url, "method": "POST", "path": "/v3/REST/contactslist/1/managecontact", "body": json.dumps(body),
            "headers": {"Content-Type": "application/json", "Authorization": MAILJET_AUTHORIZATION}}


def define_managecontact_properties(url: str) -> None:
    """Define the properties `managecontact_spec`'s contacts carry (Mailjet refuses undefined ones)."""
    for name in ("plan", "segment_user_id"):
        httpx.post(f"{url}/v3/REST/contactmetadata", auth=MAILJET_AUTH,
                   json={"Name": name, "Datatype": "str", "NameSpace": "static"}).raise_for_status()


def sqs_spec(url: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
    # SQS's JSON protocol, as boto3 sends it today; moto does not check signatures, it reads the
    # region from the credential scope.
    return {"url": url, "method": "POST", "path": "/", "body": json.dumps(body), "headers": {
        "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"AmazonSQS.{action}",
        "X-Amz-Date": "20250301T120000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20250301/us-east-1/sqs/aws4_request, "
                         "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64}}


def bench_mailjet_vs_moto(figures: dict[str, Any]) -> None:
    with server(_segjet_up()) as (info, _):
        url = info["mailjet_url"]
        define_managecontact_properties(url)
        mailjet = closed_load(managecontact_spec(url), MAILJET_CONNECTIONS)
    with server(_python("-m", "benchmarks.servers", "moto")) as (info, _):
        url = info["url"]

        def send_to_new_queue(name: str) -> dict[str, Any]:
            create = sqs_spec(url, "CreateQueue", {"QueueName": name})
            created = httpx.post(url + "/", content=create["body"], headers=create["headers"])
            created.raise_for_status()
            return sqs_spec(url, "SendMessage", {"QueueUrl": created.json()["QueueUrl"], "MessageBody": "hello @N@"})

        # Warm-up on a queue of its own (moto loads its SQS backend on first use); not measured.
        closed_load(send_to_new_queue("bench-warm-up"), MAILJET_CONNECTIONS, SIZES.warmup_seconds, 0)
        answered = measured = 0.0
        for index in range(max(1, round(SIZES.load_seconds / MOTO_SLICE_SECONDS))):
            part = closed_load(send_to_new_queue(f"bench-{index}"), MAILJET_CONNECTIONS, MOTO_SLICE_SECONDS, 0)
            answered += part["requests"]
            measured += part["seconds"]
        moto_per_s = answered / measured
    figures["mailjet_managecontact_per_s"] = round(mailjet["per_s"])
    figures["moto_sqs_send_per_s"] = round(moto_per_s)
    figures["mailjet_ratio_vs_moto"] = round(mailjet["per_s"] / moto_per_s, 2)


# ---------------------------------------------------------------------------------------------
# Round trip: identify → contact in Mailjet.

ROUNDTRIP_RATE = 200
BACKLOG_LIMIT = 2000  # identifies sent but not yet in Mailjet, in the sustained run
POLL_SECONDS = 0.1


def journal_moment(at: str) -> float:
    """A journal entry's `at` ("...T12:00:00.123Z", cut, not rounded, to the millisecond) as a POSIX
    time at the middle of the interval it stands for, so that it is within half a millisecond of
    the true moment rather than up to a whole one below it."""
    fraction = at.rstrip("Z").rpartition(".")[2] if "." in at else ""
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() + 10.0 ** -len(fraction) / 2


def nearest_rank(ordered: list[float], percent: float) -> float:
    """The `percent`th percentile of ascending `ordered`, nearest-rank: the smallest value with at
    least `percent` % of the values at or below it. (`int(n * 0.99) - 1` as an index was one rank
    low whenever n * 0.99 is not whole.)"""
    # Rounded first: n * 0.99 in floats can land just above a whole rank.
    rank = math.ceil(round(len(ordered) * percent / 100, 9))
    return ordered[max(rank, 1) - 1]


def _contacts_in_list(answer: httpx.Response) -> int:
    answer.raise_for_status()
    return answer.json()["Data"][0]["SubscriberCount"]


def contact_count(client: httpx.Client, mailjet_url: str) -> int:
    """Contacts in list 1, as the REST API reports them. (Not `/contact?countOnly=1`: it renders every
    contact before counting, which would load the server being measured.)"""
    return _contacts_in_list(client.get(f"{mailjet_url}/v3/REST/contactslist/1", auth=MAILJET_AUTH))


def wait_for_contacts(client: httpx.Client, mailjet_url: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (seen := contact_count(client, mailjet_url)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {seen} of {count} contacts reached Mailjet within {timeout} s")
        time.sleep(0.05)


def bench_roundtrip_latency(figures: dict[str, Any]) -> None:
    """p50/p99 from sending an identify to the contact's properties being in the fake Mailjet.

    Paced open loop at 200 identifies/s (POST /v1/identify, one user each). Latency of one identify =
    the moment the fake Mailjet answered the destination's managecontact for that email (its
    request journal's `at`, taken when the response starts, i.e. after the contact and its
    properties are stored and readable through the REST API), minus the moment the identify was
    due to be sent. Both are wall-clock readings of the same machine. The journal's `at` is cut
    to the millisecond (the true moment lies in [at, at + 1 ms)), so it is read as its middle
    (`journal_moment`): a latency is then off by at most ±0.5 ms, not always low by up to 1 ms (at
    p99 ≈ 3 ms that bias was a sixth of the figure).
    """
    with server(_segjet_up()) as (info, _), httpx.Client(timeout=30) as client:
        segment, mailjet = info["segment_url"], info["mailjet_url"]
        # Warm-up: the first identify makes the destination define the properties; not measured.
        client.post(f"{segment}/v1/identify", auth=(WRITE_KEY, ""),
                    json={"userId": "warm", "traits": {"email": "warm@example.com", "plan": "pro"}}).raise_for_status()
        wait_for_contacts(client, mailjet, 1, 30)
        spec = {"url": segment, "method": "POST", "path": "/v1/identify",
                "headers": {"Content-Type": "application/json", "Authorization": SEGMENT_AUTHORIZATION},
                "body": json.dumps({"userId": "rt-@N@", "messageId": "rt-@N@",
                                    "traits": {"email": "rt-@N@@example.com", "plan": "pro"}})}
        result = load(spec, "--mode", "paced", "--rate", str(ROUNDTRIP_RATE), "--connections", "64",
                      "--duration", str(SIZES.roundtrip_seconds))
        check_answers(spec, result)
        wait_for_contacts(client, mailjet, 1 + result["requests"], 120)
        journal = client.get(f"{mailjet}/_emulator/requests",
                             params={"method": "POST", "path": "managecontact", "limit": 10_000}).json()["requests"]
        answered = {entry["body"]["Email"]: journal_moment(entry["at"]) for entry in journal if entry["status"] == 201}
        missing = [number for number, _ in result["sent"] if f"rt-{number}@example.com" not in answered]
        if missing:  # e.g. more identifies than the journal keeps (journal_capacity)
            raise RuntimeError(f"{len(missing)} identifies have no managecontact answer in the journal")
        latencies = sorted((answered[f"rt-{number}@example.com"] - due) * 1000 for number, due in result["sent"])
        sample = client.get(f"{mailjet}/v3/REST/contactdata/rt-1@example.com", auth=MAILJET_AUTH).json()
        assert {"Name": "plan", "Value": "pro"} in sample["Data"][0]["Data"], sample
    figures["roundtrip_p50_ms"] = round(statistics.median(latencies), 1)
    figures["roundtrip_p99_ms"] = round(nearest_rank(latencies, 99), 1)
    figures["roundtrip_max_ms"] = round(latencies[-1], 1)
    figures["roundtrip_identifies"] = len(latencies)
    figures["roundtrip_sender_late"] = result["late"]


def bench_roundtrip_sustained(figures: dict[str, Any]) -> None:
    """Identifies/s delivered end to end when sent as fast as delivery keeps up.

    This process sends /v1/batch requests of 100 identifies (new users) while fewer than
    BACKLOG_LIMIT sent identifies are missing from Mailjet, and counts the contacts in the fake
    Mailjet (list 1's SubscriberCount) as they arrive; the figure is contacts added per second over the
    window after the warm-up.
    """
    asyncio.run(_sustained(figures))


async def _sustained(figures: dict[str, Any]) -> None:
    with server(_segjet_up()) as (info, _):
        segment, mailjet = info["segment_url"], info["mailjet_url"]
        async with httpx.AsyncClient(timeout=30) as client:
            sent = 0
            samples: list[tuple[float, int]] = []
            start = time.perf_counter()
            end = start + SIZES.warmup_seconds + SIZES.sustained_seconds
            while (now := time.perf_counter()) < end:
                if not samples or now - samples[-1][0] >= POLL_SECONDS:
                    count = _contacts_in_list(await client.get(f"{mailjet}/v3/REST/contactslist/1", auth=MAILJET_AUTH))
                    samples.append((now, count))
                if sent - count < BACKLOG_LIMIT:
                    batch = [{"type": "identify", "userId": f"s-{sent + i}", "messageId": f"s-{sent + i}",
                              "traits": {"email": f"s-{sent + i}@example.com", "plan": "pro"}}
                             for i in range(EVENTS_PER_BATCH)]
                    (await client.post(f"{segment}/v1/batch", auth=(WRITE_KEY, ""), json={"batch": batch})).raise_for_status()
                    sent += EVENTS_PER_BATCH
                else:
                    await asyncio.sleep(0.05)
    window = [(at, count) for at, count in samples if at >= start + SIZES.warmup_seconds]
    (first_at, first), (last_at, last) = window[0], window[-1]
    figures["roundtrip_sustained_per_s"] = round((last - first) / (last_at - first_at))


# ---------------------------------------------------------------------------------------------
# Start-up and reset.


def bench_startup(figures: dict[str, Any]) -> None:
    """`segjet up` (ports 0, --ready-file) from process start to all three servers answering health."""
    times = []
    for _ in range(SIZES.startup_runs):
        # Made before the clock starts: building an httpx client (its TLS store) took 46-84 ms.
        with httpx.Client() as client:
            started = time.perf_counter()
            with server(_segjet_up()) as (info, _):
                for url in (info["segment_url"] + "/_emulator/health", info["mailjet_url"] + "/_emulator/health",
                            info["destination_url"] + "/health"):
                    client.get(url).raise_for_status()
                times.append(time.perf_counter() - started)
    figures["startup_s"] = round(statistics.median(times), 3)


def bench_reset(figures: dict[str, Any]) -> None:
    """The pytest plugin's per-test reset: what its `segjet` fixture does before each test (a client of
    the test's own over the session's connections, then `SegjetClient.reset`: POST /_emulator/reset on
    Mailjet, Segment, Mailjet).

    On the stack the plugin's session fixture starts: a BackgroundBundle on a thread of the test's
    own process (here this one), with the fixture's config, not a `segjet up` process: the client
    and the servers share one interpreter, as they do under pytest. Each reset follows one identify
    delivered to Mailjet, so there is a little state to forget, as after a short test.
    """
    times = []
    # As emulator/pytest_plugin.py's `segjet_stack` starts it.
    bundle = BackgroundBundle(BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=0))
    stack = SegjetClient(bundle.start())
    try:
        for n in range(SIZES.resets):
            stack.http.post(f"{stack.segment_url}/v1/identify", auth=(WRITE_KEY, ""),
                            json={"userId": f"r-{n}", "traits": {"email": f"r-{n}@example.com"}}).raise_for_status()
            wait_for_contacts(stack.http, stack.mailjet_url, 1, 30)
            started = time.perf_counter()
            stack.for_next_test().reset()
            times.append(time.perf_counter() - started)
    finally:
        stack.close()
        bundle.stop()
    figures["reset_ms"] = round(statistics.median(times) * 1000, 2)


# ---------------------------------------------------------------------------------------------
# Engage (model level, in-process) and memory (the served bundle).


def bench_engage(figures: dict[str, Any]) -> None:
    """Initial and 1 %-change sync, with benchmarks/engage_sync.py's workspace, data, steps and GC settings."""
    for profiles in SIZES.engage_profiles:
        measured = engage_sync.measure(profiles, seed=7)
        initial, changed = measured.initial_seconds, measured.change_seconds
        label = f"{profiles // 1000}k"
        figures[f"engage_initial_s_{label}"] = round(initial, 3)
        figures[f"engage_change_s_{label}"] = round(changed, 4)
        figures[f"engage_change_ratio_{label}"] = round(changed / initial, 4)


def bench_memory(figures: dict[str, Any]) -> None:
    """RSS of the served bundle as it stores events, then contacts, read from /proc before and after.

    The bundle is `segjet up`'s (benchmarks/servers.py: the three servers in one process, its
    garbage-collector settings, the request journals and events feed at their default capacities).
    Events: benchmarks/stored_memory.py's batches to /v1/batch, with the Mailjet destination off so
    that no contact comes of them (and no delivery is recorded); contacts: managecontact from the load
    generator, as the destination calls it (a name and two properties, list 1). A warm-up batch and
    contact go first, not counted.
    """
    with server(_python("-m", "benchmarks.servers", "bundle")) as (info, process), httpx.Client(timeout=60) as client:
        segment, mailjet = info["segment_url"], info["mailjet_url"]
        client.put(f"{segment}/_emulator/destinations/mailjet", json={"enabled": False}).raise_for_status()
        define_managecontact_properties(mailjet)
        stored_memory.send_events(segment, stored_memory.BATCH, first=10**9)
        client.post(f"{mailjet}/v3/REST/contactslist/1/managecontact", auth=MAILJET_AUTH,
                    json={"Email": "warm-up@example.org", "Action": "addnoforce"}).raise_for_status()
        before = rss_bytes(process.pid)
        stored_memory.send_events(segment, SIZES.memory_events)
        check_stored(segment)  # a discarded event costs less: the figure is per stored event
        after_events = rss_bytes(process.pid)
        spec = managecontact_spec(mailjet)
        check_answers(spec, load(spec, "--mode", "count", "--requests", str(SIZES.memory_contacts),
                                 "--connections", str(MAILJET_CONNECTIONS)))
        after_contacts = rss_bytes(process.pid)
    events, contacts = SIZES.memory_events, SIZES.memory_contacts
    figures["rss_events_stored"] = events
    figures["rss_bytes_per_event"] = round((after_events - before) / events)
    figures["rss_contacts_stored"] = contacts
    figures["rss_bytes_per_contact"] = round((after_contacts - after_events) / contacts)
    # The growth over both stores, per event: the target read as "RSS after the events and the
    # contacts, per event" (the process's start-up RSS left out).
    figures["rss_bytes_per_event_with_contacts"] = round((after_contacts - before) / events)
    figures["rss_total_mb"] = round(after_contacts / 2**20, 1)


# ---------------------------------------------------------------------------------------------

BENCHES: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("ingest", bench_ingest),
    ("mailjet vs moto", bench_mailjet_vs_moto),
    ("round trip latency", bench_roundtrip_latency),
    ("round trip sustained", bench_roundtrip_sustained),
    ("start-up", bench_startup),
    ("reset", bench_reset),
    ("engage", bench_engage),
    ("memory", bench_memory),
]


def verdicts(figures: dict[str, Any]) -> dict[str, bool | None]:
    """Whether each target is met; None for one this run did not measure, and for every one in quick
    mode, whose small sizes prove the benchmarks run, not what they would measure."""
    met: dict[str, bool | None] = {}
    for name, (comparison, target) in TARGETS.items():
        value = figures.get(name)
        judged = value is not None and figures.get("mode") != "quick"
        met[name] = (value >= target if comparison == ">=" else value <= target) if judged else None
    return met


def target_text(name: str) -> str:
    comparison, target = TARGETS[name]
    return f"{comparison} {target:g}"


def with_targets(figures: dict[str, Any]) -> dict[str, Any]:
    """The figures, each target and whether it is met as flat keys beside its figure
    (`<figure>_target`, `<figure>_met`); a target whose figure this run did not measure (quick
    mode) comes last, met null."""
    met = verdicts(figures)
    flat: dict[str, Any] = {}
    for name, value in figures.items():
        flat[name] = value
        if name in TARGETS:
            flat[f"{name}_target"], flat[f"{name}_met"] = target_text(name), met[name]
    for name in TARGETS:
        if name not in figures:
            flat[f"{name}_target"], flat[f"{name}_met"] = target_text(name), None
    return flat


def print_table(figures: dict[str, Any]) -> None:
    met = verdicts(figures)
    print(f"\n{'figure':<34} {'value':>14}  {'target':<10} met")
    for name, value in figures.items():
        if name in ("mode", "machine"):
            continue
        verdict = {True: "yes", False: "NO", None: "-"}[met[name]] if name in TARGETS else ""
        shown = f"{value:,}" if isinstance(value, (int, float)) else str(value)
        print(f"{name:<34} {shown:>14}  {target_text(name) if name in TARGETS else '':<10} {verdict}")
    for name in TARGETS:
        if name not in figures:
            print(f"{name:<34} {'not measured':>14}  {target_text(name):<10} -")


def stop_on_sigterm(signum: int, frame: object) -> None:
    # Unwinds as Ctrl-C does, so every `finally` runs: server processes stopped, the work dir removed.
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    figures: dict[str, Any] = {
        "mode": "quick" if QUICK else "full",
        "machine": f"{os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}",
    }
    try:
        parser.parse_args()  # in the try: the work dir, made at import, goes after --help too
        for title, bench in BENCHES:
            started = time.perf_counter()
            print(f"{title} ...", end=" ", flush=True)
            bench(figures)
            print(f"{time.perf_counter() - started:.1f} s", flush=True)
    finally:
        shutil.rmtree(_work, ignore_errors=True)
    print_table(figures)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(with_targets(figures), indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
