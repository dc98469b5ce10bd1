"""Nulls in published JSON: a ``null`` where the model has a default becomes that default.

Producers written in other languages send ``null`` for "not set"; pydantic would refuse it for
a field that does not accept ``None``. :func:`fill_nulls` removes each such ``null`` (so the
field's default applies) through nested models, lists and discriminated unions (the member
chosen by its ``Literal`` fields), and turns a ``null`` list into ``[]``. Pure: values in,
values out.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

__all__ = ["fill_nulls"]


def fill_nulls(annotation: object, value: Any) -> Any:
    """``value`` with each ``null`` of a field that has a default (and rejects ``None``)
    removed, so the default applies; a ``null`` list becomes ``[]``."""
    annotation = _unwrap(annotation)
    if isinstance(value, dict):
        model = _model_for(annotation, value)
        return _fill_model(model, value) if model is not None else value
    if isinstance(value, list) and get_origin(annotation) in (list, set, frozenset, tuple):
        args = get_args(annotation)
        item = args[0] if args else Any
        return [fill_nulls(item, v) for v in value]
    return value


def _fill_model(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in out:
            continue
        if out[key] is not None:
            out[key] = fill_nulls(field.annotation, out[key])
        elif _accepts_none(field.annotation):
            continue
        elif not field.is_required():
            del out[key]  # the model's own default (or default factory) applies
        elif get_origin(_unwrap(field.annotation)) in (list, set, frozenset, tuple):
            out[key] = []
    return out


def _unwrap(annotation: object) -> object:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _members(annotation: object) -> tuple[object, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(_unwrap(a) for a in get_args(annotation))
    return (annotation,)


def _accepts_none(annotation: object) -> bool:
    annotation = _unwrap(annotation)
    return annotation is Any or any(m in (None, type(None)) for m in _members(annotation))


def _model_for(annotation: object, value: dict[str, Any]) -> type[BaseModel] | None:
    """The model a JSON object of ``annotation`` is: a discriminated union's member is chosen
    by its ``Literal`` fields (``kind``); ambiguous means none."""
    models = [m for m in _members(annotation)
              if isinstance(m, type) and issubclass(m, BaseModel)]
    if len(models) <= 1:
        return models[0] if models else None
    matching = [m for m in models if _literals_match(m, value)]
    return matching[0] if len(matching) == 1 else None


def _literals_match(model: type[BaseModel], value: dict[str, Any]) -> bool:
    tags = {n: get_args(f.annotation) for n, f in model.model_fields.items()
            if get_origin(f.annotation) is Literal and n in value}
    return bool(tags) and all(value[n] in allowed for n, allowed in tags.items())
