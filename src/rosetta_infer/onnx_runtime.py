"""Recognition with an exported ONNX file through ONNX Runtime.

The file alone is enough: the charset and the preprocessing travel in its ``metadata_props`` (written
by ``rosetta export``), and the ``Recognizer`` shared with the PyTorch path does batching and decoding.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rosetta_infer.charset import Charset
from rosetta_infer.errors import RosettaError
from rosetta_infer.preprocess import contract_size
from rosetta_infer.recognizer import ProbsFn, Recognizer

INPUT_NAME = "x"
OUTPUT_NAME = "probs"
# metadata_props keys; each value is a JSON object.
META_CHARSET = "rosetta.charset"
META_PREPROCESS = "rosetta.preprocess"
META_MODEL = "rosetta.model"
# Images per single-threaded run: a slice's activations stay in the core's cache, and the threads share the
# slices out as they finish, so the one whose core also prepares images takes fewer (docs/performance.md).
SLICE = 8


def int8_path(onnx_path: str | Path) -> Path:
    """Where the int8 model of ``onnx_path`` lives: beside it, ``model.onnx`` -> ``model.int8.onnx``."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.int8{onnx_path.suffix}")


def onnx_session(path: str | Path, threads: int = 0):
    """An ONNX Runtime session on the best available provider (CUDA, else CPU)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise RosettaError(f"{path}: ONNX model not found; export one with `rosetta export`")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
    # Idle ORT threads otherwise spin for a while after each run, starving PyTorch when both share few
    # cores (the parity gate runs them in turn).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    available = ort.get_available_providers()
    # The CUDA provider rounds float convolutions to TF32 by default (on Ampere and newer): 1e-3 off
    # the float32 model, ten times the parity gate's limit. Served results must be the ones gated.
    providers: list = ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        providers.insert(0, ("CUDAExecutionProvider", {"use_tf32": "0"}))
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT raises its own types (InvalidGraph, Fail, ...) for unusable files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RosettaError(f"{path}: ONNX Runtime cannot load the model ({first}); export it again with "
                           "`rosetta export`") from None


def session_metadata(session, path: str | Path) -> dict[str, dict]:
    """The rosetta entries of the model's metadata_props, parsed; an error names what is missing."""
    props = session.get_modelmeta().custom_metadata_map
    out = {}
    for key in (META_CHARSET, META_PREPROCESS, META_MODEL):
        if key not in props:
            raise RosettaError(f"{path}: the ONNX metadata has no {key!r}; only files written by "
                               "`rosetta export` can be run on their own")
        out[key] = json.loads(props[key])
    return out


def onnx_model_info(onnx_path: Path) -> dict:
    """The ``rosetta.model`` metadata of an exported file (backbone, classes, the training run, ...), read
    without starting ONNX Runtime."""
    import onnx

    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:
        raise RosettaError(f"{onnx_path}: not a readable ONNX file; export it again with `rosetta export`") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if META_MODEL not in props:
        raise RosettaError(f"{onnx_path}: no {META_MODEL!r} metadata; export it with `rosetta export`")
    return json.loads(props[META_MODEL])


def ort_probs_fn(session, sliced=None, ways: int = 1) -> ProbsFn:
    """Probabilities for a batch from ``session``; a batch of at least 4 x ``ways`` images is instead cut
    into slices of about ``SLICE`` images (at least ``ways``), run from ``ways`` threads on ``sliced``, a
    single-threaded session (ONNX Runtime releases the GIL while it runs): faster than one run on all intra-op
    threads, whose every operator splits its small work and waits at its end; a small batch has too little
    work to cut."""
    def run_on(sess, batch: np.ndarray) -> np.ndarray:
        return sess.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    if sliced is None or ways <= 1:
        return lambda batch: run_on(session, batch)
    pool = ThreadPoolExecutor(ways, thread_name_prefix="rosetta-ort")

    def run(batch: np.ndarray) -> np.ndarray:
        if len(batch) == 1:  # one image: faster on one thread, and the other core prepares the next
            return run_on(sliced, batch)
        if len(batch) < 4 * ways:
            return run_on(session, batch)
        parts = np.array_split(batch, max(ways, len(batch) // SLICE))
        return np.concatenate(list(pool.map(lambda part: run_on(sliced, part), parts)))

    return run


def load_onnx_recognizer(path: str | Path, batch_size: int = 64, threads: int = 0,
                         confidence: str = "mean") -> Recognizer:
    """A ``Recognizer`` running ``path`` through ONNX Runtime, configured from the file's metadata, its confidences
    by the rule ``confidence``; on the CPU, ``threads`` (0 = a thread per core) single-threaded runs on slices of
    each batch."""
    session = onnx_session(path, threads)
    meta = session_metadata(session, path)
    height, width = contract_size(meta[META_PREPROCESS], str(path))
    # The second, single-threaded session only once the file is known to be usable.
    ways = threads or len(os.sched_getaffinity(0))
    sliced = onnx_session(path, 1) if ways > 1 and session.get_providers()[0] == "CPUExecutionProvider" else None
    return Recognizer(ort_probs_fn(session, sliced, ways), Charset.from_dict(meta[META_CHARSET]), height, width,
                      batch_size, confidence=confidence)
