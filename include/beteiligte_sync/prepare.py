"""What a decision needs: skip reasons, the records (whole where needed), the plan.

The one planning step of the sync, the dry run and the CLI's ``compare``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from include.beteiligte_sync import mapping, planner, status
from include.beteiligte_sync.clients import AdvowareClient, EspoCrmClient, Record
from include.beteiligte_sync.errors import EntityError, NotFound
from include.beteiligte_sync.settings import SyncSettings
from include.beteiligte_sync.status import Outcome


def skip_reason(
    record: Mapping[str, Any], now: datetime, force: bool, settings: SyncSettings
) -> Outcome | None:
    """Why the sync leaves ``record`` alone now (a live lock, or backoff unless forced)."""
    if status.is_locked(record, now, settings.lock_ttl):
        return Outcome.SKIPPED_LOCKED  # even a forced run never breaks a live lock
    if not force and status.in_backoff(record, now):
        return Outcome.SKIPPED_BACKOFF
    return None


@dataclass
class Planning:
    """What :func:`plan_entity` decided, and from which EspoCRM record.

    :param record: the EspoCRM record the plan is based on: the whole record (read by id)
        whenever the Kommunikation or a change in EspoCRM matters, else the list record.
    :param planned: the plan and what it was based on.
    :param whole_record: ``record`` carries ``emailAddressData``/``phoneNumberData``. A list
        record does not (EspoCRM fills them only on ``GET /CBeteiligte/{id}``); it is planned
        from only when both sides provably did not change since the last sync.
    """

    record: Record
    planned: planner.Planned
    whole_record: bool = True


class GoneInEspoCrm(EntityError):
    """The EspoCRM record disappeared between the candidate list and its read."""


def is_whole_record(record: Mapping[str, Any]) -> bool:
    """True if ``record`` came from ``GET /CBeteiligte/{id}`` (list records carry no email and
    phone arrays, SPEC §4)."""
    return "emailAddressData" in record and "phoneNumberData" in record


def plan_entity(
    record: Record,
    espocrm: EspoCrmClient,
    advoware: AdvowareClient,
    *,
    direction: str,
    now: datetime,
    settings: SyncSettings,
) -> Planning:
    """The one planning step of the sync, the dry run and the CLI's ``compare``: fetch what the
    decision needs and plan. Writes nothing.

    One Advoware GET for a linked party; the whole EspoCRM record is read only when the list
    record cannot prove that nothing changed. ``NotFound`` from Advoware propagates (the party
    is gone); ``GoneInEspoCrm`` when the EspoCRM record is.
    """
    betnr = record.get("betnr")
    if betnr:
        advo = _checked_party(advoware.get_beteiligte(_checked_betnr(betnr)))
        if not is_whole_record(record):
            unchanged = planner.plan_unchanged(record, advo, direction=direction)
            if unchanged is not None:
                return Planning(record, unchanged, whole_record=False)
            record = _whole(record, espocrm)
        return Planning(
            record, planner.plan_linked(record, advo, direction=direction, settings=settings)
        )
    record = _whole(record, espocrm)
    if planner.is_create_pending(record):
        # A previous run started a create and may have been interrupted after the POST.
        candidates = _adoption_candidates(record, advoware)
        if candidates is None:
            raise EntityError(planner.interrupted_create_message(record))
        found = planner.choose_adoption(record, candidates, settings=settings)
        if found is not None:
            planned = planner.plan_linked(
                record, found, direction=direction, settings=settings, adopted=True
            )
            return Planning(record, planned)
    return Planning(record, planner.plan_create(record, direction=direction, now=now))


def _whole(record: Record, espocrm: EspoCrmClient) -> Record:
    if is_whole_record(record):
        return record
    try:
        return espocrm.get_beteiligte(str(record["id"]))
    except NotFound:
        raise GoneInEspoCrm("the record no longer exists in EspoCRM") from None


def _checked_betnr(betnr: object) -> int:
    """The EspoCRM ``betnr`` as a number (EntityError for anything else)."""
    if isinstance(betnr, bool) or not isinstance(betnr, int | str):
        raise EntityError("betnr is not a number; correct it in EspoCRM")
    try:
        return int(betnr)
    except ValueError:
        raise EntityError("betnr is not a number; correct it in EspoCRM") from None


def _checked_party(party: object) -> Record:
    """The Advoware answer in the shape the planner reads, else a readable EntityError."""
    if not isinstance(party, dict) or not party:
        raise EntityError("Advoware answered the party GET with something that is not a party")
    if isinstance(party.get("betNr"), bool) or not isinstance(party.get("betNr"), int):
        raise EntityError("Advoware party answer has no numeric betNr")
    kommunikation = party.get("kommunikation")
    if kommunikation is not None and not (
        isinstance(kommunikation, list) and all(isinstance(k, dict) for k in kommunikation)
    ):
        raise EntityError("Advoware party answer: kommunikation is not a list of entries")
    return party


def _adoption_candidates(record: Record, advoware: AdvowareClient) -> list[Record] | None:
    """Parties named like the entity now or like the interrupted create sent it; None where
    that cannot be searched: Advoware offers no search (none is confirmed for the real API), or
    the name sent is unknown (too long for the marker) and the entity changed since."""
    canon = mapping.from_espocrm(record)
    sent = planner.pending_name(record)
    if sent is None and mapping.business_hash(canon) != record.get("syncedHash"):
        return None
    found: dict[Any, Record] = {}
    for name in dict.fromkeys(n for n in (canon.get("name"), sent) if n):
        parties = advoware.find_beteiligte(name)
        if parties is None:
            return None
        for party in parties:
            found.setdefault(party.get("betNr"), party)
    return list(found.values())
