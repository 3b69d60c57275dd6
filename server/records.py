"""Rule records to JSON and back: how the store keeps `rooms/` dataclasses as documents.

The rules' records are frozen dataclasses of plain values, aware datetimes, timedeltas,
times, frozensets and tuples. `dump` turns one into JSON-ready data; `load` rebuilds it
from its type hints. Datetimes are kept as ISO 8601 with their offset, timedeltas as
seconds, so a document is readable in the database.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import datetime, time, timedelta
from functools import cache
from typing import Any, TypeVar, Union, get_args, get_origin

T = TypeVar("T")


def dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, time):
        return value.isoformat()
    if isinstance(value, frozenset | set):
        return sorted((dump(v) for v in value), key=repr)
    if isinstance(value, tuple | list):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {str(k): dump(v) for k, v in value.items()}
    return value


def dumps(value: Any) -> str:
    return json.dumps(dump(value), separators=(",", ":"), sort_keys=True)


def loads(cls: type[T], text: str) -> T:
    value: T = load(cls, json.loads(text))
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def load(cls: Any, data: Any) -> Any:
    origin = get_origin(cls)
    if origin is Union or origin is types.UnionType:
        if data is None:
            return None
        for arg in get_args(cls):
            if arg is type(None):
                continue
            try:
                return load(arg, data)
            except (TypeError, ValueError, KeyError):
                continue
        raise ValueError(f"cannot read {data!r} as {cls}")
    if origin is typing.Literal:
        if data not in get_args(cls):
            raise ValueError(f"{data!r} is not one of {get_args(cls)}")
        return data
    if origin in (frozenset, set):
        (arg,) = get_args(cls)
        return frozenset(load(arg, v) for v in data)
    if origin is tuple:
        args = get_args(cls)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(load(args[0], v) for v in data)
        return tuple(load(a, v) for a, v in zip(args, data, strict=True))
    if origin in (list,):
        (arg,) = get_args(cls)
        return [load(arg, v) for v in data]
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        hints = _hints(cls)
        kwargs = {f.name: load(hints[f.name], data[f.name])
                  for f in dataclasses.fields(cls) if f.name in data}
        return cls(**kwargs)
    if cls is datetime:
        value = datetime.fromisoformat(data)
        if value.tzinfo is None:
            raise ValueError("a stored time has no offset")
        return value
    if cls is timedelta:
        return timedelta(seconds=float(data))
    if cls is time:
        return time.fromisoformat(data)
    if cls in (int, float, str, bool):
        if cls is float and isinstance(data, int):
            return float(data)
        if not isinstance(data, cls) or (cls is int and isinstance(data, bool)):
            raise TypeError(f"{data!r} is not {cls.__name__}")
        return data
    if cls is Any or cls is object:
        return data
    supertype = getattr(cls, "__supertype__", None)  # NewType
    if supertype is not None:
        return load(supertype, data)
    raise TypeError(f"no reader for {cls!r}")
