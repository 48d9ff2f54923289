"""The wiki benchmark's engine comparison rows, on made-up ingest results."""

from benchmarks.wiki import engine_timing_rows


def _runs(seconds: list[float], failed: int | None = None) -> list[dict]:
    return [
        {"status": "failed" if i == failed else "added", "seconds": s, "llm_calls": 3} for i, s in enumerate(seconds)
    ]


def test_engine_rows_take_the_ratio_source_by_source() -> None:
    runs = {
        "generated": {"torch": _runs([10.0, 20.0]), "openvino": _runs([5.0, 5.0])},
        "wikipedia": {"torch": _runs([40.0, 8.0]), "openvino": _runs([10.0, 99.0], failed=1)},
    }
    rows = {r["metric"]: r for r in engine_timing_rows(runs, [1.0, 2.5])}
    ratio = rows["ingest seconds per source, openvino / torch"]
    assert ratio["value"] == 0.25  # 0.5, 0.25, 0.25: the source one engine failed is left out
    assert "3 sources added by both" in ratio["note"] and "load 1.0-2.5" in ratio["note"]
    assert rows["ingest seconds per source (median), torch"]["value"] == 15.0
