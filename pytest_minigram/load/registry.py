"""Named journeys: those of installed packages (entry point group ``pytest_minigram.journeys``,
such as Minigram's) plus whatever a conftest registers."""

from __future__ import annotations

import importlib
from importlib import metadata

from pytest_minigram.load.journey import Journey, as_journey

__all__ = ["available_journeys", "get_journey", "register_journey", "resolve_journey"]

_REGISTRY: dict[str, Journey] = {}


def register_journey(journey: object) -> Journey:
    """Make ``journey`` (anything ``as_journey`` accepts) available by name; a later
    registration of the same name wins."""
    j = as_journey(journey)
    _REGISTRY[j.name] = j
    return j


def get_journey(name: str) -> Journey:
    _load_installed()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown journey {name!r}; available: {', '.join(available_journeys())}"
        ) from None


def resolve_journey(spec: object) -> Journey:
    """A registered name, an import path ``package.module:attr`` (a Journey, a Journey
    subclass or an async function), or a journey object itself.

    A bad name raises KeyError; a bad import path ValueError; an attribute that is not a
    journey TypeError; each message names what was asked for.
    """
    if not isinstance(spec, str):
        return as_journey(spec)
    if ":" not in spec:
        return get_journey(spec)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"invalid journey path {spec!r}; use package.module:attribute")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"journey {spec!r}: cannot import {module_name!r}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"journey {spec!r}: {module_name!r} has no attribute "
                             f"{attr!r}") from None
    try:
        return as_journey(obj)
    except TypeError as exc:
        raise TypeError(f"journey {spec!r}: {exc}") from None


def available_journeys() -> list[str]:
    _load_installed()
    return sorted(_REGISTRY)


ENTRY_POINT_GROUP = "pytest_minigram.journeys"
_loaded = False


def _load_installed() -> None:
    """Register the journeys that installed packages publish, once, without overriding."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        for journey in entry.load():
            _REGISTRY.setdefault(journey.name, journey)
