"""Losses, one file each as in PaddleOCR's ``ppocr/losses``: ``rec_ctc_loss.CTCLoss``."""
