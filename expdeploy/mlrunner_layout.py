"""mlrunner's output layout for the runs of mlrunner params.yaml files: directories named as
mlrunner names them (`Data_CIFAR10-Lr_0.01`), a `param` file and `log.<step>.<time>` logs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from expdeploy.spec.model import RunLayout

VALUE_MAX = 100  # mlrunner keeps the last 100 characters of a text value in a name
_LEADING = re.compile(r"^[/.]*")


def run_name(labels: Mapping[str, Any]) -> str:
    """mlrunner's `_name`: `<Key>_<value>` for every key of the run's grid document as written
    (an alias by its choice, defaults left out), in the document's order, joined by `-`."""
    return "-".join(f"{key_part(str(key))}_{value_part(value)}" for key, value in labels.items())


def key_part(key: str) -> str:
    """`batch_size` -> `BaSize`, `early-stop` -> `EaStop`, `lr` -> `Lr`: split at `-` (at `_`
    where there is no `-`); a part before the last longer than two characters keeps two, and
    those and the last part are title-cased (shorter ones stay as written, as mlrunner does)."""
    parts = key.split("-")
    if len(parts) == 1:
        parts = key.split("_")
    return "".join(p[:2].title() if len(p) > 2 else p for p in parts[:-1]) + parts[-1].title()


def value_part(value: Any) -> str:
    """A value as mlrunner names it: an existing path by its base name, other text without
    leading `/` and `.` and with `/` as `_`, cut to its last 100 characters; True/False as T/F;
    numbers with `%g` (so 1234567 and 1234568 both read 1.23457e+06); anything else as str()."""
    if isinstance(value, str):
        text = os.path.basename(value) if os.path.exists(value) else _LEADING.sub("", value).replace("/", "_")
        return text[-VALUE_MAX:]
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, (int, float)):
        return f"{value:g}"
    return str(value)


def param_file(
    params: Mapping[str, Any], commands: Mapping[str, str], builtins: Mapping[str, str]
) -> dict[str, str]:
    """mlrunner's `param` as it writes one (YAML, keys sorted, lines never folded): the run's
    parameters after alias and defaults, with `_name`, `_output` (the run directory), `_scripts`
    (the command of each step) and `_time` (the launch). Examiner reads it."""
    import yaml

    content = {
        **params,
        "_name": builtins["run_name"],
        "_output": builtins["run_dir"],
        "_scripts": dict(commands),
        "_time": builtins["launch_time"],
    }
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return {"param": yaml.dump(content, Dumper=dumper, width=1_000_000)}


LAYOUT = RunLayout(files=param_file, step_log="log.{step}.{launch_time}", resume_by_name=True)
