"""``beteiligte``: look at and repair single parties, outside Airflow, with the same engine.

For the person who gets the call "my phone number is wrong in Advoware"::

    beteiligte compare 104860          # both records side by side, the plan, the bookkeeping
    beteiligte sync <id> --dry-run     # what a sync would do now
    beteiligte sync <id>               # do it (lock, apply, validate), exactly like a DAG run
    beteiligte reset <id>              # a permanently failed party back into the queue
    beteiligte status                  # counts per syncStatus, what is stuck

Connections are Airflow's (``espocrm_default``, ``advoware_default``): from ``AIRFLOW_CONN_*``
environment variables, a configured secrets backend, or the Airflow metadata DB. Personal values
are masked unless ``--show-values`` is given. Exit codes: see :class:`ExitCode`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from include.beteiligte_sync import sync as engine
from include.beteiligte_sync.errors import ApiError, AuthFailed
from include.beteiligte_sync.monitoring import (
    monitoring_settings_from_env,
    sync_settings_from_env,
)
from include.beteiligte_sync.planner import DIRECTIONS
from include.beteiligte_sync.status import Outcome, TransitionError
from include.cli import output, views

if TYPE_CHECKING:
    from hooks.advoware import AdvowareHook
    from hooks.espocrm import EspoCrmHook


class ExitCode(IntEnum):
    """Exit codes of every command (scripts branch on these)."""

    OK = 0  #: done; compare: both sides equal; status: no threshold exceeded
    ATTENTION = 1  #: compare: they differ; sync: not clean; status: threshold; reset: refused
    USAGE = 2  #: wrong arguments (typer's own code)
    NOT_FOUND = 3  #: no CBeteiligte with that id or betnr
    UNAVAILABLE = 4  #: a connection is missing or an API cannot be reached or refuses us


#: Outcomes of ``sync`` that end with exit code 0.
_GOOD_OUTCOMES = {
    Outcome.CLEAN.value,
    Outcome.NO_CHANGE.value,
    Outcome.CREATED.value,
    Outcome.ESPOCRM_NEWER.value,
    Outcome.ADVOWARE_NEWER.value,
    Outcome.MERGED.value,
    Outcome.CONFLICT.value,
    Outcome.DRY_RUN.value,
}

app = typer.Typer(
    name="beteiligte",
    help="Inspect and repair the Beteiligte sync (EspoCRM <-> Advoware) for single parties.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ShowValuesOption = Annotated[
    bool,
    typer.Option(
        "--show-values",
        help="Show personal values (names, numbers, addresses). Masked by default.",
    ),
]
EntityArg = Annotated[str, typer.Argument(help="EspoCRM entity id, or Advoware betnr (digits).")]


@dataclass
class Context:
    """What the global options chose; hooks are built on first use."""

    espocrm_conn_id: str = "espocrm_default"
    advoware_conn_id: str = "advoware_default"
    _espocrm: EspoCrmHook | None = field(default=None, repr=False)
    _advoware: AdvowareHook | None = field(default=None, repr=False)

    @property
    def espocrm(self) -> EspoCrmHook:
        """The EspoCRM hook of the chosen connection."""
        if self._espocrm is None:
            _allow_metadata_db_connections()
            from hooks.espocrm import EspoCrmHook

            self._espocrm = EspoCrmHook(self.espocrm_conn_id)
        return self._espocrm

    @property
    def advoware(self) -> AdvowareHook:
        """The Advoware hook of the chosen connection."""
        if self._advoware is None:
            _allow_metadata_db_connections()
            from hooks.advoware import AdvowareHook

            self._advoware = AdvowareHook(self.advoware_conn_id)
        return self._advoware

    def api_calls(self) -> dict[str, int]:
        """API calls made so far per system."""
        calls = {}
        if self._espocrm is not None:
            calls["espocrm"] = self._espocrm.stats.total_calls
        if self._advoware is not None:
            calls["advoware"] = self._advoware.stats.total_calls
        return calls


def _allow_metadata_db_connections() -> None:
    """Outside a task, Airflow's SDK looks connections up in environment variables and external
    secrets backends only; on the Airflow host the CLI may also read the metadata DB, like the
    API server does. An explicit setting of the variable wins."""
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
    _route_airflow_logs()


class _CurrentStderr:
    """A text stream that writes to whatever ``sys.stderr`` is at the time."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


_airflow_logs_routed = False


def _route_airflow_logs() -> None:
    """Airflow's structured logs (the hooks' own lines) go to stdout by default, where they
    would break ``--json``: send them to stderr, at the level ``--verbose`` chose."""
    global _airflow_logs_routed
    if _airflow_logs_routed:
        return
    from airflow.sdk.log import configure_logging

    level = logging.getLogger(_LOGGERS[0]).getEffectiveLevel()
    configure_logging(
        log_level=logging.getLevelName(level),
        output=_CurrentStderr(),  # type: ignore[arg-type]
        colored_console_log=False,
    )
    _airflow_logs_routed = True
    _configure_logging(level <= logging.INFO)  # configure_logging reset the stdlib loggers


#: Loggers of the engine and the hooks; the CLI owns their output (ids and counts only).
_LOGGERS = ("beteiligte_sync", "include", "hooks", "airflow.task.hooks")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always the current sys.stderr


def _configure_logging(verbose: bool) -> None:
    """Engine and hook logs to stderr: warnings only, or every step with ``--verbose``."""
    handler = _StderrHandler()
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO if verbose else logging.WARNING)


def _now() -> datetime:
    return datetime.now(UTC)


def _consoles() -> tuple[Console, Console]:
    return Console(), Console(stderr=True, soft_wrap=True)


@app.callback()
def main(
    ctx: typer.Context,
    espocrm_conn_id: Annotated[
        str,
        typer.Option(envvar="BETEILIGTE_ESPOCRM_CONN_ID", help="Airflow connection of EspoCRM."),
    ] = "espocrm_default",
    advoware_conn_id: Annotated[
        str,
        typer.Option(envvar="BETEILIGTE_ADVOWARE_CONN_ID", help="Airflow connection of Advoware."),
    ] = "advoware_default",
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log the engine's steps to stderr.")
    ] = False,
) -> None:
    """Inspect and repair the Beteiligte sync for single parties."""
    _configure_logging(verbose)
    ctx.obj = Context(espocrm_conn_id, advoware_conn_id)


@contextmanager
def _errors_to_exit_codes(err: Console) -> Iterator[None]:
    """Operator-readable errors with the documented exit codes (no tracebacks, no values)."""
    try:
        yield
    except views.EntityNotFound as exc:
        output.show_error(err, str(exc))
        raise typer.Exit(ExitCode.NOT_FOUND) from None
    except AuthFailed as exc:
        output.show_error(err, exc.args[0] if exc.args else "authentication failed")
        raise typer.Exit(ExitCode.UNAVAILABLE) from None
    except ApiError as exc:
        output.show_error(err, engine.describe_error(exc))
        raise typer.Exit(ExitCode.UNAVAILABLE) from None
    except Exception as exc:
        if type(exc).__name__ in ("AirflowNotFoundException", "ConnectionNotFound"):
            output.show_error(err, f"connection not configured: {exc}")
            raise typer.Exit(ExitCode.UNAVAILABLE) from None
        if isinstance(exc, OSError | ValueError) and not isinstance(exc, TransitionError):
            output.show_error(err, f"{type(exc).__name__}: {exc}")
            raise typer.Exit(ExitCode.UNAVAILABLE) from None
        raise


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise typer.BadParameter(f"must be one of {', '.join(DIRECTIONS)}", param_hint="direction")


@app.command(short_help="Both sides, differences, the plan now, the bookkeeping.")
def compare(
    ctx: typer.Context,
    entity: EntityArg,
    direction: Annotated[str, typer.Option(help="both, to_advoware or to_espocrm.")] = "both",
    force: Annotated[bool, typer.Option(help="Plan as a forced run (ignore backoff).")] = False,
    json_output: JsonOption = False,
    show_values: ShowValuesOption = False,
) -> None:
    """Both records side by side, the Kommunikationen matched by marker, what differs, the plan
    the engine would make now (dry run) and the sync bookkeeping. Exit 0 = equal, 1 = differ."""
    _check_direction(direction)
    state: Context = ctx.obj
    out, err = _consoles()
    with _errors_to_exit_codes(err):
        view = views.compare_view(
            state.espocrm,
            state.advoware,
            entity,
            now=_now(),
            settings=sync_settings_from_env(),
            direction=direction,
            force=force,
            show_values=show_values,
        )
    view["api_calls"] = state.api_calls()
    if json_output:
        output.print_json(out, view)
    else:
        output.show_compare(out, view)
    raise typer.Exit(ExitCode.OK if view["in_sync"] else ExitCode.ATTENTION)


@app.command(short_help="Counts per syncStatus; what is stuck.")
def status(
    ctx: typer.Context,
    json_output: JsonOption = False,
    show_values: ShowValuesOption = False,
) -> None:
    """Counts per syncStatus, entities with high retry counts, the permanently failed with their
    reset times and last errors, the oldest unchecked clean entity. Exit 1 above a threshold."""
    state: Context = ctx.obj
    out, err = _consoles()
    with _errors_to_exit_codes(err):
        view = views.status_view(
            state.espocrm,
            settings=sync_settings_from_env(),
            monitoring=monitoring_settings_from_env(),
            show_values=show_values,
        )
    if json_output:
        output.print_json(out, view)
    else:
        output.show_status(out, view)
    raise typer.Exit(ExitCode.ATTENTION if view["warnings"] else ExitCode.OK)


@app.command(short_help="Sync one entity now (same engine as the DAG).")
def sync(
    ctx: typer.Context,
    entity: EntityArg,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only, write nothing.")] = False,
    direction: Annotated[str, typer.Option(help="both, to_advoware or to_espocrm.")] = "both",
    force: Annotated[bool, typer.Option(help="Ignore the retry backoff (syncNextRetry).")] = False,
    json_output: JsonOption = False,
    show_values: ShowValuesOption = False,
) -> None:
    """Sync one entity now, outside Airflow, with the same engine (lock, apply, validate).
    Exit 0 = synced or planned, 1 = it did not end clean (see the error)."""
    _check_direction(direction)
    state: Context = ctx.obj
    out, err = _consoles()
    with _errors_to_exit_codes(err):
        record = views.find_entity(state.espocrm, entity)
        result = engine.sync_entity(
            record,
            state.espocrm,
            state.advoware,
            direction=direction,
            force=force,
            dry_run=dry_run,
            clock=_now,
            settings=sync_settings_from_env(),
            validate_inline=True,
        )
    data = views.result_dict(result, show_values)
    data["api_calls"] = state.api_calls()
    if json_output:
        output.print_json(out, data)
    else:
        output.show_result(out, data)
    good = result.outcome in _GOOD_OUTCOMES and not result.error
    raise typer.Exit(ExitCode.OK if good else ExitCode.ATTENTION)


@app.command(short_help="Put a permanently failed entity back in the queue.")
def reset(
    ctx: typer.Context,
    entity: EntityArg,
    json_output: JsonOption = False,
) -> None:
    """Put a permanently failed entity back in the queue (status failed, retry count 0, no
    backoff); the next scheduled run retries it. Exit 1 if it is not permanently failed."""
    state: Context = ctx.obj
    out, err = _consoles()
    with _errors_to_exit_codes(err):
        record = views.find_entity(state.espocrm, entity)
        try:
            data: dict[str, Any] = views.reset_entity(state.espocrm, record)
        except TransitionError:
            message = (
                f"{record['id']} is {record.get('syncStatus') or 'without status'}, not "
                "permanently_failed; to retry it now use: beteiligte sync --force "
                f"{record['id']}"
            )
            if json_output:
                output.print_json(out, {"entity_id": record["id"], "error": message})
            output.show_error(err, message)
            raise typer.Exit(ExitCode.ATTENTION) from None
    if json_output:
        output.print_json(out, data)
    else:
        output.show_reset(out, data)


@app.command(short_help="Link an entity to an Advoware party, or allow a new create.")
def link(
    ctx: typer.Context,
    entity: EntityArg,
    betnr: Annotated[
        int | None, typer.Option(help="The Advoware betNr of the party this entity is.")
    ] = None,
    create: Annotated[
        bool, typer.Option("--create", help="No such party exists: let the next run create it.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Resolve an entity without betnr, typically one whose create in Advoware was interrupted
    (its syncErrorMessage says so): --betnr N links it to the party you found in Advoware;
    --create, after you checked there is none, lets the next run create it."""
    state: Context = ctx.obj
    out, err = _consoles()
    if (betnr is None) == (not create):
        output.show_error(err, "give exactly one of --betnr N or --create")
        raise typer.Exit(ExitCode.USAGE)
    with _errors_to_exit_codes(err):
        record = views.find_entity(state.espocrm, entity)
        try:
            data = views.link_entity(state.espocrm, state.advoware, record, betnr)
        except TransitionError as exc:
            output.show_error(err, f"{record['id']}: {exc}")
            raise typer.Exit(ExitCode.ATTENTION) from None
    if json_output:
        output.print_json(out, data)
    else:
        out.print(
            f"{data['entity_id']}: status {data['status']}, betnr {data['betnr'] or '-'}; "
            "the next run syncs it"
        )


def run() -> None:
    """Console-script entry point (``beteiligte``)."""
    app()
