"""Training a recognizer: the loop (``trainer``), its optimizer and schedule, validation, resuming, starting
weights, the torchrun launch and what a run leaves behind."""
