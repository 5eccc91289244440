"""Metric writers: TensorBoard event files and metrics.jsonl, with clu's MetricWriter method names.

NOTE: clu.metric_writers imports TensorFlow at package import time; to keep TF out of
the training process we write event files with tensorboard's own EventFileWriter and
keep clu's method names (write_scalars / flush / close) so clu writers can be dropped in.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class TensorBoardWriter:
    """Writes scalars to WORKDIR event files with tensorboard's own writer (TF stays out of the hot path)."""

    def __init__(self, logdir: str | Path):
        self._w = EventFileWriter(str(logdir))

    def _scalar_event(self, step: int, tag: str, value: float) -> event_pb2.Event:
        summ = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])
        return event_pb2.Event(wall_time=time.time(), step=int(step), summary=summ)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]):
        for k, v in scalars.items():
            self._w.add_event(self._scalar_event(step, k, float(np.asarray(v))))

    def flush(self):
        self._w.flush()

    def close(self):
        self._w.close()


class JsonlWriter:
    """Appends {'step': s, **scalars} lines to WORKDIR/metrics.jsonl (for report plots and sweeps)."""

    def __init__(self, path: str | Path):
        self._f = open(path, "a", encoding="utf-8")

    def write_scalars(self, step, scalars):
        row = {"step": int(step), **{k: float(np.asarray(v)) for k, v in scalars.items()}}
        self._f.write(json.dumps(row) + "\n")

    def flush(self):
        self._f.flush()

    def close(self):
        self._f.close()


class MultiWriter:
    """Fans write_scalars / flush / close out to several writers (none on non-main processes)."""

    def __init__(self, writers):
        self.writers = list(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, Any]):
        for w in self.writers:
            w.write_scalars(step, scalars)

    def flush(self):
        for w in self.writers:
            w.flush()

    def close(self):
        for w in self.writers:
            w.close()


def create_writer(workdir: str | Path, is_main: bool = True) -> MultiWriter:
    """TensorBoard + metrics.jsonl on the main process; a no-op writer elsewhere."""
    if not is_main:
        return MultiWriter([])
    return MultiWriter([TensorBoardWriter(workdir), JsonlWriter(Path(workdir) / "metrics.jsonl")])
