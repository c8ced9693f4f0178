"""Named journeys: Minigram's built-ins plus whatever a conftest registers."""

from __future__ import annotations

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
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown journey {name!r}; available: {', '.join(available_journeys())}"
        ) from None


def available_journeys() -> list[str]:
    return sorted(_REGISTRY)


def _register_builtins() -> None:
    from pytest_minigram.journeys.minigram import JOURNEYS

    for journey in JOURNEYS:
        _REGISTRY.setdefault(journey.name, journey)


_register_builtins()
