"""``make demo``: the sync end to end on the local sandbox, with a readable result.

1. Starts the sandbox APIs with ``sandbox/scenarios/demo.json``.
2. Runs ``beteiligte_sync`` once through Airflow (``airflow dags test``: the real DAG, tasks,
   hooks, connections and metadata DB, in one process) and shows both systems.
3. Edits both systems as a person would (a change in EspoCRM, a change in Advoware, the same
   party changed on both sides, a name too long for Advoware typed into EspoCRM) and runs the
   sync again.

Sample data only: the sandbox holds invented parties, so names are shown in full here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sandbox.server import Sandbox

PROJECT_DIR = Path(__file__).resolve().parents[2]
SCENARIO = PROJECT_DIR / "sandbox" / "scenarios" / "demo.json"
console = Console(width=130)


def run_sync(env: dict[str, str], label: str) -> str:
    """Run the DAG once via ``airflow dags test``; return the report block from its log."""
    airflow_home = Path(env["AIRFLOW_HOME"])
    log_path = airflow_home / f"demo-{label}.log"
    airflow = str(Path(sys.executable).with_name("airflow"))
    console.print(f"[bold]Running beteiligte_sync ({label}) ...[/] full log: {log_path}")
    with log_path.open("w") as log:
        result = subprocess.run(
            [airflow, "dags", "test", "beteiligte_sync"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_DIR, check=False,
        )  # fmt: skip
    text = log_path.read_text(errors="replace")
    if result.returncode != 0:
        console.print(text[-5000:])
        raise SystemExit(f"airflow dags test failed (exit {result.returncode}), see {log_path}")
    return extract_report(text)


#: A log line after the report table (the task runner's own lines).
_REPORT_END = r"Done\. Returned value|\b(INFO|WARNING|ERROR)\b.*(Task|Marking)"


def extract_report(log_text: str) -> str:
    """The report table the ``report`` task logged (last one in the log)."""
    lines = log_text.splitlines()
    starts = [i for i, line in enumerate(lines) if "Beteiligte sync report:" in line]
    if not starts:
        return "(no report found in the log)"
    block: list[str] = []
    for line in lines[starts[-1] :]:
        if block and re.search(_REPORT_END, line):
            break
        line = re.sub(r"^.*?(Beteiligte sync report:)", r"\1", line)
        block.append(re.sub(r"\s+loc=\S+$", "", line))
    return "\n".join(block).strip()


def show_state(sb: Sandbox, title: str) -> None:
    """Both systems side by side, one row per EspoCRM party."""
    espo = sb.espocrm_admin.state()["CBeteiligte"]
    advo = {p["betNr"]: p for p in sb.advoware_admin.state()["Beteiligte"]}
    table = Table(title=title, show_lines=False)
    for column in (
        "EspoCRM id",
        "EspoCRM name",
        "betnr",
        "Advoware name",
        "status",
        "komm E/A",
        "error",
    ):
        table.add_column(column, overflow="fold")
    for record in sorted(espo, key=lambda r: r.get("name") or ""):
        party = advo.get(record.get("betnr"))
        komm_espo = len(record.get("phoneNumberData") or []) + len(
            record.get("emailAddressData") or []
        )
        komm_advo = sum(
            1 for k in (party or {}).get("kommunikation", []) if (k.get("tlf") or "").strip()
        )
        table.add_row(
            record["id"],
            _full_name(record.get("vorname"), record.get("name")),
            str(record.get("betnr") or "-"),
            _full_name((party or {}).get("vorname"), (party or {}).get("name")) if party else "-",
            str(record.get("syncStatus")),
            f"{komm_espo}/{komm_advo}",
            (record.get("syncErrorMessage") or "")[:60],
        )
    console.print(table)


def _full_name(vorname: Any, name: Any) -> str:
    return " ".join(str(part) for part in (vorname, name) if part)


def edit_as_people_would(sb: Sandbox) -> None:
    """Changes made by staff in both systems between two runs."""
    espo = sorted(sb.espocrm_admin.state()["CBeteiligte"], key=lambda r: r["id"])
    linked = [r for r in espo if r.get("betnr") and r.get("syncStatus") == "clean"]
    persons = [r for r in linked if not r.get("rechtsform")]
    companies = [r for r in linked if r.get("rechtsform")]
    if len(persons) < 3 or not companies:
        console.print("[yellow]Not enough clean linked parties for the edit round.[/]")
        return
    a, b, d = persons[:3]
    c = companies[0]
    sb.espocrm_admin.edit({"id": a["id"], "fields": {"titel": "Dr."}})
    console.print(f"EspoCRM: {a['id']} got the title 'Dr.'")
    sb.advoware_admin.edit({"betNr": b["betnr"], "fields": {"vorname": "Annegret"}})
    console.print(f"Advoware: {b['betnr']} got a new first name")
    sb.espocrm_admin.edit({"id": c["id"], "fields": {"registergericht": "Amtsgericht Köln"}})
    sb.advoware_admin.edit({"betNr": c["betnr"], "fields": {"registergericht": "Amtsgericht Bonn"}})
    console.print(f"Both: {c['id']} / {c['betnr']} changed on both sides (conflict: EspoCRM wins)")
    long_name = ("Rechtsanwaltsgesellschaft " + "Mustermann, Musterfrau und Partner " * 2).strip()
    sb.espocrm_admin.edit({"id": d["id"], "fields": {"name": long_name}})
    console.print(
        f"EspoCRM: {d['id']} got a name of {len(long_name)} characters (Advoware holds 80: "
        "the party fails with a readable message and is retried with backoff)"
    )


def main() -> None:
    airflow_home = os.environ.get("AIRFLOW_HOME", str(PROJECT_DIR / "airflow_home"))
    with Sandbox(scenario=SCENARIO) as sb:
        env = {**os.environ, **sb.airflow_conn_env(), "AIRFLOW_HOME": airflow_home}
        console.rule("Before the first run")
        show_state(sb, "Sandbox before syncing")
        report = run_sync(env, "run-1")
        console.print(report)
        show_state(sb, "After run 1")
        console.rule("People edit both systems")
        edit_as_people_would(sb)
        report = run_sync(env, "run-2")
        console.print(report)
        show_state(sb, "After run 2")
        notes = sb.espocrm_admin.state().get("Note", [])
        console.print(
            f"Stream notes written to EspoCRM (conflicts, overwritten values): {len(notes)}"
        )
        calls = sb.advoware_admin.counters()
        console.print(f"Advoware API: max {calls.get('max_concurrent')} concurrent requests")


if __name__ == "__main__":
    main()
