"""Events: any capture format's raw columns -> one normalized, time-ordered events Parquet (normalize, ingest)."""
