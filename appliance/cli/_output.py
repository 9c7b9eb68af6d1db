"""How commands write: data to stdout (one JSON document with --json), diagnostics to stderr."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from appliance.cli._json_fields import select

err_console = Console(stderr=True)
_data_stream: TextIO | None = None


def reserve_stdout() -> None:
    """Keep the real stdout for command output only; point fd 1 and sys.stdout at stderr.

    Ray's log threads and native code print to stdout at will (e.g. while Serve shuts down);
    with this, nothing but the command's own data can reach a pipe reading our stdout.
    """
    global _data_stream
    if _data_stream is not None:
        return
    sys.stdout.flush()
    _data_stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def data_stream() -> TextIO:
    """Where command output goes: the reserved stdout, or sys.stdout when none was reserved."""
    return _data_stream if _data_stream is not None else sys.stdout


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        # By alias: the names `--json=FIELDS` and the records' JSON schemas use.
        return value.model_dump(mode="json", by_alias=True)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def emit_json(document: Any, *, line: bool = False) -> None:
    """Print exactly one JSON document on stdout (on one line with `line`, for a stream of
    documents such as the monitor service's, one per round), cut down to the fields that
    ``--json=FIELDS`` asked for."""
    selected = select(json.loads(json.dumps(document, default=_default)))
    out = data_stream()
    out.write(json.dumps(selected, indent=None if line else 2) + "\n")
    out.flush()


# What must never reach stderr even when a third-party error quotes it: a URL's password and
# an API token's secret (our own messages mask both already; these catch the ones we relay).
_URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^:/@\s]*):\S*@")
_TOKEN_SECRET = re.compile(r"apl_[A-Za-z0-9_-]{8,}")


def redact_secrets(text: str) -> str:
    """`text` with URL passwords and API token secrets masked."""
    return _TOKEN_SECRET.sub("apl_***", _URL_PASSWORD.sub(r"\1:***@", text))


def fail(message: str) -> None:
    """Write a one-line error on stderr (the caller chooses the exit code), secrets masked."""
    sys.stderr.write(f"error: {redact_secrets(' '.join(str(message).split()))}\n")
