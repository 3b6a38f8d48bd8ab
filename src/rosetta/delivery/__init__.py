"""Shipping a trained model: ONNX export and its parity gate (``export``), the int8 model (``int8``), the MLflow
registry and the promotion rule (``registry``, ``promotion``), what binds a registration's evidence to its file
(``evidence``), the pyfunc model (``pyfunc``, ``pyfunc_code``) and
its HTTP server (``http_server``)."""
