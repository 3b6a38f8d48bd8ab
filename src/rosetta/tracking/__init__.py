"""MLflow tracking at the edges: the store and its runs (``store``), what a training run records (``runs``), where
it comes from (``provenance``), and a training's writes kept while its store is away (``journal``)."""
