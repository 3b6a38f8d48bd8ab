"""Data: download, synthesis, LMDB conversion and reading, validation."""
