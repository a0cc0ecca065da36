"""What a run is asked to do (:class:`RunOptions`) and what it works with (:class:`SyncContext`).

Two names in place of the seven to ten keyword arguments every step of the engine would
otherwise pass on: the direction (an enum, checked once), force, dry run; and the two clients,
the clock, the settings and the logger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

from include.beteiligte_sync.clients import AdvowareClient, EspoCrmClient
from include.beteiligte_sync.results import LOG
from include.beteiligte_sync.settings import SyncSettings
from include.beteiligte_sync.timefmt import Clock


class Direction(StrEnum):
    """Which way a run may write business data."""

    BOTH = "both"
    TO_ADVOWARE = "to_advoware"
    TO_ESPOCRM = "to_espocrm"

    @classmethod
    def of(cls, value: str | Direction) -> Direction:
        """The direction named ``value``; ValueError (a caller error) for anything else."""
        try:
            return cls(value)
        except ValueError:
            names = tuple(d.value for d in cls)
            raise ValueError(f"direction must be one of {names}, not {value!r}") from None


@dataclass(frozen=True)
class RunOptions:
    """What a run is asked to do.

    :param direction: which side(s) may be written.
    :param force: ignore the retry backoff (never a live lock).
    :param dry_run: plan only, write nothing.
    """

    direction: Direction = Direction.BOTH
    force: bool = False
    dry_run: bool = False

    @classmethod
    def of(
        cls,
        direction: str | Direction = Direction.BOTH,
        *,
        force: bool = False,
        dry_run: bool = False,
    ) -> RunOptions:
        """Options from plain values (a DAG's params, the CLI's flags); ValueError for an
        unknown direction."""
        return cls(Direction.of(direction), bool(force), bool(dry_run))


@dataclass(frozen=True)
class SyncContext:
    """What every step works with: both clients, the clock, the settings, the logger."""

    espocrm: EspoCrmClient
    advoware: AdvowareClient
    clock: Clock
    settings: SyncSettings = field(default_factory=SyncSettings)
    log: logging.Logger = LOG
