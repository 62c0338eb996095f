"""ptreplay pipeline: capture -> events Parquet -> (replay) -> DuckDB views -> report.

Kept import-light: `ptreplay --help` must not load numba or DuckDB.
"""
__version__ = "0.1.0"
