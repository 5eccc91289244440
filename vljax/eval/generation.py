"""Generative evaluation on the world: greedy decode image + prompt -> text; QA exact match, caption token accuracy.

exact_match        fraction of answers whose decoded words equal the reference words
exact_match/<type> the same per QA type (color, shape, count, ...), with its chance level
token_accuracy     captions: fraction of reference tokens (incl. eos) matched at their position

`generate_ids` / `generate_texts` are the shared decode path of every generative evaluator (captioning, vqa,
pope, grounding): prompts -> left-padded batches -> the experiment's cached jitted generator.
"""

from __future__ import annotations

import numpy as np

from vljax.data.tokenizer import EOS
from vljax.data.world.annotate import QA_TYPES
from vljax.eval.embed import world_samples


def strip_generation(ids) -> list[int]:
    """int [N] generated ids -> ids before the first eos (pads dropped)."""
    out = []
    for i in np.asarray(ids).tolist():
        if i == EOS:
            break
        if i > EOS:
            out.append(i)
    return out


def prompt_batch(method, tokenizer, config, prompts: list[str]):
    """Prompt texts -> (left-padded prompt ids int32 [n, P] with the image placeholders, bool mask [n, P])."""
    model = method.build_static(config)
    rows = [method.prompt_ids(tokenizer, p, model.num_image_tokens(), model.image_token_id) for p in prompts]
    return _left_pad(rows)


def build_prompts(method, tokenizer, config, samples, task: str):
    """Samples -> (left-padded prompts int32 [n, P], bool mask [n, P], reference ids, QA types)."""
    prompts, refs, types = [], [], []
    for s in samples:
        prompt, answer, qtype = method.select_text(s, task)
        prompts.append(prompt)
        refs.append(list(tokenizer.encode(answer)))
        types.append(qtype)
    tokens, mask = prompt_batch(method, tokenizer, config, prompts)
    return tokens, mask, refs, types


def _left_pad(rows: list[list[int]]):
    """id lists -> (int32 [n, P] left-padded with pad, bool mask [n, P])."""
    width = max(len(r) for r in rows)
    tokens = np.zeros((len(rows), width), np.int32)
    mask = np.zeros((len(rows), width), bool)
    for i, r in enumerate(rows):
        tokens[i, width - len(r) :] = r
        mask[i, width - len(r) :] = True
    return tokens, mask


def score(generated: list[list[int]], refs: list[list[int]], types: list) -> dict[str, float]:
    """Stripped generations + reference ids (+ QA type ids or 'caption') -> metrics."""
    out = {}
    exact = np.array([g == r for g, r in zip(generated, refs)], float)
    out["exact_match"] = float(exact.mean())
    if all(t == "caption" for t in types):
        hit = total = 0
        for g, r in zip(generated, refs):
            ref = r + [EOS]
            gen = g + [EOS]
            hit += sum(1 for a, b in zip(gen, ref) if a == b)
            total += len(ref)
        out["token_accuracy"] = hit / max(total, 1)
        return out
    types = np.array(types)
    for t in np.unique(types):
        out[f"exact_match/{QA_TYPES[int(t)]}"] = float(exact[types == t].mean())
    return out


def evaluate(exp, params, cfg) -> dict[str, float]:
    """cfg: split, n, task ('qa' | 'caption'), max_new_tokens, num_beams -> {metric: value}."""
    config = exp.config
    task = cfg.get("task", config.task)
    samples = world_samples(exp.world, cfg.split, int(cfg.n), ("image", "qa" if task == "qa" else "captions"))
    tokens, mask, refs, types = build_prompts(exp.method, exp.tokenizer, config, samples, task)
    images = np.stack([s["image"] for s in samples])
    generated = generate_ids(exp, params, cfg, tokens, mask, images)
    metrics = score(generated, refs, types)
    if task == "qa":
        for t in np.unique(types):
            name = QA_TYPES[int(t)]
            if name == "color":
                metrics["chance/color"] = 1.0 / len(exp.world.class_names("color", "en"))
    return metrics


def generate_ids(exp, params, cfg, tokens, mask, images) -> list[list[int]]:
    """Prompts int [n, P] + bool mask [n, P] + images uint8 [n, H, W, 3] -> n stripped generations (id lists).

    cfg: max_new_tokens, num_beams (1), batch_size (config.eval_batch_size). The last batch is padded by
    repeating its last row, so every call has the same shape.
    """
    key = ("generate", int(cfg.max_new_tokens), int(cfg.get("num_beams", 1)))
    # NOTE: one jitted generator per (model, decode settings), kept on the experiment so periodic
    # evals (and every generative evaluator) reuse the compiled executable.
    cache = exp.__dict__.setdefault("_generators", {})
    if key not in cache:
        cache[key] = exp.method.make_generate(exp.model, exp.config, max_new_tokens=key[1], num_beams=key[2])
    generate = cache[key]
    bs = int(cfg.get("batch_size", exp.config.eval_batch_size))
    generated = []
    for start in range(0, len(tokens), bs):
        sl = slice(start, start + bs)
        t, m, im = tokens[sl], mask[sl], images[sl]
        pad = bs - len(t)
        if pad:
            t, m, im = (np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) for x in (t, m, im))
        out = np.asarray(generate(params, im, t, m))[: bs - pad]
        generated.extend(strip_generation(row) for row in out)
    return generated


def generate_texts(exp, params, cfg, prompts: list[str], images) -> list[str]:
    """Prompt texts + images uint8 [n, H, W, 3] -> n decoded answers (greedy unless cfg.num_beams > 1)."""
    if not prompts:
        raise ValueError("generate_texts: no prompts (the evaluator found no items to ask)")
    tokens, mask = prompt_batch(exp.method, exp.tokenizer, exp.config, prompts)
    return [exp.tokenizer.decode(ids) for ids in generate_ids(exp, params, cfg, tokens, mask, images)]
