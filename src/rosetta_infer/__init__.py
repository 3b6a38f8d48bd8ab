"""Reading word images with a trained model, and nothing else: the inference contract (``preprocess``), the
charset, CTC decoding (``postprocess``), the ``Recognizer`` with its PyTorch backend (``recognizer``), the ONNX
Runtime backend (``onnx_runtime``), the serve settings and the MLflow pyfunc model (``pyfunc``). It imports nothing
of ``rosetta`` (training, tracking, the registry, the servers), so a registered model ships this package alone as
its code, and the ONNX path needs no torch."""
