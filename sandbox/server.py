"""Start both stand-ins together: ``with Sandbox(scenario=...) as sb: ...``.

``sb.espocrm_url`` is the EspoCRM base URL without ``/api/v1``; ``sb.advoware_url`` is the
Advoware API base URL, which is also its security gateway (``/api/v1/Token``) and its
configurator (``/AdvonetConfigurator/api/Url?Kanzlei=...``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from sandbox import limits
from sandbox.admin import SandboxAdmin
from sandbox.advoware import AdvowareServer
from sandbox.espocrm import EspoCrmServer

Scenario = dict[str, Any]


@dataclass(frozen=True)
class SandboxCredentials:
    """The (obviously fake) credentials both stand-ins accept."""

    espocrm_api_key: str = "sandbox-espocrm-key"
    app_id: str = "sandbox-app-id"
    api_key: str = base64.b64encode(b"sandbox-advoware-hmac-key").decode("ascii")
    user: str = "SANDBOX"
    password: str = "sandbox-password"
    kanzlei: str = "SANDBOX-KANZLEI"
    database: str = "SANDBOX-DB"
    role: int = 2
    product: int = 64


def load_scenario_file(scenario: Scenario | str | Path | None) -> Scenario | None:
    """Accept a scenario as dict, JSON file path or ``None``."""
    if scenario is None or isinstance(scenario, dict):
        return scenario
    data = json.loads(Path(scenario).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("a scenario file must hold a JSON object")
    return data


class Sandbox:
    """Both stand-in servers on 127.0.0.1, started on ``__enter__``/``start()``."""

    def __init__(
        self,
        scenario: Scenario | str | Path | None = None,
        *,
        token_lifetime: float = limits.ADVOWARE_DEFAULT_TOKEN_LIFETIME_SECONDS,
        latency_ms: int = 0,
        seed: int = 0,
        espocrm_port: int = 0,
        advoware_port: int = 0,
        credentials: SandboxCredentials | None = None,
        host: str = "127.0.0.1",
        search: bool = False,
        count_total: bool = False,
    ) -> None:
        self.credentials = credentials or SandboxCredentials()
        self.espocrm = EspoCrmServer(
            host, espocrm_port, api_key=self.credentials.espocrm_api_key, seed=seed
        )
        self.advoware = AdvowareServer(
            host,
            advoware_port,
            credentials=self.credentials,
            token_lifetime=token_lifetime,
            seed=seed,
        )
        for server in (self.espocrm, self.advoware):
            server.latency_ms = latency_ms
        self.espocrm.count_total = count_total
        self.advoware.set_search(search)
        data = load_scenario_file(scenario)
        if data is not None:
            self.load(data)
        self.espocrm_admin = SandboxAdmin(self.espocrm.url)
        self.advoware_admin = SandboxAdmin(self.advoware.url)
        self._started = False

    @property
    def espocrm_url(self) -> str:
        """EspoCRM base URL (without ``/api/v1``)."""
        return self.espocrm.url

    @property
    def advoware_url(self) -> str:
        """Advoware API base URL (also security gateway and configurator)."""
        return self.advoware.url

    def load(self, scenario: Scenario) -> None:
        """Load a scenario into both servers directly (no HTTP)."""
        for server in (self.espocrm, self.advoware):
            with server.lock:
                server.load_scenario(scenario)

    def start(self) -> Sandbox:
        """Start serving (idempotent)."""
        if not self._started:
            self.espocrm.start()
            self.advoware.start()
            self._started = True
        return self

    def stop(self) -> None:
        """Stop both servers and close the admin clients."""
        # Also when never started: the ports are bound in the constructor.
        self.espocrm.stop()
        self.advoware.stop()
        self._started = False
        self.espocrm_admin.close()
        self.advoware_admin.close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def airflow_conn_env(self) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` variables (Airflow JSON connection format) for both servers."""
        creds = self.credentials
        espocrm = {
            "conn_type": "espocrm",
            "host": self.espocrm_url,
            "password": creds.espocrm_api_key,
        }
        advoware = {
            "conn_type": "advoware",
            "host": self.advoware_url,
            "login": creds.user,
            "password": creds.password,
            "extra": {
                "app_id": creds.app_id,
                "api_key": creds.api_key,
                "kanzlei": creds.kanzlei,
                "database": creds.database,
                "role": creds.role,
                "product": creds.product,
                "security_gateway": self.advoware_url,
            },
        }
        return {
            "AIRFLOW_CONN_ESPOCRM_DEFAULT": json.dumps(espocrm),
            "AIRFLOW_CONN_ADVOWARE_DEFAULT": json.dumps(advoware),
        }
