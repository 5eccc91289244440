"""HF tokenizer.json loaded through vljax gives the same ids as transformers' tokenizer."""

import pytest

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

from vljax.convert.tokenizer_hf import HFTokenizer  # noqa: E402

TEXTS = [
    "a red circle left of a blue square",
    "Two  green triangles!",
    "",
    "unseen wörds & émojis 🙂",
    "the the the",
    "a photo of a dog.\nnew line",
]


def _train_bpe(folder):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(
        ["a red circle left of a blue square", "two green triangles above a dog", "a photo of a cat and a dog"] * 20,
        trainer,
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    return transformers.AutoTokenizer.from_pretrained(folder)


def test_ids_match_transformers(tmp_path):
    ref = _train_bpe(tmp_path)
    ours = HFTokenizer(tmp_path)
    assert ours.vocab_size == len(ref)
    assert (ours.pad_id, ours.bos_id, ours.eos_id) == (ref.pad_token_id, ref.bos_token_id, ref.eos_token_id)
    for text in TEXTS:
        assert ours.encode(text) == ref(text, add_special_tokens=False)["input_ids"], text
        assert ours.encode(text, add_special_tokens=True) == ref(text)["input_ids"], text
    assert len(ours.encode(TEXTS[0])) < len(TEXTS[0])  # BPE merges shorten the sequence below bytes
    assert ours.decode(ours.encode(TEXTS[0])) == TEXTS[0]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        HFTokenizer(tmp_path)
