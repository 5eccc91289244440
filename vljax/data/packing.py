"""Sequence packing: variable-length examples -> fixed rows [T] with segment ids and per-segment positions.

    example_k = dict(tokens [L_k], label_mask [L_k])   (make_example output, trailing pads stripped)
    row       = dict(tokens [T], label_mask [T], segment_ids [T], positions [T])

    tokens      = [a a a a b b b c c 0 0]      (0 = pad)
    segment_ids = [1 1 1 1 2 2 2 3 3 0 0]      (1..k per row, 0 = pad)
    positions   = [0 1 2 3 0 1 2 0 1 0 0]      (restart at 0 in each segment)

Greedy first-fit over a bounded buffer of `num_bins` rows: each example goes into the first row with
room; the first example that fits in none closes the buffer (all its rows are emitted, in order) and
opens the next one. It is grain's own `FirstFitPackIterDataset` (grain.experimental), so the packed
iterator's `get_state()` / `set_state()` resume exactly: the state is the parent position of the last
fully emitted buffer plus the row index inside the current one. Bins are not shuffled, so the output
is a deterministic function of the input order.

The model then keeps attention inside a segment (CausalLM(segment_ids=...)), RoPE uses `positions`, and
the loss never predicts across a boundary (vljax.losses.lm.shift_targets(segment_ids=...)).
"""

from __future__ import annotations

from typing import Sequence

import grain
import numpy as np

PACK_FIELDS = ("tokens", "label_mask")


def strip_padding(example: dict, pad_id: int, max_len: int, fields: Sequence[str] = PACK_FIELDS) -> dict:
    """Padded example {tokens [T], label_mask [T], ...} -> the same fields cut to their real length [L].

    The real length ends after the last position that is not an unsupervised pad (token == pad_id and
    label_mask False), so a supervised token whose id happens to equal pad_id (e.g. eos == pad in some
    HF tokenizers) is kept. Raises ValueError (naming config.data.max_len) when an example is longer
    than the packed row length `max_len`.
    """
    tokens = np.asarray(example["tokens"])
    if tokens.ndim != 1:
        raise ValueError(f"packing needs 1-D examples; tokens has shape {tokens.shape}")
    label = np.asarray(example["label_mask"]).astype(bool)
    real = np.flatnonzero((tokens != pad_id) | label)
    length = int(real[-1]) + 1 if real.size else 0
    if length == 0:
        raise ValueError("packing: an example has no non-pad token")
    if length > max_len:
        raise ValueError(f"config.data.max_len={max_len} is shorter than a {length}-token example; "
                         f"packed rows cannot split an example")
    out = {}
    for k in fields:
        v = np.asarray(example[k])
        if v.shape != tokens.shape:
            raise ValueError(f"packing: field {k!r} has shape {v.shape}, expected tokens' {tokens.shape}")
        out[k] = v[:length]
    return out


def _rename(row: dict, fields: Sequence[str]) -> dict:
    """grain's packed row (per-field `<k>_segment_ids` / `<k>_positions`) -> one segment_ids / positions pair."""
    out = {k: row[k] for k in fields}
    # NOTE: every field is packed with the same lengths, so the tokens' segment ids / positions hold for all.
    out["segment_ids"] = row["tokens_segment_ids"].astype(np.int32)
    out["positions"] = row["tokens_positions"].astype(np.int32)
    return out


def pack_dataset(ds: grain.IterDataset, max_len: int, num_bins: int, fields: Sequence[str] = PACK_FIELDS
                 ) -> grain.IterDataset:
    """IterDataset of stripped examples {k: [L]} -> IterDataset of packed rows {k, segment_ids, positions: [T]}.

    max_len: T, the packed row length; num_bins: rows filled at once (the first-fit buffer; more rows
    -> less padding, more reordering).
    """
    if int(max_len) <= 0:
        raise ValueError(f"config.data.max_len={max_len} must be positive to pack")
    if int(num_bins) <= 0:
        raise ValueError(f"config.data.pack_bins={num_bins} must be positive")
    if "tokens" not in fields:
        raise ValueError(f"packing fields {tuple(fields)} must include 'tokens'")
    packed = grain.experimental.FirstFitPackIterDataset(
        ds,
        length_struct={k: int(max_len) for k in fields},
        num_packing_bins=int(num_bins),
        shuffle_bins=False,
    )
    return packed.map(lambda row: _rename(row, fields))


def pack_examples(examples: Sequence[dict], max_len: int, num_bins: int, pad_id: int = 0,
                  fields: Sequence[str] = PACK_FIELDS) -> dict[str, np.ndarray]:
    """Padded examples -> packed rows stacked {k: [R, T]} (the whole list; for tests and offline inspection)."""
    stripped = [strip_padding(e, pad_id, max_len, fields) for e in examples]
    rows = list(pack_dataset(grain.MapDataset.source(stripped).to_iter_dataset(), max_len, num_bins, fields))
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def packing_efficiency(mask: np.ndarray) -> float:
    """bool/int [R, T] non-pad mask (segment_ids > 0, or tokens != pad) -> fraction of non-pad cells."""
    m = np.asarray(mask)
    return float((m > 0).sum() / max(m.size, 1))
