"""Transforms against plain float64 / loop references on fresh random non-zero inputs."""
import numpy as np
import pytest

from vljax.data import tokenizer as tokenizer_lib, transforms as T


def _img(h=24, w=20, seed=0):
    return np.random.default_rng(seed).integers(1, 256, (h, w, 3), dtype=np.uint8)


def test_normalize_matches_float64_reference():
    x = _img()
    out = T.Normalize().map({"image": x})["image"]
    ref = (x.astype(np.float64) / 255 - np.array(T.IMAGENET_MEAN)) / np.array(T.IMAGENET_STD)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)   # float32 tolerance


def test_center_crop_resize_flip_patchify():
    x = _img()
    crop = T.CenterCrop((10, 8)).map({"image": x})["image"]
    np.testing.assert_array_equal(crop, x[7:17, 6:14])
    with pytest.raises(ValueError, match="image"):
        T.CenterCrop(30).map({"image": x})
    assert T.Resize((12, 10)).map({"image": x})["image"].shape == (12, 10, 3)
    assert T.Resize(10, keep_aspect=True).map({"image": x})["image"].shape == (12, 10, 3)
    const = np.full((24, 20, 3), 77, np.uint8)
    np.testing.assert_array_equal(T.Resize((7, 9)).map({"image": const})["image"], 77)
    flipped = T.RandomFlip(p=1.0).random_map({"image": x}, np.random.default_rng(0))["image"]
    np.testing.assert_array_equal(flipped, x[:, ::-1])
    same = T.RandomFlip(p=0.0).random_map({"image": x}, np.random.default_rng(0))["image"]
    np.testing.assert_array_equal(same, x)
    p = 4
    patches = T.patchify(x, p)
    ref = np.stack([x[r:r + p, c:c + p].reshape(-1) for r in range(0, 24, p) for c in range(0, 20, p)])
    np.testing.assert_array_equal(patches, ref)
    with pytest.raises(ValueError, match="patch"):
        T.patchify(x, 7)


def test_random_resized_crop_box_respects_scale_and_ratio():
    rng = np.random.default_rng(1)
    for _ in range(200):
        top, left, h, w = T.sample_crop_box(60, 80, (0.3, 0.9), (0.75, 1.33), rng)
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        assert 0.3 * 4800 * 0.85 <= h * w <= 0.9 * 4800 * 1.15
        assert 0.7 <= w / h <= 1.42
    out = T.RandomResizedCrop(16).random_map({"image": _img()}, np.random.default_rng(0))["image"]
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    with pytest.raises(ValueError, match="scale"):
        T.RandomResizedCrop(16, scale=(0.5, 0.2))


def test_decode_image_png_and_corrupt():
    import io

    from PIL import Image

    x = _img()
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, format="PNG")
    np.testing.assert_array_equal(T.DecodeImage().map({"image": buf.getvalue()})["image"], x)
    with pytest.raises(OSError):
        T.DecodeImage().map({"image": buf.getvalue()[:60]})
    with pytest.raises(ValueError, match="image"):
        T.DecodeImage().map({"image": b""})


def test_tokenize_pads_and_truncates_keeping_eos():
    class Chars:
        vocab_size = 300

        def encode(self, text):
            return [ord(c) for c in text]

    out = T.Tokenize(Chars(), 6).map({"text": "ab"})["tokens"]
    np.testing.assert_array_equal(out, [tokenizer_lib.BOS, 97, 98, tokenizer_lib.EOS, 0, 0])
    out = T.Tokenize(Chars(), 5).map({"text": "abcdefg"})["tokens"]
    np.testing.assert_array_equal(out, [tokenizer_lib.BOS, 97, 98, 99, tokenizer_lib.EOS])
    picked = T.SampleText().random_map({"texts": ["x", "y", "z"]}, np.random.default_rng(0))["text"]
    assert picked in ("x", "y", "z")


def test_frame_sampling_modes():
    np.testing.assert_array_equal(T.sample_frame_indices(100, 4, "uniform"), [12, 37, 62, 87])
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = T.sample_frame_indices(100, 4, "random_segment", rng)
        assert all(25 * k <= i < 25 * (k + 1) for k, i in enumerate(idx))
    short = T.sample_frame_indices(3, 8, "random_segment", rng)
    assert short.min() >= 0 and short.max() <= 2 and np.all(np.diff(short) >= 0)
    np.testing.assert_array_equal(T.sample_frame_indices(100, 4, "fps", native_fps=30, fps=2), [0, 15, 30, 45])
    np.testing.assert_array_equal(T.sample_frame_indices(20, 4, "fps", native_fps=30, fps=2), [0, 15, 19, 19])
    with pytest.raises(ValueError, match="mode"):
        T.sample_frame_indices(10, 2, "every_other")


def test_log_mel_matches_float64_dft_reference():
    rate, n_fft, hop, n_mels = 8000, 128, 64, 20
    wave = np.random.default_rng(2).normal(size=1000).astype(np.float32) * 0.3
    got = T.log_mel(wave, rate, n_fft, hop, n_mels)
    assert got.shape == (1 + 1000 // hop, n_mels)
    # plain reference: reflect pad, explicit DFT sums, float64
    x = np.pad(wave.astype(np.float64), (n_fft // 2, n_fft // 2), mode="reflect")
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    basis = np.exp(-2j * np.pi * k * np.arange(n_fft)[None] / n_fft)
    fb = T.mel_filterbank(rate, n_fft, n_mels).astype(np.float64)
    for f in (0, 7, got.shape[0] - 1):
        frame = x[f * hop: f * hop + n_fft] * win
        power = np.abs(basis @ frame) ** 2
        np.testing.assert_allclose(got[f], np.log(np.maximum(power @ fb, 1e-10)), rtol=1e-4, atol=1e-4)
    out = T.LogMel(rate, max_frames=10, n_fft=n_fft, hop=hop, n_mels=n_mels).map({"audio": wave})
    assert out["mel"].shape == (10, n_mels) and out["mel_mask"].all()
    out = T.LogMel(rate, max_frames=40, n_fft=n_fft, hop=hop, n_mels=n_mels).map({"audio": wave})
    assert out["mel_mask"].sum() == 16 and not out["mel_mask"][16:].any()


def test_mel_filterbank_triangles_peak_at_centers():
    fb = T.mel_filterbank(16000, 512, 40)
    assert fb.shape == (257, 40) and (fb >= 0).all()
    peaks = fb.argmax(axis=0)
    assert np.all(np.diff(peaks) >= 0) and (fb.sum(axis=0) > 0).all()


def test_resample_linear_preserves_a_slow_sine():
    t = np.arange(16000) / 16000
    out = T.resample_linear(np.sin(2 * np.pi * 5 * t).astype(np.float32), 16000, 8000)
    np.testing.assert_allclose(out, np.sin(2 * np.pi * 5 * np.arange(8000) / 8000), atol=1e-4)


def test_points_sample_and_normalize():
    pts = np.random.default_rng(4).normal(size=(50, 6)).astype(np.float32) * 3 + 5
    out = T.NormalizePoints().map({"points": pts})["points"]
    xyz = pts[:, :3].astype(np.float64) - pts[:, :3].mean(0)
    np.testing.assert_allclose(out[:, :3], xyz / np.linalg.norm(xyz, axis=1).max(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[:, 3:], pts[:, 3:])
    down = T.SamplePoints(20).random_map({"points": pts}, np.random.default_rng(0))["points"]
    assert down.shape == (20, 6) and len({r.tobytes() for r in down}) == 20
    up = T.SamplePoints(80).random_map({"points": pts}, np.random.default_rng(0))["points"]
    assert up.shape == (80, 6) and {r.tobytes() for r in up} <= {r.tobytes() for r in pts}


def test_keep_fields_names_missing_field():
    with pytest.raises(KeyError, match="tokens"):
        T.KeepFields(("image", "tokens")).map({"image": 1})
