"""Throughput benchmarks: training images/s (``train``), recognition ms/image per backend (``infer``) and the
served model over HTTP (``serve``)."""
