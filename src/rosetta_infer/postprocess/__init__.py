"""Post-processing of the model's output, in PaddleOCR's place and names: ``CTCLabelDecode``."""
from rosetta_infer.postprocess.rec_postprocess import CTCLabelDecode

__all__ = ["CTCLabelDecode"]
