"""Shipping a trained model: ONNX export and its parity gate (``export``), the int8 model (``int8``), the MLflow
registry and the promotion rule (``registry``, ``promotion``), what binds a registration's evidence to its file
(``evidence``) and the HTTP server of a registered version (``http_server``); the pyfunc model it registers is the
inference package's (``rosetta_infer.pyfunc``)."""
