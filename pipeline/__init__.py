"""The application around the model, in data-flow order:

capture -> formats -> events -> (ptreplay.replay) -> warehouse -> presentation -> attribution -> fleet,
with cli/demo on top.  Kept import-light: `ptreplay --help` must not load numba or DuckDB.
"""
