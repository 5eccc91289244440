"""Text-only causal LM trained by next-token prediction on world captions.

    x = [bos] caption [eos] [pad ...]          loss = NTP over the caption tokens and eos

It is PRIOR's reference model (vljax/methods/prior.py: trained on the pre-training captions alone,
with the LVLM's tokenizer, then frozen) and a text-only LM initialisation for other LVLM recipes.
The model is a bare `CausalLM`, so its checkpoint grafts into any param subtree of that shape
(`config.init.reference = 'checkpoint:<workdir>'`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vljax.data.tokenizer import BOS, EOS, PAD
from vljax.losses import lm as lm_loss
from vljax.models.causal_lm import CausalLM
from vljax.models.lm_sizes import resolve_lm
from vljax.nn.dtypes import dtype

# NOTE: examples are just tokens + label_mask and the loss takes segment_ids / positions, so
# config.data.pack=True may pack several captions per row (vljax/data/packing.py).
PACKABLE = True


def build(config, vocab_size: int) -> CausalLM:
    """config.model.lm (a dict of CausalLM fields, or a vljax.models.lm_sizes.LM_SIZES name) -> CausalLM."""
    return CausalLM(**dict(resolve_lm(config.model.lm), vocab_size=vocab_size), dtype=dtype(config.model.dtype))


def init_params(model: CausalLM, config, rng: jax.Array):
    """-> boxed params (logical axis names attached) from a dummy [1, max_len] sequence."""
    return model.init(rng, jnp.zeros((1, int(config.data.max_len)), jnp.int32))["params"]


def data_spec(config) -> dict:
    """World fields the example builder reads: the captions (config.text_field picks the kind)."""
    del config
    return dict(fields=("captions",), text_fields={}, keep=())


def caption_sequence(ids: list[int], max_len: int) -> dict[str, np.ndarray]:
    """Caption ids -> tokens int32 [max_len] = [bos, ids, eos, pad...], label_mask bool (caption + eos)."""
    seq = [BOS] + list(ids) + [EOS]
    if len(seq) > max_len:
        raise ValueError(f"config.data.max_len={max_len} is too short for a {len(seq)}-token caption")
    tokens = np.full((max_len,), PAD, np.int32)
    tokens[: len(seq)] = seq
    label = np.zeros((max_len,), bool)
    label[1 : len(seq)] = True
    return dict(tokens=tokens, label_mask=label)


def make_example(sample: dict, tokenizer, config) -> dict[str, np.ndarray]:
    """World sample -> dict(tokens int32 [T], label_mask bool [T]) for sample[config.text_field]."""
    field = config.get("text_field", "captions/raw")
    if field not in sample:
        raise KeyError(f"config.text_field={field!r} is not in the sample; enable it in config.data.world.caption.kinds")
    return caption_sequence(tokenizer.encode(str(sample[field])), int(config.data.max_len))


def make_loss(model: CausalLM, config, mesh):
    """-> loss_fn(params, batch, rng) -> (loss, metrics): NTP on caption tokens (bos and pads unsupervised).

    Packed batches (config.data.pack: segment_ids / positions [B, T] in the batch) keep attention and
    targets inside each caption; their loss defaults to normalize='segment' (every caption counts once).
    """
    del mesh  # NOTE: one token mean over the global batch; jit partitions it over any batch sharding.
    packed = bool(config.data.get("pack", False))
    # NOTE: packed rows use config.data.pack_normalize (default 'segment': each caption's mean counts once, as
    # in an unpacked per-caption mean); config.loss_normalize (a preset default, 'token') applies unpacked.
    if packed:
        normalize = config.data.get("pack_normalize", "segment")
    else:
        normalize = config.get("loss_normalize", "token")

    def loss_fn(params, batch, rng):
        del rng  # NOTE: no dropout in the reference LM.
        tokens = batch["tokens"]
        segment_ids, positions = batch.get("segment_ids"), batch.get("positions")
        logits = model.apply({"params": params}, tokens, positions, segment_ids=segment_ids)
        targets, mask = lm_loss.shift_targets(tokens, batch["label_mask"], segment_ids)
        return lm_loss.next_token_loss(logits, targets, mask, segment_ids=segment_ids, normalize=normalize)

    return loss_fn
