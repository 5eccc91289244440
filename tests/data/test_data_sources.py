"""Every real-data source reads its format and turns corrupt records into BadRecordError (never a crash)."""
import json
import os

import numpy as np
import pytest

import data_fixtures as fx
from vljax.data import sources, transforms as T
from vljax.data.sources.bad_records import BadRecordError


def _read_all(src):
    good, bad = {}, []
    for i in range(len(src)):
        try:
            r = src[i]
            good[r["key"]] = r
        except BadRecordError as e:
            bad.append(e.key)
    return good, bad


def _decode(record):
    return T.DecodeImage().map(record)["image"]


def test_webdataset_reads_img2dataset_shards_and_flags_each_corruption(tmp_path):
    info = fx.write_webdataset(str(tmp_path))
    src = sources.WebDatasetSource(str(tmp_path / "*.tar"))
    good, bad = _read_all(src)
    # corrupt jpeg reads fine as bytes and fails at decode; the others fail at read.
    decoded, decode_bad = {}, []
    for k, r in good.items():
        try:
            decoded[k] = _decode(r)
        except OSError:
            decode_bad.append(k)
    assert sorted(decoded) == sorted(info["good_keys"])
    assert sorted(bad + decode_bad) == sorted(info["bad_keys"])
    samples = fx.world_samples(10)
    k = info["good_keys"][1]
    i = int(k.split("/")[1])
    np.testing.assert_array_equal(decoded[k], samples[i][0])
    assert good[k]["text"] == samples[i][1] and json.loads(good[k]["json"]) == {"key": f"{i:09d}"}


def test_coco_captions_one_record_per_caption_missing_file_is_bad(tmp_path):
    path = fx.write_coco(str(tmp_path))
    src = sources.CocoCaptionsSource(path, str(tmp_path / "images"))
    assert len(src) == 6 * 2 + 1
    good, bad = _read_all(src)
    assert sorted(bad) == ["2/0", "2/1", "99/0"]
    samples = fx.world_samples(6)
    assert good["4/0"]["text"] == samples[4][1] and good["4/1"]["text"] == samples[4][1] + " again"
    np.testing.assert_array_equal(_decode(good["4/0"]), samples[4][0])
    per_image = sources.CocoCaptionsSource(path, str(tmp_path / "images"), per="image")
    assert len(per_image) == 7 and per_image[0]["texts"] == [samples[0][1], samples[0][1] + " again"]
    with pytest.raises(ValueError, match="per"):
        sources.CocoCaptionsSource(path, str(tmp_path / "images"), per="pixel")


def test_malformed_annotation_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match="broken.json"):
        sources.CocoCaptionsSource(str(bad), str(tmp_path))


@pytest.mark.parametrize("coco", [True, False])
def test_karpathy_splits_coco_and_flickr30k(tmp_path, coco):
    path = fx.write_karpathy(str(tmp_path), coco=coco)
    root = str(tmp_path)
    train = sources.KarpathySource(path, root, split="train")
    train_only = sources.Flickr30kSource(path, root, split="train", include_restval=False)
    test = sources.KarpathySource(path, root, split="test", per="image")
    assert len(train) == 2 * 4 and len(train_only) == 2 * 3 and len(test) == 1
    samples = fx.world_samples(6)
    r = test[0]
    assert r["image_id"] == "4" and r["texts"] == [samples[4][1], "a picture"]
    np.testing.assert_array_equal(_decode(r), samples[4][0])
    with pytest.raises(ValueError, match="split"):
        sources.KarpathySource(path, root, split="dev")


def test_llava_conversations_and_bad_entries(tmp_path):
    path = fx.write_llava(str(tmp_path))
    src = sources.LlavaSource(path, str(tmp_path))
    good, bad = _read_all(src)
    assert sorted(good) == ["a", "b"] and sorted(bad) == ["d", "e", "llava.jsonl:3"]
    a = good["a"]
    assert a["has_image"] and a["image"][:4] == b"\x89PNG"
    assert [t["role"] for t in a["conversation"]] == ["user", "assistant", "user", "assistant"]
    assert a["conversation"][0]["content"] == "What is shown?"
    assert good["b"]["image"] == b"" and not good["b"]["has_image"]


def test_array_record_roundtrip_keeps_dtypes(tmp_path):
    from array_record.python import array_record_module

    records = [{"key": f"r{i}", "image": fx.encode_image(fx.world_samples(3)[i][0]), "text": f"t{i}",
                "boxes": np.random.default_rng(i).random((2, 4), dtype=np.float32), "n": i} for i in range(3)]
    path = str(tmp_path / "x.array_record")
    w = array_record_module.ArrayRecordWriter(path, "group_size:1")
    for r in records:
        w.write(sources.encode_record(r))
    w.write(b"\xc1 not msgpack")
    w.close()
    src = sources.ArrayRecordSource(str(tmp_path / "*.array_record"))
    assert len(src) == 4
    for i, r in enumerate(records):
        out = src[i]
        assert out["key"] == r["key"] and out["text"] == r["text"] and out["n"] == i and out["image"] == r["image"]
        np.testing.assert_array_equal(out["boxes"], r["boxes"])
        assert out["boxes"].dtype == np.float32
    with pytest.raises(BadRecordError):
        src[3]
    with pytest.raises(ValueError, match="paths"):
        sources.ArrayRecordSource(str(tmp_path / "none*.array_record"))


def test_tfds_tiny_builder_read_without_tensorflow(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    samples = fx.world_samples(5)

    # NOTE: tfds.features.Image needs tensorflow to encode; images are stored as encoded PNG bytes in a
    # scalar object Tensor instead, which builds and reads with numpy only.
    class VljaxTiny(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "png": tfds.features.Tensor(shape=(), dtype=np.object_), "caption": tfds.features.Text(),
                "index": tfds.features.Tensor(shape=(), dtype=np.int64)}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, (image, caption) in enumerate(samples):
                yield i, {"png": fx.encode_image(image), "caption": caption, "index": i}

    VljaxTiny(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    src = sources.TfdsSource("vljax_tiny", "train", data_dir=str(tmp_path),
                             fields={"image": "png", "text": "caption", "index": "index"})
    assert len(src) == 5
    seen = set()
    for j in range(5):
        r = src[j]
        i = int(r["index"])
        seen.add(i)
        assert r["text"] == samples[i][1]
        np.testing.assert_array_equal(_decode(r), samples[i][0])
    assert seen == set(range(5))
    with pytest.raises(ValueError, match="vljax_nope") as err:
        sources.TfdsSource("vljax_nope", "train", data_dir=str(tmp_path))
    assert len(str(err.value).splitlines()) == 1  # tfds's catalogue of every dataset is cut to a count


def test_video_source_msrvtt_captions(tmp_path):
    os.makedirs(tmp_path / "videos")
    for k in range(2):
        fx.write_video(str(tmp_path / "videos" / f"video{k}.mp4"), num_frames=12 + 6 * k)
    (tmp_path / "videos" / "video9.mp4").write_bytes(b"\x00\x00\x00 ftypisom garbage")
    caps = {"sentences": [{"video_id": "video0", "caption": "a"}, {"video_id": "video0", "caption": "b"},
                          {"video_id": "video1", "caption": "c"}, {"video_id": "video9", "caption": "d"}]}
    (tmp_path / "msrvtt.json").write_text(json.dumps(caps))
    src = sources.VideoSource(str(tmp_path / "videos"), str(tmp_path / "msrvtt.json"))
    assert len(src) == 4 and [src[i]["text"] for i in range(4)] == ["a", "b", "c", "d"]
    dec = T.DecodeVideo(num_frames=3, mode="uniform", size=16)
    out = dec.random_map(src[2], np.random.default_rng(0))
    assert out["video"].shape == (3, 16, 16, 3) and out["frame_indices"].tolist() == [3, 9, 15]
    np.testing.assert_allclose(out["video"].mean(axis=(1, 2, 3)), 8.0 * np.array([3, 9, 15]), atol=4)
    fps = T.DecodeVideo(num_frames=4, mode="fps", fps=4.0).random_map(src[2], np.random.default_rng(0))
    assert fps["frame_indices"].tolist() == [0, 3, 6, 9]          # native 12 fps -> every 3rd frame
    seg = T.DecodeVideo(num_frames=3, mode="random_segment").random_map(src[2], np.random.default_rng(1))
    assert [6 * k <= i < 6 * (k + 1) for k, i in enumerate(seg["frame_indices"])] == [True] * 3
    with pytest.raises(ValueError):
        dec.random_map(src[3], np.random.default_rng(0))


def test_audio_source_wav_and_flac(tmp_path):
    rate = 8000
    t = np.arange(rate // 2) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    os.makedirs(tmp_path / "clips")
    fx.write_wav(str(tmp_path / "clips" / "ytA.wav"), tone, rate)
    sf = pytest.importorskip("soundfile")
    sf.write(str(tmp_path / "clips" / "ytB.flac"), tone, rate)
    (tmp_path / "clips" / "ytC.wav").write_bytes(b"RIFF\x00\x00")
    (tmp_path / "caps.csv").write_text("audiocap_id,youtube_id,start_time,caption\n1,ytA,0,a tone\n"
                                       "2,ytB,0,same tone\n3,ytC,0,broken\n")
    src = sources.AudioSource(str(tmp_path / "clips"), str(tmp_path / "caps.csv"))
    assert len(src) == 3
    dec = T.DecodeAudio(sample_rate=rate)
    for i in range(2):
        out = dec.map(src[i])
        np.testing.assert_allclose(out["audio"], tone, atol=2e-4)
    with pytest.raises((ValueError, EOFError)):
        dec.map(src[2])


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply_reader_matches_written_points(tmp_path, fmt):
    pts = np.random.default_rng(3).normal(size=(50, 3)).astype(np.float32)
    fx.write_ply(str(tmp_path / "a.ply"), pts, fmt)
    got = sources.read_ply((tmp_path / "a.ply").read_bytes())
    np.testing.assert_allclose(got, pts, rtol=1e-6 if fmt == "ascii" else 0, atol=1e-6 if fmt == "ascii" else 0)
    with pytest.raises(ValueError, match="truncated"):
        sources.read_ply((tmp_path / "a.ply").read_bytes()[:-200])


def test_point_cloud_source_modelnet_layout(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("chair", "airplane"):
        for split in ("train", "test"):
            os.makedirs(tmp_path / cls / split)
            np.save(tmp_path / cls / split / f"{cls}_1.npy", rng.normal(size=(40, 6)).astype(np.float32))
            fx.write_ply(str(tmp_path / cls / split / f"{cls}_2.ply"), rng.normal(size=(30, 3)).astype(np.float32))
    src = sources.PointCloudSource(str(tmp_path), split="train")
    assert len(src) == 4 and src.classes == ["airplane", "chair"]
    labels = {src[i]["key"]: int(src[i]["label"]) for i in range(4)}
    assert labels[os.path.join("chair", "train", "chair_1.npy")] == 1
    shapes = sorted(T.DecodePoints().map(src[i])["points"].shape for i in range(4))
    assert shapes == [(30, 3), (30, 3), (40, 6), (40, 6)]
