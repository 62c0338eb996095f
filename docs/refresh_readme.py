"""Re-run the README's examples and put their real output back in place.

    python docs/refresh_readme.py [--check]

The README shows what ptreplay prints on the bundled captures: the demo's report and the
capacity-planning queries (`$ ptreplay sql fleet/ "..." --format md`, each followed by its
table).  After the captures are re-recorded those outputs are stale; this script makes them
again (the demo into a temporary directory, `ptreplay batch` of the command written above the
queries into another) and rewrites the README.  `--check` only says whether anything differs
(exit 1 if so).
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PTREPLAY = [sys.executable, "-m", "ptreplay"]
DEMO_HEADING = "## What the demo prints"
BATCH = re.compile(r"^`(ptreplay batch [^`]+ -o fleet/)`", re.M)
QUERY = re.compile(r"^\$ (ptreplay sql fleet/ .+)$")


def run(args: list[str], cwd: Path = REPO) -> str:
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"refresh_readme: {shlex.join(args)} failed:\n{r.stderr}")
    return r.stdout


def refresh_demo(text: str, tmp: Path) -> str:
    """The fenced block after the demo heading: `ptreplay demo`'s report."""
    at = text.index(DEMO_HEADING)
    start = text.index("```\n", at) + 4
    end = text.index("```\n", start)
    out = run(PTREPLAY + ["demo", "-o", str(tmp / "demo")])
    report = out[out.index("trace "):] if "trace " in out else out
    report = "\n".join(line.rstrip() for line in report.rstrip("\n").split("\n"))
    return text[:start] + report + "\n" + text[end:]


def refresh_queries(text: str, tmp: Path) -> str:
    """Each `$ ptreplay sql fleet/ ...` line's table, on a batch of the captures named above."""
    m = BATCH.search(text)
    if m is None:
        return text
    fleet = tmp / "fleet"
    run(PTREPLAY + shlex.split(m.group(1))[1:-1] + [str(fleet)])
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        out.append(lines[i])
        q = QUERY.match(lines[i])
        i += 1
        if not q:
            continue
        args = shlex.split(q.group(1))[1:]
        args[1] = str(fleet)
        table = run(PTREPLAY + args).rstrip("\n").split("\n")
        while i < len(lines) and lines[i] == "":
            i += 1
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        out += [""] + table
    return "\n".join(out)


def main(argv: list[str]) -> int:
    old = README.read_text()
    with tempfile.TemporaryDirectory() as d:
        new = refresh_queries(refresh_demo(old, Path(d)), Path(d))
    if new == old:
        print("README examples are current")
        return 0
    if "--check" in argv:
        print("README examples differ from what ptreplay prints now (run docs/refresh_readme.py)")
        return 1
    README.write_text(new)
    print("README examples refreshed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
