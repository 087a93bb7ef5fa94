"""Parameter values: dotted names, how a value is written on a command line, canonical identity.

`run_id` is a hash of the canonical parameters, so it does not depend on file, dialect or key order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

try:  # the built-in module: hashlib would load OpenSSL (~10 ms) at every start
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python 3.12+ names it _sha2
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]
    except ImportError:
        from hashlib import sha256

RUN_ID_LENGTH = 16


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"model": {"depth": 4}}` -> `{"model.depth": 4}`; lists and scalars are kept as they are."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def unflatten(params: Mapping[str, Any]) -> dict[str, Any]:
    """`{"model.depth": 4}` -> `{"model": {"depth": 4}}`; a name that is also a prefix keeps both."""
    nested: dict[str, Any] = {}
    for name, value in params.items():
        *parents, leaf = name.split(".")
        node = nested
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {} if child is None else {"": child}
            node = child
        if isinstance(node.get(leaf), dict):
            node[leaf][""] = value
        else:
            node[leaf] = value
    return nested


def format_value(value: Any) -> str:
    """A value as it appears on a command line (before shell quoting): `str()`, as a wandb agent
    and mlrunner write it (`True`, `None`, `1e-05`, `[1, 'a']`)."""
    return value if isinstance(value, str) else str(value)


# Built once: json.dumps with options builds a new encoder on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(params: Mapping[str, Any]) -> str:
    """One string per distinct parameter set: sorted keys, compact JSON (1 and 1.0 stay distinct)."""
    return _CANONICAL.encode(params)


def run_id_of(canonical_params: str) -> str:
    return str(sha256(canonical_params.encode()).hexdigest()[:RUN_ID_LENGTH])


def same_value(a: Any, b: Any) -> bool:
    """Equality that keeps 1, 1.0 and True apart, as the run identity does."""
    return a is b or (type(a) is type(b) and a == b)
