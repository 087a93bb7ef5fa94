"""The W&B transaction log a run writes (`run-<id>.wandb`, all an offline run leaves): its block
format, and its records read with the installed wandb's own schema into config, summary and history."""

from __future__ import annotations

import importlib
import json
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

# ":W&B", the magic 0xBEE1 and format version 0; LevelDB's log format follows.
HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32768  # the header counts in the first block
_CHUNK = struct.Struct("<IHB")  # checksum, length, kind
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# json.loads checks its argument's type and encoding on every call: a third of the time of a log's
# hundreds of thousands of small values.
_decode = json.JSONDecoder().decode


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One `wandb.log` call: its step and values, nested keys joined with "." as W&B shows them."""

    step: int
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RunLog:
    """What a `.wandb` file holds, without W&B's own `_` keys (`_step`, `_runtime`, `_wandb`)."""

    config: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)  # the updates applied in order
    history: tuple[HistoryRow, ...] = ()


def read_run_log(path: Path) -> RunLog | None:
    """The run in `path`, as far as it could be read: a run still being written, or one killed, ends
    in a torn record, where reading stops. None when `path` is not a W&B transaction log."""
    # wandb builds its message classes at import time, so no type checker sees `Record`.
    schema = importlib.import_module("wandb.proto.wandb_internal_pb2")
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    found = _Run()
    try:
        with path.open("rb") as stream:
            if stream.read(len(HEADER)) != HEADER:
                return None
            for payload in records(stream):
                try:
                    found.add(schema.Record.FromString(payload))
                except DecodeError:
                    continue  # a record this schema cannot read; the log's framing is intact
    except OSError:
        return None
    return found.result()


def records(stream: IO[bytes]) -> Iterator[bytes]:
    """Each whole record after the header, reassembled from its chunks. A chunk whose checksum fails
    ends the log; a record with a missing chunk is dropped."""
    parts: list[bytes] | None = None
    for kind, data in _chunks(stream):
        if kind == FULL:
            parts = None
            yield data
        elif kind == FIRST:
            parts = [data]
        elif kind == MIDDLE and parts is not None:
            parts.append(data)
        elif kind == LAST and parts is not None:
            yield b"".join([*parts, data])
            parts = None
        else:
            parts = None


def _chunks(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    # W&B checksums with zlib's CRC-32 (IEEE) over the kind byte and the data, unmasked, where LevelDB
    # itself uses a masked CRC-32C: checked against files wandb 0.31 wrote. zlib does it in C, so
    # every chunk is verified (a multi-MB log reads in milliseconds of checksumming).
    size = BLOCK - len(HEADER)
    block = stream.read(size)
    while block:
        pos = 0
        while len(block) - pos >= _CHUNK.size:
            checksum, length, kind = _CHUNK.unpack_from(block, pos)
            if kind == 0:
                break  # zeros: the rest of the block is padding
            data = block[pos + _CHUNK.size : pos + _CHUNK.size + length]
            if len(data) < length or zlib.crc32(data, zlib.crc32(bytes((kind,)))) != checksum:
                return  # torn by a writer still at work (or killed), or damaged: nothing after it is sure
            yield kind, data
            pos += _CHUNK.size + length
        if len(block) < size:
            return  # the end of the file
        size = BLOCK
        block = stream.read(size)


class _Run:
    """Applies records in the order the run wrote them."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}
        self.history: list[HistoryRow] = []

    def add(self, record: Any) -> None:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            _apply(self.config, record.run.config)
            _apply(self.summary, record.run.summary)
        elif kind == "config":
            _apply(self.config, record.config)
        elif kind == "summary":
            _apply(self.summary, record.summary)
        elif kind == "history":
            self.history.append(self._row(record.history))

    def _row(self, history: Any) -> HistoryRow:
        values: dict[str, Any] = {}
        for item in history.item:
            try:
                values[".".join(_path(item))] = _item_value(item)
            except ValueError:
                continue  # a value that is not JSON: the others are still good
        if history.HasField("step"):
            step = int(history.step.num)
        elif isinstance(values.get("_step"), int):
            step = values["_step"]
        else:
            step = self.history[-1].step + 1 if self.history else 0
        return HistoryRow(step, _public(values))

    def result(self) -> RunLog:
        return RunLog(_settled(_public(self.config)), _settled(_public(self.summary)), tuple(self.history))


@dataclass(frozen=True, slots=True)
class _Text:
    """A summary or config value not decoded yet: W&B mirrors each logged value into the summary, so
    most are replaced by the next `wandb.log` and decoding them all would double the reading time."""

    json: str


def _apply(target: dict[str, Any], changes: Any) -> None:
    """A config or summary record's `update`s then `remove`s, nested keys as nested mappings."""
    for item in changes.update:
        _set(target, _path(item), _Text(item.value_json))
    for item in changes.remove:
        _remove(target, _path(item))


def _path(item: Any) -> Sequence[str]:
    return item.nested_key or (item.key,)


def _item_value(item: Any) -> Any:
    """A history value: JSON text, or one of the typed fields newer writers may use instead (JSON text
    is never empty; older schemas have no typed fields to ask about)."""
    if item.value_json:
        return _decode(item.value_json)
    kind = item.WhichOneof("value")
    if kind is None or kind == "none":
        return None
    if kind == "json":
        return _decode(item.json)
    return getattr(item, kind)


def _set(target: dict[str, Any], path: Sequence[str], value: _Text) -> None:
    for part in path[:-1]:
        inner = _decoded(target.get(part))
        if not isinstance(inner, dict):
            inner = {}
        target[part] = inner
        target = inner
    target[path[-1]] = value


def _remove(target: dict[str, Any], path: Sequence[str]) -> None:
    for part in path[:-1]:
        inner = target[part] = _decoded(target.get(part))
        if not isinstance(inner, dict):
            return
        target = inner
    target.pop(path[-1], None)


def _decoded(value: Any) -> Any:
    if not isinstance(value, _Text):
        return value
    try:
        return _decode(value.json)
    except ValueError:
        return None


def _settled(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` with every value decoded; one that is not JSON is left out."""
    found: dict[str, Any] = {}
    for key, value in values.items():
        try:
            found[key] = _decode(value.json) if isinstance(value, _Text) else value
        except ValueError:
            continue
        if isinstance(value, dict):
            found[key] = _settled(value)
    return found


def _public(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if not k.startswith("_")}
