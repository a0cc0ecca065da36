"""The "EspoCRM" and "Advoware" connection types are registered with Airflow (form fields)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import airflow
import jsonschema
import pytest
from hooks.provider_info import get_provider_info

AIRFLOW_DIR = Path(airflow.__file__).parent


def _installed() -> bool:
    try:
        importlib.metadata.distribution("beteiligte-sync")
    except importlib.metadata.PackageNotFoundError:
        return False
    return any(
        ep.value == "hooks.provider_info:get_provider_info"
        for ep in importlib.metadata.entry_points(group="apache_airflow_provider")
    )


needs_install = pytest.mark.skipif(
    not _installed(), reason="project not installed (`pip install -e .` registers the provider)"
)


def test_provider_info_is_valid_for_airflow() -> None:
    schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    behaviour_schema = json.loads(
        (AIRFLOW_DIR / "customized_form_field_behaviours.schema.json").read_text()
    )
    for conn in info["connection-types"]:
        behaviour = conn["ui-field-behaviour"]
        jsonschema.validate(
            {
                "hidden_fields": behaviour["hidden-fields"],
                "relabeling": behaviour["relabeling"],
                "placeholders": behaviour["placeholders"],
            },
            behaviour_schema,
        )


def test_provider_info_names_importable_hooks_with_matching_conn_types() -> None:
    from hooks.advoware import AdvowareHook
    from hooks.espocrm import EspoCrmHook

    by_type = {
        c["connection-type"]: c["hook-class-name"] for c in get_provider_info()["connection-types"]
    }
    assert by_type == {
        "espocrm": "hooks.espocrm.EspoCrmHook",
        "advoware": "hooks.advoware.AdvowareHook",
    }
    assert EspoCrmHook.conn_type == "espocrm" and AdvowareHook.conn_type == "advoware"


@needs_install
def test_airflow_discovers_both_hooks_through_the_entry_point() -> None:
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hooks = ProvidersManagerTaskRuntime().hooks
    espocrm, advoware = hooks["espocrm"], hooks["advoware"]
    assert espocrm is not None and espocrm.hook_class_name == "hooks.espocrm.EspoCrmHook"
    assert espocrm.connection_id_attribute_name == "espocrm_conn_id"
    assert advoware is not None and advoware.hook_name == "Advoware"


@needs_install
def test_connection_forms_have_labelled_fields_and_a_masked_api_key() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    widgets = manager.connection_form_widgets
    api_key = widgets["extra__advoware__api_key"]
    assert api_key.is_sensitive
    assert api_key.field["schema"]["title"] == "API key (base64)"
    for field in ("app_id", "kanzlei", "database", "role", "product", "security_gateway"):
        assert f"extra__advoware__{field}" in widgets
    assert "extra__espocrm__verify" in widgets
    behaviour = manager.field_behaviours["espocrm"]
    assert behaviour["relabeling"]["password"] == "API key"
    assert "login" in behaviour["hidden_fields"]
