"""Airflow hooks for the two APIs of the Beteiligte sync: EspoCRM and Advoware.

``from hooks import EspoCrmHook, AdvowareHook``. The hooks are loaded lazily, so that
``hooks.provider_info`` (read by Airflow's providers manager) stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hooks.advoware import AdvowareHook
    from hooks.espocrm import EspoCrmHook

__all__ = ["AdvowareHook", "EspoCrmHook"]


def __getattr__(name: str) -> Any:
    """Import a hook class on first access."""
    if name == "EspoCrmHook":
        from hooks.espocrm import EspoCrmHook

        return EspoCrmHook
    if name == "AdvowareHook":
        from hooks.advoware import AdvowareHook

        return AdvowareHook
    raise AttributeError(name)
