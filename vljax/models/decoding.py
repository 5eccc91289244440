"""KV-cache decoding: the cache layout, cached attention, and greedy / beam / top-p decoders.

A model plugs in through one function,

    step_fn(params, cache, tokens [B, T], positions [B, T], mask [B, T] | None) -> (logits [B, T, V], cache)

that appends T tokens to the cache (an explicit pytree whose every leaf has the batch as its
leading dim, so beams can be reordered by a gather) and returns their logits. `prefill` runs it
once over the prompt; the decoders then call it with T = 1 inside a `lax.while_loop`.

Padding: prompts are LEFT-padded (every row's last prompt token sits in the last column, so all
rows write the same cache slot each step); `left_pad` converts right-padded prompts. Position ids
count only real tokens (`cumsum(mask) - 1`), so a padded row decodes exactly like the same prompt
unpadded. After a row emits `eos_id` it emits `pad_id`.

The cache of vljax.models.causal_lm.CausalLM (`init_cache`):

    {"index": int32 [B] next slot (equal across rows), "mask": bool [B, S] filled, non-pad slots,
     "layers": [{"k": [B, S, Hkv, K], "v": [B, S, Hkv, K]}, ...]}   (keys stored after RoPE)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vljax.nn.attention import dot_product_attention
from vljax.nn.embeddings import apply_rope
from vljax.nn.rope_scaling import rope_inv_freq

StepFn = Callable[..., tuple[jax.Array, Any]]
NEG_INF = -1e30


def init_cache(batch: int, max_len: int, depth: int, num_kv_heads: int, head_dim: int, dtype=jnp.float32) -> dict:
    """-> empty KV cache with `max_len` slots per row (layout in the module docstring)."""
    shape = (batch, max_len, num_kv_heads, head_dim)
    return {
        "index": jnp.zeros((batch,), jnp.int32),
        "mask": jnp.zeros((batch, max_len), bool),
        "layers": [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(depth)],
    }


def cache_step_mask(
    cache: dict, step_mask: jax.Array | None, num_new: int, sliding_window: int | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Cache + bool [B, T] (None = all real) -> (write index, filled slots [B, S], attention mask [B, T, S])."""
    b, s = cache["mask"].shape
    index = cache["index"][0]
    new = jnp.ones((b, num_new), bool) if step_mask is None else step_mask.astype(bool)
    filled = jax.lax.dynamic_update_slice(cache["mask"], new, (0, index))
    q = (index + jnp.arange(num_new))[:, None]
    k = jnp.arange(s)[None, :]
    visible = k <= q
    if sliding_window is not None:
        visible = visible & (q - k < sliding_window)
    return index, filled, filled[:, None, :] & visible[None]


def cached_attention(
    p: dict,
    x: jax.Array,
    positions: jax.Array,
    layer_cache: dict,
    index: jax.Array,
    mask: jax.Array,
    *,
    num_heads: int,
    rope_theta: float,
    rope_scaling=None,
    dtype=jnp.float32,
) -> tuple[jax.Array, dict]:
    """MultiHeadAttention params, [B, T, D], int [B, T], {'k','v'} [B, S, Hkv, K], bool [B, T, S] -> (y, cache).

    Self-attention of T new tokens over the cache (their own keys written at `index` first), with
    the parameter layout of vljax.nn.attention.MultiHeadAttention, so a model can run its trained
    attention either way; tests check it against the module's full forward.
    """
    x = x.astype(dtype)
    proj = lambda name: (
        jnp.einsum("btd,dhk->bthk", x, p[f"{name}_kernel"].astype(dtype))
        + (p[f"{name}_bias"].astype(dtype) if f"{name}_bias" in p else 0.0)
    )
    q, k, v = proj("query"), proj("key"), proj("value")
    inv_freq = None
    if rope_scaling:
        # NOTE: same inverse frequencies as the full forward would use at this length (matters for
        # 'dynamic' scaling only).
        inv_freq = rope_inv_freq(q.shape[-1], rope_theta, rope_scaling, seq_len=jnp.max(positions) + 1)
    q = apply_rope(q, positions, rope_theta, inv_freq)
    k = apply_rope(k, positions, rope_theta, inv_freq)
    ck = jax.lax.dynamic_update_slice(layer_cache["k"], k.astype(layer_cache["k"].dtype), (0, index, 0, 0))
    cv = jax.lax.dynamic_update_slice(layer_cache["v"], v.astype(layer_cache["v"].dtype), (0, index, 0, 0))
    if q.shape[2] != num_heads:
        raise ValueError(f"query kernel has {q.shape[2]} heads, expected num_heads={num_heads}")
    out = dot_product_attention(q, ck.astype(dtype), cv.astype(dtype), mask, dtype=dtype)
    y = jnp.einsum("bthk,hkd->btd", out.astype(dtype), p["out_kernel"].astype(dtype))
    if "out_bias" in p:
        y = y + p["out_bias"].astype(dtype)
    return y, {"k": ck, "v": cv}


class Prefilled(NamedTuple):
    """Decoder state after the prompt: cache, next-token logits [B, V], next position ids [B]."""

    cache: Any
    logits: jax.Array
    positions: jax.Array


def left_pad(tokens: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right- (or arbitrarily) padded int [B, P] + bool [B, P] -> left-padded (tokens, mask), order kept."""
    tokens, mask = np.asarray(tokens), np.asarray(mask).astype(bool)
    if tokens.shape != mask.shape or tokens.ndim != 2:
        raise ValueError(f"tokens {tokens.shape} and mask {mask.shape} must both be [B, P]")
    out_t, out_m = np.zeros_like(tokens), np.zeros_like(mask)
    for b in range(tokens.shape[0]):
        real = tokens[b][mask[b]]
        if real.size == 0:
            raise ValueError(f"prompt row {b} has no token (mask all False)")
        out_t[b, tokens.shape[1] - real.size :] = real
        out_m[b, tokens.shape[1] - real.size :] = True
    return out_t, out_m


def prompt_positions(mask: jax.Array) -> jax.Array:
    """bool [B, P] left-padded mask -> int32 [B, P] position ids (0 at each row's first real token)."""
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1, 0)


def prefill(step_fn: StepFn, params, cache, tokens: jax.Array, mask: jax.Array) -> Prefilled:
    """Runs the left-padded prompt int [B, P] (bool mask [B, P]) through step_fn -> Prefilled."""
    positions = prompt_positions(mask)
    logits, cache = step_fn(params, cache, tokens, positions, mask)
    return Prefilled(cache, logits[:, -1].astype(jnp.float32), positions[:, -1] + 1)


def top_p_filter(logits: jax.Array, top_p: float) -> jax.Array:
    """[..., V] -> [..., V] logits with tokens outside the smallest set of mass >= top_p set to -inf-ish."""
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_p == 1.0:
        return logits
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    # NOTE: keep a token if the mass strictly before it is < top_p, so the top token always survives.
    keep_sorted = (jnp.cumsum(probs, axis=-1) - probs) < top_p
    keep = jnp.zeros_like(keep_sorted).at[tuple(jnp.indices(order.shape)[:-1]) + (order,)].set(keep_sorted)
    return jnp.where(keep, logits, NEG_INF)


def _next_token(logits, rng, step, temperature, top_p):
    """[B, V] -> int [B]: argmax when temperature == 0, else a top-p sample at that temperature."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    scaled = top_p_filter(logits / temperature, top_p)
    return jax.random.categorical(jax.random.fold_in(rng, step), scaled, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("step_fn", "max_new_tokens", "eos_id", "pad_id", "temperature", "top_p"))
def sample(
    step_fn: StepFn,
    params,
    state: Prefilled,
    rng: jax.Array | None = None,
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int = 0,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> jax.Array:
    """Prefilled -> int32 [B, max_new_tokens]: greedy (temperature 0) or temperature/top-p sampling."""
    if temperature < 0.0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature > 0.0 and rng is None:
        raise ValueError("sampling (temperature > 0) needs an rng")
    rng = jax.random.key(0) if rng is None else rng
    b = state.logits.shape[0]
    out = jnp.full((b, max_new_tokens), pad_id, jnp.int32)

    def cond(carry):
        i, _, _, _, _, done = carry
        return (i < max_new_tokens) & ~jnp.all(done)

    def body(carry):
        i, cache, logits, positions, out, done = carry
        tok = _next_token(logits, rng, i, temperature, top_p)
        tok = jnp.where(done, pad_id, tok)
        out = out.at[:, i].set(tok)
        done = done | (tok == eos_id)
        new_logits, cache = step_fn(params, cache, tok[:, None], positions[:, None], None)
        return i + 1, cache, new_logits[:, 0].astype(jnp.float32), positions + 1, out, done

    # NOTE: one step_fn call per emitted token; the last call's logits are unused but keeping the
    # body uniform lets XLA compile a single loop body.
    carry = (jnp.int32(0), state.cache, state.logits, state.positions, out, jnp.zeros((b,), bool))
    return jax.lax.while_loop(cond, body, carry)[4]


def greedy(
    step_fn: StepFn, params, state: Prefilled, *, max_new_tokens: int, eos_id: int, pad_id: int = 0
) -> jax.Array:
    """Prefilled -> int32 [B, max_new_tokens] argmax continuation."""
    return sample(step_fn, params, state, None, max_new_tokens=max_new_tokens, eos_id=eos_id, pad_id=pad_id)


def _repeat_rows(tree, k):
    """Pytree of [B, ...] -> [B * k, ...] (each row repeated k times, beam-major within a row)."""
    return jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), tree)


@functools.partial(
    jax.jit, static_argnames=("step_fn", "max_new_tokens", "num_beams", "eos_id", "pad_id", "length_penalty")
)
def beam_search(
    step_fn: StepFn,
    params,
    state: Prefilled,
    *,
    max_new_tokens: int,
    num_beams: int,
    eos_id: int,
    pad_id: int = 0,
    length_penalty: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """Prefilled -> (int32 [B, max_new_tokens] best beam, float32 [B] its score = logp / len^length_penalty).

    Finished beams stay in the beam with a frozen score and compete with the live ones; with
    num_beams = 1 this is exactly greedy decoding.
    """
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    b, v = state.logits.shape
    k = num_beams
    cache = _repeat_rows(state.cache, k)
    logits = jnp.repeat(state.logits, k, axis=0).reshape(b, k, v)
    positions = jnp.repeat(state.positions, k, axis=0)
    # NOTE: all beams start identical; only beam 0 may expand at the first step or the top-k
    # would pick the same continuation k times.
    scores = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, NEG_INF)[None], (b, 1))
    seqs = jnp.full((b, k, max_new_tokens), pad_id, jnp.int32)
    done = jnp.zeros((b, k), bool)
    lengths = jnp.zeros((b, k), jnp.int32)
    frozen = jnp.full((v,), NEG_INF).at[pad_id].set(0.0)

    def cond(carry):
        i, *_, done, _ = carry
        return (i < max_new_tokens) & ~jnp.all(done)

    def body(carry):
        i, cache, logits, positions, scores, seqs, done, lengths = carry
        logp = jax.nn.log_softmax(logits, axis=-1)
        logp = jnp.where(done[..., None], frozen, logp)
        cand = (scores[..., None] + logp).reshape(b, k * v)
        scores, flat = jax.lax.top_k(cand, k)
        beam, tok = flat // v, (flat % v).astype(jnp.int32)
        rows = (jnp.arange(b)[:, None] * k + beam).reshape(-1)
        cache = jax.tree.map(lambda x: x[rows], cache)
        seqs = jnp.take_along_axis(seqs, beam[..., None], axis=1).at[:, :, i].set(tok)
        was_done = jnp.take_along_axis(done, beam, axis=1)
        lengths = jnp.take_along_axis(lengths, beam, axis=1) + (~was_done).astype(jnp.int32)
        done = was_done | (tok == eos_id)
        new_logits, cache = step_fn(params, cache, tok.reshape(-1, 1), positions[:, None], None)
        return (
            i + 1,
            cache,
            new_logits[:, 0].astype(jnp.float32).reshape(b, k, v),
            positions + 1,
            scores,
            seqs,
            done,
            lengths,
        )

    carry = (jnp.int32(0), cache, logits, positions, scores, seqs, done, lengths)
    _, _, _, _, scores, seqs, _, lengths = jax.lax.while_loop(cond, body, carry)
    final = scores / jnp.maximum(lengths, 1).astype(jnp.float32) ** length_penalty
    best = jnp.argmax(final, axis=1)
    return (
        jnp.take_along_axis(seqs, best[:, None, None], axis=1)[:, 0],
        jnp.take_along_axis(final, best[:, None], axis=1)[:, 0],
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "step_fn",
        "max_new_tokens",
        "eos_id",
        "pad_id",
        "temperature",
        "top_p",
        "num_beams",
        "length_penalty",
    ),
)
def generate(
    step_fn: StepFn,
    params,
    cache,
    prompts: jax.Array,
    mask: jax.Array,
    rng: jax.Array | None = None,
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int = 0,
    temperature: float = 0.0,
    top_p: float = 1.0,
    num_beams: int = 1,
    length_penalty: float = 0.0,
) -> jax.Array:
    """Left-padded int [B, P] + bool [B, P] (+ empty cache of >= P + max_new_tokens slots) -> int32 [B, N].

    One compiled program per (shapes, static settings): prefill, then greedy / sampling, or beam
    search when num_beams > 1. Pass the same `step_fn` object on every call or it recompiles.
    """
    slots = cache["mask"].shape[1] if isinstance(cache, dict) and "mask" in cache else None
    if slots is not None and slots < prompts.shape[1] + max_new_tokens:
        raise ValueError(f"cache has {slots} slots, needs prompt {prompts.shape[1]} + max_new_tokens {max_new_tokens}")
    state = prefill(step_fn, params, cache, prompts, mask)
    if num_beams > 1:
        if temperature > 0.0:
            raise ValueError("num_beams > 1 is deterministic beam search; use temperature=0")
        return beam_search(
            step_fn,
            params,
            state,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            eos_id=eos_id,
            pad_id=pad_id,
            length_penalty=length_penalty,
        )[0]
    return sample(
        step_fn,
        params,
        state,
        rng,
        max_new_tokens=max_new_tokens,
        eos_id=eos_id,
        pad_id=pad_id,
        temperature=temperature,
        top_p=top_p,
    )


def module_step_fn(model, method: str = "decode_step") -> StepFn:
    """flax module with `decode_step(cache, tokens, positions, mask)` -> StepFn (create once, reuse)."""
    fn = getattr(type(model), method)

    def step_fn(params, cache, tokens, positions, mask):
        return model.apply({"params": params}, cache, tokens, positions, mask, method=fn)

    return step_fn
