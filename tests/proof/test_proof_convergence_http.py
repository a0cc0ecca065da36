"""Convergence and no lost data over real HTTP: the model of ``proof_machine.py`` run against
the sandbox servers through the Airflow hooks (engine -> hooks -> sandbox).

People's edits go through the sandbox admin API (``/_admin/edit``), faults through its fault
rules (500, hanging answers for timeouts, connection resets, 429, token expiry, dropped
answers of performed writes; see :func:`tests.proof.proof_world.sandbox_rule`); only a crash
between two writes is injected by the client proxy. The servers' clocks follow the engine's
clock jumps. The invariants are those of ``proof_machine.py``.

A few examples only (each step is real HTTP): well under a minute. Longer::

    HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest --timeout=0 \\
        tests/proof/test_proof_convergence_http.py

(``thorough``: 25 examples of up to 30 steps.)
"""

from __future__ import annotations

import os
from datetime import UTC

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from sandbox import advoware as sandbox_advoware
from sandbox import espocrm as sandbox_espocrm
from sandbox.server import Sandbox
from sandbox.testing import sandbox  # noqa: F401  (fixture)
from tests.integration.http_support import use_sandbox
from tests.proof.proof_machine import ConvergenceMachine
from tests.proof.proof_world import SANDBOX_EXTRA, Fault, OffsetClock, SandboxWorld

PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink)
PROFILES = {
    "default": settings(
        max_examples=6,
        stateful_step_count=15,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=PHASES,
    ),
    "thorough": settings(
        max_examples=25,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=PHASES,
    ),
}


def _servers_follow(clock: OffsetClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox stamps modifiedAt/geaendertAm from ``clock`` (jumps included)."""
    monkeypatch.setattr(
        sandbox_espocrm, "now_utc", lambda: clock().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    )
    monkeypatch.setattr(
        sandbox_advoware,
        "now_berlin",
        lambda: clock().astimezone(sandbox_advoware.BERLIN).strftime("%Y-%m-%dT%H:%M:%S"),
    )


class SandboxConvergence(ConvergenceMachine):
    """The model over the sandbox (the world is built per example by the test)."""

    max_entities = 3

    def __init__(self, world: SandboxWorld) -> None:
        self.make_world = lambda: world  # type: ignore[misc]  (the machine calls it once)
        super().__init__()

    def teardown(self) -> None:
        """The model's final checks, then the hooks' sessions are closed."""
        assert isinstance(self.world, SandboxWorld)
        try:
            super().teardown()
        finally:
            self.world.close()


def test_convergence_over_the_sandbox(
    sandbox: Sandbox,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_sandbox(monkeypatch, sandbox, **SANDBOX_EXTRA)
    clock = OffsetClock()
    _servers_follow(clock, monkeypatch)
    profile = PROFILES[os.environ.get("HYPOTHESIS_PROFILE", "default")]
    run_state_machine_as_test(
        lambda: SandboxConvergence(SandboxWorld(sandbox, clock)), settings=profile
    )


#: A fixed tour: (fault side, method, kind, times, skip, the person's edit before the run).
TOUR = [
    ("advoware", "update_beteiligte", "server_error", 2, 0, "espocrm_vorname"),
    ("advoware", "get_beteiligte", "timeout", 2, 0, "espocrm_vorname"),
    ("advoware", "create_kommunikation", "timeout", 1, 0, "espocrm_phone"),
    ("espocrm", "update_beteiligte", "rate_limited", 2, 0, "espocrm_vorname"),
    ("advoware", "get_beteiligte", "token_expiry", 1, 0, "advoware_titel"),
    ("espocrm", "get_beteiligte", "token_expiry", 2, 0, "espocrm_vorname"),
    ("advoware", "create_kommunikation", "lost_response", 1, 0, "espocrm_email"),
    ("advoware", "create_beteiligte", "lost_response", 1, 0, "espocrm_create"),
    ("advoware", "create_beteiligte", "timeout", 1, 0, "espocrm_create"),
    ("espocrm", "update_beteiligte", "lost_response", 1, 0, "advoware_phone"),
    ("advoware", "create_kommunikation", "crash", 1, 1, "espocrm_two_phones"),
    ("espocrm", "post_note", "server_error", 1, 0, "both_vorname"),
    ("espocrm", "update_beteiligte", "crash", 1, 1, "espocrm_vorname"),
]


def _edit(machine: SandboxConvergence, edit: str) -> None:
    """A person's edit on the first entity, as the model's rules make it."""
    if edit == "espocrm_vorname":
        machine.espocrm_stammdaten(0, "vorname")
    elif edit == "advoware_titel":
        machine.advoware_stammdaten(0, "titel")
    elif edit == "espocrm_phone":
        machine.espocrm_add_kommunikation(0, "Office")
    elif edit == "espocrm_email":
        machine.espocrm_add_kommunikation(0, "email")
    elif edit == "espocrm_two_phones":
        machine.espocrm_add_kommunikation(0, "Mobile")
        machine.espocrm_add_kommunikation(0, "Home")
    elif edit == "advoware_phone":
        machine.advoware_add_kommunikation(0, 1, False)
    elif edit == "espocrm_create":
        machine.espocrm_create(["Office"])
    elif edit == "both_vorname":  # a conflict: the Note keeps the overwritten value
        machine.espocrm_stammdaten(0, "vorname")
        machine.advoware_stammdaten(0, "vorname")
    else:
        raise ValueError(edit)


def _check(machine: SandboxConvergence) -> None:
    machine.statuses_in_the_machine()
    machine.no_duplicate_kommunikation()
    machine.nothing_typed_is_lost()


def test_every_fault_kind_over_http_then_convergence(
    sandbox: Sandbox,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each fault kind once, deterministically, on a call the run makes; then the model's
    final checks (at most three runs converge, nothing lost, a further run writes nothing)."""
    use_sandbox(monkeypatch, sandbox, **SANDBOX_EXTRA)
    clock = OffsetClock()
    _servers_follow(clock, monkeypatch)
    world = SandboxWorld(sandbox, clock)
    machine = SandboxConvergence(world)
    machine.max_entities = 4  # room for the two creates of the tour
    machine.two_entities(["email", "Office"], ["Mobile"])
    for side, method, kind, times, skip, edit in TOUR:
        machine.clock_jump(60 * 25)  # past any backoff: the entity is a candidate again
        world.arm(Fault(side, method, kind, skip, times))
        machine.faults_armed = True
        _edit(machine, edit)
        proxy = world.espocrm_proxy if side == "espocrm" else world.advoware_proxy
        fired_before = proxy.fired
        machine.scheduled_run(direction="both")
        _check(machine)
        admin = sandbox.espocrm_admin if side == "espocrm" else sandbox.advoware_admin
        fired = proxy.fired - fired_before + sum(r["fired"] for r in admin.faults()["rules"])
        assert fired >= 1, (side, method, kind, machine.log)
        world.clear_faults()
    machine.split_run(direction="both", edit="espocrm", field="titel", k=0, overlap=True)
    _check(machine)
    machine.teardown()
