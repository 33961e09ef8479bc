"""Logging of every process (web, worker, beat, exporter, cli): JSON lines or text, with the
context known where the line was logged, and secrets and emails out of every line.

- `LOG_FORMAT=json` (default): one JSON object a line (python-json-logger) with `timestamp`,
  `level`, `logger`, `message`, `process` and, where known, `tenant`, `executionId`, `eventId`
  (webhook), `taskId`, `task`, `stage`, `requestId`; `exception` holds a traceback.
  `LOG_FORMAT=text`: one readable line for a terminal. Level: `LOG_LEVEL`.
- The context comes from contextvars: the web tier binds the request id and tenant per request,
  a Celery `task_prerun` handler binds the task's (tasks/base.py). `bind`/`log_context` set them.
- Redaction (`pipeline.infra.logsafe.redact`) happens when a record is made (a LogRecord factory), so
  it covers every logger and every handler of the process, those added later and gunicorn's own
  included: the message with its args, a traceback, the stack and string extras. `RedactFilter`
  does the same as a filter, for handlers of records made elsewhere; both run once per record.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

from pipeline.infra.logsafe import redact, remember_secrets
from pipeline.settings import SECRET_TENANT_FIELDS, Settings, Tenant

PROCESSES = ("web", "worker", "beat", "exporter", "cli")
FORMATS = ("json", "text")
# the context fields a line may carry, in this order
CONTEXT_FIELDS = ("tenant", "executionId", "eventId", "taskId", "task", "stage", "requestId")

_context: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "rsf_log_context", default=None
)
_lock = threading.Lock()
_configured: str | None = None  # the process label configure_logging ran with
_DONE = "_rsf_redacted"  # set on a record once redacted and given its context


# -- context -------------------------------------------------------------------------------
def bind(**fields: str | None) -> contextvars.Token:
    """Add context fields to every line logged from here (this thread, task or request) on;
    None leaves a field out. Returns the token `unbind` restores the previous context with."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise TypeError(f"unknown log context fields: {sorted(unknown)}")
    current = dict(_context.get() or {})
    current.update({name: str(value) for name, value in fields.items() if value is not None})
    return _context.set(current)


def unbind(token: contextvars.Token) -> None:
    with contextlib.suppress(ValueError):  # a token of another context: nothing to restore there
        _context.reset(token)


def replace(**fields: str | None) -> contextvars.Token:
    """Exactly these context fields (a new request or task starts without the previous one's);
    `unbind` with the token restores what was there before."""
    token = _context.set({})
    bind(**fields)
    return token


def clear() -> contextvars.Token:
    return replace()


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def current_context() -> dict[str, str]:
    return dict(_context.get() or {})


# -- redaction -----------------------------------------------------------------------------
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_CORE = "_rsf_core"  # the message as redacted (traceback and stack too)
_SNAPSHOT = "_rsf_context"  # the context where the record was made


def _redact_core(record: logging.LogRecord) -> None:
    # done unless the record changed since (makeLogRecord fills a factory-made record in later)
    if record.__dict__.get(_CORE) is record.msg and record.args is None and record.exc_info is None:
        return
    try:
        message = record.getMessage()
    except Exception:  # args that do not fit the format: keep both, as text
        message = f"{record.msg!r} % {record.args!r}"
    record.msg, record.args = redact(message), None
    if record.exc_info:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None  # a formatter would render the raw traceback again
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    setattr(record, _CORE, record.msg)


def _redacted(value: Any, depth: int = 0) -> Any:
    """Strings redacted, also inside the dicts and lists an `extra=` carries (Celery's `data`:
    a task's args and return value); a copy, the caller's objects are left alone."""
    if isinstance(value, str):
        return redact(value)
    if depth < 4 and isinstance(value, Mapping):
        return {key: _redacted(item, depth + 1) for key, item in value.items()}
    if depth < 4 and isinstance(value, list | tuple):
        return [_redacted(item, depth + 1) for item in value]
    return value


def prepare(record: logging.LogRecord) -> logging.LogRecord:
    """Give a record its context and take secrets and emails out of it (once)."""
    if getattr(record, _DONE, False):
        return record
    _redact_core(record)
    # the context where it was made (our factory), else where it is handled (the same thread)
    context = record.__dict__[_SNAPSHOT] if _SNAPSHOT in record.__dict__ else _context.get()
    for name, value in (context or {}).items():
        if not hasattr(record, name):  # an explicit `extra=` wins
            setattr(record, name, value)
    for name, value in list(record.__dict__.items()):
        if name not in _STANDARD_ATTRS and not name.startswith("_rsf"):
            setattr(record, name, _redacted(value))
    setattr(record, _DONE, True)
    return record


class RedactFilter(logging.Filter):
    """Context in, secrets out, emails masked: on the root handler(s) and gunicorn's."""

    def filter(self, record: logging.LogRecord) -> bool:
        prepare(record)
        return True


def _install_record_factory() -> None:
    """Redact each record where it is made, so no handler of this process ever sees a secret
    (even one added later without our filter). The context is kept aside, not set as fields:
    `extra=` is applied after the factory and may not overwrite an attribute."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_rsf", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        setattr(record, _SNAPSHOT, _context.get())
        _redact_core(record)
        return record

    factory._rsf = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def remember_tenant_secrets(tenant: Tenant | None) -> None:
    """A tenant's secrets are removed from every line this process logs from now on."""
    if tenant is not None:
        values = [getattr(tenant, name, "") or "" for name in SECRET_TENANT_FIELDS]
        remember_secrets(part for value in values for part in value.split("\n"))


def _url_password(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).password or ""


def remember_settings_secrets(settings: Settings) -> None:
    history_password = _url_password(settings.history_url)
    remember_secrets([*settings.secret_key, settings.sfmc_app_client_secret, history_password])
    for tenant in settings.tenants.values():
        remember_tenant_secrets(tenant)


# -- formats -------------------------------------------------------------------------------
class TextFormatter(logging.Formatter):
    """`2026-11-27 14:57:59,123 INFO worker pipeline.journeys.executions [tenant=acme ...]: ...`"""

    def __init__(self, process: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {process} %(name)s%(rsf_fields)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(prepare(record))

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = [f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if hasattr(record, name)]
        record.rsf_fields = f" [{' '.join(fields)}]" if fields else ""
        return super().formatMessage(record)


class JsonLineFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return super().format(prepare(record))

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        fields: dict[str, Any] = {}
        super().add_fields(fields, record, message_dict)
        log_data["timestamp"] = fields.pop("timestamp")  # first, for a reader's eye
        log_data.update(fields)


def formatter(process: str, log_format: str = "json") -> logging.Formatter:
    if process not in PROCESSES:
        raise ValueError(f"process must be one of {PROCESSES}, not {process!r}")
    if log_format not in FORMATS:
        raise ValueError(f"LOG_FORMAT: json or text, not {log_format!r}")
    if log_format == "text":
        return TextFormatter(process)
    return JsonLineFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
        static_fields={"process": process},
        reserved_attrs=[*_STANDARD_ATTRS, "rsf_fields"],
        timestamp="timestamp",
    )


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of each line (a test's capture, a
    redirected stream), not to the one there was when logging was configured."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def configure_logging(
    settings: Settings, process: str, *, stream: IO[str] | None = None, force: bool = False
) -> logging.Handler | None:
    """Set up this process's logging: the root logger writes LOG_FORMAT lines at LOG_LEVEL to
    stderr (or `stream`). Runs once per process (a later call returns None and changes nothing)
    unless `force`; handlers already on the root logger (a host's, a test's) are kept and get
    the redaction filter too. Returns the handler it installed."""
    global _configured
    log_format = settings.log_format
    fmt = formatter(process, log_format)  # validates process and format before changing anything
    with _lock:
        if _configured is not None and not force:
            return None
        remember_settings_secrets(settings)
        _install_record_factory()
        root = logging.getLogger()
        for old in [h for h in root.handlers if getattr(h, "_rsf", False)]:
            root.removeHandler(old)
            old.flush()
        handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
        handler.setFormatter(fmt)
        handler._rsf = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        for existing in root.handlers:
            if not any(isinstance(f, RedactFilter) for f in existing.filters):
                existing.addFilter(RedactFilter())
        root.setLevel(settings.log_level)
        _configured = process
    return handler


def configured_process() -> str | None:
    return _configured


def add_redaction(logger: logging.Logger, fmt: logging.Formatter | None = None) -> None:
    """Our format (if given) and the redaction filter on every handler of `logger` (a logger
    that does not propagate to the root one, such as gunicorn's)."""
    for handler in logger.handlers:
        if fmt is not None:
            handler.setFormatter(fmt)
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())
