"""Names that become folder names, URLs and Serve application names: checked in one place.

A model, deployment or dataset name is 1 to 128 characters: letters, digits, '.', '_' or '-',
starting with a letter or digit. So it has no '/', cannot be '.' or '..', and needs no quoting
in a URL path (``/v2/models/{model}``) or a file name (``feedback/{deployment}``).
"""

from __future__ import annotations

import re

from appliance.errors import InvalidInput

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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
