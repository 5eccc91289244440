"""`vljax data convert` and `vljax tokenizer train`: real files in, array_record / .model out."""
import numpy as np
import pytest

import data_fixtures as fx
from vljax import main as cli
from vljax.data import sources, transforms as T
from vljax.data.convert import convert_to_array_record
from vljax.data.tokenizer import SentencePieceTokenizer


def test_convert_webdataset_to_array_record_counts_bad_records(tmp_path, capsys):
    info = fx.write_webdataset(str(tmp_path / "wds"))
    out = str(tmp_path / "ar" / "train")
    rc = cli.main(["data", "convert", "--format", "webdataset", "--input", str(tmp_path / "wds" / "*.tar"),
                   "--output", out, "--num_shards", "2", "--max_bad_fraction", "0.5"])
    assert rc == 0
    line = capsys.readouterr().out
    # read-time failures (no txt, malformed json, truncated member) are skipped; the corrupt jpeg is
    # still valid bytes and is caught later, at decode time, by the training pipeline's guard.
    assert "wrote 7 records" in line and "2 shard(s)" in line and "3 bad records" in line
    src = sources.ArrayRecordSource(out + ".array_record-*")
    assert len(src) == 7
    wds = sources.WebDatasetSource(info["shards"])
    originals = {}
    for i in range(len(wds)):
        try:
            originals[wds[i]["key"]] = wds[i]
        except sources.BadRecordError:
            pass
    converted = {src[i]["key"]: src[i] for i in range(len(src))}
    assert sorted(converted) == sorted(originals) and set(info["good_keys"]) <= set(converted)
    for key, r in converted.items():
        assert r["image"] == originals[key]["image"] and r["text"] == originals[key]["text"]


def test_convert_verify_images_drops_the_corrupt_jpeg(tmp_path, capsys):
    info = fx.write_webdataset(str(tmp_path / "wds"))
    rc = cli.main(["data", "convert", "--format", "webdataset", "--input", str(tmp_path / "wds" / "*.tar"),
                   "--output", str(tmp_path / "v"), "--max_bad_fraction", "0.5", "--verify_images"])
    assert rc == 0 and "wrote 6 records" in capsys.readouterr().out
    src = sources.ArrayRecordSource(str(tmp_path / "v.array_record-*"))
    assert sorted(src[i]["key"] for i in range(len(src))) == sorted(info["good_keys"])


def test_convert_raises_past_max_bad_fraction_naming_source(tmp_path, capsys):
    fx.write_webdataset(str(tmp_path / "wds"))
    rc = cli.main(["data", "convert", "--format", "webdataset", "--input", str(tmp_path / "wds" / "*.tar"),
                   "--output", str(tmp_path / "o"), "--max_bad_fraction", "0.01"])
    assert rc == 2 and "webdataset:" in capsys.readouterr().err


def test_converted_world_trains_through_the_pipeline(tmp_path):
    src = sources.open_source("world", "image32", split="train")
    summary = convert_to_array_record(src, str(tmp_path / "w"), name="world", limit=12, progress=False)
    assert summary.records == 12 and summary.bad_records == 0 and summary.bytes > 12 * 32 * 32 * 3
    ar = sources.ArrayRecordSource(summary.shards)
    np.testing.assert_array_equal(ar[5]["image"], src[5]["image"])
    it = iter(sources.make_dataset(ar, [T.DecodeImage(), T.Normalize(), T.KeepFields(("image",))], name="ar",
                                   global_batch=4, num_threads=1))
    assert next(it)["image"].shape == (4, 32, 32, 3)


def test_tokenizer_train_from_text_and_from_llava(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(t for _, t in fx.world_samples(12)) * 5)
    rc = cli.main(["tokenizer", "train", "--format", "text", "--input", str(corpus), "--vocab_size", "320",
                   "--output", str(tmp_path / "tok")])
    assert rc == 0 and "tok.model" in capsys.readouterr().out
    tok = SentencePieceTokenizer(str(tmp_path / "tok.model"))
    text = fx.world_samples(1)[0][1]
    assert tok.decode(tok.encode(text)) == text
    path = fx.write_llava(str(tmp_path / "llava"))
    rc = cli.main(["tokenizer", "train", "--format", "llava", "--input", path, "--images", str(tmp_path / "llava"),
                   "--field", "conversation", "--vocab_size", "300", "--output", str(tmp_path / "tok2")])
    assert rc == 0 and (tmp_path / "tok2.model").exists()
    with pytest.raises(SystemExit):
        cli.main(["data", "convert", "--format", "parquet", "--input", "x", "--output", "y"])
