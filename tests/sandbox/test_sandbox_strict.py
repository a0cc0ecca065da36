"""The strict behaviours of the real servers (SPEC §4-§5) over real HTTP.

Each test here failed against the old, lenient sandbox.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from sandbox import limits
from sandbox.formula import Formula, FormulaError, load_before_save_script
from sandbox.server import Sandbox
from tests.sandbox.conftest import Api

EMAILS = [{"emailAddress": "a@example.com"}, {"emailAddress": "b@example.com"}]
PHONES = [{"phoneNumber": "+49 30 1", "type": "Office"}]


def create(espo: Api, **fields: object) -> dict:
    response = espo.post("/CBeteiligte", json={"name": "Mustermann", **fields})
    assert response.status_code == 200, response.text
    return response.json()


# -- 1. list shape and PUT answer ---------------------------------------------------------


def test_list_records_carry_no_email_or_phone_arrays(espo: Api) -> None:
    record = create(espo, emailAddressData=EMAILS, phoneNumberData=PHONES)
    for query in ("", "?select=name,emailAddressData,phoneNumberData,emailAddress"):
        (listed,) = espo.get(f"/CBeteiligte{query}").json()["list"]
        assert "emailAddressData" not in listed and "phoneNumberData" not in listed
        assert listed["emailAddress"] == "a@example.com"
    (full,) = espo.get("/CBeteiligte").json()["list"]
    assert full["phoneNumber"] == "+49 30 1"
    whole = espo.get(f"/CBeteiligte/{record['id']}").json()
    assert [e["emailAddress"] for e in whole["emailAddressData"]] == [
        "a@example.com",
        "b@example.com",
    ]
    assert whole["phoneNumberData"][0]["phoneNumber"] == "+49 30 1"


def test_put_answer_carries_no_email_or_phone_arrays(espo: Api) -> None:
    record = create(espo, emailAddressData=EMAILS)
    answer = espo.put(f"/CBeteiligte/{record['id']}", json={"emailAddressData": EMAILS[1:]})
    assert answer.status_code == 200
    body = answer.json()
    assert "emailAddressData" not in body and "phoneNumberData" not in body
    assert body["emailAddress"] == "b@example.com" and body["versionNumber"] == 2


# -- 2. 409 only when a written value differs (OptimisticProcessor) ---------------------------


def test_stale_version_with_identical_values_succeeds(espo: Api) -> None:
    record = create(espo, vorname="Max", syncStatus="clean", emailAddressData=EMAILS)
    path = f"/CBeteiligte/{record['id']}"
    espo.put(path, json={"syncRetryCount": 1})  # now at version 2
    time.sleep(1.1)  # modifiedAt has second resolution
    stored = espo.get(path).json()["emailAddressData"]
    same = {"vorname": "Max", "syncRetryCount": 1, "emailAddressData": stored[::-1]}
    answer = espo.put(path, json=same, headers={"X-Version-Number": "1"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["versionNumber"] == 3  # the VersionNumber hook runs on every save
    assert body["modifiedAt"] == espo.get(path).json()["modifiedAt"]
    assert body["syncStatus"] == "clean"


def test_identical_write_does_not_move_modified_at(espo: Api) -> None:
    record = create(espo, vorname="Max")
    time.sleep(1.1)
    body = espo.put(f"/CBeteiligte/{record['id']}", json={"vorname": "Max"}).json()
    assert body["modifiedAt"] == record["modifiedAt"] and body["versionNumber"] == 2
    changed = espo.put(f"/CBeteiligte/{record['id']}", json={"vorname": "Moritz"}).json()
    assert changed["modifiedAt"] > record["modifiedAt"]


def test_stale_version_with_a_differing_value_is_409_modified(espo: Api) -> None:
    record = create(espo, vorname="Max", syncLockToken="holder-a")
    path = f"/CBeteiligte/{record['id']}"
    espo.put(path, json={"syncRetryCount": 1})  # version 2
    body = {"vorname": "Max", "syncLockToken": "holder-b"}
    answer = espo.put(path, json=body, headers={"X-Version-Number": "1"})
    assert answer.status_code == 409
    assert answer.headers["X-Status-Reason"] == "modified"
    assert answer.json() == {"values": {"syncLockToken": "holder-a"}, "versionNumber": 2}
    assert espo.get(path).json()["syncLockToken"] == "holder-a"


# -- 3. 414 on long request lines -----------------------------------------------------------


def _raw_request_line_status(url: str, length: int) -> int:
    """Send a GET whose request line is exactly ``length`` bytes; return the status."""
    host, port = url.removeprefix("http://").split(":")
    prefix, suffix = "GET /api/v1/x?q=", " HTTP/1.1"
    line = prefix + "a" * (length - len(prefix) - len(suffix)) + suffix
    assert len(line) == length
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"{line}\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode("ascii"))
        status_line = sock.makefile("rb").readline().decode("ascii")
    return int(status_line.split()[1])


def test_request_line_over_8190_bytes_is_414_on_both_servers(sandbox: Sandbox) -> None:
    for url in (sandbox.espocrm_url, sandbox.advoware_url):
        assert _raw_request_line_status(url, 8190) != 414
        assert _raw_request_line_status(url, 8191) == 414


def test_long_in_filter_is_414(sandbox: Sandbox, espo: Api) -> None:
    ids = [f"{i:017x}" for i in range(500)]
    params = [("where[0][type]", "in"), ("where[0][attribute]", "id")]
    params += [("where[0][value][]", i) for i in ids]
    answer = espo.get("/CBeteiligte", params=params)
    assert answer.status_code == 414
    counted = sandbox.espocrm_admin.counters()["calls"]["GET /api/v1/CBeteiligte"]
    assert counted == {"414": 1}
    assert espo.get("/CBeteiligte", params=params[:2] + params[2:50]).status_code == 200


# -- 4. list total ---------------------------------------------------------------------------


def test_list_total_is_minus_one_or_minus_two_by_default(sandbox: Sandbox, espo: Api) -> None:
    sandbox.espocrm_admin.load({"espocrm": {"CBeteiligte": [{"name": f"N{i}"} for i in range(5)]}})
    assert espo.get("/CBeteiligte?maxSize=2").json()["total"] == -1
    assert espo.get("/CBeteiligte?maxSize=2&offset=2").json()["total"] == -1
    last = espo.get("/CBeteiligte?maxSize=2&offset=4").json()
    assert last["total"] == -2 and len(last["list"]) == 1
    assert espo.get("/CBeteiligte?maxSize=5").json()["total"] == -2


def test_count_total_switch_and_x_no_total_header(sandbox: Sandbox, espo: Api) -> None:
    sandbox.espocrm_admin.load({"espocrm": {"CBeteiligte": [{"name": f"N{i}"} for i in range(5)]}})
    assert sandbox.espocrm_admin.configure()["count_total"] is False
    assert sandbox.espocrm_admin.configure(count_total=True)["count_total"] is True
    assert espo.get("/CBeteiligte?maxSize=2").json()["total"] == 5
    refused = espo.get("/CBeteiligte?maxSize=2", headers={"X-No-Total": "true"}).json()
    assert refused["total"] == -1


# -- 5. field limits from the shipped entityDefs -------------------------------------------


@pytest.mark.parametrize(
    ("field", "longest"),
    [("syncLockToken", 64), ("syncedHash", 64), ("kommunikationHash", 64), ("advowareRowId", 100)],
)
def test_field_lengths_follow_the_shipped_entity_defs(espo: Api, field: str, longest: int) -> None:
    assert create(espo, **{field: "x" * longest})[field] == "x" * longest
    answer = espo.post("/CBeteiligte", json={"name": "x", field: "x" * (longest + 1)})
    assert answer.status_code == 400
    assert answer.headers["X-Status-Reason"] == "validationFailure"


def test_entity_defs_int_min_and_enum_options_are_enforced(espo: Api) -> None:
    for body in ({"betnr": 0}, {"syncRetryCount": -1}, {"syncStatus": "bogus"}):
        answer = espo.post("/CBeteiligte", json={"name": "x", **body})
        assert answer.status_code == 400, body
        assert answer.headers["X-Status-Reason"] == "validationFailure"


def test_limits_are_read_from_the_entity_defs_file() -> None:
    defs = json.loads(limits.ESPOCRM_ENTITY_DEFS_PATH.read_text(encoding="utf-8"))["fields"]
    assert defs["syncLockToken"] == {
        "type": "varchar",
        "maxLength": 64,
        "tooltip": True,
        "isCustom": True,
    }
    assert limits.ESPOCRM_MAX_LENGTH["syncLockToken"] == 64
    assert limits.ESPOCRM_MAX_LENGTH["advowareRowId"] == 100
    assert limits.espocrm_max_length("name") == 255  # not in the file: EspoCRM's default
    assert limits.espocrm_max_length("syncErrorMessage") is None  # text
    assert tuple(defs["syncStatus"]["options"]) == limits.ESPOCRM_SYNC_STATUSES


# -- 6. the formula file is the mark-dirty rule ----------------------------------------------


def test_business_change_while_syncing_marks_dirty(espo: Api) -> None:
    record = create(espo, syncStatus="syncing")
    body = espo.put(f"/CBeteiligte/{record['id']}", json={"vorname": "Erika"}).json()
    assert body["syncStatus"] == "dirty"


def test_rewriting_the_same_sync_status_is_no_status_change(espo: Api) -> None:
    record = create(espo, syncStatus="syncing")
    body = {"vorname": "Erika", "syncStatus": "syncing"}
    assert espo.put(f"/CBeteiligte/{record['id']}", json=body).json()["syncStatus"] == "dirty"
    record = create(espo, syncStatus="syncing")
    body = {"vorname": "Erika", "syncStatus": "clean"}
    assert espo.put(f"/CBeteiligte/{record['id']}", json=body).json()["syncStatus"] == "clean"


def test_same_email_set_in_another_order_is_no_change(espo: Api) -> None:
    record = create(espo, syncStatus="clean", emailAddressData=EMAILS)
    stored = espo.get(f"/CBeteiligte/{record['id']}").json()["emailAddressData"]
    body = {"emailAddressData": stored[::-1]}
    answer = espo.put(f"/CBeteiligte/{record['id']}", json=body).json()
    assert answer["syncStatus"] == "clean"


def test_formula_file_has_no_syncing_exemption_and_parses() -> None:
    script = load_before_save_script()
    assert "attributeFetched('syncStatus') != 'syncing'" not in script.source
    record = {"name": "a", "syncStatus": "syncing"}
    saved = {**record, "name": "b"}
    script.run(saved, record)
    assert saved["syncStatus"] == "dirty"


@pytest.mark.parametrize(
    "source",
    [
        "ifThen(entity\\isNew(), name = 'x')",  # no closing ';' is fine, but:
        "record\\create('X');",
        "ifThen(a > b, x = 'y');",
        "x = 1;",
        "entity\\isAttributeChanged(name);",
        "ifThen(a, b",
    ],
)
def test_formula_unknown_syntax_fails_at_load(source: str) -> None:
    if source.startswith("ifThen(entity\\isNew(), name"):
        Formula(source)  # the last statement may omit its ';'
        return
    with pytest.raises(FormulaError):
        Formula(source)


# -- 7. no Advoware search unless switched on ------------------------------------------------


def test_advoware_search_is_405_unless_switched_on(sandbox: Sandbox, advo: Api) -> None:
    advo.post("/Beteiligte", json={"name": "Alpha GmbH"})
    assert advo.get("/Beteiligte", params={"name": "Alpha GmbH"}).status_code == 405
    assert sandbox.advoware_admin.configure()["search"] is False
    sandbox.advoware_admin.configure(search=True)
    found = advo.get("/Beteiligte", params={"name": "Alpha GmbH"})
    assert found.status_code == 200 and [p["name"] for p in found.json()] == ["Alpha GmbH"]
    sandbox.advoware_admin.configure(search=False)
    assert advo.get("/Beteiligte", params={"name": "Alpha GmbH"}).status_code == 405


# -- 8. Advoware write answers carry only the betNr ------------------------------------------


def test_advoware_write_answers_carry_only_betnr(advo: Api) -> None:
    created = advo.post("/Beteiligte", json={"name": "Alpha GmbH"})
    assert created.status_code == 200 and list(created.json()) == ["betNr"]
    betnr = created.json()["betNr"]
    assert advo.put(f"/Beteiligte/{betnr}", json={"titel": "Dr."}).json() == {"betNr": betnr}
    komm = advo.post(f"/Beteiligte/{betnr}/Kommunikationen", json={"tlf": "1", "kommKz": 1})
    assert komm.json() == {"betNr": betnr}
    (entry,) = advo.get(f"/Beteiligte/{betnr}").json()["kommunikation"]
    changed = advo.put(f"/Beteiligte/{betnr}/Kommunikationen/{entry['id']}", json={"tlf": "2"})
    assert changed.json() == {"betNr": betnr}


# -- 9. a fault answering with a body that is not UTF-8 --------------------------------------


def test_non_utf8_fault_answers_latin1_json(sandbox: Sandbox, espo: Api) -> None:
    create(espo, vorname="Max")
    rule = {"method": "GET", "path": "/api/v1/CBeteiligte", "kind": "non_utf8", "count": 1}
    sandbox.espocrm_admin.set_faults([rule])
    answer = espo.get("/CBeteiligte")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
    with pytest.raises(UnicodeDecodeError):
        answer.content.decode("utf-8")
    decoded = json.loads(answer.content.decode("latin-1"))
    assert decoded["list"][0]["vorname"] == "Max" and "ä" in decoded["sandboxFault"]
    assert espo.get("/CBeteiligte").content.decode("utf-8")  # count 1: next answer is fine


def test_non_utf8_fault_is_a_known_kind(sandbox: Sandbox) -> None:
    rules = sandbox.advoware_admin.set_faults([{"kind": "non_utf8"}])["rules"]
    assert rules[0]["kind"] == "non_utf8"
    url = f"{sandbox.advoware_url}/api/v1/Token"
    answer = requests.post(url, data=b"{oops", timeout=5)  # an error answer, also latin-1
    assert answer.status_code == 400
    with pytest.raises(UnicodeDecodeError):
        answer.content.decode("utf-8")
