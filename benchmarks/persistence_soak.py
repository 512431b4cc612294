"""Persistence soak: what `segjet up --data-dir DIR` costs as the stored state grows.

Runs a bundle in this process (BackgroundBundle) with and without a data dir and prints:
ingestion rate (100-call batches of track calls, destination off), Mailjet managecontact rate,
identifies into a realtime Engage audience as it grows, the cost of one more change once the
stores are large, the restart time on the grown directory (and what it kept), and a snapshot
export/import of both fakes (with how long the event loop the servers share was held: the slowest
answer of the destination server to a GET meanwhile). Prints figures; asserts nothing.

    .venv/bin/python -m benchmarks.persistence_soak --events 200000 --contacts 100000 --deliveries 10000
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from emulator.bundle import BackgroundBundle
from emulator.config import BundleConfig

BATCH = 100


def config(data_dir: str | None, destination: bool = False, **more: Any) -> BundleConfig:
    settings: dict[str, Any] = {"engage_sync_interval": "manual", **more}
    return BundleConfig(segment_port=0, mailjet_port=0, destination_port=0, seed=1, data_dir=data_dir,
                        enable_destination=destination, **settings)


def identify(n: int, traits: dict[str, Any]) -> dict[str, Any]:
    return {"type": "identify", "userId": f"id{n}", "messageId": str(uuid.uuid4()), "traits": traits}


def identify_all(http: httpx.Client, info: dict[str, Any], users: int, traits: Any, every: int) -> list[float]:
    """Identify users id0..id{users-1}, 100 a batch; the rate of each `every` calls."""
    url, rates, began = info["segment_url"] + "/v1/batch", [], time.monotonic()
    for offset in range(0, users, BATCH):
        batch = [identify(n, traits(n)) for n in range(offset, min(offset + BATCH, users))]
        http.post(url, json={"writeKey": info["write_key"], "batch": batch}).raise_for_status()
        if (offset + BATCH) % every == 0:
            rates.append(every / (time.monotonic() - began))
            began = time.monotonic()
    return rates


def track(n: int) -> dict[str, Any]:
    return {"type": "track", "userId": f"u{n % 1000}", "event": "Soak", "messageId": str(uuid.uuid4()),
            "properties": {"n": n}}


class Prober:
    """A thread asking `url` (another server of the bundle) a cheap GET in a loop: the slowest
    answer is how long the event loop the servers share was held."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.probes: list[tuple[float, float]] = []  # (asked, answered)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=600) as http:
            while not self._stop.is_set():
                began = time.monotonic()
                http.get(self.url)
                self.probes.append((began, time.monotonic()))
                time.sleep(0.01)

    def worst(self, start: float, end: float) -> float:
        """The longest wait for an answer within [start, end]."""
        return max((min(answered, end) - max(asked, start) for asked, answered in self.probes
                    if answered > start and asked < end), default=0.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def ingest(http: httpx.Client, info: dict[str, Any], events: int, start: int = 0) -> float:
    url = info["segment_url"] + "/v1/batch"
    began = time.monotonic()
    for offset in range(start, start + events, BATCH):
        batch = [track(n) for n in range(offset, min(offset + BATCH, start + events))]
        http.post(url, json={"writeKey": info["write_key"], "batch": batch}).raise_for_status()
    return events / (time.monotonic() - began)


def manage(http: httpx.Client, info: dict[str, Any], contacts: int, start: int = 0) -> float:
    url = f"{info['mailjet_url']}/v3/REST/contactslist/{info.get('list_id', 1)}/managecontact"
    auth = (info["mailjet_api_key"], info["mailjet_secret_key"])
    began = time.monotonic()
    for n in range(start, start + contacts):
        http.post(url, auth=auth, json={"Email": f"c{n}@example.com", "Action": "addforce",
                                        "Properties": {}}).raise_for_status()
    return contacts / (time.monotonic() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=10_000, help="identifies delivered to Mailjet first")
    parser.add_argument("--members", type=int, default=50_000, help="users entering a realtime Engage audience")
    parser.add_argument("--sample", type=int, default=20_000, help="events/contacts timed for the rate comparison")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, httpx.Client(timeout=120) as http:
        for label, data_dir in (("memory", None), ("data-dir", str(Path(tmp) / "rate"))):
            with BackgroundBundle(config(data_dir)) as info:
                rate = ingest(http, info, args.sample)
                contacts = manage(http, info, min(args.sample, 5000))
            print(f"{label:>9}: ingest {rate:,.0f} events/s, managecontact {contacts:,.0f}/s", flush=True)

        audience = [{"name": "Has Plan", "rule": {"trait": "plan", "exists": True}}]
        for label, data_dir in (("memory", None), ("data-dir", str(Path(tmp) / "engage"))):
            with BackgroundBundle(config(data_dir, engage_sync_interval="realtime", engage_audiences=audience)) as info:
                every = max(BATCH, args.members // 5 // BATCH * BATCH)
                rates = identify_all(http, info, args.members, lambda n: {"plan": "pro"}, every)
            print(f"{label:>9}: realtime Engage audience, identifies/s per {every} new members: "
                  + ", ".join(f"{rate:,.0f}" for rate in rates), flush=True)

        data_dir = str(Path(tmp) / "big")
        bundle = BackgroundBundle(config(data_dir, destination=True))
        info = bundle.start()
        try:
            print(f"filling {args.deliveries} delivered identifies, {args.events} events, {args.contacts} contacts...", flush=True)
            identify_all(http, info, args.deliveries, lambda n: {"email": f"id{n}@example.com"}, args.deliveries or 1)
            auth = (info["mailjet_api_key"], info["mailjet_secret_key"])
            while http.get(info["mailjet_url"] + "/v3/REST/contact", params={"countOnly": 1},
                           auth=auth).json()["Total"] < args.deliveries:
                time.sleep(0.2)
            http.put(info["segment_url"] + "/_emulator/destinations/mailjet", json={"enabled": False}).raise_for_status()
            for done in range(0, args.events, 50_000):
                rate = ingest(http, info, min(50_000, args.events - done), start=done)
                print(f"  events {min(done + 50_000, args.events):>8}: {rate:,.0f}/s", flush=True)
            for done in range(0, args.contacts, 25_000):
                rate = manage(http, info, min(25_000, args.contacts - done), start=done)
                print(f"  contacts {min(done + 25_000, args.contacts):>8}: {rate:,.0f}/s", flush=True)
            print(f"at size: ingest {ingest(http, info, 5000, start=10**7):,.0f} events/s, "
                  f"managecontact {manage(http, info, 1000, start=10**7):,.0f}/s", flush=True)
            stall = Prober(info["destination_url"] + "/")
            for name in ("segment_url", "mailjet_url"):
                began = time.monotonic()
                document = http.get(info[name] + "/_emulator/snapshot").content
                exported = time.monotonic()
                http.put(info[name] + "/_emulator/snapshot", content=document,
                         headers={"content-type": "application/json"}).raise_for_status()
                imported = time.monotonic()
                time.sleep(0.2)  # the probe in flight answers
                print(f"  snapshot {name.split('_')[0]}: {len(document) / 1e6:.0f} MB, export {exported - began:.1f}s "
                      f"(loop held {stall.worst(began, exported):.1f}s), import {imported - exported:.1f}s "
                      f"(loop held {stall.worst(exported, imported):.1f}s)", flush=True)
            stall.stop()
        finally:
            began = time.monotonic()
            bundle.stop()
            print(f"stop: {time.monotonic() - began:.1f}s", flush=True)
        sizes = {p.name: p.stat().st_size / 1e6 for p in Path(data_dir).iterdir() if p.is_file()}
        print("files MB:", {k: round(v, 1) for k, v in sizes.items()})
        gc.collect()
        began = time.monotonic()
        with BackgroundBundle(config(data_dir)) as info:
            print(f"restart: {time.monotonic() - began:.1f}s", flush=True)
            feed = http.get(info["segment_url"] + "/_emulator/events", params={"limit": 1}).json()
            contacts = http.get(info["mailjet_url"] + "/v3/REST/contact", params={"countOnly": 1},
                                auth=(info["mailjet_api_key"], info["mailjet_secret_key"])).json()["Total"]
            deliveries = http.get(info["segment_url"] + "/_emulator/deliveries", params={"limit": 1000}).json()
            print(f"  after restart: feed dropped {feed.get('dropped')}, contacts {contacts}, "
                  f"deliveries listed {len(deliveries.get('deliveries', []))} (limit 1000)", flush=True)


if __name__ == "__main__":
    main()
