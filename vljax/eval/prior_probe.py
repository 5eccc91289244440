"""Image-dependent slot accuracy and language-prior hallucination of a caption LVLM (PRIOR's probe).

For each split in cfg.splits (e.g. in_prior, counter_prior), on the first cfg.n scenes:
  teacher-forced (the true caption as prefix; word-level world tokenizer, token kinds from world spans)
    <split>/slot_acc          argmax accuracy on image-dependent slot tokens (count, size, color, shape)
    <split>/color_acc, shape_acc
    <split>/nll_<kind>        mean NLL on boilerplate, slot and noise tokens (noise: 'image number 4831')
    <split>/halluc_tf         at a token right after the rule's premise word ("red") whose truth is another
                              value of the consequence attribute: rate of predicting the consequence ("circle")
  greedy (cfg.greedy; the caption decoded from the image + prompt)
    <split>/pair_precision    generated (color, shape) pairs that exist in the scene
    <split>/pair_recall       scene (color, shape) pairs that the caption names
    <split>/halluc_greedy     scenes holding a premise object that is not the consequence (a red
                              non-circle) and no premise+consequence object, whose caption names that pair anyway
The prior rule is config.data.world.prior.rules[0]: "color=red -> shape=circle" or "size=large -> color=red"
(the premise word directly precedes the consequence word in world captions: size, color, shape order).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vljax.data.world import concepts
from vljax.eval.embed import world_samples
from vljax.eval.generation import build_prompts, generate_ids
from vljax.losses import lm as lm_loss

SLOT_KINDS = {"count": 1, "size": 2, "color": 3, "shape": 4}
# NOTE: attribute pairs that are adjacent in world noun phrases ("two large red squares").
ADJACENT = (("size", "color"), ("color", "shape"))
NLL_KINDS = {"boilerplate": (0,), "slot": (1, 2, 3, 4, 5, 6, 7), "noise": (10,)}


def parse_rule(rule: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """'color=red -> shape=circle' -> (('color', 'red'), ('shape', 'circle'))."""
    try:
        lhs, rhs = (side.strip() for side in rule.split("->"))
        premise, consequence = tuple(lhs.split("=")), tuple(rhs.lstrip("+").split("="))
        assert len(premise) == 2 and len(consequence) == 2
    except (ValueError, AssertionError):
        raise ValueError(f"prior_probe needs a rule 'attr=value -> attr=value', got {rule!r}") from None
    return premise, consequence


def word_forms(vocab, word: str) -> list[int]:
    """A word and its plural forms present in the vocabulary -> ids."""
    ids = [vocab.index(w) for w in (word, word + "s", word + "es")]
    unk = vocab.index("\0never a word\0")
    return sorted({i for i in ids if i != unk})


def pairs_in(words: list[str], first: dict[str, str], second: dict[str, str]) -> set[tuple[str, str]]:
    """Words -> {(a, b)} for every `first` word directly followed by a `second` word (word -> class name maps)."""
    return {(first[a], second[b]) for a, b in zip(words, words[1:]) if a in first and b in second}


def truth_pairs(sample: dict, names: dict[str, tuple], attrs=("color", "shape")) -> set[tuple[str, str]]:
    """Scene -> {(name of attrs[0], name of attrs[1])} over its valid objects."""
    valid = np.asarray(sample["objects/valid"], bool)
    a, b = (np.asarray(sample[f"objects/{x}"])[valid] for x in attrs)
    return {(names[attrs[0]][int(i)], names[attrs[1]][int(j)]) for i, j in zip(a, b)}


def _teacher_forced(exp, params, batch, cfg):
    """-> per-token numpy arrays over one batch: nll, argmax, targets, mask, kinds, previous token."""
    key = ("prior_probe_tf",)
    cache = exp.__dict__.setdefault("_generators", {})
    if key not in cache:
        method, model = exp.method, exp.model

        @jax.jit
        def tf(params, images, tokens, label_mask):
            logits = method.lvlm_logits(model, params, images, tokens)
            targets, mask = lm_loss.shift_targets(tokens, label_mask)
            return lm_loss.token_nll(logits, targets), jnp.argmax(logits, -1), targets, mask

        cache[key] = tf
    nll, pred, targets, mask = (np.asarray(x) for x in cache[key](params, batch["image"], batch["tokens"],
                                                                  batch["label_mask"]))
    kinds = np.concatenate([batch["token_kind"][:, 1:], -np.ones_like(batch["token_kind"][:, :1])], 1)
    return nll, pred, targets, mask, kinds, batch["tokens"]


def _generate(exp, params, samples, cfg) -> list[list[int]]:
    """Scenes -> greedy caption ids (the shared decode path of the generative evaluators)."""
    tokens, mask, _, _ = build_prompts(exp.method, exp.tokenizer, exp.config, samples, "caption")
    return generate_ids(exp, params, cfg, tokens, mask, np.stack([s["image"] for s in samples]))


def evaluate(exp, params, cfg) -> dict[str, float]:
    """cfg: splits, n, batch_size, greedy, max_new_tokens -> {<split>/<metric>: value}."""
    config = exp.config.copy_and_resolve_references()
    with config.unlocked():
        # NOTE: examples without reference weights: eval captions need no cache entry or reference pass.
        config.prior.variant = "ntp"
    vocab = exp.world.vocab
    (p_attr, p_val), (c_attr, c_val) = parse_rule(config.data.world.prior.rules[0])
    if (p_attr, c_attr) not in ADJACENT:
        raise ValueError(f"prior_probe measures rules between adjacent caption words {ADJACENT}, got {p_attr} -> {c_attr}")
    premise_id, consequence_ids = vocab.index(p_val), word_forms(vocab, c_val)
    # NOTE: objects/<attr> ids index the canonical inventories (not the enabled subset's class names).
    names = {"size": concepts.SIZES, "color": concepts.COLORS, "shape": concepts.SHAPES}
    # NOTE: caption word (singular or plural) -> class name, per attribute.
    words = {a: {vocab.words([i])[0]: n for n in names[a] for i in word_forms(vocab, n)} for a in names}
    fields = exp.method.data_spec(config)["fields"] + ("objects",)
    bs = int(cfg.get("batch_size", 64))
    out = {}
    for split in cfg.splits:
        samples = world_samples(exp.world, split, int(cfg.n), fields)
        sums = {k: [0.0, 0] for k in ("slot", "size", "color", "shape", "halluc")}
        nll_sums = {k: [0.0, 0] for k in NLL_KINDS}
        prec, rec, hall = [0, 0], [0, 0], [0, 0]
        for start in range(0, len(samples), bs):
            chunk = samples[start : start + bs]
            pad = bs - len(chunk)
            chunk_p = chunk + [chunk[-1]] * pad  # NOTE: one compiled shape; padded rows are dropped below
            exs = [exp.method.make_example(s, exp.tokenizer, config) for s in chunk_p]
            batch = {k: np.stack([e[k] for e in exs]) for k in ("image", "tokens", "label_mask", "token_kind")}
            nll, pred, targets, mask, kinds, tokens = (x[: len(chunk)] for x in _teacher_forced(exp, params, batch, cfg))
            correct = pred == targets
            slot = mask & np.isin(kinds, list(SLOT_KINDS.values()))
            sums["slot"][0] += correct[slot].sum()
            sums["slot"][1] += slot.sum()
            for name in ("size", "color", "shape"):
                sel = mask & (kinds == SLOT_KINDS[name])
                sums[name][0] += correct[sel].sum()
                sums[name][1] += sel.sum()
            for name, ks in NLL_KINDS.items():
                sel = mask & np.isin(kinds, ks)
                nll_sums[name][0] += nll[sel].sum()
                nll_sums[name][1] += sel.sum()
            # NOTE: tokens[:, t] is the input at t, whose logits predict targets[:, t] = tokens[:, t + 1].
            after = mask & (tokens == premise_id) & (kinds == SLOT_KINDS[c_attr]) & ~np.isin(targets, consequence_ids)
            sums["halluc"][0] += np.isin(pred[after], consequence_ids).sum()
            sums["halluc"][1] += after.sum()
            if cfg.get("greedy", True):
                gens = _generate(exp, params, chunk_p, cfg)[: len(chunk)]
                for s, g in zip(chunk, gens):
                    said = pairs_in(vocab.words(g), words["color"], words["shape"])
                    true = truth_pairs(s, names)
                    prec[0] += len(said & true)
                    prec[1] += len(said)
                    rec[0] += len(said & true)
                    rec[1] += len(true)
                    rule_true = truth_pairs(s, names, (p_attr, c_attr))
                    if any(a == p_val and b != c_val for a, b in rule_true) and (p_val, c_val) not in rule_true:
                        hall[0] += (p_val, c_val) in pairs_in(vocab.words(g), words[p_attr], words[c_attr])
                        hall[1] += 1
        for name, (a, n) in sums.items():
            if n:
                out[f"{split}/{'halluc_tf' if name == 'halluc' else name + '_acc'}"] = a / n
        for name, (a, n) in nll_sums.items():
            if n:
                out[f"{split}/nll_{name}"] = a / n
        if cfg.get("greedy", True):
            out[f"{split}/pair_precision"] = prec[0] / max(prec[1], 1)
            out[f"{split}/pair_recall"] = rec[0] / max(rec[1], 1)
            if hall[1]:
                out[f"{split}/halluc_greedy"] = hall[0] / hall[1]
    return out
