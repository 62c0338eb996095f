"""Optional dependencies ("extras") and the one-line error when one is missing.

``pip install ptreplay`` is enough for record, ingest, replay, report (table, md, json,
csv), sql, attribute and demo.  The rest needs an extra, named for what it enables.
"""
from __future__ import annotations

from ptreplay.schemas.errors import PipelineError

# top-level module -> (extra, what needs it)
EXTRA_OF = {
    "matplotlib": ("plot", "PNG plots and report --format html"),
    "plotly": ("plot", "HTML plots"),
    "dask": ("fleet", "batch"),
    "distributed": ("fleet", "batch"),
    "nbclient": ("notebook", "running the notebook"),
    "nbformat": ("notebook", "running the notebook"),
    "ipykernel": ("notebook", "running the notebook"),
}


class MissingExtraError(PipelineError):
    """A command needs an optional dependency that is not installed."""


def missing_extra(error: ModuleNotFoundError) -> MissingExtraError | None:
    """The one-line error for an ImportError of an optional dependency, or None if it is not one."""
    top = (error.name or "").split(".")[0]
    if top not in EXTRA_OF:
        return None
    extra, what = EXTRA_OF[top]
    return MissingExtraError(f"{top} is not installed (needed for {what}): pip install 'ptreplay[{extra}]'")
