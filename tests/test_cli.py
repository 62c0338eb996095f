"""The command line's own contract: one duration parser, --version, missing extras in one line."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from ptreplay.replay.policies import parse_policy
from ptreplay.schemas.errors import UsageError
from ptreplay.schemas.units import format_ns, parse_duration_ns, parse_size

REPO = Path(__file__).resolve().parents[1]


def run_cli(*argv, block=()):
    """`python -m ptreplay ARGV` with the modules in `block` made unimportable (as if not installed)."""
    code = ("import sys, runpy\n"
            f"for m in {list(block)!r}: sys.modules[m] = None\n"
            f"sys.argv = ['ptreplay', *{list(argv)!r}]\n"
            "runpy.run_module('ptreplay', run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")


@pytest.mark.parametrize("text, ns", [("10ms", 10_000_000), ("1s", 10**9), ("2", 2 * 10**9), ("0.5s", 5 * 10**8),
                                      ("250us", 250_000), ("1.5ns", 2), ("2m", 120 * 10**9), (" 7NS ", 7)])
def test_one_duration_parser_for_options_and_policies(text, ns):
    assert parse_duration_ns(text) == ns
    assert parse_policy(f"scan:{text}").arg_ns == ns
    assert parse_duration_ns(format_ns(ns)) == ns


@pytest.mark.parametrize("text", ["0", "0.1ns", "-1s", "nan", "inf", "1e300s", "abc", "", "1h"])
def test_bad_durations_are_one_line_usage_errors_everywhere(text):
    with pytest.raises(UsageError):
        parse_duration_ns(text, "--interval")
    with pytest.raises(UsageError):
        parse_policy(f"scan:{text}") if text else parse_policy("scan:x")
    r = run_cli("replay", "/nonexistent.parquet", "-o", "/tmp/never-written", f"--interval={text}")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("ptreplay: error: --interval: "), r.stderr


def test_sizes():
    assert parse_size("55T") == 55 << 40 and parse_size("1.5GiB") == 3 << 29 and parse_size("4096") == 4096
    assert parse_size("2m") == 2 << 20
    for bad in ("12X", "-1G", "1e30P", ""):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_version_is_the_distributions():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"ptreplay {version('ptreplay')}"
    import ptreplay
    assert ptreplay.__version__ == version("ptreplay")


@pytest.mark.parametrize("argv, block, extra", [
    (["plot", str(REPO / "data/seed-2m"), "-o", "{tmp}/x.png"], ["matplotlib"], "plot"),
    (["plot", str(REPO / "data/seed-2m"), "-o", "{tmp}/x.html"], ["plotly"], "plot"),
    (["batch", str(REPO / "data/seed-2m"), "-o", "{tmp}/tree"], ["dask", "distributed"], "fleet"),
])
def test_a_missing_extra_is_named_in_one_line(tmp_path, argv, block, extra):
    if argv[0] == "plot":  # plot reads a replay output: make one
        out = tmp_path / "replay"
        assert run_cli("demo", str(REPO / "data/seed-2m"), "-o", str(out)).returncode == 0
        argv = ["plot", str(out), *argv[2:]]
    r = run_cli(*[a.format(tmp=tmp_path) for a in argv], block=block)
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and f"pip install 'ptreplay[{extra}]'" in r.stderr, r.stderr
    assert "internal error" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == (["replay"] if argv[0] == "plot" else [])
