from include.beteiligte_sync.report import build_report, merge_results


def _r(entity_id, outcome, status=None, error=None, needs_validation=False, betnr=None):
    return {
        "entity_id": entity_id,
        "betnr": betnr,
        "outcome": outcome,
        "status": status,
        "error": error,
        "needs_validation": needs_validation,
    }


def test_report_counts_outcomes_validation_and_failures():
    sync = [
        _r("e1", "espocrm_newer", "syncing", needs_validation=True, betnr=1),
        _r("e2", "no_change", "clean"),
        _r("e3", "failed", "failed", error="Advoware: ServerError"),
        _r("e4", "advoware_newer", "syncing", needs_validation=True),
    ]
    validate = [
        _r("e1", "clean", "clean"),
        _r("e4", "validation_failed", "failed", error="Validation failed: name: a != b"),
    ]
    report = build_report(merge_results(sync, validate), resets=2, api_calls={"advoware": 9})
    assert report.entities == 4
    assert report.counts["espocrm_newer"] == 1
    assert report.counts["clean"] == 1
    assert report.counts["validation_failed"] == 1
    assert report.counts["failed"] == 2  # e3 and the failed validation of e4
    assert report.counts["resets"] == 2
    assert {f["entity_id"] for f in report.failures} == {"e3", "e4"}
    text = report.render()
    assert "validation failures" in text and "API calls advoware" in text
    assert "Validation failed: name" in text
    assert "a != b" not in text  # values never reach the log


def test_report_warns_above_thresholds():
    results = [_r(f"e{i}", "permanently_failed", "permanently_failed", error="x") for i in range(3)]
    report = build_report(results, permanently_failed_threshold=2)
    assert report.warnings == ["3 entities permanently failed (threshold 2)"]
    assert build_report(results, permanently_failed_threshold=5).warnings == []
