"""Airflow hook for the EspoCRM REST API (entity ``CBeteiligte``, stream Notes).

Implements :class:`include.beteiligte_sync.clients.EspoCrmClient` over HTTP. No sync decisions
live here: the hook lists, reads, writes and posts, and raises typed errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from hooks.base import (
    REQUEST_LINE_BUDGET,
    JsonApiHook,
    base_url_from_connection,
    request_line_length,
)
from include.beteiligte_sync.errors import BadRequest, BadResponse, Conflict, NotFound

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from include.beteiligte_sync.clients import Record, WhereItem

#: EspoCRM answers ``maxSize`` above this with 403, so pages are never larger.
MAX_PAGE_SIZE = 200
ENTITY_PATH = "/api/v1/CBeteiligte"
RECORD_PATH = "/api/v1/CBeteiligte/{id}"
STREAM_PATH = "/api/v1/CBeteiligte/{id}/stream"
NOTE_PATH = "/api/v1/Note"
#: The widest paging parameters a list request can carry, reserved when measuring its line.
_WIDEST_PAGING = [("maxSize", str(MAX_PAGE_SIZE)), ("offset", "9" * 12)]


def format_espo_datetime(value: datetime) -> str:
    """Format an aware datetime as EspoCRM stores it: ``YYYY-MM-DD HH:MM:SS`` in UTC.

    Naive datetimes are refused: guessing their zone is how sync tools skip records.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("EspoCRM datetimes must be timezone-aware (they are compared in UTC)")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _scalar(value: Any) -> str:
    """One query-string value in EspoCRM's notation."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_espo_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _where_item_params(prefix: str, item: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Flatten one where item below ``prefix`` (e.g. ``where[0]``)."""
    if "type" not in item:
        raise ValueError("every where item needs a 'type'")
    params: list[tuple[str, str]] = []
    for key, value in item.items():
        name = f"{prefix}[{key}]"
        if value is None:
            continue  # isNull/isNotNull carry no value
        if key == "value" and isinstance(value, list | tuple):
            if value and all(isinstance(v, Mapping) for v in value):
                # nested or/and: items are indexed, exactly as http_build_query writes them
                for index, sub in enumerate(value):
                    params.extend(_where_item_params(f"{name}[{index}]", sub))
            else:
                params.extend((f"{name}[]", _scalar(v)) for v in value)
        elif isinstance(value, Mapping):
            raise ValueError(f"where item field {key!r} cannot be a mapping")
        else:
            params.append((name, _scalar(value)))
    return params


def build_where_params(where: Sequence[WhereItem]) -> list[tuple[str, str]]:
    """Turn where items into EspoCRM's query parameters.

    ``[{"type": "in", "attribute": "syncStatus", "value": ["dirty", "failed"]}]`` becomes
    ``where[0][type]=in&where[0][attribute]=syncStatus&where[0][value][]=dirty&...``; nested
    ``or``/``and`` items become ``where[0][value][0][type]=...``. Datetimes are written in UTC as
    ``YYYY-MM-DD HH:MM:SS``, booleans as ``true``/``false``. ``requests`` then percent-encodes
    the brackets, which EspoCRM (PHP) decodes.
    """
    params: list[tuple[str, str]] = []
    for index, item in enumerate(where):
        params.extend(_where_item_params(f"where[{index}]", item))
    return params


def split_where_to_fit(
    where: Sequence[WhereItem], fits: Callable[[list[WhereItem]], bool]
) -> list[list[WhereItem]]:
    """Cut ``where`` into where lists that each ``fits`` (a request line short enough).

    If ``where`` fits, it is the only one. Otherwise the values of its top-level ``in`` item
    with the longest value list are deduplicated and split into consecutive runs, each as long
    as still fits; every returned where list is ``where`` with that item's values replaced by
    one run. The union of their results is the result of ``where`` (an ``in`` is an OR over its
    values; ``notIn``, nested and other items cannot be split that way and are kept whole).

    :param fits: whether a where list makes a request short enough; must be monotone (fewer
        values never make a longer request).
    :raises BadRequest: if no split fits (no ``in`` item with several values, or a single
        value that is too long with the rest of the request); nothing has been sent.
    """
    items = list(where)
    if fits(items):
        return [items]
    splittable = [
        i
        for i, item in enumerate(items)
        if item.get("type") == "in"
        and isinstance(item.get("value"), list | tuple)
        and len(item["value"]) > 1
    ]
    if not splittable:
        raise _too_long("it has no 'in' filter with several values to split")
    index = max(splittable, key=lambda i: len(items[i]["value"]))
    unique = {_scalar(v): v for v in items[index]["value"]}
    values = list(unique.values())

    def with_values(run: list[Any]) -> list[WhereItem]:
        return [*items[:index], {**items[index], "value": run}, *items[index + 1 :]]

    chunks: list[list[WhereItem]] = []
    start = 0
    while start < len(values):
        if not fits(with_values(values[start : start + 1])):
            raise _too_long("a single value of its 'in' filter does not fit with the rest")
        low, high = start + 1, len(values)  # largest end with values[start:end] fitting
        while low < high:
            middle = (low + high + 1) // 2
            if fits(with_values(values[start:middle])):
                low = middle
            else:
                high = middle - 1
        chunks.append(with_values(values[start:low]))
        start = low
    return chunks


def _too_long(why: str) -> BadRequest:
    """The error for a list request that cannot be cut below the request-line budget."""
    return BadRequest(
        f"EspoCRM list request would exceed {REQUEST_LINE_BUDGET} bytes (front servers refuse "
        f"longer request lines with 414) and cannot be split: {why}; not sent",
        request=f"GET {ENTITY_PATH}",
    )


def _matches(sent: Any, stored: Any) -> bool:
    """True if the stored value shows what we sent (stored dicts may carry extra keys)."""
    if isinstance(sent, Mapping):
        return isinstance(stored, Mapping) and all(
            _matches(value, stored.get(key)) for key, value in sent.items()
        )
    if isinstance(sent, list | tuple):
        return (
            isinstance(stored, list)
            and len(stored) == len(sent)
            and all(_matches(a, b) for a, b in zip(sent, stored, strict=True))
        )
    return bool(sent == stored)


class EspoCrmHook(JsonApiHook):
    """Talk to EspoCRM's REST API with an API key (header ``X-Api-Key``).

    Connection (type ``espocrm``): ``host`` is the base URL without ``/api/v1``, ``password``
    the API key; ``extra`` may set ``verify``, ``connect_timeout``, ``read_timeout``,
    ``retry_attempts``, ``retry_max_seconds``, ``retry_wait_base``, ``retry_wait_max``.

    :param espocrm_conn_id: the Airflow connection id.
    :param connection: an explicit connection instead of looking the id up.
    :param page_size: records per list request (at most 200).
    """

    conn_name_attr = "espocrm_conn_id"
    default_conn_name = "espocrm_default"
    conn_type = "espocrm"
    hook_name = "EspoCRM"
    api_label: ClassVar[str] = "EspoCRM"

    def __init__(
        self,
        espocrm_conn_id: str = default_conn_name,
        *,
        connection: Connection | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        super().__init__(espocrm_conn_id, connection=connection)
        self.espocrm_conn_id = espocrm_conn_id
        self.page_size = max(1, min(page_size, MAX_PAGE_SIZE))

    @property
    def base_url(self) -> str:
        """EspoCRM base URL without ``/api/v1`` (paths carry it)."""
        return base_url_from_connection(self.connection, strip_suffix="/api/v1")

    def _auth_headers(self) -> dict[str, str]:
        """The API key header."""
        return {"X-Api-Key": self.connection.password or ""}

    def _auth_failed_message(self, request: str) -> str:
        """What to check when EspoCRM answers 401."""
        return (
            f"EspoCRM refused the API key of connection {self.conn_id!r} (401): check the "
            "connection's password field (the API user's key) and that the API user is active"
        )

    def _page(self, answer: Any, template: str) -> dict[str, Any]:
        """A list answer ``{"list": [...], "total": n}`` with ``list`` a list of records, else
        ``BadResponse`` (an empty or misshapen page must not read as "no records")."""
        page = self._object_answer(answer, f"GET {template}")
        records = page.get("list")
        if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
            raise BadResponse(
                "EspoCRM list answer has no list of records", request=f"GET {template}"
            )
        return page

    # -- CBeteiligte ---------------------------------------------------------------------------

    def iter_beteiligte(
        self,
        where: Sequence[WhereItem] = (),
        *,
        select: Sequence[str] | None = None,
        order_by: str | None = None,
        order: str = "asc",
        limit: int | None = None,
    ) -> Iterator[Record]:
        """Yield all ``CBeteiligte`` matching ``where``, one page (≤ 200) in memory at a time.

        :param where: EspoCRM where items (see :func:`build_where_params`).
        :param select: attributes to return (EspoCRM always adds ``id``); ``None`` = all.
        :param order_by: attribute to sort by; ``order`` is ``asc`` or ``desc``.
        :param limit: stop after this many records (over all chunks, see below).

        Paging asks for ``page_size`` records per page and goes on until a page comes back
        shorter; ``total`` is never trusted (EspoCRM may send ``-1``/``-2`` instead of a count).

        Request-line budget: a request whose line would exceed
        :data:`~hooks.base.REQUEST_LINE_BUDGET` bytes (front servers answer 414 above 8190) is
        split at the top-level ``in`` item with the longest value list (see
        :func:`split_where_to_fit`); the chunks are listed one after another, each paged on its
        own, a record met in two chunks is yielded once. ``order_by`` then orders within each
        chunk only, not across chunks. A request that cannot be split to fit raises
        ``BadRequest`` before anything is sent.

        Offset paging: if the caller changes records so that they leave the filter while
        iterating, later pages shift. Callers that do so should collect ids first.
        """
        shape: list[tuple[str, str]] = []
        if select:
            shape.append(("select", ",".join(select)))
        if order_by:
            shape += [("orderBy", order_by), ("order", order)]
        url = self.base_url + ENTITY_PATH

        def fits(items: list[WhereItem]) -> bool:
            params = [*build_where_params(items), *shape, *_WIDEST_PAGING]
            return request_line_length("GET", url, params) <= REQUEST_LINE_BUDGET

        chunks = split_where_to_fit(where, fits)
        if len(chunks) > 1:
            self.log.info("EspoCRM list request split into %d requests to fit", len(chunks))
        seen: set[Any] = set()
        remaining = limit
        for chunk in chunks:
            if remaining is not None and remaining <= 0:
                return
            for record in self._pages([*build_where_params(chunk), *shape], remaining):
                if len(chunks) > 1:
                    if record.get("id") in seen:
                        continue
                    seen.add(record.get("id"))
                yield record
                if remaining is not None:
                    remaining -= 1

    def _pages(self, params: list[tuple[str, str]], limit: int | None) -> Iterator[Record]:
        """Yield the records of one list query, page by page, until a page comes back short
        (``page_size`` records asked for, fewer got) or ``limit`` records came."""
        offset, yielded = 0, 0
        while limit is None or yielded < limit:
            size = self.page_size if limit is None else min(self.page_size, limit - yielded)
            paging = [("maxSize", str(size)), ("offset", str(offset))]
            answer = self._call("GET", ENTITY_PATH, params=[*params, *paging])
            records = self._page(answer, ENTITY_PATH)["list"]
            if len(records) > size:
                raise BadResponse(
                    f"EspoCRM sent {len(records)} records for maxSize {size}",
                    request=f"GET {ENTITY_PATH}",
                )
            yield from records
            yielded += len(records)
            offset += len(records)
            if len(records) < size:
                return

    def count_beteiligte(self, where: Sequence[WhereItem] = ()) -> int:
        """Number of ``CBeteiligte`` matching ``where``.

        One request (no records fetched) when EspoCRM reports a count; when it sends ``-1``/
        ``-2`` instead, or the filter must be split to fit a request line, the ids are listed
        and counted (``iter_beteiligte`` with ``select=["id"]``).
        """
        params = [*build_where_params(where), ("maxSize", "1"), ("select", "id")]
        url = self.base_url + ENTITY_PATH
        if request_line_length("GET", url, params) <= REQUEST_LINE_BUDGET:
            page = self._page(self._call("GET", ENTITY_PATH, params=params), ENTITY_PATH)
            total = page.get("total")
            if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
                return total
        return sum(1 for _ in self.iter_beteiligte(where, select=["id"]))

    def get_beteiligte(self, entity_id: str) -> Record:
        """Return one ``CBeteiligte`` record; ``NotFound`` if it does not exist."""
        answer = self._call("GET", RECORD_PATH, ids={"id": entity_id})
        return self._object_answer(answer, f"GET {RECORD_PATH}")

    def create_beteiligte(self, data: Mapping[str, Any]) -> Record:
        """Create a ``CBeteiligte`` and return it (with ``id`` and server-set fields).

        Not repeated after an ambiguous failure: EspoCRM offers no key to recognise the new
        record by, and a duplicate party is worse than an error the caller can retry.
        """
        answer = self._call("POST", ENTITY_PATH, json_body=dict(data))
        return self._object_answer(answer, f"POST {ENTITY_PATH}")

    def update_beteiligte(
        self, entity_id: str, data: Mapping[str, Any], *, version_number: int | None = None
    ) -> Record:
        """Partially update a record and return it in full.

        :param version_number: if given, sent as ``X-Version-Number``: the write only succeeds
            if the record still has that ``versionNumber``, else ``Conflict`` (reason
            ``modified``). After a lost answer, the record is re-read: if it already shows our
            values under a newer version, that is our own write and it is returned.
        """
        body = dict(data)
        if version_number is None:
            answer = self._call("PUT", RECORD_PATH, ids={"id": entity_id}, json_body=body)
            return self._object_answer(answer, f"PUT {RECORD_PATH}")

        def recover() -> Record | None:
            current = self.get_beteiligte(entity_id)
            if current.get("versionNumber") == version_number:
                return None  # first attempt did not land: repeat it
            if _matches(body, {k: current.get(k) for k in body}):
                return current
            raise Conflict(
                "EspoCRM: record changed while our update was in flight",
                status=409,
                reason="modified",
                request=f"PUT {RECORD_PATH}",
            )

        answer = self._call(
            "PUT",
            RECORD_PATH,
            ids={"id": entity_id},
            json_body=body,
            headers={"X-Version-Number": str(version_number)},
            idempotent=False,  # a repeat would hit 409 after our own first write landed
            recover=recover,
        )
        return self._object_answer(answer, f"PUT {RECORD_PATH}")

    def delete_beteiligte(self, entity_id: str) -> None:
        """Delete a record (tools and tests only; the sync never deletes in EspoCRM)."""
        self._call("DELETE", RECORD_PATH, ids={"id": entity_id})

    # -- stream --------------------------------------------------------------------------------

    def list_notes(self, entity_id: str, *, max_size: int = 50) -> list[Record]:
        """The newest stream notes of a record (newest first)."""
        params = {"maxSize": str(min(max_size, MAX_PAGE_SIZE)), "offset": "0"}
        page = self._page(
            self._call("GET", STREAM_PATH, ids={"id": entity_id}, params=params), STREAM_PATH
        )
        return list(page["list"])

    def post_note(self, entity_id: str, text: str) -> Record:
        """Post ``text`` to the record's stream (a Note of type ``Post``) and return the Note.

        After a lost answer the stream is checked: a Post with the same text is not posted twice.
        """
        body = {"type": "Post", "parentType": "CBeteiligte", "parentId": entity_id, "post": text}

        def recover() -> Record | None:
            for note in self.list_notes(entity_id):
                if note.get("type") == "Post" and note.get("post") == text:
                    return note
            return None

        answer = self._call("POST", NOTE_PATH, json_body=body, recover=recover)
        return self._object_answer(answer, f"POST {NOTE_PATH}")

    def check_connection(self) -> None:
        """Raise ``AuthFailed``/``ApiError`` unless the API answers a minimal list request."""
        self._call("GET", ENTITY_PATH, params={"maxSize": "1", "select": "id"})

    def test_connection(self) -> tuple[bool, str]:
        """Airflow UI "Test" button: try one minimal request."""
        try:
            self.check_connection()
        except (BadRequest, NotFound) as exc:
            return False, f"EspoCRM reachable but entity CBeteiligte not usable: {exc}"
        except Exception as exc:
            return False, self._redact(str(exc))
        return True, "EspoCRM connection works"
