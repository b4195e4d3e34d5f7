"""Running released ONNX models (CosyVoice's CAM++ speaker model and S3 speech tokenizer) with onnxruntime.

    session = open_session("campplus.onnx", "CAM++ speaker model")
    check_signature(session, "CAM++ speaker model", input_ranks=[3], output_ranks=[2])
    (embedding,) = run_session(session, "CAM++ speaker model", [feats])

Inputs are passed by position, as CosyVoice does (`session.get_inputs()[i].name`), so the tensor
names inside a file do not matter. Every failure is a one-line BadConfigError naming the file:
onnxruntime missing, no such file, not an ONNX model, inputs/outputs of the wrong number or rank.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from voxtok.errors import BadConfigError

INSTALL_HINT = "pip install 'voxtok[cosyvoice]'"


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def open_session(model: str | os.PathLike | bytes, what: str, device: str = "cpu", threads: int | None = None):
    """An onnxruntime InferenceSession of `model` (a file path or the file's bytes).

    `what` names the model in errors ("CAM++ speaker model"). On a CUDA `device` the CUDA provider is
    used when this onnxruntime build has it (CPU otherwise); `threads` defaults to torch's count.
    """
    try:
        import onnxruntime
    except ImportError:
        raise BadConfigError(f"the {what} runs with onnxruntime, which is not installed: {INSTALL_HINT}") from None
    where = None
    if not isinstance(model, (bytes, bytearray)):
        where = Path(model)
        if not where.is_file():
            raise BadConfigError(f"{what} not found (expected an .onnx file)", where)
        model = str(where)
    import torch

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.log_severity_level = 3  # warnings about unused initializers etc. are not the user's business
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        index = torch.device(device).index or 0
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    try:
        return onnxruntime.InferenceSession(model, sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime raises its own Fail/InvalidProtobuf/RuntimeException types
        raise BadConfigError(f"cannot load the {what} as an ONNX model ({_first_line(err)})", where) from None


def check_signature(session, what: str, input_ranks: Sequence[int], output_ranks: Sequence[int],
                    where: object = None) -> None:
    """BadConfigError unless the session has len(input_ranks) inputs and at least len(output_ranks)
    outputs of those ranks (a dimension may be symbolic)."""
    for role, nodes, ranks in (("input", session.get_inputs(), input_ranks),
                               ("output", session.get_outputs(), output_ranks)):
        enough = len(nodes) == len(ranks) if role == "input" else len(nodes) >= len(ranks)
        found = [len(n.shape) for n in nodes[:len(ranks)]]
        if not enough or found != list(ranks):
            described = ", ".join(f"{n.name}{list(n.shape)}" for n in nodes)
            raise BadConfigError(f"the {what} should have {len(ranks)} {role}(s) of rank(s) {list(ranks)}, "
                                 f"this file has {described or 'none'}", where)


def run_session(session, what: str, arrays: Sequence[np.ndarray], where: object = None) -> list[np.ndarray]:
    """Run with `arrays` bound to the inputs in order; returns every output (numpy)."""
    feed = {node.name: array for node, array in zip(session.get_inputs(), arrays)}
    try:
        return session.run(None, feed)
    except Exception as err:
        raise BadConfigError(f"the {what} failed on its input ({_first_line(err)})", where) from None
