"""The dashboard: browser pages of the fake Segment and the fake Mailjet, and their JSON/SSE feeds.

Plain HTML/CSS/JS under `static/`, no build step and no external URL. Each service's
`create_app` mounts its own routes:

- `segment_dashboard_routes(backend, urls, named_write_key)`: pages `/`, `/debugger`, `/destinations`,
  `/deliveries`, `/engage`, `/trace`; `GET /_emulator/events/stream` (SSE);
  `POST /_emulator/validate/{contract}`; `GET /_emulator/contracts`; `GET /_emulator/dashboard/info`,
  `GET /_emulator/dashboard/overview` (the Overview's steps), `GET /_emulator/dashboard/trace` and
  `.../trace/export`.
- `mailjet_dashboard_routes(backend, urls)`: pages `/`, `/app-connections`, `/contacts`,
  `/messages`; `GET /_emulator/stream` (SSE); `GET /_emulator/dashboard/lists|contacts|info`.

The two modules are imported lazily so that importing the Segment side never imports
`emulator.mailjet` (the services meet over HTTP only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.routing import BaseRoute


def segment_dashboard_routes(*args: Any, **kwargs: Any) -> list[BaseRoute]:
    from .segment_routes import segment_dashboard_routes as build

    return build(*args, **kwargs)


def mailjet_dashboard_routes(*args: Any, **kwargs: Any) -> list[BaseRoute]:
    from .mailjet_routes import mailjet_dashboard_routes as build

    return build(*args, **kwargs)


__all__ = ["segment_dashboard_routes", "mailjet_dashboard_routes"]
