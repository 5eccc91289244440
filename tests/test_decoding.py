"""KV-cache decoding == naive full-sequence recomputation (greedy, beam); sampling; padding; one compile.

The reference decoders below re-run the whole CausalLM forward on each prefix (no cache) for one
unpadded prompt at a time; the library decodes a left-padded batch with the KV cache. Cached vs
full logits: float32, 1e-5 absolute.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vljax.models import decoding
from vljax.models.causal_lm import CausalLM

VOCAB, EOS, PAD = 40, 2, 0
N_NEW = 6
NAIVE_LEN = 16


@pytest.fixture(scope="module")
def lm():
    model = CausalLM(vocab_size=VOCAB, width=32, depth=2, num_heads=4, num_kv_heads=2, mlp_dim=64, tie_embeddings=False)
    # NOTE: fresh N(0, 0.3) params from numpy (a jitted RNG init costs more CPU compile than the
    # tests); the scale keeps greedy / beam choices far from float ties.
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"])
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape), s.dtype), shapes)
    # NOTE: the naive forward runs on one fixed padded length (causal: trailing pads change nothing
    # before them), so it compiles once instead of once per prefix length.
    full = jax.jit(lambda p, t: model.apply({"params": p}, t))
    return model, params, decoding.module_step_fn(model), full


def _prompts():
    rows = [[5, 9, 13, 7, 21], [11, 4], [30, 6, 17]]
    width = max(map(len, rows))
    right = np.zeros((len(rows), width), np.int32)
    mask = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        right[i, : len(r)] = r
        mask[i, : len(r)] = True
    tokens, mask = decoding.left_pad(right, mask)
    return rows, tokens, mask


def _full_logits(full, params, seq):
    """Naive: the whole prefix through the plain forward (no cache) -> float64 [V] next-token logits."""
    padded = np.zeros((1, NAIVE_LEN), np.int32)
    padded[0, : len(seq)] = seq
    return np.asarray(full(params, jnp.asarray(padded))[0, len(seq) - 1], np.float64)


def _naive_greedy(full, params, prompt, n):
    seq, out = list(prompt), []
    for _ in range(n):
        if out and out[-1] == EOS:
            out.append(PAD)
            continue
        tok = int(np.argmax(_full_logits(full, params, seq)))
        seq.append(tok)
        out.append(tok)
    return out


def _log_softmax(x):
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def _naive_beam(full, params, prompt, n, k):
    """Beam search with finished beams frozen (same rule as the library), full recompute per beam."""
    beams = [([], 0.0, False)]
    for _ in range(n):
        if all(d for _, _, d in beams):
            break
        cands = []
        for seq, score, done in beams:
            if done:
                cands.append((seq + [PAD], score, True))
                continue
            logp = _log_softmax(_full_logits(full, params, list(prompt) + seq))
            cands.extend((seq + [v], score + logp[v], v == EOS) for v in range(VOCAB))
        order = sorted(range(len(cands)), key=lambda i: -cands[i][1])[:k]
        beams = [cands[i] for i in order]
    best = max(beams, key=lambda b: b[1])[0]
    return best + [PAD] * (n - len(best))


def test_cached_logits_equal_full_forward(lm):
    model, params, step_fn, full = lm
    rows, tokens, mask = _prompts()
    cache = model.init_cache(3, tokens.shape[1] + N_NEW)
    state = jax.jit(decoding.prefill, static_argnums=0)(step_fn, params, cache, jnp.asarray(tokens), jnp.asarray(mask))
    nxt = jnp.array([[3], [8], [12]], jnp.int32)
    logits, _ = jax.jit(step_fn)(params, state.cache, nxt, state.positions[:, None], None)
    for b, r in enumerate(rows):
        np.testing.assert_allclose(np.asarray(state.logits[b]), _full_logits(full, params, r), atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(logits[b, 0]), _full_logits(full, params, r + [int(nxt[b, 0])]), atol=1e-5
        )


def test_greedy_and_beam_equal_naive_recompute(lm):
    model, params, step_fn, full = lm
    rows, tokens, mask = _prompts()
    n = N_NEW
    cache = model.init_cache(3, tokens.shape[1] + n)
    greedy = np.asarray(decoding.generate(step_fn, params, cache, tokens, mask, max_new_tokens=n, eos_id=EOS))
    for b, r in enumerate(rows):
        assert greedy[b].tolist() == _naive_greedy(full, params, r, n), b
    state = jax.jit(decoding.prefill, static_argnums=0)(step_fn, params, cache, jnp.asarray(tokens), jnp.asarray(mask))
    beam1_search, _ = decoding.beam_search(step_fn, params, state, max_new_tokens=n, num_beams=1, eos_id=EOS)
    np.testing.assert_array_equal(np.asarray(beam1_search), greedy)
    beam3 = np.asarray(
        decoding.generate(step_fn, params, cache, tokens, mask, max_new_tokens=n, eos_id=EOS, num_beams=3)
    )
    for b, r in enumerate(rows):
        assert beam3[b].tolist() == _naive_beam(full, params, r, n, 3), b


def test_left_pad_and_padding_invariance(lm):
    model, params, step_fn, full = lm
    rows, tokens, mask = _prompts()
    assert tokens[1].tolist() == [0, 0, 0, 11, 4] and mask[1].tolist() == [False] * 3 + [True] * 2
    with pytest.raises(ValueError, match="row 0 has no token"):
        decoding.left_pad(np.zeros((1, 3), np.int32), np.zeros((1, 3), bool))
    # The same prompt alone (no padding) and inside a padded batch decodes identically.
    n = N_NEW
    alone = decoding.generate(
        step_fn,
        params,
        model.init_cache(1, 2 + n),
        jnp.array([[11, 4]]),
        jnp.ones((1, 2), bool),
        max_new_tokens=n,
        eos_id=EOS,
    )
    batched = decoding.generate(
        step_fn, params, model.init_cache(3, tokens.shape[1] + n), tokens, mask, max_new_tokens=n, eos_id=EOS
    )
    np.testing.assert_array_equal(np.asarray(alone)[0], np.asarray(batched)[1])


def test_sampling_is_deterministic_given_rng(lm):
    model, params, step_fn, full = lm
    _, tokens, mask = _prompts()
    n = N_NEW
    cache = model.init_cache(3, tokens.shape[1] + n)
    run = lambda key, **kw: np.asarray(
        decoding.generate(step_fn, params, cache, tokens, mask, key, max_new_tokens=n, eos_id=EOS, **kw)
    )
    a = run(jax.random.key(1), temperature=1.0, top_p=0.9)
    np.testing.assert_array_equal(a, run(jax.random.key(1), temperature=1.0, top_p=0.9))
    assert not np.array_equal(a, run(jax.random.key(2), temperature=1.0, top_p=0.9))
    # A nucleus this small holds only the argmax token: sampling collapses to greedy.
    np.testing.assert_array_equal(run(jax.random.key(3), temperature=1.0, top_p=1e-6), run(None, temperature=0.0))
    with pytest.raises(ValueError, match="rng"):
        run(None, temperature=1.0)


def test_top_p_filter_matches_numpy_and_sampling_frequencies():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 12)).astype(np.float32) * 2
    got = np.asarray(decoding.top_p_filter(jnp.asarray(logits), 0.7)) > decoding.NEG_INF / 2
    for row, keep in zip(logits, got):
        p = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        order = np.argsort(-p)
        n_keep = int(np.searchsorted(np.cumsum(p[order]), 0.7) + 1)  # smallest prefix with mass >= 0.7
        assert set(np.flatnonzero(keep)) == set(order[:n_keep].tolist())
    # Empirical frequencies of a one-step sample follow the renormalized nucleus (5 sigma bound).
    row = logits[0]
    n = 20000
    state = decoding.Prefilled(
        cache={"rows": jnp.zeros((n,))},
        logits=jnp.tile(jnp.asarray(row)[None], (n, 1)),
        positions=jnp.zeros((n,), jnp.int32),
    )
    fixed = lambda params, cache, tokens, positions, mask: (jnp.zeros((tokens.shape[0], 1, 12)), cache)
    draws = np.asarray(
        decoding.sample(fixed, None, state, jax.random.key(0), max_new_tokens=1, eos_id=-1, temperature=0.5, top_p=0.8)
    )[:, 0]
    scaled = row / 0.5
    p = np.exp(scaled - scaled.max())
    p /= p.sum()
    order = np.argsort(-p)
    kept = order[: int(np.searchsorted(np.cumsum(p[order]), 0.8) + 1)]
    q = np.zeros_like(p)
    q[kept] = p[kept] / p[kept].sum()
    freq = np.bincount(draws, minlength=12) / n
    np.testing.assert_array_less(np.abs(freq - q), 5 * np.sqrt(q * (1 - q) / n) + 1e-12)


def test_compiles_once_per_shape(lm):
    model, params, step_fn, full = lm
    traces = []

    def counted(params, cache, tokens, positions, mask):
        traces.append(tokens.shape)
        return step_fn(params, cache, tokens, positions, mask)

    _, tokens, mask = _prompts()
    cache = model.init_cache(3, tokens.shape[1] + 4)
    decoding.generate(counted, params, cache, tokens, mask, max_new_tokens=4, eos_id=EOS)
    first = len(traces)
    assert first == 2, traces  # prefill [B, P] + the loop body [B, 1]
    other = np.roll(tokens, 1, axis=0) + 1
    decoding.generate(counted, params, cache, other, np.roll(mask, 1, axis=0), max_new_tokens=4, eos_id=EOS)
    assert len(traces) == first
    decoding.generate(
        counted, params, model.init_cache(3, tokens.shape[1] + 5), tokens, mask, max_new_tokens=5, eos_id=EOS
    )
    assert len(traces) == first + 2  # a new length is a new shape
