"""Named journeys: those of installed packages (entry point group ``pytest_minigram.journeys``,
such as Minigram's) plus whatever a conftest registers."""

from __future__ import annotations

from importlib import metadata

from pytest_minigram.load.journey import Journey

__all__ = ["available_journeys", "get_journey", "register_journey"]

_REGISTRY: dict[str, Journey] = {}


def register_journey(journey: Journey) -> Journey:
    """Make ``journey`` available by name; a later registration of the same name wins."""
    if not isinstance(journey, Journey):
        raise TypeError(f"register_journey() needs a Journey, got {type(journey).__name__}")
    _REGISTRY[journey.name] = journey
    return journey


def get_journey(name: str) -> Journey:
    _load_installed()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown journey {name!r}; available: {', '.join(available_journeys())}"
        ) from None


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
