"""The committed benchmark library: every file is what its manifest command generates, and the stored best-known
optima of S and M hold when re-solved."""

import json
import math
import tomllib
from pathlib import Path

import pytest

import gridcharge
from gridcharge.bench.generate import generate

INSTANCES = Path(__file__).resolve().parents[2] / "benchmarks" / "instances"
MANIFEST = tomllib.loads((INSTANCES / "manifest.toml").read_text())["instance"]
SMALL = [e for e in MANIFEST if e["size"] in ("S", "M")]


def test_manifest_lists_the_ladder_in_both_variants():
    sizes = {e["size"]: e["n_sessions"] for e in MANIFEST}
    assert sizes == {"S": 20, "M": 200, "L": 2000, "XL": 20000, "XXL": 100000}
    for size in sizes:
        assert {e["variant"] for e in MANIFEST if e["size"] == size} == {"tight", "loose"}
    assert {e["kind"] for e in MANIFEST if e["size"] in ("XL", "XXL")} == {"feeder"}
    for entry in MANIFEST:
        assert (INSTANCES / entry["file"]).exists() == entry["committed"]
        assert ("best_known_cny" in entry) == entry["committed"]
        assert entry["command"].startswith(f"gridcharge generate {entry['kind']} --sessions {entry['n_sessions']} "
                                           f"--seed {entry['seed']} --{entry['variant']} ")


@pytest.mark.parametrize("entry", [e for e in MANIFEST if e["committed"]], ids=lambda e: e["file"])
def test_committed_file_is_exactly_what_the_generator_writes(entry):
    data = generate(entry["kind"], entry["n_sessions"], entry["seed"], capacity=entry["variant"],
                    label=Path(entry["file"]).stem)
    assert json.dumps(data, indent=1) == (INSTANCES / entry["file"]).read_text()
    assert f"seed={entry['seed']}" in data["name"] and f"n_sessions={entry['n_sessions']}" in data["name"]


@pytest.mark.parametrize("entry", SMALL, ids=lambda e: e["file"])
def test_best_known_optimum_of_small_instances_holds(entry):
    schedule = gridcharge.solve(INSTANCES / entry["file"], solver="highs")
    assert schedule.verification.ok
    assert math.isclose(schedule.verification.cost_cny, entry["best_known_cny"], rel_tol=1e-6, abs_tol=1e-4)
    # no baseline beats the stored optimum (it is a lower bound for every feasible schedule)
    heuristic = gridcharge.solve(INSTANCES / entry["file"], solver="equal_share")
    assert heuristic.verification.cost_cny >= entry["best_known_cny"] - 1e-4 * max(1.0, abs(entry["best_known_cny"]))
