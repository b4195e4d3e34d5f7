"""Distillation losses that pull codec latents towards teacher features (DM-Codec, FuseCodec).

Every loss takes a student [B, T, D] (a projection of an RVQ layer's output), a teacher of the
matching shape and `lengths` [B] (valid frames per item; padding never counts), and returns a
scalar, computed in float32 whatever the inputs' precision. The teacher's shape is checked,
never broadcast: the public DM-Codec code saved teacher features as [1, T, D] and silently
compared a whole batch against one utterance's teacher.

Losses (c = cosine similarity, all bounded below by -log sigmoid(1) ~ 0.3133 when c = 1):
    d_axis_loss          -mean_{b, d} log sigmoid(c(S[b, :, d], T[b, :, d]))   cosine along TIME
    t_axis_loss          mean |S - T| + lambda * -mean_{b, t} log sigmoid(c(S[b, t], T[b, t]))
    global_loss          either of the two against a per-utterance vector [B, D] broadcast over time
    windowed_token_loss  each teacher token [B, N, D] against the frames inside a window around
                         its aligned span [B, N, 2]: the best-matching frame ("max") or all ("mean")
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from voxtok.errors import BadConfigError, VoxTokError
from voxtok.nn.masks import length_mask

EPS = 1e-8


class TeacherShapeError(VoxTokError):
    """A teacher tensor whose shape does not match the student it supervises."""


def _check_student(student: torch.Tensor, lengths: torch.Tensor) -> None:
    """Refuse a student that is not [B, T, D] or lengths that are not [B]."""
    if student.dim() != 3:
        raise TeacherShapeError(f"student features must be [B, T, D], got {tuple(student.shape)}")
    if lengths.shape != (student.shape[0],):
        raise TeacherShapeError(f"lengths must be [B={student.shape[0]}], got {tuple(lengths.shape)}")


def _check_same(student: torch.Tensor, teacher: torch.Tensor, name: str) -> None:
    if teacher.shape != student.shape:
        raise TeacherShapeError(f"{name} teacher has shape {tuple(teacher.shape)}, the student "
                                f"{tuple(student.shape)} [B, T, D]: teachers are never broadcast")


def _frame_mask(student: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, T] bool: frames before each item's length."""
    return length_mask(lengths.to(student.device), student.shape[1])


def _masked_mean(value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of value over True entries of a same-shape bool mask; 0 (with a graph) when none."""
    weight = mask.to(value.dtype)
    total = weight.sum()
    if total == 0:
        return value.sum() * 0.0
    return (value * weight).sum() / total


def _neg_log_sigmoid(cos: torch.Tensor) -> torch.Tensor:
    return F.softplus(-cos)  # = -log sigmoid(cos), stable


def d_axis_loss(student: torch.Tensor, teacher: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """SpeechTokenizer/DM-Codec "D-axis" loss: for every utterance b and feature dim d, the cosine
    between the time series S[b, :L_b, d] and T[b, :L_b, d]; loss = -mean log sigmoid(cos).

    student, teacher: [B, T, D]; lengths: [B] valid frames. Utterances with no valid frame are
    left out. Scale-invariant per dim, so the student only has to follow each feature's shape
    over time, not its magnitude.
    """
    _check_student(student, lengths)
    _check_same(student, teacher, "d_axis")
    student, teacher = student.float(), teacher.float()  # sums over time: half precision would lose them
    mask = _frame_mask(student, lengths).unsqueeze(-1).to(student.dtype)  # [B, T, 1]
    s, t = student * mask, teacher * mask
    dot = (s * t).sum(1)  # [B, D]
    norm = s.norm(dim=1).clamp_min(EPS) * t.norm(dim=1).clamp_min(EPS)
    loss = _neg_log_sigmoid(dot / norm)  # [B, D]
    valid = (lengths.to(student.device) > 0)[:, None].expand_as(loss)
    return _masked_mean(loss, valid)


def t_axis_loss(student: torch.Tensor, teacher: torch.Tensor, lengths: torch.Tensor,
                lambda_sim: float = 1.0) -> torch.Tensor:
    """SpeechTokenizer "T-axis" loss: L1 plus -log sigmoid of the per-frame cosine over features,
    both averaged over the valid frames. student, teacher: [B, T, D]; lengths: [B] frames."""
    _check_student(student, lengths)
    _check_same(student, teacher, "t_axis")
    student, teacher = student.float(), teacher.float()
    mask = _frame_mask(student, lengths)  # [B, T]
    l1 = _masked_mean((student - teacher).abs(), mask.unsqueeze(-1).expand_as(student))
    cos = F.cosine_similarity(student, teacher, dim=-1, eps=EPS)  # [B, T]
    return l1 + lambda_sim * _masked_mean(_neg_log_sigmoid(cos), mask)


FRAME_LOSSES = {"d_axis": d_axis_loss, "t_axis": t_axis_loss}


def frame_loss(kind: str, student: torch.Tensor, teacher: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Dispatch to `d_axis_loss` or `t_axis_loss` by name."""
    if kind not in FRAME_LOSSES:
        raise BadConfigError(f"unknown distillation loss '{kind}' (choose from {sorted(FRAME_LOSSES)})")
    return FRAME_LOSSES[kind](student, teacher, lengths)


def global_loss(student: torch.Tensor, global_vector: torch.Tensor, lengths: torch.Tensor,
                kind: str = "d_axis") -> torch.Tensor:
    """FuseCodec global supervision: the student [B, T, D] (RVQ-1 projection) against one vector
    per utterance, global_vector [B, D] (mean-pooled semantic features or the LM's [CLS] state),
    broadcast over time and compared with the frame loss `kind` ("d_axis" or "t_axis").

    Under "d_axis" each feature's time series is compared with a constant, so the loss asks the
    student to hold every feature steady with the global vector's sign; "t_axis" asks every frame
    to point along the global vector.
    """
    _check_student(student, lengths)
    batch, _, dim = student.shape
    if global_vector.shape != (batch, dim):
        raise TeacherShapeError(f"global teacher has shape {tuple(global_vector.shape)}, expected "
                                f"[B={batch}, D={dim}]: teachers are never broadcast over the batch")
    broadcast = global_vector[:, None, :].expand_as(student)
    return frame_loss(kind, student, broadcast, lengths)


def windowed_token_loss(student: torch.Tensor, tokens: torch.Tensor, spans: torch.Tensor,
                        token_lengths: torch.Tensor, lengths: torch.Tensor, window: int = 2,
                        match: str = "max") -> torch.Tensor:
    """FuseCodec temporally aligned contextual supervision.

    Token n of utterance b (tokens [B, N, D], the LM's word-piece states) is aligned to frames
    spans[b, n] = (start, end) (end exclusive, [B, N, 2] int). It is compared by cosine with the
    student frames in [start - window, end + window), clipped to the valid frames:
        match="max":  the best-matching frame in the window (the paper's dynamic matching);
        match="mean": every frame in the window, averaged.
    loss = -mean over tokens of log sigmoid(cos). Tokens past token_lengths [B] are padding;
    tokens whose window holds no valid frame (cropped away) are left out.
    """
    _check_student(student, lengths)
    batch, frames, dim = student.shape
    if tokens.dim() != 3 or tokens.shape[0] != batch or tokens.shape[2] != dim:
        raise TeacherShapeError(f"token teacher has shape {tuple(tokens.shape)}, expected [B={batch}, N, D={dim}]")
    if spans.shape != (*tokens.shape[:2], 2):
        raise TeacherShapeError(f"token spans have shape {tuple(spans.shape)}, expected {(*tokens.shape[:2], 2)}")
    if token_lengths.shape != (batch,):
        raise TeacherShapeError(f"token lengths must be [B={batch}], got {tuple(token_lengths.shape)}")
    if match not in ("max", "mean"):
        raise BadConfigError(f"windowed token loss: match must be 'max' or 'mean', got {match!r}")
    if window < 0:
        raise BadConfigError(f"windowed token loss: window must be >= 0, got {window}")
    device = student.device
    student = student.float()
    cos = torch.einsum("bnd,btd->bnt", F.normalize(tokens.float(), dim=-1, eps=EPS),
                       F.normalize(student, dim=-1, eps=EPS))  # [B, N, T]
    t = torch.arange(frames, device=device)[None, None, :]
    spans = spans.to(device).long()
    inside = (t >= spans[..., :1] - window) & (t < spans[..., 1:] + window)
    inside &= _frame_mask(student, lengths)[:, None, :]
    inside &= length_mask(token_lengths.to(device), tokens.shape[1])[:, :, None]
    has_frames = inside.any(-1)  # [B, N]
    if match == "max":
        best = cos.masked_fill(~inside, -2.0).amax(-1)  # cosines are >= -1, so -2 marks "none"
        return _masked_mean(_neg_log_sigmoid(best), has_frames)
    per_frame = _neg_log_sigmoid(cos) * inside.to(cos.dtype)
    per_token = per_frame.sum(-1) / inside.sum(-1).clamp_min(1).to(cos.dtype)
    return _masked_mean(per_token, has_frames)
