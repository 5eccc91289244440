"""Why does CLIP-tiny learn color but not shape on the world? Same image tower, different training signals.

  python experiments/clip_shape_diagnosis.py [--steps 200] [--variants text,frozen_text,class_codes,supervised]
                                            [--config configs/clip.py:tiny] [--config.k=v ...]

Every variant trains the preset's image tower on the same fixed set of single-object train scenes (drawn
with replacement, batch and optimizer from the config) and differs only in what the image embedding is
pulled towards (the default --variants are the first four; the others are opt-in):

  text         CLIP as `vljax train` runs it: softmax InfoNCE against the text tower on the scene captions.
  frozen_text  the same, with the text tower and its projection frozen at their random init.
  class_codes  InfoNCE against normalize(P[shape] + P[color]): one learnable N(0, 1) code per shape and
               per color, added, no text tower (the captions' attribute words without any language model).
  supervised   cross-entropy of a linear shape head on the pooled image-tower features (the upper reference).
  supervised_cnn
               the same head on a small plain CNN instead of the ViT (3x3 convs, three of stride 2, GELU,
               global average pool; channels width/3, 2 width/3, width, width): how fast shape is learnable
               on these scenes by an architecture with a convolutional prior (the probe reads its pooled features).
  text_cnn     `text` (CLIP against the learning text tower) with that CNN as the image tower (plus a linear
               projection to the embedding): does a tower that picks up shape fast escape the suppression?
  text_shape_negatives
               `text` plus one hard-negative caption per image: its own caption with the shape word
               swapped for another shape (NegCLIP-style; the image->text softmax sees 2B captions).
  pretrained_text
               `text` after --pretrain_text_steps of training the text tower alone to read shape and color
               from the captions (linear heads on its pooled output): a stand-in for a language tower that
               starts out separating the attribute words.
  pretrained_frozen_text
               the same pre-training, then the text tower and its projection frozen (a locked, shape-aware
               text side, as fixed as `class_codes` but reading the captions).

Every --eval_every steps it prints, per variant, a ridge linear probe of shape and color on the pooled
ViT features (experiments/linear_probe.py's probe; test scenes) and, for the text variants, the mean
cosine between text embeddings of "a {color} {shape}" prompts that share the color but not the shape
and vice versa (how much of the text embedding carries shape). A table closes the run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from linear_probe import ridge_probe  # noqa: E402

VARIANTS = ("text", "frozen_text", "class_codes", "supervised", "text_shape_negatives", "pretrained_text",
            "pretrained_frozen_text", "supervised_cnn", "text_cnn")


def shape_swapped(captions, shapes_idx, shape_names, rng) -> list[str]:
    """Single-object captions -> the same captions with the shape word replaced by a different shape."""
    out = []
    for caption, k in zip(captions, shapes_idx):
        words = caption.split(" ")
        hits = [i for i, w in enumerate(words) if w.rstrip(".,") == shape_names[k]]
        if len(hits) != 1:
            raise ValueError(f"expected the shape word {shape_names[k]!r} once in {caption!r}")
        other = shape_names[(k + 1 + rng.integers(len(shape_names) - 1)) % len(shape_names)]
        w = words[hits[0]]
        words[hits[0]] = other + w[len(w.rstrip(".,")):]
        out.append(" ".join(words))
    return out


def main(argv=None):
    from vljax.config import parse_cli

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/clip.py:tiny")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval_every", type=int, default=50)
    p.add_argument("--variants", default=",".join(VARIANTS[:4]))
    p.add_argument("--pretrain_text_steps", type=int, default=100)
    p.add_argument("--n_train", type=int, default=6000, help="fixed train scenes (drawn with replacement)")
    p.add_argument("--n_probe", type=int, default=1500, help="of which the probe fits on the first n_probe")
    p.add_argument("--n_test", type=int, default=500)
    args, overrides = parse_cli(p, argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        p.error(f"unknown variants {unknown}; valid: {', '.join(VARIANTS)}")
    if args.steps < 1 or args.eval_every < 1 or not 0 < args.n_probe <= args.n_train or args.pretrain_text_steps < 0:
        p.error("need steps >= 1, eval_every >= 1, 0 < n_probe <= n_train and pretrain_text_steps >= 0")

    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    from vljax.config import load_config
    from vljax.data import tokenizer as T
    from vljax.data.world import World
    from vljax.losses.contrastive import softmax_infonce
    from vljax.models.two_tower import TwoTower, l2_normalize
    from vljax.train.optim import make_optimizer
    from vljax.methods import get_method

    cfg = load_config(args.config, ["--config.data.world.objects.count=(1, 1)"] + overrides)
    method = get_method(cfg.method)
    world = World(cfg.data.world)
    tokenizer = T.make_tokenizer(cfg.tokenizer, world)
    fields = ("image", "caption", "labels/main_shape", "labels/main_color")

    def scenes(split, n):
        s = [world.sample(split, i, fields=fields) for i in range(n)]
        captions = [x["caption"] for x in s]
        return (np.stack([x["image"] for x in s]), np.asarray(T.tokenize(tokenizer, captions, cfg.data.max_len)),
                np.array([x["labels/main_shape"] for x in s]), np.array([x["labels/main_color"] for x in s]), captions)

    t0 = time.time()
    x_tr, tok_tr, shape_tr, color_tr, captions_tr = scenes("train", args.n_train)
    x_te, _, shape_te, color_te, _ = scenes("test", args.n_test)
    n_shape, n_color = world.num_classes("main_shape"), world.num_classes("main_color")
    shapes, colors = world.class_names("shape", "en"), world.class_names("color", "en")
    prompts = np.asarray(T.tokenize(tokenizer, [f"a {c} {s}" for c in colors for s in shapes], cfg.data.max_len))
    print(f"{args.n_train} train / {args.n_test} test single-object scenes in {time.time() - t0:.0f}s; "
          f"e.g. {captions_tr[0]!r}", flush=True)
    tok_neg = tok_tr
    if "text_shape_negatives" in variants:
        swapped = shape_swapped(captions_tr, shape_tr, shapes, np.random.default_rng(int(cfg.seed) + 1))
        tok_neg = np.asarray(T.tokenize(tokenizer, swapped, cfg.data.max_len))
        print(f"shape negatives, e.g. {captions_tr[0]!r} -> {swapped[0]!r}", flush=True)

    model = method.build(cfg, vocab_size=tokenizer.vocab_size)
    bs = int(cfg.train.batch_size)
    embed_dim = int(cfg.model.embed_dim)

    class SmallCNN(nn.Module):
        """[B, H, W, 3] -> [B, width]: the supervised_cnn reference tower."""

        width: int

        @nn.compact
        def __call__(self, x):
            for c in (self.width // 3, 2 * self.width // 3, self.width):
                x = nn.gelu(nn.Conv(c, (3, 3), strides=2)(x))
            return nn.gelu(nn.Conv(self.width, (3, 3))(x)).mean((1, 2))

    def pooled(params, images):  # uint8 [B, H, W, 3] -> [B, D] pooled image-tower (or reference CNN) features
        x = method.preprocess_images(images)
        if "cnn" in params:
            return SmallCNN(params["cnn"]["Conv_3"]["kernel"].shape[-1]).apply({"params": params["cnn"]}, x)
        return model.apply({"params": params["model"]}, x, method=lambda m, x: m.img_tower(x))

    def text_cos(params):  # -> (same color / other shape, same shape / other color) mean cosines
        e = model.apply({"params": params["model"]}, jnp.asarray(prompts), method=TwoTower.encode_text)
        e = np.asarray(e).reshape(len(colors), len(shapes), -1)
        off = ~np.eye(len(shapes), dtype=bool)
        same_color = np.einsum("csd,ctd->cst", e, e)[:, off].mean()
        off = ~np.eye(len(colors), dtype=bool)
        same_shape = np.einsum("csd,esd->sce", e, e)[:, off].mean()
        return float(same_color), float(same_shape)

    def loss_fn(variant, params, images, tokens, negatives, shape, color):
        if variant in ("supervised", "supervised_cnn"):
            f = pooled(params, images)
            logits = f @ params["head"]["w"] + params["head"]["b"]
            return optax.softmax_cross_entropy_with_integer_labels(logits, shape).mean()
        if variant == "text_cnn":
            img = l2_normalize(pooled(params, images) @ params["cnn_proj"])
            txt = model.apply({"params": params["model"]}, tokens, method=TwoTower.encode_text)
            scale = jnp.exp(params["model"]["logit_scale"])
        elif variant == "class_codes":
            img = model.apply({"params": params["model"]}, method.preprocess_images(images),
                              method=TwoTower.encode_image)
            txt = l2_normalize(params["codes"][shape] + params["codes"][n_shape + color])
            scale = jnp.exp(params["model"]["logit_scale"])
        elif variant == "text_shape_negatives":
            img, txt, scale, _ = method.contrastive_terms(model, params["model"], dict(image=images, text=tokens))
            neg = model.apply({"params": params["model"]}, negatives, method=TwoTower.encode_text)
            labels = jnp.arange(img.shape[0])
            i2t = optax.softmax_cross_entropy_with_integer_labels(scale * img @ jnp.concatenate([txt, neg]).T, labels)
            t2i = optax.softmax_cross_entropy_with_integer_labels(scale * txt @ img.T, labels)
            return (i2t.mean() + t2i.mean()) / 2
        else:
            img, txt, scale, _ = method.contrastive_terms(model, params["model"], dict(image=images, text=tokens))
        return softmax_infonce(img, txt, scale)[0]

    def pretrain_text(model_params):
        """Text tower + linear shape / color heads trained on (caption, labels) -> the tower's params."""
        t_width = int(model_params["txt_proj"]["kernel"].shape[0])
        q = {"model": model_params, "head": jnp.zeros((t_width, n_shape + n_color))}
        tx = optax.adamw(float(cfg.optim.lr), weight_decay=0.0)
        opt_state = tx.init(q)

        def loss(q, tokens, shape, color):
            f = model.apply({"params": q["model"]}, tokens, method=lambda m, t: m.txt_tower(t))
            logits = f @ q["head"]
            return (optax.softmax_cross_entropy_with_integer_labels(logits[:, :n_shape], shape).mean()
                    + optax.softmax_cross_entropy_with_integer_labels(logits[:, n_shape:], color).mean())

        @jax.jit
        def step(q, opt_state, tokens, shape, color):
            val, grads = jax.value_and_grad(loss)(q, tokens, shape, color)
            updates, opt_state = tx.update(grads, opt_state, q)
            return optax.apply_updates(q, updates), opt_state, val

        draw = np.random.default_rng(int(cfg.seed) + 2)
        for _ in range(args.pretrain_text_steps):
            idx = draw.integers(0, args.n_train, bs)
            q, opt_state, val = step(q, opt_state, tok_tr[idx], shape_tr[idx], color_tr[idx])
        print(f"pretrained text: text tower trained {args.pretrain_text_steps} steps on caption -> (shape, color), "
              f"loss {float(val):.3f}" if args.pretrain_text_steps else "pretrained text: 0 steps", flush=True)
        return q["model"]

    rows = {}
    rng = jax.random.key(int(cfg.seed))
    # NOTE: every variant starts from the same two-tower init; made once (an eager init takes seconds on CPU).
    init = nn.unbox(method.init_params(model, cfg, rng))
    for variant in variants:
        params = {"model": jax.tree.map(lambda x: x, init)}  # fresh containers: variants delete towers below
        width = int(jax.eval_shape(pooled, params, x_tr[:1]).shape[-1])  # pooled image-tower features
        if variant in ("supervised", "supervised_cnn"):
            params["head"] = {"w": jnp.zeros((width, n_shape)), "b": jnp.zeros((n_shape,))}
        if variant in ("supervised_cnn", "text_cnn"):
            params["cnn"] = SmallCNN(width).init(rng, method.preprocess_images(x_tr[:1]))["params"]
        if variant == "supervised_cnn":
            del params["model"]  # NOTE: the ViT is not used; keeping it would only add optimizer state.
        if variant == "text_cnn":
            params["cnn_proj"] = jax.random.normal(jax.random.fold_in(rng, 2), (width, embed_dim)) * width**-0.5
            del params["model"]["img_tower"]
            params["model"].pop("img_proj", None)  # absent when the tower's pool is the embedding (ResNet)
        if variant == "class_codes":
            params["codes"] = jax.random.normal(jax.random.fold_in(rng, 1), (n_shape + n_color, embed_dim))
        if variant.startswith("pretrained"):
            params["model"] = pretrain_text(params["model"])
        ocfg = cfg.optim.copy_and_resolve_references()
        ocfg.total_steps = args.steps
        if variant.endswith("frozen_text"):
            ocfg.freeze = ("^model/txt_",)
        tx, _ = make_optimizer(ocfg, params)
        opt_state = tx.init(params)

        @jax.jit
        def step(params, opt_state, images, tokens, negatives, shape, color, variant=variant):
            loss, grads = jax.value_and_grad(
                lambda q: loss_fn(variant, q, images, tokens, negatives, shape, color))(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        feats = jax.jit(pooled)

        def probe(params):
            f_tr = np.concatenate([np.asarray(feats(params, x_tr[i:i + 500])) for i in range(0, args.n_probe, 500)])
            f_te = np.concatenate([np.asarray(feats(params, x_te[i:i + 500])) for i in range(0, len(x_te), 500)])
            n = len(f_tr)
            return (ridge_probe(f_tr, shape_tr[:n], f_te, shape_te, n_shape),
                    ridge_probe(f_tr, color_tr[:n], f_te, color_te, n_color))

        draw = np.random.default_rng(int(cfg.seed))
        t0 = time.time()
        for i in range(1, args.steps + 1):
            idx = draw.integers(0, args.n_train, bs)
            params, opt_state, loss = step(params, opt_state, x_tr[idx], tok_tr[idx], tok_neg[idx],
                                           shape_tr[idx], color_tr[idx])
            if i % args.eval_every == 0 or i == args.steps:
                loss = float(loss)
                if not np.isfinite(loss):
                    raise FloatingPointError(f"{variant}: non-finite loss at step {i}")
                s_acc, c_acc = probe(params)
                has_text = variant.startswith(("text", "frozen_text", "pretrained"))
                cos = text_cos(params) if has_text else (float("nan"),) * 2
                rows.setdefault(variant, []).append((i, loss, s_acc, c_acc) + cos)
                print(f"{variant:<12} step {i:>5}  loss {loss:.3f}  probe shape {s_acc:.3f} color {c_acc:.3f}  "
                      f"text cos same-color {cos[0]:.3f} same-shape {cos[1]:.3f}  {time.time() - t0:.0f}s", flush=True)

    print(f"\nlinear probe of the pooled image-tower features, {args.n_test} single-object test scenes "
          f"(chance shape 1/{n_shape}, color 1/{n_color}); text cos = mean cosine of 'a {{color}} {{shape}}' "
          "embeddings sharing the color / the shape\n")
    print("| variant | step | loss | probe shape | probe color | text cos same color | text cos same shape |")
    print("|---|---|---|---|---|---|---|")
    for variant, rs in rows.items():
        for i, loss, s_acc, c_acc, a, b in rs:
            cos = f"{a:.3f} | {b:.3f}" if np.isfinite(a) else "- | -"
            print(f"| {variant} | {i} | {loss:.3f} | {s_acc:.3f} | {c_acc:.3f} | {cos} |")


if __name__ == "__main__":
    main()
