"""Shipping a trained model: ONNX export and its parity gate (``export``), the int8 model (``int8``), the pyfunc
model (``pyfunc``, ``pyfunc_code``) and its HTTP server (``http_server``); the registry it is shipped through is
``rosetta.registry``."""
