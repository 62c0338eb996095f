"""Mutation fuzzer over the bundled real captures: bad input never crashes the pipeline.

Each case mutates a real capture (truncation at record boundaries and at random
offsets, bit flips in headers and payloads, huge size fields, byte-swapped
magic, empty files, garbage; for text: shuffled, duplicated and dropped lines,
lost sys_exit lines, out-of-order timestamps, binary given as text and text
given as binary), then ingests it.  Every case must end in success or a
PipelineError (the CLI's one-line error, exit 1), within a time limit, without
leaving an output or temporary file behind on failure, and without using more
than twice the memory of the intact capture (plus a small constant), measured as the
process's peak RSS (every allocator, Arrow's pool included) in a forked child per case.

`PTREPLAY_FUZZ_CASES=20000 pytest tests/test_fuzz.py` runs a longer campaign by hand.
"""
import os
import random
import signal
import struct
import subprocess
import sys
import shutil
import threading
from pathlib import Path

import pytest

from conftest import in_child
from ptreplay.schemas.errors import PipelineError
from ptreplay.pipeline.formats import open_binary
from ptreplay.pipeline.events.ingest import ingest
from ptreplay.schemas import EVENTS
from ptreplay.schemas.parquet_io import read_table

DATA = Path(__file__).resolve().parent.parent / "data"
CASES = int(os.environ.get("PTREPLAY_FUZZ_CASES", "1000"))
SECONDS_PER_CASE = 20
SEED = 20261125

BINARY = [DATA / "mixed-vma" / "perf.data", DATA / "text" / "seed-64.perf.data"]
THREADS_DIR = Path(__file__).resolve().parent / "data" / "perf" / "migrate_threads_z.data"
DIR_CASES = max(50, CASES // 5)
TEXT = [DATA / "text" / n for n in ("seed-2-fork.perf-script-pid.txt", "seed-2-tgid.trace_pipe.txt",
                                    "seed-64.ftrace.txt.zst", "seed-64.trace-cmd.txt.zst")]


def _plain(path: Path) -> bytes:
    with open_binary(path) as f:
        return f.read()


def record_offsets(blob: bytes) -> list[int]:
    """Start offsets of the records of a perf.data file's data section (header walk)."""
    data_off, data_size = struct.unpack_from("<QQ", blob, 40)
    return record_starts(blob, data_off, min(data_off + data_size, len(blob)))


def record_starts(blob: bytes, pos: int, end: int) -> list[int]:
    """Start offsets of the records in blob[pos:end], up to the first bad header."""
    out = []
    while pos + 8 <= end:
        size = struct.unpack_from("<H", blob, pos + 6)[0]
        if size < 8:
            break
        out.append(pos)
        pos += size
    return out


def binary_mutations(blob: bytes, rng: random.Random):
    """One mutated perf.data (name, bytes)."""
    b = bytearray(blob)
    offsets = record_offsets(blob)
    choice = rng.randrange(9)
    if choice == 0 and offsets:
        return "truncate-at-record", bytes(b[: rng.choice(offsets)])
    if choice == 1:
        return "truncate-random", bytes(b[: rng.randrange(len(b))])
    if choice == 2:
        i = rng.randrange(min(len(b), 104))
        b[i] ^= 1 << rng.randrange(8)
        return "flip-header", bytes(b)
    if choice == 3:
        for _ in range(rng.randrange(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return "flip-payload", bytes(b)
    if choice == 4 and offsets:
        pos = rng.choice(offsets)
        struct.pack_into("<H", b, pos + 6, rng.choice([0, 1, 7, 0xFFFF, 0xFFF8]))
        return "record-size", bytes(b)
    if choice == 5:
        field = rng.choice([8, 16, 24, 32, 40, 48, 56, 64])
        struct.pack_into("<Q", b, field, rng.choice([0, 1 << 62, (1 << 64) - 1, len(b) * 2, 0x7FFFFFFF]))
        return "huge-header-field", bytes(b)
    if choice == 6:
        return "swapped-magic", b"2ELIFREP" + bytes(b[8:])
    if choice == 7:
        return "garbage", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
    return "empty", b""


def text_mutations(text: bytes, rng: random.Random):
    """One mutated text capture (name, bytes)."""
    lines = text.split(b"\n")
    choice = rng.randrange(8)
    if choice == 0:
        i = rng.randrange(len(lines))
        j = min(len(lines), i + rng.randrange(1, 50))
        part = lines[i:j]
        rng.shuffle(part)
        lines[i:j] = part
        return "shuffle-lines", b"\n".join(lines)
    if choice == 1:
        i = rng.randrange(len(lines))
        return "duplicate-line", b"\n".join(lines[:i] + [lines[i]] + lines[i:])
    if choice == 2:
        i = rng.randrange(len(lines))
        return "drop-line", b"\n".join(lines[:i] + lines[i + 1:])
    if choice == 3:
        exits = [i for i, ln in enumerate(lines) if b"sys_exit" in ln or b" -> 0x" in ln]
        if exits:
            drop = set(rng.sample(exits, max(1, len(exits) // 3)))
            return "missing-sys-exit", b"\n".join(ln for i, ln in enumerate(lines) if i not in drop)
    if choice == 4:
        return "truncate", text[: rng.randrange(len(text))]
    if choice == 5:
        i = rng.randrange(len(text))
        return "binary-in-text", text[:i] + bytes(rng.randrange(256) for _ in range(64)) + text[i:]
    if choice == 6:
        return "text-as-binary", b"PERFILE2" + text[8:]
    b = bytearray(text)
    for _ in range(rng.randrange(1, 5)):
        i = rng.randrange(len(b))
        b[i] = rng.choice(b"0123456789:.-[]() x\t")
    return "flip-chars", bytes(b)


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout()


def run_case(data: bytes, tmp: Path) -> str:
    """Ingest `data`; returns 'ok' or 'error' and checks what is left on disk."""
    src = tmp / "input"
    src.write_bytes(data)
    out = tmp / "out" / "events.parquet"
    try:
        ingest([src], out, force=True)
        t = read_table(out, EVENTS, columns=["t_ns"]).column("t_ns").to_numpy()   # faults and others
        assert (t[1:] >= t[:-1]).all(), "ingested events are not in time order"
        outcome = "ok"
    except PipelineError as e:
        msg = str(e)
        assert "\n" not in msg and msg, f"error is not one line: {msg!r}"
        assert not out.exists(), "partial output left behind"
        outcome = "error"
    assert not list(out.parent.glob(".*")) if out.parent.exists() else True, "temporary file left behind"
    if out.exists():
        out.unlink()
    return outcome


def test_mutation_campaign(tmp_path):
    """Each case runs in a forked child (conftest.in_child): its outcome, and its peak RSS above
    its start as the kernel counts it (Arrow's pool included), against the intact capture's."""
    rng = random.Random(SEED)
    sources = [(p, _plain(p), "binary") for p in BINARY] + [(p, _plain(p), "text") for p in TEXT]
    for path, blob, _ in sources:  # load every compiled reader in the parent, so children inherit them
        assert run_case(blob, tmp_path) == "ok"
    budget = {}
    for path, blob, _ in sources:  # memory of the intact capture
        (status, detail), budget[path] = in_child(lambda: run_case(blob, tmp_path), SECONDS_PER_CASE)
        assert (status, detail) == ("ok", "ok"), (path, status, detail)
    outcomes: dict[str, int] = {}
    for case in range(CASES):
        path, blob, kind = rng.choice(sources)
        name, data = (binary_mutations if kind == "binary" else text_mutations)(blob, rng)
        (status, result), peak = in_child(lambda: run_case(data, tmp_path), SECONDS_PER_CASE)
        assert status == "ok", f"case {case} ({name} of {path.name}): {status}: {result}"
        assert peak <= 2 * budget[path] + (32 << 20), f"case {case} ({name}): RSS +{peak} bytes vs {budget[path]}"
        key = f"{name}:{result}"
        outcomes[key] = outcomes.get(key, 0) + 1
    total = sum(outcomes.values())
    assert total == CASES
    print(f"\nfuzz: {total} cases: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
    assert any(k.endswith(":error") for k in outcomes) and any(k.endswith(":ok") for k in outcomes)


def test_cli_on_mangled_input_is_one_line_exit_1(tmp_path):
    blob = _plain(BINARY[0])
    bad = tmp_path / "cut.data"
    bad.write_bytes(blob[: len(blob) // 2 + 3])
    out = tmp_path / "e.parquet"
    r = subprocess.run([sys.executable, "-m", "ptreplay", "ingest", str(bad), "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert str(bad) in r.stderr and not out.exists()


def test_threads_directory_mutations(tmp_path):
    """A --threads directory with one file mangled (the header file or one data.N): the
    streams are decoded side by side, so an error in one must still end in one line, close
    every file and stop every decoding thread."""
    rng = random.Random(SEED + 1)
    threads_before = threading.active_count()
    outcomes: dict[str, int] = {}
    for case in range(DIR_CASES):
        d = tmp_path / f"case{case}.data"
        shutil.copytree(THREADS_DIR, d)
        victim = d / rng.choice(["data", "data.0", "data.1"])
        b = bytearray(victim.read_bytes())
        offsets = record_starts(b, 0, len(b)) if victim.name != "data" else []   # data.N: no header
        choice = rng.randrange(5)
        if choice == 0 and offsets:
            name, b = "truncate-at-record", b[: rng.choice(offsets)]
        elif choice == 1:
            name, b = "truncate-random", b[: rng.randrange(len(b))]
        elif choice == 2 and offsets:
            name = "record-size"
            struct.pack_into("<H", b, rng.choice(offsets) + 6, rng.choice([0, 7, 9, 0xFFFF]))
        elif choice == 3:
            name = "flip"
            for _ in range(rng.randrange(1, 8)):
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8)
        else:
            name, b = "empty", b""
        victim.write_bytes(bytes(b))
        out = tmp_path / "out" / f"events{case}.parquet"
        signal.alarm(SECONDS_PER_CASE)
        old = signal.signal(signal.SIGALRM, _alarm)
        try:
            ingest([d], out, force=True)
            t = read_table(out, EVENTS, columns=["t_ns"]).column("t_ns").to_numpy()   # faults and others
            assert (t[1:] >= t[:-1]).all(), f"case {case} ({name} of {victim.name}): not in time order"
            result = "ok"
        except PipelineError as e:
            assert "\n" not in str(e) and str(e), f"case {case}: error is not one line: {e!r}"
            assert not out.exists(), f"case {case}: partial output left behind"
            result = "error"
        except Timeout:
            pytest.fail(f"case {case} ({name} of {victim.name}): no answer within {SECONDS_PER_CASE} s")
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
        assert threading.active_count() == threads_before, f"case {case}: a decoding thread is left running"
        outcomes[f"{name}:{result}"] = outcomes.get(f"{name}:{result}", 0) + 1
        shutil.rmtree(d)
    print(f"\nthreads-dir fuzz: {DIR_CASES} cases: " + ", ".join(f"{k}={v}" for k, v in sorted(outcomes.items())))
    assert any(k.endswith(":error") for k in outcomes) and any(k.endswith(":ok") for k in outcomes)
