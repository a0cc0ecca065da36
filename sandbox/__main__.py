"""``python -m sandbox --espocrm-port 8081 --advoware-port 8082 --scenario FILE``.

Runs both stand-ins in the foreground until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from sandbox import limits
from sandbox.server import Sandbox


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox", description="Local stand-ins of EspoCRM and Advoware."
    )
    parser.add_argument("--espocrm-port", type=int, default=8081)
    parser.add_argument("--advoware-port", type=int, default=8082)
    parser.add_argument("--scenario", help="scenario JSON file to load at start")
    parser.add_argument(
        "--token-lifetime", type=float, default=limits.ADVOWARE_DEFAULT_TOKEN_LIFETIME_SECONDS
    )
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--search",
        action="store_true",
        help="offer Advoware's unconfirmed GET /Beteiligte?name= search (default: 405)",
    )
    parser.add_argument(
        "--count-total",
        action="store_true",
        help="EspoCRM list total as a real count (default: -1/-2, page until a short page)",
    )
    parser.add_argument(
        "--print-conn-env", action="store_true", help="print AIRFLOW_CONN_* lines and go on"
    )
    parser.add_argument("--debug", action="store_true", help="log one line per request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Start the sandbox and block until a signal arrives."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO)
    sandbox = Sandbox(
        args.scenario,
        espocrm_port=args.espocrm_port,
        advoware_port=args.advoware_port,
        token_lifetime=args.token_lifetime,
        latency_ms=args.latency_ms,
        seed=args.seed,
        search=args.search,
        count_total=args.count_total,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with sandbox:
        _print_banner(sandbox, args.print_conn_env)
        while not stop.wait(0.5):
            pass
    print("sandbox stopped", flush=True)
    return 0


def _print_banner(sandbox: Sandbox, conn_env: bool) -> None:
    print(f"EspoCRM  sandbox: {sandbox.espocrm_url}/api/v1   admin: {sandbox.espocrm_url}/_admin/")
    print(
        f"Advoware sandbox: {sandbox.advoware_url}/api/v1   admin: {sandbox.advoware_url}/_admin/"
    )
    print("Fake credentials: sandbox.server.SandboxCredentials (or --print-conn-env)")
    if conn_env:
        for key, value in sandbox.airflow_conn_env().items():
            print(f"{key}='{value}'")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
