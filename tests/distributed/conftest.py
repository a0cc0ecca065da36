"""Fixtures of the distributed tests: a PostgreSQL database and a Redis db number of their own.

Both services are expected on 127.0.0.1 (PostgreSQL 5432 with trust auth for user ``postgres``,
Redis 6379), as on the project's developer and CI machines. Where either is missing (or the
packages of ``requirements-distributed.txt`` are not installed) the tests that need them are
skipped with a message that says what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from include.tools.bench_workers import scratch_database

PG_HOST = os.environ.get("BETEILIGTE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BETEILIGTE_TEST_PG_PORT", "5432"))
PG_USER = "postgres"
PG_MAINTENANCE_DB = "test"  # any existing database to connect to for CREATE/DROP DATABASE
REDIS_URL = "redis://127.0.0.1:6379"
#: Redis db numbers the tests may claim (0 is the developer's default; 1 the local profile's).
REDIS_DBS = range(5, 16)
_CLAIM_KEY = "beteiligte-test-claim"


def _missing(what: str, exc: BaseException) -> str:
    return (
        f"distributed test skipped: {what} ({type(exc).__name__}: {exc}). It needs PostgreSQL on "
        f"{PG_HOST}:{PG_PORT} (trust auth, user {PG_USER}), Redis on 127.0.0.1:6379 and "
        "`pip install -r requirements-distributed.txt`."
    )


def _pg_connect(dbname: str = PG_MAINTENANCE_DB) -> Any:
    try:
        import psycopg2
    except ImportError as exc:
        pytest.skip(_missing("psycopg2 not installed", exc))
    try:
        conn = psycopg2.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, connect_timeout=3
        )
    except psycopg2.Error as exc:
        pytest.skip(_missing("PostgreSQL not reachable", exc))
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    return conn


def _redis(db: int) -> Any:
    try:
        import redis
    except ImportError as exc:
        pytest.skip(_missing("redis client not installed", exc))
    client = redis.Redis.from_url(f"{REDIS_URL}/{db}", socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(_missing("Redis not reachable", exc))
    return client


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database ``beteiligte_test_<random>``, dropped afterwards."""
    _pg_connect().close()  # skips cleanly where PostgreSQL or its driver is missing
    with scratch_database("beteiligte_test") as name:
        yield name


@pytest.fixture(scope="module")
def redis_db() -> Iterator[int]:
    """A Redis db number (5 unless a parallel test session holds it) for this test module,
    flushed before and after use."""
    for db in REDIS_DBS:
        client = _redis(db)
        # The claim key keeps two test sessions on one machine apart; it expires by itself.
        if client.set(_CLAIM_KEY, os.getpid(), nx=True, ex=3600):
            client.flushdb()  # leftovers of an earlier, killed run
            client.set(_CLAIM_KEY, os.getpid(), ex=3600)
            break
        client.close()
    else:
        pytest.skip("distributed test skipped: Redis dbs 5..15 are all claimed by other tests")
    try:
        yield db
    finally:
        client.flushdb()
        client.close()
