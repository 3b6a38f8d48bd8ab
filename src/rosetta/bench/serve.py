"""``rosetta bench serve``: the served model's requests/s and ms per image over HTTP on loopback."""
from __future__ import annotations

import time
from typing import Sequence

from rosetta.delivery.http_server import invocations_body, post
from rosetta.errors import RosettaError
from rosetta_infer.pyfunc import IMAGE_COLUMN, input_example


def bench_serve(url: str, batch_sizes: Sequence[int] = (1, 32), requests: int = 20, warmup: int = 2) -> list[dict]:
    """Requests/s and ms per image of the model served at ``url``, one row per batch size; each request carries
    ``batch`` copies of a word image (the pyfunc's input example), timed end to end (JSON, base64, decoding,
    ONNX Runtime, the answer)."""
    image = input_example()[IMAGE_COLUMN][0]
    rows = []
    for batch in batch_sizes:
        body = invocations_body([image] * batch)
        start = 0.0
        for i in range(warmup + requests):
            if i == warmup:
                start = time.perf_counter()
            status, answer = post(url, body)
            if status != 200:
                raise RosettaError(f"the served model answered {status} ({answer.get('message', answer)})")
        seconds = time.perf_counter() - start
        rows.append({"batch": batch, "requests": requests, "requests_per_s": round(requests / seconds, 2),
                     "ms_per_image": round(1000 * seconds / (requests * batch), 3)})
        print(f"batch {batch:>3}: {rows[-1]['requests_per_s']:8.2f} requests/s, "
              f"{rows[-1]['ms_per_image']:8.3f} ms/image over HTTP ({url})", flush=True)
    return rows
