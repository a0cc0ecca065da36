"""Provider metadata: registers the "EspoCRM" and "Advoware" connection types in Airflow.

Airflow finds it through the entry point ``apache_airflow_provider`` (declared in
``pyproject.toml``: ``provider_info = "hooks.provider_info:get_provider_info"``), once the
project is installed (``pip install -e .``). The connection forms are declared here
(``conn-fields`` and ``ui-field-behaviour``, the Airflow 3.2+ way), so the UI shows labelled
fields without importing the hooks. This module must stay import-light: no Airflow imports.
"""

from __future__ import annotations

from typing import Any

_HTTP_FIELDS: dict[str, dict[str, Any]] = {
    "verify": {
        "label": "Verify TLS certificates",
        "description": "Turn off only for a test server with a self-signed certificate.",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "connect_timeout": {
        "label": "Connect timeout (s)",
        "description": "Seconds to establish a connection (default 5).",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "read_timeout": {
        "label": "Read timeout (s)",
        "description": "Seconds to wait for an answer (default 30).",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
    "retry_attempts": {
        "label": "Retry attempts",
        "description": "Attempts per request, the first included (default 5).",
        "schema": {"type": ["integer", "null"], "minimum": 1},
    },
    "retry_max_seconds": {
        "label": "Retry time budget (s)",
        "description": "Longest total time per request including waits (default 120).",
        "schema": {"type": ["number", "null"], "minimum": 0},
    },
}

_ADVOWARE_FIELDS: dict[str, dict[str, Any]] = {
    "app_id": {
        "label": "App ID",
        "description": "Application id issued by Advoware for this integration.",
        "schema": {"type": ["string", "null"]},
    },
    "api_key": {
        "label": "API key (base64)",
        "description": "Key for the HMAC-SHA512 signature of token requests.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "kanzlei": {
        "label": "Kanzlei",
        "description": "The law firm's Advoware tenant id.",
        "schema": {"type": ["string", "null"]},
    },
    "database": {
        "label": "Database",
        "description": "Advoware database name.",
        "schema": {"type": ["string", "null"]},
    },
    "role": {
        "label": "Role",
        "description": "Advoware role of the user (default 2).",
        "schema": {"type": ["integer", "null"], "default": 2},
    },
    "product": {
        "label": "Product",
        "description": "Advoware product id (default 64).",
        "schema": {"type": ["integer", "null"], "default": 64},
    },
    "security_gateway": {
        "label": "Security gateway URL",
        "description": "Base URL of the token endpoint (default: the host).",
        "schema": {"type": ["string", "null"]},
    },
    "configurator_url": {
        "label": "Configurator URL",
        "description": "Optional: discover the API base URL from the Advoware configurator.",
        "schema": {"type": ["string", "null"]},
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider dict Airflow's ``ProvidersManager`` reads (schema of Airflow 3.3)."""
    return {
        "package-name": "beteiligte-sync",
        "name": "Beteiligte sync (EspoCRM and Advoware)",
        "description": "Hooks for the EspoCRM and Advoware REST APIs used by the Beteiligte sync.",
        "versions": ["0.1.0"],
        "hooks": [
            {
                "integration-name": "Beteiligte sync",
                "python-modules": ["hooks.espocrm", "hooks.advoware"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "hooks.espocrm.EspoCrmHook",
                "hook-name": "EspoCRM",
                "connection-type": "espocrm",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {"host": "https://crm.example.org"},
                },
                "conn-fields": dict(_HTTP_FIELDS),
            },
            {
                "hook-class-name": "hooks.advoware.AdvowareHook",
                "hook-name": "Advoware",
                "connection-type": "advoware",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "API base URL",
                        "login": "User (employee short name)",
                        "password": "Password",
                    },
                    "placeholders": {"host": "https://advoware-connector.example.org"},
                },
                "conn-fields": {**_ADVOWARE_FIELDS, **_HTTP_FIELDS},
            },
        ],
    }
