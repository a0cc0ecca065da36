"""Pure helpers of the hooks: where-builder encoding, HMAC signature, URLs, settings, stats."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, date, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from airflow.sdk import Connection
from hooks.advoware import hmac_signature, token_timestamp
from hooks.base import HttpSettings, base_url_from_connection, format_path
from hooks.espocrm import build_where_params, format_espo_datetime
from hooks.stats import StatsRecorder

BERLIN_WINTER = timezone(timedelta(hours=1))


def _encoded_query(params: list[tuple[str, str]]) -> str:
    """The query string requests will put on the wire."""
    prepared = requests.Request("GET", "http://x/api/v1/CBeteiligte", params=params).prepare()
    return urlsplit(prepared.url or "").query


def test_simple_equals_becomes_indexed_where_params() -> None:
    where = [{"type": "equals", "attribute": "syncStatus", "value": "dirty"}]
    assert build_where_params(where) == [
        ("where[0][type]", "equals"),
        ("where[0][attribute]", "syncStatus"),
        ("where[0][value]", "dirty"),
    ]


def test_array_values_use_empty_brackets_and_are_percent_encoded_on_the_wire() -> None:
    where = [{"type": "in", "attribute": "syncStatus", "value": ["dirty", "pending_sync"]}]
    query = _encoded_query(build_where_params(where))
    assert "where%5B0%5D%5Bvalue%5D%5B%5D=dirty" in query
    assert "where%5B0%5D%5Bvalue%5D%5B%5D=pending_sync" in query
    assert parse_qsl(query) == [
        ("where[0][type]", "in"),
        ("where[0][attribute]", "syncStatus"),
        ("where[0][value][]", "dirty"),
        ("where[0][value][]", "pending_sync"),
    ]


def test_nested_or_and_items_are_indexed_below_value() -> None:
    where = [
        {
            "type": "or",
            "value": [
                {"type": "equals", "attribute": "syncStatus", "value": "dirty"},
                {
                    "type": "and",
                    "value": [
                        {"type": "equals", "attribute": "syncStatus", "value": "failed"},
                        {"type": "isNull", "attribute": "betnr"},
                    ],
                },
            ],
        },
        {"type": "isNotNull", "attribute": "name"},
    ]
    assert build_where_params(where) == [
        ("where[0][type]", "or"),
        ("where[0][value][0][type]", "equals"),
        ("where[0][value][0][attribute]", "syncStatus"),
        ("where[0][value][0][value]", "dirty"),
        ("where[0][value][1][type]", "and"),
        ("where[0][value][1][value][0][type]", "equals"),
        ("where[0][value][1][value][0][attribute]", "syncStatus"),
        ("where[0][value][1][value][0][value]", "failed"),
        ("where[0][value][1][value][1][type]", "isNull"),
        ("where[0][value][1][value][1][attribute]", "betnr"),
        ("where[1][type]", "isNotNull"),
        ("where[1][attribute]", "name"),
    ]


def test_datetimes_are_written_in_utc_espocrm_format() -> None:
    moment = datetime(2026, 2, 8, 10, 30, 5, tzinfo=BERLIN_WINTER)
    where = [{"type": "before", "attribute": "syncNextRetry", "value": moment}]
    assert build_where_params(where)[-1] == ("where[0][value]", "2026-02-08 09:30:05")
    assert format_espo_datetime(datetime(2026, 7, 1, 0, 0, tzinfo=UTC)) == "2026-07-01 00:00:00"


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_espo_datetime(datetime(2026, 2, 8, 10, 30))


def test_booleans_dates_and_numbers_are_written_as_espocrm_expects() -> None:
    where = [
        {"type": "equals", "attribute": "optOut", "value": False},
        {"type": "equals", "attribute": "geburtsdatum", "value": date(1970, 1, 2)},
        {"type": "greaterThan", "attribute": "syncRetryCount", "value": 3},
    ]
    values = [v for k, v in build_where_params(where) if k.endswith("[value]")]
    assert values == ["false", "1970-01-02", "3"]


def test_where_item_without_type_is_refused() -> None:
    with pytest.raises(ValueError, match="type"):
        build_where_params([{"attribute": "name", "value": "x"}])


def test_hmac_signature_matches_the_spec_formula_and_a_fixed_vector() -> None:
    api_key = base64.b64encode(b"0123456789abcdef-secret").decode()
    nonce = "6f1c1a3e-6c55-4c55-9a0b-1f0a7a1f2c3d"
    stamp = "2026-02-08T10:00:00Z"
    signature = hmac_signature(api_key, 64, "my-app", nonce, stamp)
    expected = base64.b64encode(
        hmac.digest(b"0123456789abcdef-secret", f"64:my-app:{nonce}:{stamp}".encode(), "sha512")
    ).decode()
    assert signature == expected
    assert len(base64.b64decode(signature)) == hashlib.sha512().digest_size
    # fixed vector computed with `openssl dgst -sha512 -hmac ... -binary | base64`
    assert signature == (
        "nwbfzXX+i7InwbUVqwgk73AuyLUkDYy+DRjUd+bNGvRsRFUVPGVi4hS5QfL8rlhuV7OH+a7YZcIDFTVfvUNP5A=="
    )


def test_hmac_signature_changes_with_every_input() -> None:
    key = base64.b64encode(b"k" * 32).decode()
    base = hmac_signature(key, 64, "app", "n1", "t1")
    assert base != hmac_signature(key, 65, "app", "n1", "t1")
    assert base != hmac_signature(key, 64, "app2", "n1", "t1")
    assert base != hmac_signature(key, 64, "app", "n2", "t1")
    assert base != hmac_signature(key, 64, "app", "n1", "t2")


def test_invalid_base64_api_key_is_refused_without_quoting_it() -> None:
    with pytest.raises(ValueError) as info:
        hmac_signature("not*base64!!secretvalue", 64, "app", "n", "t")
    assert "secretvalue" not in str(info.value)


def test_token_timestamp_is_iso_utc_with_z() -> None:
    moment = datetime(2026, 2, 8, 11, 0, 0, tzinfo=BERLIN_WINTER)
    assert token_timestamp(moment) == "2026-02-08T10:00:00Z"
    parsed = datetime.fromisoformat(token_timestamp())
    assert abs((parsed - datetime.now(UTC)).total_seconds()) < 5


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        ("https://crm.example.org/", None, None, "https://crm.example.org"),
        ("https://crm.example.org/api/v1", None, None, "https://crm.example.org"),
        ("crm.example.org", None, None, "https://crm.example.org"),
        ("crm.example.org", "http", 8081, "http://crm.example.org:8081"),
        ("http://127.0.0.1:5000/relay", None, None, "http://127.0.0.1:5000/relay"),
    ],
)
def test_base_url_from_connection(
    host: str, schema: str | None, port: int | None, expected: str
) -> None:
    conn = Connection(conn_id="c", conn_type="espocrm", host=host, schema=schema, port=port)
    assert base_url_from_connection(conn, strip_suffix="/api/v1") == expected


def test_path_template_values_are_percent_encoded() -> None:
    assert (
        format_path("/api/v1/CBeteiligte/{id}", {"id": "a/b c"}) == "/api/v1/CBeteiligte/a%2Fb%20c"
    )
    assert format_path("/api/v1/advonet/Beteiligte/{betNr}", {"betNr": 104860}).endswith("/104860")


def test_http_settings_from_extra_reads_ui_strings_and_defaults() -> None:
    settings = HttpSettings.from_extra(
        json.loads('{"verify": "false", "read_timeout": "2.5", "retry_attempts": 0}')
    )
    assert settings.verify is False
    assert settings.read_timeout == 2.5
    assert settings.retry_attempts == 1  # at least the first attempt
    assert HttpSettings.from_extra({}).verify is True


def test_stats_count_per_template_and_status_and_reset() -> None:
    recorder = StatsRecorder()
    recorder.record("GET /api/v1/CBeteiligte/{id}", 200, 0.01)
    recorder.record("GET /api/v1/CBeteiligte/{id}", 200, 0.02)
    recorder.record("GET /api/v1/CBeteiligte/{id}", 503, 0.03)
    recorder.record("POST /api/v1/Note", "no_response", 0.5)
    snap = recorder.snapshot()
    assert snap.count("GET /api/v1/CBeteiligte/{id}") == 3
    assert snap.count("GET /api/v1/CBeteiligte/{id}", 503) == 1
    assert snap.by_status() == {"200": 2, "503": 1, "no_response": 1}
    assert snap.total_calls == 4
    assert snap.total_seconds == pytest.approx(0.56)
    assert json.loads(json.dumps(snap.as_dict()))["total_calls"] == 4
    recorder.reset()
    assert recorder.snapshot().total_calls == 0
    assert snap.total_calls == 4  # snapshots do not change afterwards
