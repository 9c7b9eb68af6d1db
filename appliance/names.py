"""Names and paths that users give: checked in one place, before they reach a folder, a URL,
a Serve application or a query.

A deployment, dataset, alias or run name is 1 to 128 characters: letters, digits, '.', '_' or
'-', starting with a letter or digit (`check_name`). So it has no '/', cannot be '.' or '..',
holds no NUL or control character, and needs no quoting in a URL path (``/v2/models/{model}``)
or a file name (``feedback/{deployment}``).

A model name follows the same rule, narrowed (`check_model_name`): lower case, at most 63
characters, a DNS label. A model's name is also its Serve application, route and default
deployment name and names folders; lower case keeps "Credit" and "credit" from being two
models that share one folder on a case-insensitive filesystem, and 63 characters fit the
label limits of Kubernetes and DNS.

A file path or URI (`check_path`) may hold '/', but no NUL or control character, and has a
length limit, so it cannot smuggle a second argument or truncate where C code reads it.
"""

from __future__ import annotations

import os
import re

from appliance.errors import InvalidInput

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MODEL_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_PATH = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_name(kind: str, value: object) -> str:
    """`value` when it is a valid name; InvalidInput naming `kind` and the value otherwise.

    Args:
        kind: what the name names, for the message ("deployment name").
        value: the name to check.
    """
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise InvalidInput(
            f"{kind} {value!r} is not valid: use 1 to 128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_model_name(value: object, kind: str = "model name") -> str:
    """`value` when it is a valid model name (`check_name`, lower case, at most 63 characters);
    InvalidInput naming `kind` and the value otherwise.

    Args:
        value: the name to check.
        kind: what the name names, for the message (default "model name").
    """
    if not isinstance(value, str) or not MODEL_NAME_RE.match(value):
        raise InvalidInput(
            f"{kind} {value!r} is not valid: use 1 to 63 lower-case letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return value


def check_path(kind: str, value: object) -> str:
    """`value` as a string when it is a usable file path or URI; InvalidInput naming `kind`
    otherwise (empty, a NUL or control character, or longer than `MAX_PATH`).

    Args:
        kind: what the path is, for the message ("dataset file").
        value: the path (a str or os.PathLike).
    """
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if not isinstance(text, str) or not text:
        raise InvalidInput(f"{kind} {value!r} is not a file path")
    if _CONTROL.search(text):
        raise InvalidInput(f"{kind} {text!r} contains a NUL or control character")
    if len(text) > MAX_PATH:
        raise InvalidInput(f"{kind} {text[:40]!r}... is {len(text)} characters long; the limit "
                           f"is {MAX_PATH}")
    return text
