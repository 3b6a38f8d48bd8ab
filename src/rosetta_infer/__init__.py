"""Reading word images with a trained model, and nothing else: the inference contract (``preprocess``), the
charset, CTC decoding (``postprocess``), the ONNX Runtime and PyTorch backends (``recognizer``), and the MLflow
pyfunc model (``pyfunc``). It imports nothing of ``rosetta`` (training, tracking, the registry, the servers), so
a registered model ships this package alone as its code, and it needs no torch for the ONNX path."""
