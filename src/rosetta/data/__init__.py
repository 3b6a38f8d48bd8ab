"""Runtime input: the LMDB format and its reader, the dataset, loaders and batch plan training and evaluation read,
and the splits a run reads (the preprocessing every image gets is the inference package's, ``rosetta_infer``)."""
