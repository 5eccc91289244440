"""Caption attribute dropout (vljax.data.transforms.DropAttributeWords) on the world's own captions and spans.

The world's parser is the reference: a caption with words dropped must parse to the same objects (count,
shape, position) with the dropped attributes unnamed and every kept attribute unchanged.
"""

import re

import numpy as np
import pytest

from vljax.config import load_config
from vljax.data import transforms as T
from vljax.data.world import World
from vljax.data.world import concepts
from vljax.data.world.config import get_config as world_config
from vljax.train import loop

ATTRS = ("size", "color", "texture")
_MENTION = ("count", "size", "color", "texture", "shape", "position")  # World.parse mention tuple order


@pytest.fixture(scope="module")
def samples():
    cfg = world_config("image64")
    cfg.objects.count = (1, 3)
    cfg.objects.textures = ("solid", "striped")
    src = World(cfg).source("train", fields=("captions/short", "captions/long", "spans"))
    return [src[i] for i in range(120)]


def _mentions(text):
    return [dict(zip(_MENTION, m)) for m in World.parse(text).mentions]


@pytest.mark.parametrize("kind", ["short", "long"])
def test_dropping_every_attribute_keeps_the_objects(samples, kind):
    rng = np.random.default_rng(0)
    named = 0
    for s in samples:
        text, spans = s[f"captions/{kind}"], s[f"spans/{kind}"]
        out = T.drop_attribute_words(text, spans, ATTRS, 1.0, rng)
        before, after = _mentions(text), _mentions(out)
        assert len(before) == len(after), (text, out)
        for b, a in zip(before, after):
            named += sum(b[k] is not None for k in ATTRS)
            assert all(a[k] is None for k in ATTRS), (text, out)
            assert {k: a[k] for k in ("count", "shape", "position")} == {
                k: b[k] for k in ("count", "shape", "position")
            }, (text, out)
        assert not re.search(r"\ban [^aeiou]|\ba [aeiou]", out), out
    assert named > 300  # the captions did name attributes


def test_p_zero_is_the_identity(samples):
    rng = np.random.default_rng(1)
    for s in samples:
        assert T.drop_attribute_words(s["captions/long"], s["spans/long"], ATTRS, 0.0, rng) == s["captions/long"]


def test_each_attribute_word_is_dropped_independently_with_probability_p(samples):
    rng = np.random.default_rng(2)
    kept = {a: [0, 0] for a in ATTRS}  # attribute -> [kept, named]
    for s in samples:
        text, spans = s["captions/short"], s["spans/short"]
        out = T.drop_attribute_words(text, spans, ("size", "color"), 0.5, rng)
        for b, a in zip(_mentions(text), _mentions(out)):
            assert a["texture"] == b["texture"] and a["shape"] == b["shape"]  # not listed: never dropped
            for k in ("size", "color"):
                assert a[k] in (None, b[k])  # dropped or unchanged, never altered
                if b[k] is not None:
                    kept[k][0] += a[k] is not None
                    kept[k][1] += 1
    for k in ("size", "color"):
        n = kept[k][1]
        # NOTE: binomial(n, 0.5): 4 standard deviations.
        assert n > 100 and abs(kept[k][0] / n - 0.5) < 4 * np.sqrt(0.25 / n), (k, kept[k])


def _spans(words_types):
    """[(word, span type, concept)] -> (text, int32 [S, 5] spans), one object (slot 0)."""
    text, spans, pos = [], [], 0
    for word, kind, concept in words_types:
        spans.append((pos, pos + len(word), kind, 0, concept))
        text.append(word)
        pos += len(word) + 1
    return " ".join(text), np.asarray(spans, np.int32)


def test_indefinite_article_follows_the_next_kept_word():
    orange, large = concepts.COLORS.index("orange"), concepts.SIZES.index("large")
    text, spans = _spans([("a", 1, 1), ("large", 2, large), ("orange", 3, orange), ("circle", 4, 0)])
    one = np.random.default_rng(0)
    assert T.drop_attribute_words(text, spans, ("size",), 1.0, one) == "an orange circle"
    assert T.drop_attribute_words(text, spans, ("size", "color"), 1.0, one) == "a circle"
    text, spans = _spans([("an", 1, 1), ("orange", 3, orange), ("circle", 4, 0)])
    assert T.drop_attribute_words(text, spans, ("color",), 1.0, one) == "a circle"
    assert World.parse("a circle").mentions == [(1, None, None, None, "circle", None)]


def test_span_type_ids_are_the_worlds():
    from vljax.data.world.language import realize

    assert T.DROPPABLE_ATTRIBUTES == {"size": realize.SIZE, "color": realize.COLOR, "texture": realize.TEXTURE}
    assert T._COUNT_SPAN == realize.COUNT


def test_bad_settings_fail_clearly():
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        T.DropAttributeWords(p=1.5)
    with pytest.raises(ValueError, match="shape"):
        T.DropAttributeWords(p=0.5, attributes=("shape",))
    with pytest.raises(KeyError, match="spans/short"):
        T.DropAttributeWords(p=0.5).random_map({"caption": "a red circle"}, np.random.default_rng(0))


SMALL = [
    "--config.data.world.resolution=32",
    "--config.data.max_len=16",
    "--config.train.batch_size=8",
    "--config.data.num_threads=1",
    "--config.data.attribute_drop.p=1.0",
]


def _texts(exp, batches):
    it = iter(exp.train_dataset())
    return it, [next(it)["text"] for _ in range(batches)]


def test_trainer_feeds_captions_without_the_dropped_words(tmp_path):
    cfg = load_config("configs/clip.py:tiny", SMALL)
    exp = loop.Experiment(cfg, tmp_path)
    it, first = _texts(exp, 2)
    words = {w for row in np.concatenate(first) for w in exp.tokenizer.decode(row.tolist()).split()}
    assert not words & set(concepts.COLORS[:8]) and not words & {"medium", "large"}, words
    assert words & set(concepts.SHAPES), words
    # NOTE: the draws come from grain's (seed, index) rng, so a restored iterator repeats them exactly.
    state = it.get_state()
    expected = [next(it)["text"] for _ in range(2)]
    it2 = iter(exp.train_dataset())
    it2.set_state(state)
    for a, b in zip(expected, [next(it2)["text"] for _ in range(2)]):
        np.testing.assert_array_equal(a, b)
    # p=0 (the default) leaves the captions whole.
    plain = loop.Experiment(load_config("configs/clip.py:tiny", SMALL[:-1]), tmp_path / "plain")
    words = {
        w for row in next(iter(plain.train_dataset()))["text"] for w in plain.tokenizer.decode(row.tolist()).split()
    }
    assert words & set(concepts.COLORS[:8])


def test_methods_without_the_caption_field_refuse_it(tmp_path):
    cfg = load_config("configs/lvlm_ntp.py:tiny", ["--config.data.attribute_drop.p=0.5"])
    with pytest.raises(ValueError, match="attribute_drop"):
        loop.Experiment(cfg, tmp_path).train_dataset()
