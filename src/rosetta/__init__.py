"""Rosetta (CNN + CTC) scene-text recognition in PyTorch, with its DVC pipeline, Prefect flow and MLflow registry."""
