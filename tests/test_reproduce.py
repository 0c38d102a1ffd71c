"""tools/reproduce.py: the claim readings against hand-computed t-intervals, and the smoke budget end to end."""
import json

import numpy as np
import pytest

from tools import reproduce


@pytest.mark.parametrize("a,b,higher,difference,half_width,verdict", [
    # differences 1, 2, 3: mean 2, std 1, t(0.975, 2 dof) = 4.302653
    ([1, 2, 3], [0, 0, 0], True, 2.0, 4.302653 / np.sqrt(3), "undecided"),
    ([5.1, 5.0, 4.9], [0, 0, 0], True, 5.0, 4.302653 * 0.1 / np.sqrt(3), "holds"),
    ([5.1, 5.0, 4.9], [0, 0, 0], False, 5.0, 4.302653 * 0.1 / np.sqrt(3), "fails"),  # lower is better
    ([0.2, 0.3], [0.5, 0.7], False, -0.35, 12.706205 * np.std([-0.3, -0.4], ddof=1) / np.sqrt(2), "undecided"),
    ([0.2, 0.3, 0.25], [0.5, 0.7, 0.6], False, -0.35, 4.302653 * 0.05 / np.sqrt(3), "holds"),
])
def test_paired_reading_is_the_t_interval_of_the_seed_differences(a, b, higher, difference, half_width, verdict):
    reading = reproduce.paired_reading(a, b, higher)
    assert reading["difference"] == pytest.approx(difference)
    assert reading["half_width"] == pytest.approx(half_width, rel=1e-5)
    assert reading["verdict"] == verdict


def test_paired_reading_without_a_spread_or_a_value_is_undecided():
    assert reproduce.paired_reading([0.5], [0.1], True)["verdict"] == "undecided"  # one seed: no interval
    assert reproduce.paired_reading([np.nan, 1.0], [0.0, 0.0], True)["verdict"] == "undecided"


def test_smoke_budget_writes_the_report(tmp_path):
    reproduce.main(["--budget", "smoke", "--ptss", "0", "0.2", "--results_dir", str(tmp_path)])
    results = json.loads((tmp_path / "reproduce_results.json").read_text())
    assert set(results["models"]) == {"p=0", "p=0.2"}
    assert all(len(seeds) == 2 for seeds in results["models"].values())
    model = results["models"]["p=0.2"]["3407"]
    assert set(model["tasks"]) == {"i2v", "interpolation", "next_frame", "long"}
    assert set(model["tasks"]["long"]) == {*reproduce.METHODS, reproduce.REAL, reproduce.COPY}
    assert len(model["tasks"]["long"]["VTV"]["windows"]) == len(results["long_windows"]) == 2
    assert model["standard"]["num_videos"] == 2
    verdicts = {reading["verdict"] for reading in results["claims"]}
    assert verdicts <= {"holds", "fails", "undecided"} and len(results["claims"]) > 10
    report = (tmp_path / "reproduce.md").read_text()
    assert "## The claims" in report and "| p=0 replacement |" in report and "window 2" in report
    drift_claims = [r for r in results["claims"] if r["measure"].startswith("colour drift")]
    assert len(drift_claims) == 3 and ", drift " in report  # VTV vs replacement twice, history guidance once
    for plot in ("reproduce_standard.png", "reproduce_tasks.png", "reproduce_long.png"):
        assert (tmp_path / plot).stat().st_size > 0
    # A rerun resumes nothing and trains nothing: every stage is found finished.
    before = (tmp_path / "p0_seed3407" / "metrics.jsonl").read_text()
    reproduce.main(["--budget", "smoke", "--ptss", "0", "0.2", "--results_dir", str(tmp_path)])
    assert (tmp_path / "p0_seed3407" / "metrics.jsonl").read_text() == before
