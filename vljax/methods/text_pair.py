"""Text-tower pre-training on caption pairs (the language stage before a locked-text CLIP).

Two captions of the same scene (config.data.pair, default the short caption and the same caption with
position words) are a positive pair, every other caption in the batch a negative, as in sentence-embedding
training on paraphrase pairs (Sentence-BERT, SimCSE's supervised variant):

    a = normalize(W_t Text(caption_a)),  b = normalize(W_t Text(caption_b))      [B, E] each
    loss = (CE(exp(t) a @ b.T, diag) + CE(exp(t) b @ a.T, diag)) / 2

No labels are used: only text. The model is the full two-tower (image params exist but get no
gradient; presets freeze them), so the text tower and projection load into a CLIP run with
`--config.init.text=checkpoint:WORKDIR` and can be locked there with `--config.optim.freeze='("^txt_",)'`.
Why this stage exists (docs/clip_shape_study.md): a text tower trained jointly with a fresh image
tower drops shape words, and the image tower then never learns shape.
"""
from __future__ import annotations

from vljax.losses import contrastive
from vljax.methods import clip
from vljax.models.two_tower import TwoTower
from vljax.sharding import BATCH_AXES

build = clip.build
init_params = clip.init_params
encoders = clip.encoders


def _pair(config) -> tuple[str, str]:
    """config.data.pair -> (field a, field b): two distinct world caption fields."""
    pair = tuple(config.data.get("pair", ("captions/short", "captions/positional")))
    if len(pair) != 2 or pair[0] == pair[1]:
        raise ValueError(f"config.data.pair must name two different caption fields, got {pair}")
    return pair


def check_config(config) -> None:
    """Config loading hook: config.data.pair names two different caption fields."""
    _pair(config)


def data_spec(config) -> dict:
    """Both captions tokenized (batch keys 'text' and 'text_b'); no image."""
    a, b = _pair(config)
    return dict(fields=(a, b), text_fields={a: "text", b: "text_b"}, keep=())


def make_loss(model: TwoTower, config, mesh):
    """-> loss_fn(params, batch, rng) -> (loss, metrics): symmetric InfoNCE between the two captions."""

    def loss_fn(params, batch, rng):
        del rng
        # NOTE: images=None: only the text tower runs (and the logit scale is read).
        a = model.apply({"params": params}, None, batch["text"], train=True)
        b = model.apply({"params": params}, None, batch["text_b"], train=True)
        scale = a["logit_scale"]
        loss, metrics = contrastive.contrastive_loss("softmax", a["txt"], b["txt"], scale, mesh=mesh, axes=BATCH_AXES)
        return loss, dict(metrics, logit_scale=scale)

    return loss_fn
