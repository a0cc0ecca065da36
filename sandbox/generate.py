"""Scenario generator: N realistic German parties for both stand-ins.

``generate_scenario(count, seed)`` returns a scenario dict; the same seed gives the same
scenario. Mix (roughly): 15 % new in EspoCRM only (no ``betnr``, ``pending_sync``), 10 %
only in Advoware, the rest linked pairs (EspoCRM ``betnr`` = Advoware ``betNr``), of which
some are identical, some differ in Stammdaten and some in Kommunikationen. About a third are
companies (``rechtsform`` set). Each Advoware party has 0-9 Kommunikationen: phones, faxes,
emails, web addresses, some empty slots ``[ESPOCRM-SLOT:<kz>]``, some synced entries with a
marker ``[ESPOCRM:<base64>:<kz>]`` and some unmarked entries typed in by a person. Emails use
the reserved ``example.*`` domains, phone numbers are made up.

CLI: ``python -m sandbox.generate --count N --seed S -o FILE``.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

FEMALE_FIRST_NAMES = (
    "Anna", "Sophie", "Marie", "Lena", "Laura", "Hannah", "Julia", "Katharina", "Sabine",
    "Ursula", "Monika", "Petra", "Birgit", "Renate", "Gisela", "Ingrid", "Heike", "Karin",
)  # fmt: skip
MALE_FIRST_NAMES = (
    "Lukas", "Maximilian", "Paul", "Jonas", "Felix", "Leon", "Tim", "Jan", "Thomas", "Jürgen",
    "Stefan", "Andreas", "Michael", "Klaus", "Wolfgang", "Dieter", "Uwe", "Matthias", "Frank",
)  # fmt: skip
SURNAMES = (
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz",
    "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder", "Neumann",
    "Schwarz", "Zimmermann", "Braun", "Krüger", "Hofmann", "Hartmann", "Lange", "Schmitt",
    "Werner", "Schmitz", "Krause", "Meier", "Lehmann", "Schmid", "Schulze", "Maier", "Köhler",
    "Herrmann", "König", "Walter", "Mayer", "Huber", "Kaiser", "Fuchs", "Peters", "Lang",
)  # fmt: skip
COMPANY_STEMS = (
    "Bau", "Logistik", "Immobilien", "Software", "Consulting", "Maschinenbau", "Handel",
    "Autohaus", "Elektro", "Gartenbau", "Druckerei", "Transporte", "Metallbau", "Medien",
    "Pflegedienst", "Bäckerei", "Brauerei", "Steuerberatung", "Haustechnik", "Reisen",
)  # fmt: skip
CITIES = (
    "München", "Berlin", "Hamburg", "Köln", "Frankfurt am Main", "Stuttgart", "Düsseldorf",
    "Leipzig", "Dortmund", "Essen", "Bremen", "Dresden", "Hannover", "Nürnberg", "Augsburg",
)  # fmt: skip
RECHTSFORMEN = (
    "GmbH",
    "AG",
    "KG",
    "GmbH & Co. KG",
    "e.K.",
    "GbR",
    "OHG",
    "UG (haftungsbeschränkt)",
)
TITLES = ("Dr.", "Prof.", "Prof. Dr.", "Dipl.-Ing.")
AREA_CODES = ("30", "40", "89", "221", "69", "711", "211", "341", "231", "201", "421", "351")
MOBILE_PREFIXES = ("151", "160", "170", "171", "172", "175", "176", "179")
MAIL_DOMAINS = ("example.com", "example.org", "example.net")
#: kommKz of phones/faxes/emails/web (SPEC §5) and the EspoCRM phone type they map to.
PHONE_TYPE_BY_KOMMKZ = {1: "Office", 2: "Fax", 3: "Mobile", 6: "Home", 7: "Fax", 9: "Mobile"}
EMAIL_KOMMKZ = (4, 8)
USER_REMARKS = ("Zentrale", "Sekretariat", "nur vormittags", "privat", "Buchhaltung", "")


_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


def _ascii(text: str) -> str:
    return text.translate(_TRANSLITERATION)


def value_marker(value: str, kommkz: int) -> str:
    """``[ESPOCRM:<base64 of the value>:<kommKz>]``."""
    encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
    return f"[ESPOCRM:{encoded}:{kommkz}]"


def slot_marker(kommkz: int) -> str:
    """``[ESPOCRM-SLOT:<kommKz>]``."""
    return f"[ESPOCRM-SLOT:{kommkz}]"


class _Generator:
    """Holds the random source and running numbers while building one scenario."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.base_time = datetime(2026, 1, 5, 8, 0, 0)
        self.ids: set[str] = set()

    def new_id(self) -> str:
        while True:
            candidate = f"{self.random.getrandbits(68):017x}"
            if candidate not in self.ids:
                self.ids.add(candidate)
                return candidate

    def moment(self) -> datetime:
        return self.base_time + timedelta(minutes=self.random.randrange(0, 60 * 24 * 30))

    # -- Stammdaten ------------------------------------------------------------------------

    def stammdaten(self) -> dict[str, Any]:
        """Business fields in Advoware spelling (``handelsRegisterNummer``)."""
        rnd = self.random
        if rnd.random() < 0.35:
            stem, surname = rnd.choice(COMPANY_STEMS), rnd.choice(SURNAMES)
            rechtsform = rnd.choice(RECHTSFORMEN)
            register = rnd.random() < 0.8 and rechtsform not in ("GbR",)
            return {
                "name": f"{surname} {stem} {rechtsform}",
                "rechtsform": rechtsform,
                "handelsRegisterNummer": f"HRB {rnd.randrange(1000, 250000)}" if register else None,
                "registergericht": f"Amtsgericht {rnd.choice(CITIES)}" if register else None,
                "vorname": None,
                "anrede": "Firma",
                "titel": None,
                "geburtsdatum": None,
            }
        female = rnd.random() < 0.5
        born = datetime(1940, 1, 1) + timedelta(days=rnd.randrange(0, 365 * 62))
        return {
            "name": rnd.choice(SURNAMES),
            "vorname": rnd.choice(FEMALE_FIRST_NAMES if female else MALE_FIRST_NAMES),
            "anrede": "Frau" if female else "Herr",
            "titel": rnd.choice(TITLES) if rnd.random() < 0.12 else None,
            "rechtsform": None,
            "handelsRegisterNummer": None,
            "registergericht": None,
            "geburtsdatum": born.strftime("%Y-%m-%d") if rnd.random() < 0.6 else None,
        }

    # -- Kommunikation values --------------------------------------------------------------

    def value_for(self, kommkz: int, stamm: dict[str, Any]) -> str:
        rnd = self.random
        if kommkz in EMAIL_KOMMKZ:
            local = (
                (stamm.get("vorname") or "info").lower() + "." + stamm["name"].split()[0].lower()
            )
            local = _ascii(local)
            return f"{local}{rnd.randrange(1, 99)}@{rnd.choice(MAIL_DOMAINS)}"
        if kommkz == 5:
            host = _ascii(stamm["name"].split()[0].lower())
            return f"https://www.{host}-{rnd.randrange(10, 99)}.example.com"
        if kommkz in (3, 9):
            return f"+49 {rnd.choice(MOBILE_PREFIXES)} {rnd.randrange(1000000, 9999999)}"
        return f"+49 {rnd.choice(AREA_CODES)} {rnd.randrange(100000, 9999999)}"

    def kommunikationen(self, stamm: dict[str, Any]) -> list[dict[str, Any]]:
        """0-9 entries: synced (marker), empty slots, and unmarked entries typed in by a person."""
        entries = []
        for _ in range(self.random.randrange(0, 10)):
            kommkz = self.random.choice((1, 1, 2, 3, 3, 4, 4, 5, 6, 7, 8, 9))
            roll = self.random.random()
            if roll < 0.15:
                entries.append(
                    {"kommKz": kommkz, "tlf": "", "bemerkung": slot_marker(kommkz), "online": False}
                )
                continue
            value = self.value_for(kommkz, stamm)
            remark = self.random.choice(USER_REMARKS)
            bemerkung = (
                remark if roll > 0.75 else (value_marker(value, kommkz) + " " + remark).strip()
            )
            entries.append(
                {
                    "kommKz": kommkz,
                    "tlf": value,
                    "bemerkung": bemerkung,
                    "online": kommkz in (4, 5, 8),
                }
            )
        return entries

    # -- the two records -------------------------------------------------------------------

    def espocrm_record(
        self, stamm: dict[str, Any], kommunikation: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """The EspoCRM view: synced (marked) Kommunikationen become email/phone data."""
        emails: list[dict[str, Any]] = []
        phones: list[dict[str, Any]] = []
        for komm in kommunikation:
            if not komm["tlf"] or not komm["bemerkung"].startswith("[ESPOCRM:"):
                continue
            if komm["kommKz"] in EMAIL_KOMMKZ:
                emails.append({"emailAddress": komm["tlf"], "primary": not emails})
            elif komm["kommKz"] in PHONE_TYPE_BY_KOMMKZ:
                phone_type = PHONE_TYPE_BY_KOMMKZ[komm["kommKz"]]
                phones.append(
                    {"phoneNumber": komm["tlf"], "type": phone_type, "primary": not phones}
                )
        created = self.moment()
        record = {
            "id": self.new_id(),
            "name": stamm["name"],
            "vorname": stamm["vorname"],
            "anrede": stamm["anrede"],
            "titel": stamm["titel"],
            "rechtsform": stamm["rechtsform"],
            "geburtsdatum": stamm["geburtsdatum"],
            "handelsregisterNummer": stamm["handelsRegisterNummer"],
            "registergericht": stamm["registergericht"],
            "emailAddressData": emails,
            "phoneNumberData": phones,
            "createdAt": created.strftime("%Y-%m-%d %H:%M:%S"),
            "modifiedAt": (created + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
        }
        return record

    def advoware_party(
        self, betnr: int, stamm: dict[str, Any], kommunikation: list[dict[str, Any]]
    ) -> dict[str, Any]:
        geburtsdatum = f"{stamm['geburtsdatum']}T00:00:00" if stamm["geburtsdatum"] else None
        changed = self.moment()
        return {
            "betNr": betnr,
            "geaendertAm": changed.strftime("%Y-%m-%dT%H:%M:%S"),
            **{key: value for key, value in stamm.items() if key != "geburtsdatum"},
            "geburtsdatum": geburtsdatum,
            "kommunikation": kommunikation,
        }


def _diverge(gen: _Generator, record: dict[str, Any], party: dict[str, Any]) -> None:
    """Make a linked pair differ: in Stammdaten (either side) or in Kommunikationen."""
    rnd = gen.random
    choice = rnd.random()
    if choice < 0.4:
        record["name"] = record["name"] + " " + rnd.choice(("(neu)", "jun.", "sen."))
        record["syncStatus"] = "dirty"
    elif choice < 0.7:
        party["titel"] = rnd.choice(TITLES) if not party.get("rechtsform") else None
        party["registergericht"] = (
            f"Amtsgericht {rnd.choice(CITIES)}" if party.get("rechtsform") else None
        )
    else:
        value = gen.value_for(1, party)
        party["kommunikation"].append({"kommKz": 1, "tlf": value, "bemerkung": "", "online": False})


def generate_scenario(count: int, seed: int) -> dict[str, Any]:
    """A scenario with ``count`` parties (see the module docstring for the mix)."""
    gen = _Generator(seed)
    espocrm: list[dict[str, Any]] = []
    advoware: list[dict[str, Any]] = []
    for index in range(count):
        betnr = 100000 + index
        stamm = gen.stammdaten()
        kommunikation = gen.kommunikationen(stamm)
        roll = gen.random.random()
        record = gen.espocrm_record(stamm, kommunikation)
        if roll < 0.15:
            record["syncStatus"] = "pending_sync"
            espocrm.append(record)
            continue
        party = gen.advoware_party(betnr, stamm, kommunikation)
        advoware.append(party)
        if roll < 0.25:
            continue  # only in Advoware
        record["betnr"] = betnr
        record["syncStatus"] = "clean"
        if roll > 0.6:
            _diverge(gen, record, party)
        espocrm.append(record)
    return {"espocrm": {"CBeteiligte": espocrm, "Note": []}, "advoware": {"Beteiligte": advoware}}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.generate")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", help="output file (default: stdout)")
    args = parser.parse_args(argv)
    text = json.dumps(generate_scenario(args.count, args.seed), ensure_ascii=False, indent=1)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
