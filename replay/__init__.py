"""The page-table model: replays an events table under reclaim policies.

``ptreplay.replay`` is both this package and the notebook call
``ptreplay.replay(events, "out/", policies="all")``: a package attribute and a
top-level function of the same name cannot coexist (importing the package
rebinds the name), so the package itself is callable.  Modules: `engine`
(options, orchestration, output tables), `kernels` (the numba kernels),
`policies` (policy specs), `synth` (synthetic generators, labelled as such).
"""
from __future__ import annotations

import sys
import types
from pathlib import Path


def run(events, output=None, policies="all", force: bool = False, **options):
    """Replay an events Parquet file (or Arrow table) under `policies` ('all', or specs such as
    ['none', 'pt_reclaim', 'scan:1s']).  With `output`, write the outputs there and return the
    directory; without, return the :class:`ptreplay.replay.engine.ReplayResult` (Arrow tables).
    `options`: the other fields of :class:`ptreplay.replay.engine.ReplayOptions` (thp, interval_ns, ...)."""
    from ptreplay.replay.engine import ReplayOptions, replay, replay_to_dir
    opts = ReplayOptions(policies=policies, **options)
    if output is None:
        return replay(events, opts)
    return replay_to_dir(Path(events), Path(output), opts, force=force)


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return run(*args, **kwargs)

    __call__.__doc__ = run.__doc__


sys.modules[__name__].__class__ = _CallablePackage
