"""gridcharge.generate: every kind valid and seeded, options recorded and honoured, errors name the field."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gridcharge
from gridcharge.bench.generate import KINDS, generate
from gridcharge.cli import main


#: The kinds with a capacity variant and PV; a district's limits are calibrated instead (tests/bench/test_generate_district.py).
SIZED_KINDS = tuple(kind for kind in KINDS if kind != "district")


@given(kind=st.sampled_from(SIZED_KINDS), n=st.integers(1, 40), seed=st.integers(0, 2**16),
       capacity=st.sampled_from(["tight", "default", "loose"]), v2g=st.sampled_from([None, 0.0, 0.5, 1.0]),
       pv=st.sampled_from([0.0, 30.0]))
def test_every_kind_is_a_valid_instance_that_records_its_arguments(kind, n, seed, capacity, v2g, pv):
    params = {"capacity": capacity, "pv_kw": pv} | ({} if v2g is None else {"v2g_share": v2g})
    data = generate(kind, n, seed, **params)
    instance = gridcharge.load_instance(data)  # validation: tree, references, horizon, no overlaps per charger
    assert len(instance.sessions) == n
    assert data["name"].startswith(kind) and f"n_sessions={n} seed={seed}" in data["name"]
    assert json.dumps(generate(kind, n, seed, **params)) == json.dumps(data)  # same arguments, same bytes
    if v2g == 0.0:
        assert all(s.max_discharge_kw == 0 for s in instance.sessions)
    if v2g == 1.0 and kind != "carpark":  # car-park V2G is per charger, residential/office per car
        assert all(s.max_discharge_kw > 0 for s in instance.sessions)
    transformers = [node for node in instance.nodes if node.kind == "transformer"]
    for node in transformers:
        assert (node.generation_kw != 0.0) == (pv > 0)
        if pv > 0:
            assert max(node.generation_kw) == pytest.approx(0.8 * pv, rel=1e-3) and node.export_limit_kw == pv
    if kind == "feeder":
        assert instance.root.kind == "feeder" and len(transformers) == max(min(n, 2), -(-n // 2000))
        assert all(t.parent == instance.root.id for t in transformers)


def test_tight_is_tighter_than_loose_with_the_same_cars():
    for kind in SIZED_KINDS:
        tight, loose = generate(kind, 50, 3, capacity="tight"), generate(kind, 50, 3, capacity="loose")
        assert tight["sessions"] == loose["sessions"]
        assert tight["nodes"][0]["import_limit_kw"] < loose["nodes"][0]["import_limit_kw"]


def test_office_and_carpark_times_follow_their_pattern():
    office = gridcharge.build_problem(generate("office", 400, 1))
    first = np.argmax(office.presence > 0, axis=1)
    arrival_hour = 6 + first * 0.25  # horizon from 06:00 in quarter-hours
    assert 8.0 < np.median(arrival_hour) < 9.5
    assert np.median((office.presence > 0).sum(axis=1)) * 0.25 > 6  # a working day's dwell [h]
    carpark = gridcharge.build_problem(generate("carpark", 300, 1))
    dwell_h = carpark.presence.sum(axis=1) * 0.25
    assert np.median(dwell_h) < 2.0  # short visits
    chargers = {s.charger for s in carpark.instance.sessions}
    assert len(chargers) == 100  # three visits per charger


def test_wrong_arguments_name_the_field():
    with pytest.raises(ValueError, match="kind: 'garage'"):
        generate("garage", 10)
    with pytest.raises(ValueError, match="n_sessions: 0"):
        generate("office", 0)
    with pytest.raises(ValueError, match="capacity: 'huge'"):
        generate("feeder", 10, capacity="huge")
    with pytest.raises(ValueError, match="v2g_share: 1.5"):
        generate("residential", 10, v2g_share=1.5)
    with pytest.raises(ValueError, match=r"mix\[1\]: 'mall'"):
        generate("feeder", 10, mix=("office", "mall"))


def test_gridcharge_generate_and_the_cli(tmp_path, capsys):
    assert gridcharge.generate is generate
    out = tmp_path / "sub" / "office.json"
    assert main(["generate", "office", "--sessions", "30", "--seed", "4", "--loose", "--v2g-share", "0",
                 "--pv-kw", "50", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == generate("office", 30, 4, capacity="loose", v2g_share=0.0, pv_kw=50.0)
    assert "30 sessions" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["generate", "office", "--sessions", "0", "--out", str(out)])
    assert "must be >= 1" in capsys.readouterr().err
    assert main(["generate", "office", "--sessions", "3", "--out", str(tmp_path / "x.txt")]) == 2
