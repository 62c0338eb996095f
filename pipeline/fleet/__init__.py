"""Fleet: many captures ingested and replayed on a dask cluster into one partitioned tree (batch)."""
