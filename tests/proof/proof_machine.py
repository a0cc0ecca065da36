"""The model of people, faults and runs that the convergence proof drives (hypothesis stateful).

People edit both systems the way they do in the UIs: Stammdaten fields, Kommunikationen added,
changed, removed, typed into an empty slot, the same value typed on the other side in another
format. Sync runs happen, whole or split like the DAG does it (sync, then validate as a separate
step, with a second overlapping run and a person's edit in between). Faults are injected (5xx,
timeouts, 429, refused token renewal, lost responses, a crash between two writes) and the clock
jumps.

What must hold after every step:

* no ``syncStatus`` outside the machine;
* no duplicate Kommunikation on either side;
* nothing a person typed is lost: every *live* value (typed and not replaced or removed since
  by a person) is on at least one side or in the entity's stream Note;
* after a run without faults: no lock older than its TTL.

And at the end: once faults stop and backoff has elapsed, at most three runs make both sides
equal on every sync-relevant field, every entity ``clean``, every live value on both sides or in
the Note, one Advoware party per entity; and a further run writes nothing to Advoware.
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from include.beteiligte_sync import planner, status
from include.beteiligte_sync.errors import ApiError
from include.beteiligte_sync.kommkz import DEFAULT_TABLE, EMAIL, PHONE, normalise_value
from include.beteiligte_sync.kommunikation import is_sync_relevant, resolve_kommkz
from include.beteiligte_sync.status import SyncStatus
from include.beteiligte_sync.sync import select_candidates, sync_all, sync_entity, validate_entity
from include.cli.views import link_entity
from tests.proof.proof_world import ADVOWARE_METHODS, ESPOCRM_METHODS, Crash, Fault, World

STAMMDATEN = ("name", "vorname", "titel", "geburtsdatum")
PHONE_TYPES = ("Office", "Mobile", "Home", "Fax")
KINDS = (*PHONE_TYPES, "email")
ADVOWARE_KINDS = (1, 2, 3, 4, 6, 8)
CLOCK_JUMPS = (1, 2, 5, 16, 61, 241, 60 * 25, -3)
ENTITY_STEPS = frozenset({"sync_entity", "validate_entity"})
STATUSES = frozenset(s.value for s in SyncStatus)
#: (entity id, field or channel, value as compared) -> the value as typed
Live = dict[tuple[str, str, str], str]


def espo_values(record: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """EspoCRM Kommunikation values: (channel, normalised) -> as stored."""
    out = {}
    for item in record.get("emailAddressData") or []:
        out[(EMAIL, normalise_value(EMAIL, item["emailAddress"]))] = item["emailAddress"]
    for item in record.get("phoneNumberData") or []:
        out[(PHONE, normalise_value(PHONE, item["phoneNumber"]))] = item["phoneNumber"]
    return out


def advo_values(party: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """Advoware sync-relevant values: (channel, normalised) -> as stored."""
    out = {}
    for komm in party.get("kommunikation") or []:
        if not is_sync_relevant(komm):
            continue
        channel = DEFAULT_TABLE.channel(resolve_kommkz(komm))
        assert channel is not None
        out[(channel, normalise_value(channel, komm["tlf"]))] = komm["tlf"]
    return out


def _duplicates(keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [k for k in set(keys) if keys.count(k) > 1]


class ConvergenceMachine(RuleBasedStateMachine):
    """People, faults and runs over a :class:`World` (subclasses choose the world)."""

    make_world: ClassVar[Callable[[], World]]
    max_entities: ClassVar[int] = 4
    #: kinds of faults this world can inject
    fault_kinds: ClassVar[tuple[str, ...]] = (
        "server_error",
        "timeout",
        "rate_limited",
        "token_expiry",
        "lost_response",
        "crash",
    )

    def __init__(self) -> None:
        super().__init__()
        self.world = self.make_world()
        self.numbers = itertools.count(1)
        self.live: Live = {}
        self.ids: list[str] = []
        self.faults_armed = False
        self.log: list[str] = []

    # -- helpers -------------------------------------------------------------------------------

    def _fresh(self) -> int:
        return next(self.numbers)

    def _phone(self) -> str:
        return f"+49 30 {self._fresh():06d}"

    def _email(self) -> str:
        return f"p{self._fresh():05d}@example.org"

    def _stamm_value(self, field: str) -> str:
        n = self._fresh()
        if field == "geburtsdatum":
            return (date(1950, 1, 1) + timedelta(days=n * 37)).isoformat()
        return f"{field[:2].upper()}{n:05d}q"

    def _record(self, entity_id: str) -> dict[str, Any]:
        return next(r for r in self.world.espo_records() if r["id"] == entity_id)

    def _party(self, entity_id: str) -> dict[str, Any] | None:
        betnr = self._record(entity_id).get("betnr")
        return self.world.advo_parties().get(int(betnr)) if betnr else None

    def _pick(self, n: int) -> str:
        return self.ids[n % len(self.ids)]

    def _retire(self, entity_id: str, slot: str, compared: str) -> None:
        self.live.pop((entity_id, slot, compared), None)

    def _type(self, entity_id: str, slot: str, compared: str, raw: str) -> None:
        self.live[(entity_id, slot, compared)] = raw

    def _run(self, what: str, action: Callable[[], Any]) -> None:
        self.log.append(what)
        try:
            action()
        except Crash:
            self.log.append("  crashed")
        except ApiError as exc:
            # Only the run's own reads (candidate list, auto-reset) may fail a whole run; a
            # problem of one entity must end in that entity's status.
            frames = {f.name for f in traceback.extract_tb(exc.__traceback__)}
            assert not frames & ENTITY_STEPS, (
                f"{type(exc).__name__} escaped an entity step",
                self.log,
            )
            self.log.append(f"  run failed: {type(exc).__name__}")

    # -- setup ---------------------------------------------------------------------------------

    @initialize(
        first=st.lists(st.sampled_from(KINDS), max_size=3),
        second=st.lists(st.sampled_from(KINDS), max_size=3),
    )
    def two_entities(self, first: list[str], second: list[str]) -> None:
        """Two parties created in EspoCRM and synced once before anything else happens."""
        for kinds in (first, second):
            self._create(kinds)
        results = sync_all(self.world.espocrm, self.world.advoware, clock=self.world.now)
        assert all(r.status == "clean" for r in results), results
        self.world.jump(16)

    def _create(self, kinds: list[str]) -> None:
        fields: dict[str, Any] = {"name": self._stamm_value("name"), "vorname": "Erika"}
        emails, phones = [], []
        for kind in kinds:
            if kind == "email":
                emails.append({"emailAddress": self._email()})
            else:
                phones.append({"phoneNumber": self._phone(), "type": kind})
        fields["emailAddressData"], fields["phoneNumberData"] = emails, phones
        record = self.world.espo_create(fields)
        self.ids.append(record["id"])
        self._type(record["id"], "name", fields["name"], fields["name"])
        for key, raw in espo_values(record).items():
            self._type(record["id"], key[0], key[1], raw)

    # -- people in EspoCRM ---------------------------------------------------------------------

    @rule(kinds=st.lists(st.sampled_from(KINDS), max_size=2))
    def espocrm_create(self, kinds: list[str]) -> None:
        """A person creates a new party in EspoCRM."""
        if len(self.ids) < self.max_entities:
            self.log.append("espocrm create")
            self._create(kinds)

    @rule(n=st.integers(0, 9), field=st.sampled_from(STAMMDATEN))
    def espocrm_stammdaten(self, n: int, field: str) -> None:
        """A person changes one Stammdaten field in EspoCRM."""
        entity_id = self._pick(n)
        old = self._record(entity_id).get(field)
        value = self._stamm_value(field)
        self.log.append(f"espocrm {entity_id} {field}")
        self.world.espo_edit(entity_id, {field: value})
        if old:
            self._retire(entity_id, field, str(old))
        self._type(entity_id, field, value, value)

    @rule(n=st.integers(0, 9), kind=st.sampled_from(KINDS))
    def espocrm_add_kommunikation(self, n: int, kind: str) -> None:
        """A person adds a phone or an email in EspoCRM."""
        entity_id = self._pick(n)
        record = self._record(entity_id)
        self.log.append(f"espocrm {entity_id} add {kind}")
        if kind == "email":
            raw = self._email()
            data = [*record["emailAddressData"], {"emailAddress": raw}]
            self.world.espo_edit(entity_id, {"emailAddressData": data})
            self._type(entity_id, EMAIL, normalise_value(EMAIL, raw), raw)
        else:
            raw = self._phone()
            data = [*record["phoneNumberData"], {"phoneNumber": raw, "type": kind}]
            self.world.espo_edit(entity_id, {"phoneNumberData": data})
            self._type(entity_id, PHONE, normalise_value(PHONE, raw), raw)

    @rule(n=st.integers(0, 9), k=st.integers(0, 9), change=st.booleans())
    def espocrm_change_or_remove_kommunikation(self, n: int, k: int, change: bool) -> None:
        """A person changes or removes one phone or email in EspoCRM."""
        entity_id = self._pick(n)
        record = self._record(entity_id)
        items = [("emailAddressData", i) for i in range(len(record["emailAddressData"]))]
        items += [("phoneNumberData", i) for i in range(len(record["phoneNumberData"]))]
        if not items:
            return
        field, index = items[k % len(items)]
        data = [dict(i) for i in record[field]]
        channel, key = (
            (EMAIL, "emailAddress") if field == "emailAddressData" else (PHONE, "phoneNumber")
        )
        old = data[index][key]
        self._retire(entity_id, channel, normalise_value(channel, old))
        self.log.append(f"espocrm {entity_id} {'change' if change else 'remove'} {channel}")
        if change:
            raw = self._email() if channel == EMAIL else self._phone()
            data[index][key] = raw
            if channel == EMAIL:
                data[index]["lower"] = raw.lower()
            self._type(entity_id, channel, normalise_value(channel, raw), raw)
        else:
            del data[index]
        self.world.espo_edit(entity_id, {field: data})

    # -- people in Advoware --------------------------------------------------------------------

    @rule(n=st.integers(0, 9), field=st.sampled_from(STAMMDATEN))
    def advoware_stammdaten(self, n: int, field: str) -> None:
        """A person changes one Stammdaten field in Advoware."""
        entity_id = self._pick(n)
        party = self._party(entity_id)
        if party is None:
            return
        value = self._stamm_value(field)
        old = party.get(field)
        self.log.append(f"advoware {party['betNr']} {field}")
        if field == "geburtsdatum":
            self.world.advo_edit(party["betNr"], {field: f"{value}T00:00:00"})
            if old:
                self._retire(entity_id, field, str(old)[:10])
        else:
            self.world.advo_edit(party["betNr"], {field: value})
            if old:
                self._retire(entity_id, field, str(old))
        self._type(entity_id, field, value, value)

    @rule(n=st.integers(0, 9), kommkz=st.sampled_from(ADVOWARE_KINDS), text=st.booleans())
    def advoware_add_kommunikation(self, n: int, kommkz: int, text: bool) -> None:
        """A person adds a Kommunikation in Advoware (no marker; maybe a remark)."""
        entity_id = self._pick(n)
        party = self._party(entity_id)
        if party is None:
            return
        channel = DEFAULT_TABLE.channel(kommkz)
        raw = self._email() if channel == EMAIL else self._phone()
        self.log.append(f"advoware {party['betNr']} add kommKz {kommkz}")
        fields = {"tlf": raw, "kommKz": kommkz, "bemerkung": "privat" if text else ""}
        self.world.advo_komm(party["betNr"], None, fields)
        assert channel is not None
        self._type(entity_id, channel, normalise_value(channel, raw), raw)

    @rule(n=st.integers(0, 9), k=st.integers(0, 19), action=st.sampled_from(("change", "clear")))
    def advoware_change_or_clear_kommunikation(self, n: int, k: int, action: str) -> None:
        """A person changes a value, or empties it (removal: DELETE is not possible)."""
        entity_id = self._pick(n)
        party = self._party(entity_id)
        if party is None:
            return
        filled = [c for c in party["kommunikation"] if is_sync_relevant(c)]
        if not filled:
            return
        komm = filled[k % len(filled)]
        channel = DEFAULT_TABLE.channel(resolve_kommkz(komm))
        assert channel is not None
        self._retire(entity_id, channel, normalise_value(channel, komm["tlf"]))
        self.log.append(f"advoware {party['betNr']} {action} {komm['id']}")
        if action == "clear":
            self.world.advo_komm(party["betNr"], komm["id"], {"tlf": ""})
            return
        raw = self._email() if channel == EMAIL else self._phone()
        self.world.advo_komm(party["betNr"], komm["id"], {"tlf": raw})
        self._type(entity_id, channel, normalise_value(channel, raw), raw)

    @rule(n=st.integers(0, 9), k=st.integers(0, 19))
    def advoware_type_into_slot(self, n: int, k: int) -> None:
        """A person types a value into an empty slot (the seed's slot bug)."""
        entity_id = self._pick(n)
        party = self._party(entity_id)
        if party is None:
            return
        slots = [c for c in party["kommunikation"] if not (c.get("tlf") or "").strip()]
        slots = [c for c in slots if DEFAULT_TABLE.channel(resolve_kommkz(c)) is not None]
        if not slots:
            return
        komm = slots[k % len(slots)]
        channel = DEFAULT_TABLE.channel(resolve_kommkz(komm))
        assert channel is not None
        raw = self._email() if channel == EMAIL else self._phone()
        self.log.append(f"advoware {party['betNr']} type into slot {komm['id']}")
        self.world.advo_komm(party["betNr"], komm["id"], {"tlf": raw})
        self._type(entity_id, channel, normalise_value(channel, raw), raw)

    @rule(n=st.integers(0, 9), k=st.integers(0, 9), to_advoware=st.booleans())
    def same_value_typed_on_the_other_side(self, n: int, k: int, to_advoware: bool) -> None:
        """A person types a value the other side already has, in another format."""
        entity_id = self._pick(n)
        party = self._party(entity_id)
        if party is None:
            return
        record = self._record(entity_id)
        source = espo_values(record) if to_advoware else advo_values(party)
        target = advo_values(party) if to_advoware else espo_values(record)
        missing = sorted(key for key in source if key not in target)
        if not missing:
            return
        channel, compared = missing[k % len(missing)]
        raw = source[(channel, compared)]
        raw = raw.upper() if channel == EMAIL else raw.replace(" ", "")
        self.log.append(f"copy {channel} to {'advoware' if to_advoware else 'espocrm'}")
        if to_advoware:
            kommkz = 4 if channel == EMAIL else 1
            self.world.advo_komm(party["betNr"], None, {"tlf": raw, "kommKz": kommkz})
        elif channel == EMAIL:
            data = [*record["emailAddressData"], {"emailAddress": raw}]
            self.world.espo_edit(entity_id, {"emailAddressData": data})
        else:
            data = [*record["phoneNumberData"], {"phoneNumber": raw, "type": "Office"}]
            self.world.espo_edit(entity_id, {"phoneNumberData": data})
        self._type(entity_id, channel, compared, raw)

    # -- faults, clock, runs -------------------------------------------------------------------

    @rule(
        data=st.data(),
        espocrm=st.booleans(),
        skip=st.integers(0, 6),
        times=st.integers(1, 3),
    )
    def inject_fault(self, data: st.DataObject, espocrm: bool, skip: int, times: int) -> None:
        """Arm a fault on one API method; it fires on a later call."""
        methods = ESPOCRM_METHODS if espocrm else ADVOWARE_METHODS
        method = data.draw(st.sampled_from(methods))
        kind = data.draw(st.sampled_from(self.fault_kinds))
        side = "espocrm" if espocrm else "advoware"
        self.log.append(f"fault {side}.{method} {kind} skip {skip} x{times}")
        self.world.arm(Fault(side, method, kind, skip, times))
        self.faults_armed = True

    @rule(minutes=st.sampled_from(CLOCK_JUMPS))
    def clock_jump(self, minutes: int) -> None:
        """Time passes (or the clock is set back a little)."""
        self.log.append(f"clock {minutes:+d} min")
        self.world.jump(minutes)

    @rule()
    def scheduled_run(self) -> None:
        """A whole scheduled run."""
        self._run(
            "run", lambda: sync_all(self.world.espocrm, self.world.advoware, clock=self.world.now)
        )
        self._check_locks_after_run()

    @rule(edit=st.booleans(), overlap=st.booleans())
    def split_run(self, edit: bool, overlap: bool) -> None:
        """Like the DAG: sync every candidate, then (a second run overlapping, a person editing
        an entity that is locked) validate each one as its own step."""
        self._run("split run", lambda: self._split_run(edit, overlap))
        self._check_locks_after_run()

    def _split_run(self, edit: bool, overlap: bool) -> None:
        espocrm, advoware, now = self.world.espocrm, self.world.advoware, self.world.now
        pending = []
        written = {}
        for record in select_candidates(espocrm, clock=now):
            result = sync_entity(record, espocrm, advoware, clock=now)
            if result.needs_validation:
                pending.append(result.entity_id)
                written[result.entity_id] = result
        if overlap:
            self.log.append("  overlapping run")
            sync_all(espocrm, advoware, clock=now)
        if edit and pending:
            self.log.append(f"  person edits locked {pending[0]}")
            self.espocrm_stammdaten(self.ids.index(pending[0]), "titel")
        for entity_id in pending:
            validate_entity(entity_id, espocrm, advoware, clock=now, written=written[entity_id])

    # -- invariants ----------------------------------------------------------------------------

    def _check_locks_after_run(self) -> None:
        if self.faults_armed:
            return  # a refused write may leave a lock; checked once faults stop
        now = self.world.now()
        for record in self.world.espo_records():
            age = status.lock_age(record, now)
            assert age is None or age < status.LOCK_TTL, (record["id"], age, self.log)

    @invariant()
    def statuses_in_the_machine(self) -> None:
        """No syncStatus outside the status machine."""
        for record in self.world.espo_records():
            assert record.get("syncStatus") in STATUSES, (record["id"], record.get("syncStatus"))

    @invariant()
    def no_duplicate_kommunikation(self) -> None:
        """Neither side holds a value twice."""
        for record in self.world.espo_records():
            keys = [
                (EMAIL, normalise_value(EMAIL, i["emailAddress"]))
                for i in record["emailAddressData"]
            ]
            keys += [
                (PHONE, normalise_value(PHONE, i["phoneNumber"])) for i in record["phoneNumberData"]
            ]
            assert not _duplicates(keys), (record["id"], _duplicates(keys), self.log)
        for betnr, party in self.world.advo_parties().items():
            keys = []
            for komm in party["kommunikation"]:
                if is_sync_relevant(komm):
                    channel = DEFAULT_TABLE.channel(resolve_kommkz(komm))
                    keys.append((str(channel), normalise_value(channel or PHONE, komm["tlf"])))
            assert not _duplicates(keys), (betnr, _duplicates(keys), self.log)

    @invariant()
    def nothing_typed_is_lost(self) -> None:
        """Every live value is on at least one side or in the entity's Note."""
        self._check_live(both=False)

    def _check_live(self, *, both: bool) -> None:
        records = {r["id"]: r for r in self.world.espo_records()}
        parties = self.world.advo_parties()
        for (entity_id, slot, compared), raw in self.live.items():
            record = records[entity_id]
            party = parties.get(int(record["betnr"])) if record.get("betnr") else None
            sides = [_holds(record, slot, compared, espocrm=True)]
            sides.append(party is not None and _holds(party, slot, compared, espocrm=False))
            if all(sides) if both else any(sides):
                continue
            notes = self.world.notes(entity_id)
            assert any(raw in note for note in notes), (
                f"lost {slot}={raw!r} of {entity_id} (espocrm, advoware: {sides})",
                self.log,
            )

    def teardown(self) -> None:
        """Faults stop, backoff elapses: at most three runs converge, a fourth writes nothing."""
        if not self.ids:
            return
        self.world.clear_faults()
        self.faults_armed = False
        self.world.jump(60 * 25)
        converged = False
        for _ in range(3):
            self._person_resolves_interrupted_creates()
            sync_all(self.world.espocrm, self.world.advoware, clock=self.world.now)
            self.world.jump(16)
            if self._converged() is None:
                converged = True
                break
        assert converged, (self._converged(), self.log)
        self._check_live(both=True)
        self._check_locks_after_run()
        self._assert_quiet_run()

    def _person_resolves_interrupted_creates(self) -> None:
        """What the message of an interrupted create asks a person to do (without a party
        search the sync cannot tell whether the create took effect): look in Advoware for an
        unlinked party of that name and link it, or allow a new create when there is none."""
        records = self.world.espo_records()
        linked = {record.get("betnr") for record in records}
        for record in records:
            if "beteiligte link" not in str(record.get("syncErrorMessage") or ""):
                continue
            names = {record.get("name"), planner.pending_name(record)}
            found = [
                betnr
                for betnr, party in self.world.advo_parties().items()
                if betnr not in linked and party.get("name") in names
            ]
            betnr = found[0] if found else None
            self.log.append(f"  person links {record['id']} to {betnr or 'a new create'}")
            link_entity(self.world.espocrm, self.world.advoware, record, betnr)
            linked.add(betnr)

    def _converged(self) -> str | None:
        """None when both sides are equal and every entity clean, else what is not."""
        parties = self.world.advo_parties()
        linked = []
        for record in self.world.espo_records():
            if record.get("syncStatus") != "clean":
                why = record.get("syncErrorMessage")
                return f"{record['id']} is {record.get('syncStatus')}: {why}"
            party = parties.get(int(record["betnr"] or 0))
            if party is None:
                return f"{record['id']} has no Advoware party"
            linked.append(party["betNr"])
            diffs = planner.differences(record, _as_read(party))
            if diffs:
                return f"{record['id']} differs: {diffs}"
        if sorted(linked) != sorted(parties) or len(set(linked)) != len(linked):
            return f"parties {sorted(parties)} but linked {sorted(linked)}"
        return None

    def _assert_quiet_run(self) -> None:
        before = {b: p["rowId"] for b, p in self.world.advo_parties().items()}
        komm_before = {
            b: sorted((c["id"], c["rowId"]) for c in p["kommunikation"])
            for b, p in self.world.advo_parties().items()
        }
        results = sync_all(self.world.espocrm, self.world.advoware, clock=self.world.now)
        assert all(r.outcome == "no_change" for r in results), (
            [r.to_dict() for r in results],
            self.log,
        )
        after = self.world.advo_parties()
        assert before == {b: p["rowId"] for b, p in after.items()}, self.log
        assert komm_before == {
            b: sorted((c["id"], c["rowId"]) for c in p["kommunikation"]) for b, p in after.items()
        }, self.log


def _as_read(party: Mapping[str, Any]) -> dict[str, Any]:
    """The party as the API reports it (kommKz 0 defect) for the engine's comparison."""
    out = dict(party)
    out["kommunikation"] = [{**k, "kommKz": 0} for k in party["kommunikation"]]
    return out


def _holds(record: Mapping[str, Any], slot: str, compared: str, *, espocrm: bool) -> bool:
    if slot in (EMAIL, PHONE):
        values = espo_values(record) if espocrm else advo_values(record)
        return (slot, compared) in values
    value = record.get(slot)
    if slot == "geburtsdatum" and isinstance(value, str):
        value = value[:10]
    return value == compared
