"""EspoCRM stand-in over real HTTP: auth, CRUD, versioning, dirty rule, email/phone data, notes."""

from __future__ import annotations

import re

import requests

from sandbox.server import Sandbox
from tests.sandbox.conftest import Api

DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def create(espo: Api, **fields: object) -> dict:
    response = espo.post("/CBeteiligte", json={"name": "Mustermann", **fields})
    assert response.status_code == 200, response.text
    return response.json()


def test_missing_or_wrong_api_key_is_401(sandbox: Sandbox) -> None:
    url = f"{sandbox.espocrm_url}/api/v1/CBeteiligte"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"X-Api-Key": "wrong"}, timeout=5).status_code == 401
    headers = {"X-Api-Key": sandbox.credentials.espocrm_api_key}
    assert requests.get(url, headers=headers, timeout=5).status_code == 200


def test_post_fills_server_fields_and_starts_pending_sync(espo: Api) -> None:
    record = create(espo, vorname="Max")
    assert re.fullmatch(r"[0-9a-f]{17}", record["id"])
    assert DATETIME.match(record["createdAt"]) and record["modifiedAt"] == record["createdAt"]
    assert record["versionNumber"] == 1
    assert record["syncStatus"] == "pending_sync"
    for field in ("betnr", "syncRetryCount", "syncNextRetry", "syncedHash", "syncLockedAt"):
        assert field in record and record[field] is None


def test_post_with_sync_status_keeps_it(espo: Api) -> None:
    assert create(espo, syncStatus="clean")["syncStatus"] == "clean"


def test_post_bad_bodies_are_400(espo: Api) -> None:
    assert espo.post("/CBeteiligte", json={"vorname": "Max"}).status_code == 400
    response = espo.post("/CBeteiligte", json={"name": ["Mustermann"]})
    assert response.status_code == 400
    assert response.headers["X-Status-Reason"] == "validationFailure"
    assert espo.post("/CBeteiligte", data=b"{not json").status_code == 400
    assert espo.post("/CBeteiligte", json=["a list"]).status_code == 400
    assert espo.post("/CBeteiligte", json={"name": "x", "betnr": "12"}).status_code == 400
    assert espo.post("/CBeteiligte", json={"name": "x", "syncStatus": "bogus"}).status_code == 400
    assert espo.post("/CBeteiligte", json={"name": "x" * 256}).status_code == 400
    assert (
        espo.post("/CBeteiligte", json={"name": "x", "geburtsdatum": "1.2.1980"}).status_code == 400
    )


def test_invalid_email_is_400_validation_failure_with_espocrm_body(espo: Api) -> None:
    response = espo.post(
        "/CBeteiligte", json={"name": "x", "emailAddressData": [{"emailAddress": "no-at-sign"}]}
    )
    assert response.status_code == 400
    assert response.headers["X-Status-Reason"] == "validationFailure"
    translation = response.json()["messageTranslation"]
    assert translation["label"] == "validationFailure"
    assert translation["data"] == {"field": "emailAddress", "type": "valid"}


def test_get_unknown_id_is_404_with_reason(espo: Api) -> None:
    response = espo.get("/CBeteiligte/00000000000000000")
    assert response.status_code == 404
    assert response.headers["X-Status-Reason"]


def test_put_is_partial_returns_record_without_arrays_and_bumps_version(espo: Api) -> None:
    record = create(espo, vorname="Max", anrede="Herr")
    response = espo.put(f"/CBeteiligte/{record['id']}", json={"titel": "Dr."})
    assert response.status_code == 200
    updated = response.json()
    assert updated["titel"] == "Dr." and updated["vorname"] == "Max"
    assert updated["anrede"] == "Herr" and updated["name"] == "Mustermann"
    assert updated["versionNumber"] == 2
    assert DATETIME.match(updated["modifiedAt"])
    whole = espo.get(f"/CBeteiligte/{record['id']}").json()
    assert "emailAddressData" in whole and "phoneNumberData" in whole
    assert "emailAddressData" not in updated and "phoneNumberData" not in updated
    assert {k: v for k, v in whole.items() if not k.endswith("Data")} == updated


def test_put_ignores_read_only_and_unknown_attributes(espo: Api) -> None:
    record = create(espo)
    body = {"id": "x", "versionNumber": 99, "createdAt": "2000-01-01 00:00:00", "nonsense": 1}
    updated = espo.put(f"/CBeteiligte/{record['id']}", json=body).json()
    assert updated["id"] == record["id"] and updated["versionNumber"] == 2
    assert updated["createdAt"] == record["createdAt"] and "nonsense" not in updated


def test_put_changing_business_field_without_status_sets_dirty(espo: Api) -> None:
    record = create(espo, syncStatus="clean")
    updated = espo.put(f"/CBeteiligte/{record['id']}", json={"vorname": "Erika"}).json()
    assert updated["syncStatus"] == "dirty"


def test_put_of_bookkeeping_or_identical_values_keeps_status(espo: Api) -> None:
    record = create(espo, vorname="Max", syncStatus="clean")
    same = espo.put(f"/CBeteiligte/{record['id']}", json={"vorname": "Max", "syncRetryCount": 2})
    assert same.json()["syncStatus"] == "clean"
    assert same.json()["versionNumber"] == 2


def test_put_that_sets_status_itself_is_not_dirty(espo: Api) -> None:
    record = create(espo, syncStatus="syncing")
    body = {"name": "Neu", "syncStatus": "clean", "syncedHash": "h"}
    assert espo.put(f"/CBeteiligte/{record['id']}", json=body).json()["syncStatus"] == "clean"


def test_version_mismatch_is_409_modified_and_match_succeeds(espo: Api) -> None:
    record = create(espo)
    path = f"/CBeteiligte/{record['id']}"
    stale = espo.put(path, json={"titel": "Dr."}, headers={"X-Version-Number": "7"})
    assert stale.status_code == 409
    assert stale.headers["X-Status-Reason"] == "modified"
    assert espo.get(path).json()["titel"] is None
    fresh = espo.put(path, json={"titel": "Dr."}, headers={"X-Version-Number": "1"})
    assert fresh.status_code == 200 and fresh.json()["versionNumber"] == 2
    again = espo.put(path, json={"titel": "Prof."}, headers={"X-Version-Number": "1"})
    assert again.status_code == 409


def test_delete_removes_the_record(espo: Api) -> None:
    record = create(espo)
    assert espo.delete(f"/CBeteiligte/{record['id']}").status_code == 200
    assert espo.get(f"/CBeteiligte/{record['id']}").status_code == 404
    assert espo.delete(f"/CBeteiligte/{record['id']}").status_code == 404


def test_email_and_phone_data_replace_the_set_and_keep_primary_fields(espo: Api) -> None:
    record = create(
        espo,
        emailAddressData=[{"emailAddress": "A@Example.com"}, {"emailAddress": "b@example.com"}],
        phoneNumberData=[{"phoneNumber": "+49 30 1", "type": "Mobile", "primary": True}],
    )
    assert record["emailAddress"] == "A@Example.com"
    assert record["emailAddressData"][0]["lower"] == "a@example.com"
    assert [e["primary"] for e in record["emailAddressData"]] == [True, False]
    assert record["phoneNumber"] == "+49 30 1"
    path = f"/CBeteiligte/{record['id']}"
    data = [{"emailAddress": "c@example.com", "primary": True}]
    assert espo.put(path, json={"emailAddressData": data}).json()["emailAddress"] == "c@example.com"
    updated = espo.get(path).json()
    assert [e["emailAddress"] for e in updated["emailAddressData"]] == ["c@example.com"]
    assert updated["emailAddress"] == "c@example.com"
    assert updated["phoneNumberData"] == record["phoneNumberData"]
    assert espo.put(path, json={"phoneNumberData": []}).json()["phoneNumber"] is None
    cleared = espo.get(path).json()
    assert cleared["phoneNumberData"] == [] and cleared["phoneNumber"] is None


def test_setting_primary_email_attribute_updates_the_data(espo: Api) -> None:
    record = create(espo, emailAddressData=[{"emailAddress": "old@example.com"}])
    path = f"/CBeteiligte/{record['id']}"
    assert espo.put(path, json={"emailAddress": "new@example.com"}).status_code == 200
    updated = espo.get(path).json()
    assert updated["emailAddressData"][0]["emailAddress"] == "new@example.com"
    assert updated["emailAddressData"][0]["primary"] is True


def test_bad_phone_type_is_400(espo: Api) -> None:
    data = [{"phoneNumber": "+49 30 1", "type": "Pager"}]
    assert espo.post("/CBeteiligte", json={"name": "x", "phoneNumberData": data}).status_code == 400


def test_notes_post_list_and_stream(sandbox: Sandbox, espo: Api) -> None:
    sandbox.espocrm_admin.configure(count_total=True)
    record = create(espo)
    other = create(espo)
    body = {"type": "Post", "parentType": "CBeteiligte", "parentId": record["id"], "post": "Hi"}
    note = espo.post("/Note", json=body)
    assert note.status_code == 200
    assert note.json()["parentId"] == record["id"] and note.json()["post"] == "Hi"
    espo.post("/Note", json={**body, "parentId": other["id"]})
    listed = espo.get(
        f"/Note?where[0][type]=equals&where[0][attribute]=parentId&where[0][value]={record['id']}"
    ).json()
    assert listed["total"] == 1 and listed["list"][0]["id"] == note.json()["id"]
    stream = espo.get(f"/CBeteiligte/{record['id']}/stream").json()
    assert [n["post"] for n in stream["list"]] == ["Hi"]


def test_note_for_unknown_parent_is_404_and_missing_post_is_400(espo: Api) -> None:
    body = {"type": "Post", "parentType": "CBeteiligte", "parentId": "nope", "post": "x"}
    assert espo.post("/Note", json=body).status_code == 404
    record = create(espo)
    body = {"type": "Post", "parentType": "CBeteiligte", "parentId": record["id"]}
    assert espo.post("/Note", json=body).status_code == 400


def test_admin_edit_acts_like_a_person(sandbox: Sandbox, espo: Api) -> None:
    created = sandbox.espocrm_admin.edit(create={"name": "Neu"})
    assert created["syncStatus"] == "pending_sync"
    record = create(espo, syncStatus="clean")
    edited = sandbox.espocrm_admin.edit(id=record["id"], fields={"name": "Geändert"})
    assert edited["syncStatus"] == "dirty" and edited["versionNumber"] == 2
    stale = espo.put(
        f"/CBeteiligte/{record['id']}",
        json={"syncStatus": "syncing"},
        headers={"X-Version-Number": "1"},
    )
    assert stale.status_code == 409
