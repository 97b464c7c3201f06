"""The latency of scoring one row, as a serving system calling the trained model sees it.

``inference_samples_per_s`` is the throughput of whole test batches; a model serving requests
one at a time pays each forward pass's fixed cost (kernel launches, Python, small matmuls) per
row instead. So a run ends by timing single-row forward passes of its best weights on one thread
(a server runs many such calls side by side, one core each), torch eager in inference mode; its
p99 is the cost table's column. ``python -m experiments.benchmark.serving`` measures the exported
graphs and larger batches.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import torch

from datamodules.ctr import SplitBatches
from models.base import batch_to

CALLS, WARMUP = 200, 20


def one_row_p99_ms(model, datamodule, calls: int = CALLS, warmup: int = WARMUP) -> Optional[float]:
    """p99 over ``calls`` timed forward passes, each of one test row (validation where the run has
    no test rows), in milliseconds; None where neither split has a row."""
    split = next((s for s in ("test", "val") if datamodule.num_rows(s)), None)
    if split is None:
        return None
    rows = SplitBatches(datamodule.split_arrays(split))
    count = datamodule.num_rows(split)
    singles = [batch_to(rows[np.array([i % count])], model.device) for i in range(warmup + calls)]
    cuda = model.device.type == "cuda"
    threads, was_training = torch.get_num_threads(), model.training
    torch.set_num_threads(1)
    model.eval()
    seconds = []
    try:
        with torch.inference_mode():
            for batch in singles:
                started = time.perf_counter()
                model(batch)
                if cuda:
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
    return float(np.percentile(seconds[warmup:], 99) * 1000)
