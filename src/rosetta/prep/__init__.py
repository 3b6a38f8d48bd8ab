"""Offline preparation of the datasets, run by the DVC stages ``download`` to ``validate`` and by ``rosetta data``:
rendering, downloading, conversion to LMDB, the real sets' fingerprints, the benchmark-overlap guard, validation."""
