"""Convergence and no lost data, in memory: the model of ``proof_machine.py`` over the fakes.

Hundreds of random sequences of person edits on both sides, sync runs (whole, or split into
sync and validate with an overlapping second run and a person editing a locked entity), injected
faults (5xx, timeouts, 429, refused token renewal, lost responses, crashes between two writes)
and clock jumps. The invariants are listed in ``proof_machine.py``.

The normal run keeps this well under a minute. For a longer local run::

    HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest --timeout=0 \\
        tests/proof/test_proof_convergence.py

(``thorough``: 2,000 examples of up to 60 steps; ``PROOF_EXAMPLES=<n>`` sets the number of
examples of either profile, e.g. ``PROOF_EXAMPLES=1000``; ``HYPOTHESIS_SEED=<n>`` pins a
sequence.)
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

from tests.proof.proof_machine import ConvergenceMachine
from tests.proof.proof_world import FakeWorld

#: No "explain" phase: its tracing makes a failing case many times slower to report.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)
PROFILES = {
    "default": settings(
        max_examples=200,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        phases=PHASES,
    ),
    "thorough": settings(
        max_examples=2000,
        stateful_step_count=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        phases=PHASES,
    ),
}


class InMemoryConvergence(ConvergenceMachine):
    """The model over the in-memory fakes."""

    make_world = FakeWorld


TestInMemoryConvergence = InMemoryConvergence.TestCase
TestInMemoryConvergence.settings = PROFILES[os.environ.get("HYPOTHESIS_PROFILE", "default")]
if os.environ.get("PROOF_EXAMPLES"):
    TestInMemoryConvergence.settings = settings(
        TestInMemoryConvergence.settings, max_examples=int(os.environ["PROOF_EXAMPLES"])
    )
