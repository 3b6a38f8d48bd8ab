"""Shipping a trained model: ONNX export and its parity gate (``export``, ``export_model``), the int8 model
(``int8``) and the HTTP server of a registered version (``http_server``); the registry it is shipped through is
``rosetta.registry``, the pyfunc model it registers the inference package's (``rosetta_infer.pyfunc``)."""
