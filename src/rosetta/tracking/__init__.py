"""MLflow tracking at the edges: the store and its runs (``store``), what a training run records (``runs``) and
where it comes from (``provenance``)."""
