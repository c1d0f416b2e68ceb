"""``gridcharge solve --workers N | --scheduler URL``: the structured solver's district split from the command line
(the split itself is tested in tests/solvers/test_structured_partition.py)."""

from __future__ import annotations

import json

import pytest

from gridcharge.bench.generate import generate
from gridcharge.cli import main
from tests.test_cli import run, write_json


def test_workers_zero_solves_a_district_split_to_the_same_optimum(tmp_path, capsys):
    path = write_json(tmp_path / "district.json", generate("district", 90, 5, transformers=3))
    summaries = []
    for extra in ([], ["--workers", "0"]):
        out_dir = tmp_path / f"out{len(summaries)}"
        code, _, err = run(capsys, "solve", path, "--solver", "structured", "--quiet", "--out", out_dir, *extra)
        assert code == 0, err
        summaries.append(json.loads((out_dir / "summary.json").read_text()))
    whole, split = summaries
    assert split["fallback"] is None and split["gap_rel"] <= 1e-7
    assert split["objective_cny"] == pytest.approx(whole["objective_cny"], rel=1e-9)


def test_workers_with_a_solver_that_does_not_split_fails_before_any_work(tmp_path, capsys):
    code, out, err = run(capsys, "solve", tmp_path / "nope.json", "--solver", "highs", "--workers", "2")
    assert code == 2 and out == ""
    assert err.startswith("gridcharge: --workers/--scheduler: the 'highs' solver does not split a district")


@pytest.mark.parametrize("value", ["-1", "two"])
def test_workers_must_be_a_count(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as caught:
        main(["solve", str(tmp_path / "x.json"), "--workers", value])
    assert caught.value.code == 2
    assert "--workers" in capsys.readouterr().err
