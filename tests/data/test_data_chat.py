"""Chat templates: only assistant replies are supervised; an empty mask is an error, not a zero loss."""
import numpy as np
import pytest

from vljax.data import chat, sources
from vljax.data.tokenizer import BOS


class Chars:
    """Character tokenizer: each char -> ord + 10 (ids > eos)."""
    vocab_size = 400

    def encode(self, text):
        return [ord(c) + 10 for c in text]

    def decode(self, ids):
        return "".join(chr(i - 10) for i in ids if i > 10)


CONV = [{"role": "user", "content": "hi?"}, {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "more"}, {"role": "assistant", "content": "ok!"}]


@pytest.mark.parametrize("name", sorted(chat.TEMPLATES))
def test_mask_covers_exactly_the_replies(name):
    tok = Chars()
    out = chat.tokenize_conversation(CONV, tok, name, max_len=512)
    tokens, mask = out["tokens"], out["loss_mask"]
    assert tokens[0] == BOS and not mask[0]
    suffix = chat.TEMPLATES[name].assistant[1]
    assert tok.decode(tokens[mask]) == "yo" + suffix + "ok!" + suffix
    n = int((tokens != 0).sum())
    text = tok.decode(tokens[1:n])
    assert "hi?" in text and "more" in text and not mask[n:].any()


def test_conversation_without_supervised_tokens_raises():
    with pytest.raises(ValueError, match="no supervised token"):
        chat.tokenize_conversation([{"role": "user", "content": "hello"}], Chars(), "chatml", 64, key="k1")
    long_user = [{"role": "user", "content": "x" * 100}, {"role": "assistant", "content": "y"}]
    with pytest.raises(ValueError, match="truncated"):
        chat.tokenize_conversation(long_user, Chars(), "chatml", 32)
    with pytest.raises(ValueError, match="template"):
        chat.get_template("alpaca2")


def test_truncation_keeps_supervised_prefix():
    out = chat.tokenize_conversation(CONV, Chars(), "plain", max_len=8)
    assert out["tokens"].shape == (8,) and out["loss_mask"].sum() > 0 and (out["tokens"] != 0).all()


def test_llava_pipeline_skips_unsupervised_conversation(tmp_path):
    import json

    rows = [{"id": "q_only", "conversations": [{"from": "human", "value": "hi"}]},
            {"id": "ok", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yes"}]}]
    path = tmp_path / "l.json"
    path.write_text(json.dumps(rows))
    src = sources.LlavaSource(str(path))
    ds = sources.make_map_dataset(src, [chat.ChatTokenize(Chars(), 64, "chatml")], name="llava", shuffle=False,
                                  policy=sources.BadRecordPolicy(max_bad_fraction=0.9))
    got = [ds[i]["key"] for i in range(4)]
    assert got == ["ok"] * 4 and ds.counter.bad_keys[0] == "q_only"
    assert isinstance(ds[1]["loss_mask"], np.ndarray)
