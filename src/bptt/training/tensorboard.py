"""TensorBoard event files for a run (`bptt train --tensorboard`), written with the tensorboard
package's own event-file writer and protocol buffers: no TensorFlow, no torch.

What a run writes, into RUN_DIR itself (`tensorboard --logdir runs` shows each run):

    update/loss, update/grad_norm, update/clipped     every update: its loss (nats per token),
    update/grad_norm/<tensor>                          its gradient norms before clipping, and
                                                       whether clipping fired (0 or 1)
    train/<metric>, valid/<metric>                     every evaluation: each number of its
                                                       metrics.jsonl line (train/loss,
                                                       valid/bpc, train/lr, train/tokens_per_s, ...)
    weights/<tensor>, gradients/<tensor>               every evaluation: histograms of the
                                                       weights and of the last update's
                                                       gradient (after clipping)
    samples                                            every evaluation, when the task provides
                                                       it: generated text or predictions

Events are built when they happen but written only after the checkpoint that
covers them (`bptt.training.loop.Loop.save`), as grad-norms.jsonl is: a resumed
run continues from its last checkpoint and never writes a step twice.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from bptt.errors import UsageError

HISTOGRAM_BINS = 30


def _protos():
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
    except ImportError:
        raise UsageError("--tensorboard: needs the tensorboard package: pip install 'bptt[tensorboard]'") from None
    return event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2


def check_installed() -> None:
    """UsageError, before training starts, when the tensorboard package is missing."""
    _protos()


def tag_of(key: str) -> str:
    """A metrics.jsonl key as a TensorBoard tag: valid_bpc -> valid/bpc, train_loss -> train/loss,
    lr -> train/lr."""
    prefix, _, rest = key.partition("_")
    if prefix in ("train", "valid") and rest:
        return f"{prefix}/{rest}"
    return f"train/{key}"


def scalars(step: int, values: dict[str, float]):
    """One event holding a scalar per tag."""
    event_pb2, summary_pb2, _, _ = _protos()
    summary = summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()]
    )
    return event_pb2.Event(wall_time=time.time(), step=step, summary=summary)


def histograms(step: int, tensors: dict[str, np.ndarray], prefix: str):
    """One event holding a histogram of each tensor's finite entries (HISTOGRAM_BINS bins)."""
    event_pb2, summary_pb2, _, _ = _protos()
    values = []
    for name, x in tensors.items():
        x = np.asarray(x, dtype=np.float64).ravel()
        x = x[np.isfinite(x)]
        if x.size == 0:
            continue
        counts, edges = np.histogram(x, bins=HISTOGRAM_BINS)
        histo = summary_pb2.HistogramProto(
            min=float(x.min()),
            max=float(x.max()),
            num=float(x.size),
            sum=float(x.sum()),
            sum_squares=float(np.dot(x, x)),
            bucket_limit=[float(e) for e in edges[1:]],
            bucket=[float(c) for c in counts],
        )
        values.append(summary_pb2.Summary.Value(tag=f"{prefix}/{name}", histo=histo))
    return event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values))


def text(step: int, tag: str, content: str):
    """One event holding a text for TensorBoard's text plugin (as a code block: shown as written)."""
    from tensorboard.plugins.text.metadata import create_summary_metadata

    event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2 = _protos()
    tensor = tensor_pb2.TensorProto(
        dtype="DT_STRING",
        string_val=[f"```\n{content}\n```".encode()],  # the text plugin renders markdown: keep lines as they are
        tensor_shape=tensor_shape_pb2.TensorShapeProto(),
    )
    metadata = create_summary_metadata(display_name=tag, description="")
    value = summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)
    return event_pb2.Event(wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[value]))


class EventWriter:
    """An events.out.tfevents.* file in `run_dir` (a new one per session: a resumed run adds one)."""

    def __init__(self, run_dir: Path):
        _protos()
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        # written on our schedule (`write`, at each checkpoint), not the writer's
        self._writer = EventFileWriter(str(run_dir), max_queue_size=1_000_000, flush_secs=10**6)

    def write(self, events) -> None:
        for event in events:
            self._writer.add_event(event)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
