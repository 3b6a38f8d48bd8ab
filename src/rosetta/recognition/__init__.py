"""Reading text with a trained model file, over the inference package (``rosetta_infer``): PyTorch checkpoints
(``checkpoint``), a model file of either kind or a registered version (``model_file``), predicting files and
datasets, and where a model runs (``device``)."""
