"""Runtime input: the LMDB format and its reader, the dataset, loaders and batch plan training and evaluation read,
the splits a run reads, and the preprocessing every image gets."""
