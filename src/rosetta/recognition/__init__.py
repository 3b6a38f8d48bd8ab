"""Reading text with a trained model: the inference contract (``recognizer``), the two backends (PyTorch
checkpoints, ONNX Runtime), loading a model file of either kind, and predicting files and datasets."""
