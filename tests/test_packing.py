"""Sequence packing (vljax/data/packing.py) and its text_lm wiring: row layout, packed == unpacked logits and
per-caption loss, no target across a boundary, exact iterator resume, efficiency on world captions."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vljax.config import load_config
from vljax.data import packing, pipeline
from vljax.data.tokenizer import PAD
from vljax.losses import lm as lm_loss
from vljax.methods import text_lm
from vljax.models.causal_lm import CausalLM
from vljax.train.loop import Experiment

VOCAB = 64
FAST = ["--config.train.batch_size=8", "--config.data.num_threads=1", "--config.data.prefetch=2"]


def _examples(lengths, max_len, seed=0):
    """Random [bos, ids..., eos]-like examples padded to max_len (label_mask over all but the first token)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        tokens = np.full((max_len,), PAD, np.int32)
        tokens[:n] = rng.integers(3, VOCAB, n)
        label = np.zeros((max_len,), bool)
        label[1:n] = True
        out.append(dict(tokens=tokens, label_mask=label))
    return out


def _segments(packed):
    """Packed rows -> list of (row, start, end) per segment, in row / segment order."""
    out = []
    for r, seg in enumerate(packed["segment_ids"]):
        for s in range(1, int(seg.max()) + 1):
            idx = np.flatnonzero(seg == s)
            out.append((r, int(idx[0]), int(idx[-1]) + 1))
    return out


def test_rows_hold_every_example_once_with_restarting_positions():
    lengths = [5, 3, 7, 2, 6, 4, 8, 1, 9, 3]
    exs = _examples(lengths, 10)
    packed = packing.pack_examples(exs, max_len=10, num_bins=3)
    assert packed["tokens"].shape[1] == 10 and packed["segment_ids"].dtype == np.int32
    seen = []
    for r, a, b in _segments(packed):
        seg = packed["segment_ids"][r]
        # NOTE: segments are contiguous, numbered 1..k from the left, positions restart at 0.
        assert np.all(seg[a:b] == seg[a]) and (a == 0 or seg[a - 1] == seg[a] - 1)
        np.testing.assert_array_equal(packed["positions"][r, a:b], np.arange(b - a))
        seen.append(packed["tokens"][r, a:b].tolist())
    pad = packed["segment_ids"] == 0
    assert np.all(packed["tokens"][pad] == PAD) and not packed["label_mask"][pad].any()
    assert sorted(seen) == sorted(e["tokens"][:n].tolist() for e, n in zip(exs, lengths))
    # NOTE: deterministic: packing the same input again gives identical rows.
    again = packing.pack_examples(exs, max_len=10, num_bins=3)
    for k in packed:
        np.testing.assert_array_equal(packed[k], again[k])


def test_too_long_example_names_max_len():
    with pytest.raises(ValueError, match="config.data.max_len=6"):
        packing.pack_examples(_examples([4, 8], 8), max_len=6, num_bins=2)


def _model():
    return CausalLM(vocab_size=VOCAB, width=32, depth=2, num_heads=4, num_kv_heads=2, mlp_dim=64)


def test_packed_logits_and_segment_loss_equal_unpacked():
    """Each segment's packed logits == that example alone (fp32, 1e-5); segment loss == mean per-example loss."""
    lengths = [6, 3, 9, 4, 7, 2, 5]
    exs = _examples(lengths, 16, seed=1)
    packed = packing.pack_examples(exs, max_len=16, num_bins=3)
    model = _model()
    params = model.init(jax.random.key(0), jnp.zeros((1, 16), jnp.int32))["params"]
    params = jax.tree.map(lambda p: p * 3.0, params)  # NOTE: larger weights so a leak across segments shows.
    apply = jax.jit(lambda p, t, pos, seg: model.apply({"params": p}, t, pos, segment_ids=seg))
    logits = np.asarray(apply(params, jnp.asarray(packed["tokens"]), jnp.asarray(packed["positions"]),
                              jnp.asarray(packed["segment_ids"])))
    # NOTE: the reference runs every example alone in one right-padded batch: causal attention keeps pads
    # after an example from touching its logits, so row i, positions < n_i, is that example by itself.
    alone = np.asarray(jax.jit(model.apply)({"params": params}, jnp.asarray(np.stack([e["tokens"] for e in exs]))))
    row_of = {tuple(e["tokens"][:n]): i for i, (e, n) in enumerate(zip(exs, lengths))}
    per_example = []
    for r, a, b in _segments(packed):
        i = row_of[tuple(packed["tokens"][r, a:b])]
        n, e = lengths[i], exs[i]
        np.testing.assert_allclose(logits[r, a:b], alone[i, :n], atol=1e-5, rtol=1e-5)
        # NOTE: plain float64 reference NTP loss of the example: mean over its supervised targets 1..n-1.
        z = alone[i, : n - 1].astype(np.float64)
        logp = z - z.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        nll = -logp[np.arange(n - 1), e["tokens"][1:n]]
        per_example.append(float(nll[e["label_mask"][1:n]].mean()))
    assert len(per_example) == len(lengths)

    cfg = ml_collections.ConfigDict(dict(data=dict(pack=True), loss_normalize="token"))
    batch = {k: jnp.asarray(v) for k, v in packed.items()}
    loss, metrics = jax.jit(text_lm.make_loss(model, cfg, mesh=None))(params, batch, None)
    np.testing.assert_allclose(float(loss), np.mean(per_example), rtol=1e-5)
    # NOTE: a caption of n tokens has n - 1 targets (bos unsupervised); none is lost or added by packing.
    assert int(metrics["supervised_tokens"]) == sum(n - 1 for n in lengths)
    # NOTE: the token mean (pack_normalize='token') weights captions by length, so it differs here.
    cfg.data.pack_normalize = "token"
    token_loss, _ = jax.jit(text_lm.make_loss(model, cfg, mesh=None))(params, batch, None)
    assert abs(float(token_loss) - np.mean(per_example)) > 1e-4


def test_no_target_crosses_a_segment_boundary():
    exs = _examples([4, 4, 4, 4, 3, 5], 12, seed=2)
    for e in exs:
        # NOTE: every real token supervised (also the first), so a segment's first token is a live target.
        e["label_mask"] = e["tokens"] != PAD
    packed = packing.pack_examples(exs, max_len=12, num_bins=2)
    seg = jnp.asarray(packed["segment_ids"])
    _, mask = lm_loss.shift_targets(jnp.asarray(packed["tokens"]), jnp.asarray(packed["label_mask"]), seg)
    mask, seg = np.asarray(mask), np.asarray(seg)
    rows, cols = np.nonzero(mask)
    assert rows.size and np.all(seg[rows, cols] > 0) and np.all(seg[rows, cols] == seg[rows, cols + 1])
    # NOTE: without segment ids the last token of a segment would predict the next segment's first token.
    _, leaky = lm_loss.shift_targets(jnp.asarray(packed["tokens"]), jnp.asarray(packed["label_mask"]))
    boundaries = int(sum(max(int(r.max()) - 1, 0) for r in seg))
    assert boundaries > 0 and int(np.asarray(leaky).sum()) == int(mask.sum()) + boundaries
    # NOTE: per example of n tokens, n - 1 targets (each token predicts the next one of its own segment).
    assert int(mask.sum()) == sum(n - 1 for n in [4, 4, 4, 4, 3, 5])


def test_pipeline_resume_is_exact():
    """State after n packed batches -> a fresh iterator with that state yields the same next batches."""
    exs = _examples(np.random.default_rng(3).integers(2, 12, 40).tolist(), 12, seed=3)
    build = lambda: pipeline.build_dataset(exs, lambda e: e, 4, shuffle_seed=7, repeat=True, num_threads=1,
                                           prefetch=2, pack=dict(max_len=12, num_bins=3, pad_id=PAD))
    it = iter(build())
    for _ in range(5):
        next(it)
    state = it.get_state()
    want = [next(it) for _ in range(3)]
    resumed = iter(build())
    resumed.set_state(state)
    for w in want:
        got = next(resumed)
        assert set(got) == {"tokens", "label_mask", "segment_ids", "positions"}
        for k in w:
            np.testing.assert_array_equal(got[k], w[k])


def test_reference_preset_packs_world_captions_and_reports_efficiency(tmp_path):
    """configs/prior.py:reference with data.pack=True: packed batches from Experiment, a finite loss, and
    packing efficiency (non-pad fraction) at max_len 48 above the unpacked one."""
    cfg = load_config("configs/prior.py:reference", FAST + ["--config.data.pack=True"])
    assert cfg.data.max_len == 48
    exp = Experiment(cfg, tmp_path)
    batch = next(iter(exp.train_dataset()))
    assert batch["tokens"].shape == (8, 48) and batch["segment_ids"].max() >= 2
    params = exp.method.init_params(exp.model, cfg, jax.random.key(0))
    loss, metrics = exp.method.make_loss(exp.model, cfg, exp.mesh)(
        jax.tree.map(jnp.asarray, params), {k: jnp.asarray(v) for k, v in batch.items()}, None)
    assert np.isfinite(float(loss)) and int(metrics["supervised_tokens"]) > 0

    fields = exp.method.data_spec(cfg)["fields"]
    exs = [exp.method.make_example(exp.world.sample("train", i, fields=fields), exp.tokenizer, cfg)
           for i in range(256)]
    unpacked = packing.packing_efficiency(np.stack([e["tokens"] != PAD for e in exs]))
    packed = packing.pack_examples(exs, max_len=48, num_bins=64)
    eff = packing.packing_efficiency(packed["segment_ids"])
    print(f"\npacking efficiency on 256 world raw captions, max_len 48: unpacked {unpacked:.3f}, "
          f"packed {eff:.3f} ({len(packed['tokens'])} rows vs 256)")
    assert eff > unpacked
