"""Flower's `--conf` file: puts Flower's /metrics behind the basic auth of its other pages.

Flower 2.2 serves /metrics (`flower.views.monitor.Metrics`) without authentication even with
`FLOWER_BASIC_AUTH` set. Flower reads `--conf` in its own process (`flower.command.apply_options`:
tornado's `parse_config_file` executes this file) before it builds its app and serves, so the
handler is wrapped here rather than by editing site-packages. /healthcheck stays open: compose's
health check calls it without credentials.

Tornado takes every top-level name of this file that matches a Flower option (port, auth, ...) as
that option's value, over the FLOWER_* variables: define none here. The image copies this file
(Dockerfile); docker-compose.yml and pipeline/sandbox/processes.py `start_flower` pass it.
"""

from __future__ import annotations

import tornado.web
from flower.views.monitor import Metrics

GUARD_MARK = "_rokt_sfmc_authenticated"


def require_auth_on_metrics() -> None:
    """Wrap `Metrics.get` in `tornado.web.authenticated`, as Flower wraps its pages: with basic auth
    on, `BaseHandler.get_current_user` answers 401 to missing or wrong credentials. With no auth
    configured at all (FLOWER_BASIC_AUTH unset and no --auth, which only a local sandbox does) it
    lets everyone in, so /metrics stays open as in Flower itself. Running twice wraps once."""
    if getattr(Metrics.get, GUARD_MARK, False):
        return
    guarded = tornado.web.authenticated(Metrics.get)
    setattr(guarded, GUARD_MARK, True)
    Metrics.get = guarded  # type: ignore[method-assign]


require_auth_on_metrics()
