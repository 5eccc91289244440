"""What the PRIOR reference LM learned: mean w = 1 - P_r per token kind and right after the rule's premise word.

    python experiments/prior_reference_weights.py --reference runs/prior_ref [--n 256] [--config.x=v ...]

Scores the first n captions of the train, in_prior and counter_prior splits with the reference run's params
(the same path as the weight cache: vljax.methods.prior.score_reference) and prints, per split, mean w on
boilerplate / slot / noise tokens and on the token after the premise word (e.g. "large"), split by whether it is
the rule's consequence ("red") or another value.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default="runs/prior_ref")
    ap.add_argument("--config", default="configs/prior.py:tiny")
    ap.add_argument("--n", type=int, default=256)
    args, overrides = ap.parse_known_args(argv)

    import jax

    from vljax.config import load_config
    from vljax.convert.init import load_pretrained
    from vljax.eval.prior_probe import parse_rule, word_forms
    from vljax.methods import prior, text_lm
    from vljax.train.loop import Experiment

    ref = f"--config.init.reference=checkpoint:{Path(args.reference).resolve()}"
    config = load_config(args.config, list(overrides) + [ref, "--config.prior.variant=prior"])
    exp = Experiment(config, args.reference)
    # NOTE: only the reference subtree is read; the rest stays abstract (no init compiled or allocated).
    state, _ = exp.abstract_state()
    params = load_pretrained(config, state.params)
    model = exp.model.reference.clone(parent=None)
    apply_ref = jax.jit(lambda t: model.apply({"params": params["reference"]}, t))
    vocab, tok = exp.world.vocab, exp.tokenizer
    (_, p_val), (_, c_val) = parse_rule(config.data.world.prior.rules[0])
    premise, consequence = vocab.index(p_val), set(word_forms(vocab, c_val))
    fields = prior.data_spec(config)["fields"]
    r = int(config.prior.ref_max_len)
    print(f"rule {config.data.world.prior.rules[0]!r}; reference {args.reference}; {args.n} captions per split")
    print(f"{'split':>14} {'boilerplate':>11} {'slot':>6} {'noise':>6} {'after ' + p_val + ': ' + c_val:>18} {'other':>6}")
    for split in ("train", "in_prior", "counter_prior"):
        groups = {k: [] for k in ("boilerplate", "slot", "noise", "cons", "other")}
        for start in range(0, args.n, 64):
            samples = [exp.world.sample(split, i, fields=fields) for i in range(start, min(start + 64, args.n))]
            texts = [prior.caption_of(s, config) for s in samples]
            rows = [text_lm.caption_sequence(tok.encode(t), r) for t, _ in texts]
            ws = prior.score_reference(apply_ref, np.stack([x["tokens"] for x in rows]),
                                       np.stack([x["label_mask"] for x in rows]))
            for (text, spans), w in zip(texts, ws):
                ids = tok.encode(text)
                kinds = prior.token_kinds(text, spans, len(ids))
                for j, (i, k) in enumerate(zip(ids, kinds)):
                    key = "boilerplate" if k == prior.BOILERPLATE else "noise" if k == prior.NOISE else "slot"
                    groups[key].append(w[j])
                    if j and ids[j - 1] == premise:
                        groups["cons" if i in consequence else "other"].append(w[j])
        m = {k: (np.mean(v) if v else float("nan")) for k, v in groups.items()}
        print(f"{split:>14} {m['boilerplate']:>11.3f} {m['slot']:>6.3f} {m['noise']:>6.3f} {m['cons']:>18.3f} "
              f"{m['other']:>6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
