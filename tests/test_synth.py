"""SYNTHETIC stream generators (replay.synth KINDS) and `ptreplay synth`.

Every stream here is generated, not captured.  Expected numbers are computed
in the tests from the generator parameters, not taken from the generator.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from ptreplay.pipeline import cli
from ptreplay.schemas.parquet_io import read_capture, read_table
from ptreplay.replay import synth
from ptreplay.replay.engine import ReplayOptions, replay
from ptreplay.schemas import EVENT_KINDS, EVENTS, conform, units

SMALL = {
    "seed-loop": dict(gib=1, iters=8, split=1),
    "production": dict(scale=1e-6),
    "jemalloc": dict(arenas=2, extents=60, live=4),
    "tcmalloc": dict(spans=400, live=20, heap_gib=1),
    "swapout": dict(threads=3, regions=8, steps=30, faults_per_step=16),
    "balloon": dict(gib=1 / 32, rounds=2),
    "many-procs": dict(procs=5, iters=2, outside=3, burst=100),
}
MiB, GiB, TiB = 1 << 20, 1 << 30, 1 << 40


def _summary(table, policies="none,pt_reclaim"):
    res = replay(table, ReplayOptions(policies=policies))
    return {r["policy"]: r for r in res.summary.to_pylist()}


def test_every_kind_is_listed():
    assert set(SMALL) == set(synth.KINDS)


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_kind_is_a_valid_synthetic_events_table(kind):
    t = synth.table(kind, **SMALL[kind])
    conform(t, EVENTS, kind)  # raises on any schema problem
    assert t.schema.equals(EVENTS.schema, check_metadata=False)
    kinds = set(t.column("kind").to_pylist())
    assert kinds <= set(EVENT_KINDS) and {"fault", "madvise"} <= kinds
    ts = t.column("t_ns").to_numpy()
    assert (np.diff(ts) > 0).all()
    from ptreplay.replay.engine import _read_capture
    meta = _read_capture(t)
    assert meta["synthetic"] is True and meta["source_format"] == "synthetic"
    assert meta["start_ns"] == ts[0] and meta["end_ns"] == ts[-1]
    mad = t.filter(pa.compute.equal(t.column("kind"), "madvise"))
    assert set(mad.column("advice").to_pylist()) == {4}
    assert min(mad.column("len").to_pylist()) > 0
    res = replay(t, ReplayOptions(policies="all"))
    counts = res.metadata["counts"]
    outside = SMALL[kind]["procs"] * SMALL[kind]["outside"] if kind == "many-procs" else 0  # on purpose there
    assert counts["faults_outside_known_vmas"] == outside and counts["faults_beyond_user_top"] == 0


def test_streamed_seed_loop_equals_seed_loop_in_any_batching():
    ref = synth.seed_loop(1, 40, 2)
    for block in (1 << 20, 1000, 1):
        clock = synth._Clock()
        t = pa.concat_tables(list(synth.seed_loop_batches(clock, gib=1, iters=40, split=2, block_events=block)))
        assert t.equals(ref)


@pytest.mark.parametrize("split,iters", [(1, 30), (2, 30), (1, 7)])
def test_seed_loop_kind_replays_to_the_exact_vmpte(split, iters):
    s = _summary(synth.table("seed-loop", gib=1, iters=iters, split=split))
    diff = s["none"]["final_vmpte_bytes"] - s["pt_reclaim"]["final_vmpte_bytes"]
    assert diff == (iters * 4096 if split == 1 else 0)
    # none: iters PTE tables + one PMD (1 GiB at a 512 GiB-aligned base) + one PUD
    assert s["none"]["final_vmpte_bytes"] == (iters + 2) * 4096
    assert s["none"]["final_rss_bytes"] == 0 and s["none"]["final_virt_bytes"] == GiB


@pytest.mark.parametrize("scale,aligned", [(1e-6, 0.5), (1e-5, 0.5), (1e-5, 0.0), (1e-5, 1.0)])
def test_production_shape(scale, aligned):
    t = synth.table("production", scale=scale, aligned=aligned, seed=3)
    s = _summary(t, "none,pt_reclaim,refcount")
    none, ptr, ref = s["none"], s["pt_reclaim"], s["refcount"]
    virt, res = 55 * TiB * scale, 590 * GiB * scale
    assert abs(none["final_virt_bytes"] - virt) <= 0.05 * virt
    assert abs(none["final_rss_bytes"] - res) <= 0.05 * res
    assert none["final_vmpte_bytes"] >= ptr["final_vmpte_bytes"] >= none["ideal_pte_bytes"]
    # every 2 MiB region of VIRT was touched once: one PTE table each under none, plus PMD/PUD tables
    regions = round(virt / (2 * MiB))
    pmds = math.ceil(regions * 2 * MiB / GiB)
    assert regions * 4096 <= none["final_vmpte_bytes"] <= (regions + pmds + 2) * 4096
    # ideal: the resident pages fill whole regions (plus their PMD/PUD tables)
    res_regions = math.ceil(round(res / 4096) / 512)
    assert res_regions * 4096 < none["ideal_pte_bytes"] <= (res_regions + math.ceil(res_regions / 512) + 3) * 4096
    # refcount frees every emptied table: only the resident ones (and upper tables) remain
    assert ref["final_vmpte_bytes"] <= none["ideal_pte_bytes"] + (pmds + 2) * 4096
    churned = regions - res_regions
    kept = (ptr["final_vmpte_bytes"] - ref["final_vmpte_bytes"]) / 4096  # tables pt_reclaim could not free
    if aligned == 0.0:
        assert ptr["final_vmpte_bytes"] == none["final_vmpte_bytes"]
    elif aligned == 1.0:
        assert kept == 0
    else:
        assert abs(kept - churned * (1 - aligned)) <= 4 * math.sqrt(churned * aligned * (1 - aligned)) + 1


def test_production_arithmetic_at_scale_one():
    plan = synth.production_plan(scale=1.0)
    assert plan.regions == 55 * TiB // (2 * MiB) == 28_835_840  # 110 GiB of PTE tables under none
    assert plan.regions * 4096 == 110 * GiB
    assert plan.resident_pages * 4096 == 590 * GiB and plan.resident_regions == 302_080
    p01 = synth.production_plan(scale=0.01)
    assert 130e6 < p01.faults < 138e6


def test_production_is_deterministic_per_seed():
    a = synth.table("production", scale=1e-6, seed=1)
    b = synth.table("production", scale=1e-6, seed=1)
    c = synth.table("production", scale=1e-6, seed=2)
    assert a.equals(b) and not a.equals(c)


def test_swapout_refaults_at_once_under_pt_reclaim():
    s = _summary(synth.table("swapout", **SMALL["swapout"]), "none,pt_reclaim")
    assert s["none"]["refaults"] == 0 and s["pt_reclaim"]["refaults"] > 0
    tids = synth.table("swapout", **SMALL["swapout"]).column("tid").to_numpy()
    assert len(np.unique(tids)) == 3 + 2  # main thread, 3 workers, the zapper


def test_cli_writes_atomically_and_refuses_existing(tmp_path, capsys):
    out = tmp_path / "s.events.parquet"
    argv = ["synth", "seed-loop", "--gib", "1", "--iters", "5", "-o", str(out)]
    assert cli.main(argv) == 0
    t = read_table(out, EVENTS)
    assert t.num_rows == 2 + 5 * 513
    cap = read_capture(out)
    assert cap["synthetic"] is True and cap["source_format"] == "synthetic"
    assert cap["command_line"].startswith("ptreplay synth seed-loop --gib 1 --iters 5 --split 1")
    assert cap["trace_id"] == "s"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.events.parquet"]
    capsys.readouterr()
    before = out.read_bytes()
    assert cli.main(argv + ["--seed", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert out.read_bytes() == before
    assert cli.main(["synth", "production", "--scale", "1e-6", "-o", str(out), "--force"]) == 0
    assert read_capture(out)["command_line"].startswith("ptreplay synth production --virt 55T --res 590G")


def test_cli_failure_mid_stream_leaves_nothing(tmp_path, monkeypatch, capsys):
    out = tmp_path / "x.parquet"
    assert cli.main(["synth", "production", "--scale", "1e-6", "-o", str(out)]) == 0   # --force replaces only ours
    old = out.read_bytes()
    capsys.readouterr()

    def broken(clock, **kw):
        yield synth._mmaps(clock, [synth.SEED_BASE], [1 << 30], 100)
        raise RuntimeError("boom")

    gen, help_, spec = synth.KINDS["balloon"]
    monkeypatch.setitem(synth.KINDS, "balloon", (broken, help_, spec))
    assert cli.main(["synth", "balloon", "-o", str(out), "--force"]) == 1
    assert "boom" in capsys.readouterr().err
    assert out.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.parquet"]


def test_bad_sizes_are_usage_errors(tmp_path, capsys):
    assert cli.main(["synth", "production", "--virt", "lots", "-o", str(tmp_path / "y.parquet")]) == 2
    assert "not a size" in capsys.readouterr().err
    assert cli.main(["synth", "production", "--res", "100T", "-o", str(tmp_path / "y.parquet")]) == 2
    assert not (tmp_path / "y.parquet").exists()
    assert units.parse_size("55T") == 55 * TiB and units.parse_size("1.5GiB") == 3 * GiB // 2
