"""One way to open an ONNX model in onnxruntime on the CPU, for the predictor and the export's verification."""

from __future__ import annotations

import os
from pathlib import Path


def open_session(model: Path | str, threads: int = 0):
    """An onnxruntime InferenceSession on the CPU, quiet; `threads`: intra-op threads (0: onnxruntime's default)."""
    # onnxruntime's official wheels collect telemetry: at import they write a device id and an event store under
    # ~/.cache and $TMPDIR and then upload events. Off unless asked for (it only works before the first import).
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
