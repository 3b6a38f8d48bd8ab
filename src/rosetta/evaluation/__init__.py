"""Scoring models on benchmark sets: PaddleOCR's RecMetric (``metrics``), which sets are scored (``sets``), the
evaluation itself and its MLflow run (``evaluate``), its table and gallery (``report``, ``plots``)."""
