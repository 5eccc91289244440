"""PRIOR (Chen et al., 2025): caption pre-training with NTP reweighted toward image-related tokens.

    P_r(t_i | t_<i)   frozen text-only reference LM (same tokenizer, trained on the captions alone)
    w_i = 1 - P_r(t_i | t_<i)                          ('inverted' ablation: w_i = P_r; optional w_i ** alpha)
    m_i = k * w_i / sum_j w_j                           per caption (per packed segment): mean 1; sum w < eps -> m = 1
    L   = the NTP baseline's reduction of m_i * CE_i    (so m = 1 gives NTP exactly)

    sequence = [bos] <image> x N' <user> "describe the image ." <assistant> caption [eos]
    supervised = caption tokens + eos; the reference sees [bos] caption [eos] (no image, no prompt)

Settings (config.model.vision): a ViT + projector (H-LVLM, LLaVA-like) or None (U-LVLM: patches
straight into the LM). Weights (config.prior.weights):
  online  the reference runs inside the train step under the same sharding, frozen (its params live
          under params['reference'], loaded by `config.init.reference = 'checkpoint:<workdir>'` and
          frozen by config.optim.freeze); no gradient reaches it (stop_gradient on w).
  cache   w precomputed once per caption by `python -m vljax.methods.prior score` (float16, keyed by
          tokenizer fingerprint + caption text hash) and read in the example builder.
Variants (config.prior.variant): prior | inverted | shuffled (multipliers permuted inside each
caption: same multiset, no token alignment) | ntp (plain NTP, no reference).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vljax.data import tokenizer as tokenizer_lib
from vljax.data.world.language.tokenize import word_spans
from vljax.losses import lm as lm_loss
from vljax.methods import lvlm_ntp, text_lm
from vljax.models.causal_lm import CausalLM
from vljax.models.lvlm import LVLM
from vljax.nn.dtypes import dtype

VARIANTS = ("prior", "inverted", "shuffled", "ntp")
WEIGHT_SOURCES = ("online", "cache")
CAPTION_PROMPT = lvlm_ntp.CAPTION_PROMPT
# NOTE: world span types (WORLD.md 3.2): 0 boilerplate, 1 count, 2 size, 3 color, 4 shape/noun,
# 5 texture, 6 position, 7 relation, 10 noise; -1 marks tokens outside the caption (and eos).
SLOT_KINDS = (1, 2, 3, 4, 5, 6, 7)
BOILERPLATE, NOISE = 0, 10


class PriorLVLM(nn.Module):
    """The LVLM being trained (params['lvlm']) + the frozen text-only reference LM (params['reference']).

    __call__ is the LVLM forward ([B, H, W, 3] x int [B, T] -> logits [B, T, V]); the reference is
    None for variant 'ntp' and for cached weights.
    """

    lvlm: LVLM
    reference: CausalLM | None = None

    def __call__(self, images, tokens, *args, **kwargs):
        return self.lvlm(images, tokens, *args, **kwargs)

    def reference_logits(self, tokens):
        """int [B, R] -> reference logits [B, R, V]."""
        return self.reference(tokens)

    def init_all(self, images, tokens, ref_tokens):
        """Creates both param trees (flax init entry point)."""
        out = self.lvlm(images, tokens)
        if self.reference is not None:
            out = (out, self.reference(ref_tokens))
        return out


def check_config(config) -> None:
    """Config loading hook: config.prior's variant, weight source, cache and alpha (ValueError naming the key)."""
    p = config.prior
    if p.variant not in VARIANTS:
        raise ValueError(f"config.prior.variant={p.variant!r} is not one of {VARIANTS}")
    if p.weights not in WEIGHT_SOURCES:
        raise ValueError(f"config.prior.weights={p.weights!r} is not one of {WEIGHT_SOURCES}")
    if p.variant != "ntp" and p.weights == "cache" and not p.cache:
        raise ValueError("config.prior.cache: a weight-cache folder is required with config.prior.weights='cache'")
    if float(p.alpha) <= 0:
        raise ValueError(f"config.prior.alpha={p.alpha} must be > 0")


def needs_reference(config) -> bool:
    """True when the train step runs the reference LM (online weights, any variant but ntp)."""
    return config.prior.variant != "ntp" and config.prior.weights == "online"


def build(config, vocab_size: int) -> PriorLVLM:
    """config.model (LVLM, as lvlm_ntp) + config.model.reference (CausalLM kwargs) -> PriorLVLM."""
    check_config(config)
    reference = None
    if needs_reference(config):
        reference = CausalLM(**dict(config.model.reference, vocab_size=vocab_size), dtype=dtype(config.model.dtype))
    return PriorLVLM(lvlm=lvlm_ntp.build(config, vocab_size), reference=reference)


def init_params(model: PriorLVLM, config, rng: jax.Array):
    """-> boxed params {'lvlm': ..., 'reference': ...} (the reference is replaced by config.init.reference)."""
    res = int(config.data.world.resolution)
    images = jnp.zeros((1, res, res, 3), jnp.float32)
    tokens = jnp.zeros((1, int(config.data.max_len)), jnp.int32)
    ref = jnp.zeros((1, int(config.prior.ref_max_len)), jnp.int32)
    return model.init(rng, images, tokens, ref, method=PriorLVLM.init_all)["params"]


def data_spec(config) -> dict:
    """World fields the example builder reads (tokenization, token kinds and weights happen there)."""
    del config
    return dict(fields=("image", "captions", "spans"), text_fields={}, keep=("image",))


# ------------------------------------------------------------------------------------------ examples
def caption_of(sample: dict, config) -> tuple[str, np.ndarray | None]:
    """World sample -> (caption text, its char spans int32 [S, 5] or None) for config.text_field."""
    field = config.get("text_field", "captions/raw")
    if field not in sample:
        raise KeyError(f"config.text_field={field!r} is not in the sample; enable it in config.data.world.caption.kinds")
    spans = sample.get("spans/" + field.split("/", 1)[1])
    return str(sample[field]), None if spans is None else np.asarray(spans)


def token_kinds(text: str, spans: np.ndarray | None, n_tokens: int) -> np.ndarray:
    """Caption + world spans -> int8 [n_tokens] span type per word token (-1 when unknown).

    Word-level (world) tokenizers only: token j is word j of `word_spans(text)`.
    """
    kinds = np.full((n_tokens,), -1, np.int8)
    if spans is None:
        return kinds
    offsets = word_spans(text)
    if len(offsets) != n_tokens:
        return kinds  # NOTE: a subword tokenizer; kinds are a world-tokenizer diagnostic only.
    valid = spans[spans[:, 0] >= 0]
    for j, (start, _) in enumerate(offsets):
        hit = valid[(valid[:, 0] <= start) & (start < valid[:, 1])]
        kinds[j] = hit[0, 2] if len(hit) else BOILERPLATE
    return kinds


def prompt_ids(tokenizer, prompt: str, n_image: int, image_token_id: int) -> list[int]:
    """As lvlm_ntp.prompt_ids (the generation evaluator calls it through the method)."""
    return lvlm_ntp.prompt_ids(tokenizer, prompt, n_image, image_token_id)


def select_text(sample: dict, task: str = "caption") -> tuple[str, str, str]:
    """World sample -> (prompt, caption, 'caption'): the generation evaluator's hook (raw captions)."""
    if task != "caption":
        raise ValueError(f"prior trains on captions only; task={task!r}")
    field = "captions/raw" if "captions/raw" in sample else "captions/short"
    return CAPTION_PROMPT, str(sample[field]), "caption"


def build_static(config) -> LVLM:
    """An unbound LVLM for shape questions (number of image tokens) without a vocabulary."""
    return lvlm_ntp.build(config, vocab_size=1)


def make_example(sample: dict, tokenizer, config) -> dict[str, np.ndarray]:
    """World sample -> image, tokens [T], label_mask [T], token_kind int8 [T] (+ ref_tokens / token_weight).

    ref_tokens int32 [R], ref_label_mask bool [R]: the caption alone, for online weights.
    token_weight float16 [T]: cached w of token t as a target (0 off the caption), for cached weights.
    """
    static = build_static(config)
    text, spans = caption_of(sample, config)
    ids = list(tokenizer.encode(text))
    prompt = prompt_ids(tokenizer, CAPTION_PROMPT, static.num_image_tokens(), static.image_token_id)
    ex = dict(image=np.asarray(sample["image"]), **lvlm_ntp.conversation(prompt, ids, int(config.data.max_len)))
    kind = np.full(ex["tokens"].shape, -1, np.int8)
    kind[len(prompt) : len(prompt) + len(ids)] = token_kinds(text, spans, len(ids))
    ex["token_kind"] = kind
    if config.prior.variant == "ntp":
        return ex
    if config.prior.weights == "online":
        ref = text_lm.caption_sequence(ids, int(config.prior.ref_max_len))
        ex.update(ref_tokens=ref["tokens"], ref_label_mask=ref["label_mask"])
    else:
        w = weight_cache(config.prior.cache, tokenizer).lookup(text)
        if len(w) != len(ids) + 1:
            raise ValueError(f"cached weights for {text!r} have {len(w)} entries, expected {len(ids) + 1}")
        tw = np.zeros(ex["tokens"].shape, np.float16)
        tw[len(prompt) : len(prompt) + len(w)] = w
        ex["token_weight"] = tw
    return ex


# ------------------------------------------------------------------------------------------ weights
def reference_probs(ref_logits: jax.Array, targets: jax.Array) -> jax.Array:
    """[B, R, V] logits x int [B, R] targets -> float32 [B, R] P_r(target | prefix) (softmax in float32)."""
    return jnp.exp(-lm_loss.token_nll(ref_logits, targets))


def align_to_targets(values: jax.Array, src_mask: jax.Array, dst_mask: jax.Array) -> jax.Array:
    """[B, R] values at src_mask positions -> [B, T]: the k-th True of dst_mask gets the k-th True of src_mask.

    Moves per-caption-token weights from the reference sequence ([bos] caption [eos]) onto the LVLM
    sequence (image + prompt + caption); both masks hold the same number of Trues per row.
    """
    r = src_mask.shape[1]
    order = jnp.argsort(jnp.where(src_mask, jnp.arange(r)[None, :], r), axis=1, stable=True)
    rank = jnp.clip(jnp.cumsum(dst_mask.astype(jnp.int32), axis=1) - 1, 0, r - 1)
    src_pos = jnp.take_along_axis(order, rank, axis=1)
    return jnp.where(dst_mask, jnp.take_along_axis(values, src_pos, axis=1), 0.0)


def shuffle_within(mult: jax.Array, mask: jax.Array, rng: jax.Array) -> jax.Array:
    """[B, T] multipliers -> the same multipliers randomly permuted among each row's masked positions."""
    t = mask.shape[1]
    keys = jnp.where(mask, jax.random.uniform(rng, mask.shape), 2.0)
    perm = jnp.argsort(keys, axis=1)  # NOTE: the k supervised positions first, in random order
    order = jnp.argsort(jnp.where(mask, jnp.arange(t)[None, :], t), axis=1, stable=True)  # ... in order
    shuffled = jnp.take_along_axis(mult, perm, axis=1)
    rows = jnp.arange(mask.shape[0])[:, None]
    return jnp.zeros_like(mult).at[rows, order].set(shuffled)


def multipliers(w: jax.Array, mask: jax.Array, *, variant: str = "prior", alpha: float = 1.0,
                eps: float = 1e-6, segment_ids: jax.Array | None = None, rng: jax.Array | None = None) -> jax.Array:
    """Raw w = 1 - P_r [B, T] (target-aligned) -> PRIOR multipliers m [B, T], mean 1 per caption/segment."""
    w = w.astype(jnp.float32)
    if variant == "inverted":
        w = 1.0 - w
    if alpha != 1.0:
        w = jnp.power(jnp.clip(w, 0.0, 1.0), alpha)
    m = lm_loss.normalize_weights_per_segment(w, mask, segment_ids, eps=eps)
    if variant == "shuffled":
        if segment_ids is not None:
            raise ValueError("variant 'shuffled' does not support packed sequences")
        m = shuffle_within(m, mask, rng)
    return m


def _kind_mean(values, kinds, mask, wanted) -> jax.Array:
    sel = mask & jnp.isin(kinds, jnp.asarray(wanted))
    return jnp.sum(jnp.where(sel, values, 0.0)) / jnp.maximum(sel.sum(), 1)


def make_loss(model: PriorLVLM, config, mesh):
    """-> loss_fn(params, batch, rng) -> (loss, metrics): NTP on caption tokens with PRIOR multipliers."""
    del mesh  # NOTE: normalisation is per caption; the only cross-device reduction is NTP's own mean.
    check_config(config)
    p = config.prior
    variant, alpha, eps = p.variant, float(p.alpha), float(p.eps)
    lvlm = model.lvlm.clone(parent=None)

    def loss_fn(params, batch, rng):
        sub = {k: v for k, v in batch.items() if k in ("image", "tokens", "label_mask")}
        if variant == "ntp":
            return lvlm_ntp.ntp_loss(lvlm, params["lvlm"], sub, rng, config)
        _, mask = lm_loss.shift_targets(batch["tokens"], batch["label_mask"])
        if p.weights == "online":
            ref_tokens = batch["ref_tokens"]
            ref_targets, ref_mask = lm_loss.shift_targets(ref_tokens, batch["ref_label_mask"])
            ref_logits = model.apply({"params": params}, ref_tokens, method=PriorLVLM.reference_logits)
            w = align_to_targets(1.0 - reference_probs(ref_logits, ref_targets), ref_mask, mask)
        else:
            tw = batch["token_weight"].astype(jnp.float32)
            w = jnp.where(mask, jnp.concatenate([tw[:, 1:], jnp.zeros_like(tw[:, :1])], axis=1), 0.0)
        # NOTE: the weights are constants of the data (card: no gradient through w or the reference).
        w = jax.lax.stop_gradient(w)
        drng, srng = jax.random.split(rng)
        m = multipliers(w, mask, variant=variant, alpha=alpha, eps=eps, rng=srng)
        loss, metrics = lvlm_ntp.ntp_loss(lvlm, params["lvlm"], sub, drng, config, weights=m)
        kinds = jnp.concatenate([batch["token_kind"][:, 1:], -jnp.ones_like(batch["token_kind"][:, :1])], axis=1)
        metrics.update(
            {
                "prior/w_mean": jnp.sum(jnp.where(mask, w, 0.0)) / jnp.maximum(mask.sum(), 1),
                "prior/mult_slot": _kind_mean(m, kinds, mask, SLOT_KINDS),
                "prior/mult_boilerplate": _kind_mean(m, kinds, mask, (BOILERPLATE,)),
                "prior/mult_noise": _kind_mean(m, kinds, mask, (NOISE,)),
            }
        )
        return loss, metrics

    return loss_fn


def make_generate(model: PriorLVLM, config, *, max_new_tokens: int, num_beams: int = 1):
    """-> jitted generate(params, images, prompts, mask) on params['lvlm'] (see lvlm_ntp.make_generate)."""
    generate = lvlm_ntp.make_generate(model.lvlm.clone(parent=None), config, max_new_tokens=max_new_tokens,
                                      num_beams=num_beams)
    return lambda params, *args: generate(params["lvlm"], *args)


def lvlm_logits(model: PriorLVLM, params, images, tokens) -> jax.Array:
    """Teacher-forced LVLM logits [B, T, V] (evaluators)."""
    return model.lvlm.clone(parent=None).apply({"params": params["lvlm"]}, images, tokens)


# ------------------------------------------------------------------------------------------ cache
class WeightCache:
    """Precomputed PRIOR weights: caption text -> float16 [k + 1] (caption tokens + eos).

    Folder layout: manifest.json {tokenizer, reference, count} + shard-NNNNN.npz with
    keys uint8 [N, 20] (sha1 of tokenizer fingerprint + text), offsets int64 [N + 1], values float16.
    A changed tokenizer changes every key; a changed caption is a miss (an error naming the text).
    """

    def __init__(self, path: str | Path, tokenizer):
        self.path = Path(path)
        self.fingerprint = tokenizer_lib.fingerprint(tokenizer)
        manifest = self.path / "manifest.json"
        if not manifest.exists():
            raise FileNotFoundError(
                f"config.prior.cache={str(self.path)!r} holds no manifest.json; build it with "
                "`python -m vljax.methods.prior score --config ... --cache DIR`"
            )
        meta = json.loads(manifest.read_text())
        if meta["tokenizer"] != self.fingerprint:
            raise ValueError(
                f"config.prior.cache={str(self.path)!r} was scored with tokenizer {meta['tokenizer']}, "
                f"this run uses {self.fingerprint}: rescore the cache"
            )
        self.meta = meta
        self._index: dict[bytes, tuple[int, int, int]] = {}
        self._shards = []
        for s, f in enumerate(sorted(self.path.glob("shard-*.npz"))):
            with np.load(f) as z:
                keys, offsets, values = z["keys"], z["offsets"], z["values"]
            self._shards.append(values)
            for i, k in enumerate(keys):
                self._index[k.tobytes()] = (s, int(offsets[i]), int(offsets[i + 1]))

    def key(self, text: str) -> bytes:
        return hashlib.sha1((self.fingerprint + "\0" + text).encode()).digest()

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, text: str) -> np.ndarray:
        """caption -> float16 [k + 1]; KeyError naming the caption when it was not scored."""
        hit = self._index.get(self.key(text))
        if hit is None:
            raise KeyError(
                f"caption {text!r} is not in the PRIOR weight cache {self.path}; score the split the run "
                "trains on (config.data.world.split_sizes.train bounds it)"
            )
        s, a, b = hit
        return self._shards[s][a:b]


_CACHES: dict[tuple[str, str], WeightCache] = {}


def weight_cache(path: str, tokenizer) -> WeightCache:
    """One loaded WeightCache per (folder, tokenizer) per process (example builders share it)."""
    key = (str(Path(path).resolve()), tokenizer_lib.fingerprint(tokenizer))
    if key not in _CACHES:
        _CACHES[key] = WeightCache(path, tokenizer)
    return _CACHES[key]


def write_shard(folder: Path, index: int, keys: list[bytes], weights: list[np.ndarray]) -> None:
    """Atomically writes shard `index` (keys + ragged float16 weights)."""
    offsets = np.concatenate([[0], np.cumsum([len(w) for w in weights])]).astype(np.int64)
    values = np.concatenate(weights).astype(np.float16) if weights else np.zeros((0,), np.float16)
    tmp = folder / f".shard-{index:05d}.tmp.npz"
    np.savez(tmp, keys=np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), 20), offsets=offsets,
             values=values)
    tmp.rename(folder / f"shard-{index:05d}.npz")


def score_reference(apply_reference, ref_tokens: np.ndarray, ref_mask: np.ndarray) -> list[np.ndarray]:
    """Reference scoring: int [B, R] [bos] caption [eos] rows -> per row float32 w = 1 - P_r, [k + 1] each."""
    logits = apply_reference(jnp.asarray(ref_tokens))
    targets, mask = lm_loss.shift_targets(jnp.asarray(ref_tokens), jnp.asarray(ref_mask))
    w = np.asarray(1.0 - reference_probs(logits, targets))
    mask = np.asarray(mask)
    return [w[i][mask[i]] for i in range(len(w))]


def score_split(config, cache_dir: str | Path, *, n: int | None = None, split: str | None = None,
                batch_size: int = 256, shard_size: int = 8192) -> int:
    """Scores the captions of `split` indices [0, n) with the run's reference LM into cache_dir.

    The reference params are those a fresh run of this config would load (config.init.reference).
    Resumable: finished shards are kept; progress is printed per shard. -> number of captions.
    """
    from vljax.convert.init import load_pretrained
    from vljax.train.loop import Experiment

    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.prior.weights = "online"
        if config.prior.variant == "ntp":
            config.prior.variant = "prior"
    exp = Experiment(config, cache_dir)
    split = split or config.data.split
    total = len(exp.world.source(split)) if n is None else int(n)
    if total > 5_000_000:
        raise ValueError(f"split {split!r} has {total} scenes; bound it with --n or config.data.world.split_sizes")
    # NOTE: only the reference subtree is read; the rest stays abstract (no init compiled or allocated).
    state, _ = exp.abstract_state()
    params = load_pretrained(config, state.params)
    ref_model = exp.model.reference.clone(parent=None)
    apply_ref = jax.jit(lambda t: ref_model.apply({"params": params["reference"]}, t))
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fp = tokenizer_lib.fingerprint(exp.tokenizer)
    hasher = lambda text: hashlib.sha1((fp + "\0" + text).encode()).digest()
    src = exp.world.source(split, fields=data_spec(config)["fields"])
    r = int(config.prior.ref_max_len)
    t0 = time.perf_counter()
    for shard, start in enumerate(range(0, total, shard_size)):
        if (folder / f"shard-{shard:05d}.npz").exists():
            continue
        keys, weights = [], []
        stop = min(start + shard_size, total)
        for b0 in range(start, stop, batch_size):
            texts = [caption_of(src[i], config)[0] for i in range(b0, min(b0 + batch_size, stop))]
            rows = [text_lm.caption_sequence(exp.tokenizer.encode(t), r) for t in texts]
            toks = np.stack([x["tokens"] for x in rows])
            masks = np.stack([x["label_mask"] for x in rows])
            pad = batch_size - len(rows)  # NOTE: fixed batch shape -> one compile
            if pad:
                toks = np.concatenate([toks, np.repeat(toks[-1:], pad, 0)])
                masks = np.concatenate([masks, np.repeat(masks[-1:], pad, 0)])
            weights += score_reference(apply_ref, toks, masks)[: len(rows)]
            keys += [hasher(t) for t in texts]
        write_shard(folder, shard, keys, weights)
        rate = stop / max(time.perf_counter() - t0, 1e-9)
        print(f"[prior score] {stop}/{total} captions ({rate:.0f}/s) -> {folder}", flush=True)
    manifest = dict(tokenizer=fp, reference=str(config.init.get("reference", "")), split=split, count=total,
                    text_field=config.get("text_field", "captions/raw"), dtype="float16")
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return total


def main(argv: list[str] | None = None) -> int:
    """`python -m vljax.methods.prior score --config configs/prior.py:tiny --cache DIR [--n N] [--config.k=v]`."""
    import argparse

    from vljax.config import load_config

    ap = argparse.ArgumentParser(prog="python -m vljax.methods.prior", description="PRIOR weight cache")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sc = sub.add_parser("score", help="precompute w = 1 - P_ref for a split's captions")
    sc.add_argument("--config", required=True)
    sc.add_argument("--cache", required=True, help="output folder (resumable)")
    sc.add_argument("--n", type=int, default=None, help="score indices [0, n) (default: the whole split)")
    sc.add_argument("--split", default=None)
    sc.add_argument("--batch_size", type=int, default=256)
    args, overrides = ap.parse_known_args(argv)
    config = load_config(args.config, overrides)
    n = score_split(config, args.cache, n=args.n, split=args.split, batch_size=args.batch_size)
    print(f"[prior score] done: {n} captions in {args.cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
