"""Terminal output of the CLI: rich tables for people, JSON for scripts.

The views in :mod:`include.cli.views` are already masked; this module only lays them out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def print_json(console: Console, data: Any) -> None:
    """One JSON document on stdout (no colours, no wrapping: scripts parse it)."""
    console.file.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _cell(value: Any) -> Text:
    if value is None or value == "":
        return Text("-", style="dim")
    return Text(str(value))


def _same(value: bool) -> Text:
    return Text("=", style="green") if value else Text("≠", style="bold red")


def show_compare(console: Console, view: Mapping[str, Any]) -> None:
    """Both records side by side, Kommunikation, differences, plan and bookkeeping."""
    head = f"CBeteiligte {view['entity_id']}  betnr {view['betnr'] or '-'}  ({view['kind']})"
    console.rule(head)
    if view["advoware_note"]:
        console.print(f"[yellow]{view['advoware_note']}[/]")
    fields = Table(title="Fields", title_justify="left")
    for column in ("field", "EspoCRM", "Advoware", ""):
        fields.add_column(column, overflow="fold")
    for row in view["fields"]:
        fields.add_row(
            row["field"], _cell(row["espocrm"]), _cell(row["advoware"]), _same(row["same"])
        )
    console.print(fields)
    console.print(_kommunikation_table(view["kommunikation"]))
    if view["differences"]:
        console.print("[bold red]Differences[/]")
        for line in view["differences"]:
            console.print(f"  {line}", markup=False)
    else:
        console.print("[green]Both sides hold the same data.[/]" if view["in_sync"] else "")
    plan = view["plan"]
    console.print("[bold]What the engine would do now[/]")
    if plan.get("skip"):
        console.print(f"  [yellow]the normal run skips it now: {plan['skip']}[/]")
    console.print(plan["text"], markup=False)
    console.print(_bookkeeping_table(view["bookkeeping"]))


def _kommunikation_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="Kommunikation (matched by marker)", title_justify="left")
    for column in ("komm id", "kind", "marker", "Advoware tlf", "marker value", "EspoCRM", "state"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            _cell(row["komm_id"]),
            _cell(row["kind"]),
            _cell(row["marker"]),
            _cell(row["advoware"]),
            _cell(row["marker_value"]),
            _cell(row["espocrm"]),
            _cell(row["state"]),
        )
    if not rows:
        table.add_row("-", "-", "-", "-", "-", "-", "none on either side")
    return table


def _bookkeeping_table(values: Mapping[str, Any]) -> Table:
    table = Table(title="Sync bookkeeping", title_justify="left", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    for name, value in values.items():
        table.add_row(name, _cell(value))
    return table


def show_status(console: Console, view: Mapping[str, Any]) -> None:
    """Counts per status and the lists operators act on."""
    counts = Table(title=f"CBeteiligte per syncStatus ({view['total']} in all)")
    counts.add_column("syncStatus")
    counts.add_column("entities", justify="right")
    for name, n in view["counts"].items():
        counts.add_row(name, str(n))
    console.print(counts)
    threshold = view["high_retry_threshold"]
    console.print(
        _entity_table(
            f"High retry counts (syncRetryCount >= {threshold}): {view['high_retry_count']}",
            view["high_retry"],
            ("id", "betnr", "syncStatus", "syncRetryCount", "syncNextRetry", "syncErrorMessage"),
        )
    )
    console.print(
        _entity_table(
            "Permanently failed (auto-reset time, last error)",
            view["permanently_failed"],
            ("id", "betnr", "syncRetryCount", "syncAutoResetAt", "syncErrorMessage"),
        )
    )
    oldest = view["oldest_clean"]
    if oldest:
        console.print(
            f"Oldest unchecked clean entity: {oldest['id']} (betnr {oldest['betnr'] or '-'}), "
            f"last sync {oldest['advowareLastSync'] or 'never'}"
        )
    else:
        console.print("No clean entities.")
    for warning in view["warnings"]:
        console.print(f"[bold red]WARNING:[/] {warning}")


def _entity_table(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    if not rows:
        table.add_row(*(["-"] * (len(columns) - 1)), "none")
    return table


def show_result(console: Console, result: Mapping[str, Any]) -> None:
    """The result of ``sync`` for one entity, with its (masked) plan."""
    style = "red" if result.get("error") else "green"
    console.print(
        f"[{style}]{result['entity_id']}: {result['outcome']}[/]"
        f"  status {result.get('status') or '-'}  betnr {result.get('betnr') or '-'}"
        f"  ops applied {result.get('ops_applied', 0)}"
    )
    if result.get("error"):
        console.print(f"  error: {result['error']}", markup=False)
    if result.get("plan_text"):
        console.print(result["plan_text"], markup=False)


def show_reset(console: Console, result: Mapping[str, Any]) -> None:
    """The result of ``reset``."""
    console.print(
        f"[green]{result['entity_id']}: {result['previous_status']} -> {result['status']}[/]"
        f" (retry count {result['syncRetryCount']}); the next scheduled run retries it."
    )


def show_error(console: Console, message: str) -> None:
    """An error line on stderr's console."""
    console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
