"""Generative LVLM (LLaVA-style) trained with next-token prediction on world QA / captions.

    x = [bos] <image> x N' <user> prompt <assistant> answer [eos] [pad ...]
    loss = NTP over the answer tokens and eos only (image, prompt and pads unsupervised)

Stages are config presets that freeze by path regex (config.optim.freeze): `align` trains the
projector only (vision encoder and LM frozen), `full` trains everything.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vljax.data.tokenizer import BOS, EOS, PAD
from vljax.nn.dtypes import dtype
from vljax.losses import lm as lm_loss
from vljax.models import decoding
from vljax.models.lm_sizes import resolve_lm
from vljax.models.lvlm import LVLM

TASKS = ("qa", "caption")
CAPTION_PROMPT = "describe the image ."


def build(config, vocab_size: int) -> LVLM:
    """config.model -> LVLM (ViT + projector, or encoder-free patches) over a causal LM."""
    m = config.model
    vision = None if m.get("vision") is None else dict(m.vision, remat=m.remat)
    return LVLM(
        lm=dict(resolve_lm(m.lm), vocab_size=vocab_size),  # NOTE: a dict or an LM_SIZES name
        vision=vision,
        image_size=int(config.data.world.resolution),
        projector=m.projector,
        projector_pool=int(m.projector_pool),
        patch_size=int(m.patch_size),
        image_token_id=int(m.image_token_id),
        dtype=dtype(m.dtype),
    )


def init_params(model: LVLM, config, rng: jax.Array):
    """-> boxed params (logical axis names attached) from dummy inputs."""
    res = int(config.data.world.resolution)
    images = jnp.zeros((1, res, res, 3), jnp.float32)
    tokens = jnp.zeros((1, int(config.data.max_len)), jnp.int32)
    return model.init(rng, images, tokens)["params"]


def data_spec(config) -> dict:
    """World fields the example builder reads (tokenization happens in make_example)."""
    text = ("qa",) if config.task == "qa" else ("captions",)
    return dict(fields=("image",) + text, text_fields={}, keep=("image",))


def check_config(config) -> None:
    """Config loading hook: config.task and config.loss_vocab_chunk (ValueError naming the key)."""
    if config.get("task", "qa") not in TASKS:
        raise ValueError(f"config.task={config.task!r} is not one of {', '.join(TASKS)}")
    if int(config.get("loss_vocab_chunk", 0)) < 0:
        raise ValueError(f"config.loss_vocab_chunk={config.loss_vocab_chunk} must be >= 0 (0 = full logits)")


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text))


def prompt_ids(tokenizer, prompt: str, n_image: int, image_token_id: int) -> list[int]:
    """Prompt text -> ids [bos, <image> x n_image, <user>, prompt..., <assistant>]."""
    user, assistant = _ids(tokenizer, "<user>"), _ids(tokenizer, "<assistant>")
    return [BOS] + [image_token_id] * n_image + user + _ids(tokenizer, prompt) + assistant


def conversation(prompt: list[int], answer: list[int], max_len: int) -> dict[str, np.ndarray]:
    """Prompt ids + answer ids -> tokens int32 [max_len], label_mask bool [max_len] (answer + eos supervised)."""
    ids = list(prompt) + list(answer) + [EOS]
    if len(ids) > max_len:
        raise ValueError(f"config.data.max_len={max_len} is too short for a {len(ids)}-token conversation")
    tokens = np.full((max_len,), PAD, np.int32)
    tokens[: len(ids)] = ids
    label = np.zeros((max_len,), bool)
    label[len(prompt) : len(ids)] = True
    if not answer:
        # NOTE: only eos would be supervised; an empty answer is a data bug, not a training signal.
        label[:] = False
    lm_loss.check_label_mask(label[None])
    return dict(tokens=tokens, label_mask=label)


def select_text(sample: dict, task: str) -> tuple[str, str, int | str]:
    """World sample -> (prompt, answer, QA type id or 'caption'); one QA item chosen by the scene index."""
    if task not in TASKS:
        raise ValueError(f"config.task={task!r} is not one of {TASKS}")
    if task == "caption":
        return CAPTION_PROMPT, str(sample["captions/short"]), "caption"
    questions, answers = sample["qa/question"], sample["qa/answer"]
    i = int(sample["meta/index"]) % len(questions)
    return str(questions[i]), str(answers[i]), int(np.asarray(sample["qa/type"])[i])


def make_example(sample: dict, tokenizer, config) -> dict[str, np.ndarray]:
    """World sample -> dict(image uint8 [H, W, 3], tokens int32 [T], label_mask bool [T])."""
    model = build_static(config)
    prompt, answer, _ = select_text(sample, config.task)
    ids = prompt_ids(tokenizer, prompt, model.num_image_tokens(), model.image_token_id)
    return dict(
        image=np.asarray(sample["image"]), **conversation(ids, _ids(tokenizer, answer), int(config.data.max_len))
    )


def build_static(config) -> LVLM:
    """An unbound LVLM for shape questions (number of image tokens) without a vocabulary."""
    return build(config, vocab_size=1)


def ntp_loss(model: LVLM, params, batch: dict, rng, config, weights=None):
    """One NTP forward: batch {image [B, H, W, 3], tokens int [B, T], label_mask [B, T]} -> (loss, metrics).

    weights: optional per-token multipliers [B, T] aligned with the *targets* (position t weighs the
    prediction of token t + 1), applied before the reduction; None = plain NTP. Shared by every
    LVLM method (PRIOR passes its token weights here).

    config.loss_vocab_chunk > 0 computes the loss from the final hidden states and the unembedding,
    chunk_size vocabulary entries at a time, never building the [B, T, V] logits (same value and grads).
    """
    tokens = batch["tokens"]
    targets, mask = lm_loss.shift_targets(tokens, batch["label_mask"])
    normalize = config.get("loss_normalize", "token")
    chunk = int(config.get("loss_vocab_chunk", 0))
    if chunk < 0:
        raise ValueError(f"config.loss_vocab_chunk={chunk} must be >= 0 (0 = full logits)")
    if chunk:
        hidden = model.apply(
            {"params": params}, batch["image"], tokens, train=True, return_hidden=True, rngs={"dropout": rng}
        )
        unembed = model.apply({"params": params}, method=LVLM.unembedding)
        return lm_loss.chunked_next_token_loss(
            hidden, unembed, targets, mask, weights=weights, normalize=normalize, chunk_size=chunk
        )
    logits = model.apply({"params": params}, batch["image"], tokens, train=True, rngs={"dropout": rng})
    return lm_loss.next_token_loss(logits, targets, mask, weights=weights, normalize=normalize)


def make_loss(model: LVLM, config, mesh):
    """-> loss_fn(params, batch, rng) -> (loss, metrics): NTP on the answer tokens."""
    del mesh  # NOTE: the token mean is a global reduction; jit partitions it over any batch sharding.

    def loss_fn(params, batch, rng):
        return ntp_loss(model, params, batch, rng, config)

    return loss_fn


def make_generate(model: LVLM, config, *, max_new_tokens: int, num_beams: int = 1):
    """-> jitted generate(params, images [B, H, W, 3], prompts int [B, P] left-padded, bool mask) -> [B, N].

    Build it once per (model, settings) and reuse it: it compiles once per input shape.
    """
    del config  # NOTE: decode settings come from the evaluator config, passed as arguments.

    def step_fn(params, cache, tokens, positions, mask):
        return model.apply({"params": params}, cache, tokens, positions, mask, method=LVLM.decode_step)

    @jax.jit
    def generate(params, images, prompts, mask):
        b, p = prompts.shape
        cache = model.apply({"params": params}, b, p + max_new_tokens, method=LVLM.init_cache)
        logits, cache, positions = model.apply({"params": params}, images, prompts, mask, cache, method=LVLM.prefill)
        state = decoding.Prefilled(cache, logits, positions)
        if num_beams == 1:
            return decoding.greedy(step_fn, params, state, max_new_tokens=max_new_tokens, eos_id=EOS, pad_id=PAD)
        return decoding.beam_search(
            step_fn, params, state, max_new_tokens=max_new_tokens, num_beams=num_beams, eos_id=EOS, pad_id=PAD
        )[0]

    return generate
