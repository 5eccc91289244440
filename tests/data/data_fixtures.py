"""Small on-disk fixtures in every real-data format, built from synthetic-world samples (plus corrupt ones)."""
from __future__ import annotations

import functools
import io
import json
import os
import tarfile
import wave

import numpy as np


@functools.lru_cache(maxsize=None)
def world_samples(n: int = 12) -> tuple[tuple[np.ndarray, str], ...]:
    """-> n (uint8 [32, 32, 3] image, caption) pairs from the image32 world."""
    from vljax.data.world import World, get_config

    src = World(get_config("image32")).source("train", fields=("image", "caption"))
    return tuple((src[i]["image"], src[i]["caption"]) for i in range(n))


def encode_image(image: np.ndarray, fmt: str = "PNG") -> bytes:
    """uint8 [H, W, 3] -> encoded bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def corrupt_jpeg(image: np.ndarray) -> bytes:
    """-> a JPEG cut in half (header valid, scan data truncated)."""
    data = encode_image(image, "JPEG")
    return data[: len(data) // 2]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_webdataset(root: str, n: int = 10, truncate_last: bool = True) -> dict:
    """Two img2dataset-style shards; sample 3 has a corrupt jpeg, sample 5 malformed json, sample 6 no
    text; shard 1's last member is truncated. -> {'shards', 'good_keys', 'bad_keys'}."""
    samples = world_samples(n)
    os.makedirs(root, exist_ok=True)
    shards = [os.path.join(root, f"{s:05d}.tar") for s in range(2)]
    good, bad = [], []
    for s, path in enumerate(shards):
        with tarfile.open(path, "w") as tar:
            for i in range(s * n // 2, (s + 1) * n // 2):
                key = f"{i:09d}"
                image, caption = samples[i]
                _add(tar, f"{key}.jpg", corrupt_jpeg(image) if i == 3 else encode_image(image, "PNG"))
                if i != 6:
                    _add(tar, f"{key}.txt", caption.encode())
                _add(tar, f"{key}.json", b'{"url": ' if i == 5 else json.dumps({"key": key}).encode())
                (bad if i in (3, 5, 6) else good).append(f"{os.path.basename(path)}/{key}")
    if truncate_last:
        # NOTE: cut inside the last member's payload (drop the end-of-archive blocks and 100 bytes more).
        with open(shards[1], "rb") as f:
            data = f.read()
        with tarfile.open(shards[1]) as tar:
            last = tar.getmembers()[-1]
        cut = last.offset_data + last.size // 2
        with open(shards[1], "wb") as f:
            f.write(data[:cut])
        bad_key = f"{os.path.basename(shards[1])}/{n - 1:09d}"
        good.remove(bad_key)
        bad.append(bad_key)
    return {"shards": shards, "good_keys": good, "bad_keys": bad}


def write_image_folder(root: str, n: int) -> list[str]:
    """-> file names of n PNGs written under root."""
    os.makedirs(root, exist_ok=True)
    names = []
    for i, (image, _) in enumerate(world_samples(n)):
        names.append(f"img_{i:04d}.png")
        with open(os.path.join(root, names[-1]), "wb") as f:
            f.write(encode_image(image))
    return names


def write_coco(root: str, n: int = 6) -> str:
    """COCO captions json (2 captions per image; image 2 missing on disk, one annotation without caption)."""
    names = write_image_folder(os.path.join(root, "images"), n)
    os.remove(os.path.join(root, "images", names[2]))
    samples = world_samples(n)
    data = {"images": [{"id": i, "file_name": names[i]} for i in range(n)] + [{"id": 99}],
            "annotations": [{"image_id": i, "id": 2 * i + k, "caption": samples[i][1] + (" again" if k else "")}
                            for i in range(n) for k in range(2)] + [{"image_id": 99, "id": 500}]}
    path = os.path.join(root, "captions_train.json")
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def write_karpathy(root: str, n: int = 6, coco: bool = True) -> str:
    """Karpathy json (COCO layout with filepath, or Flickr30k without): splits train/restval/val/test."""
    sub = "val2014" if coco else ""
    names = write_image_folder(os.path.join(root, sub), n)
    samples = world_samples(n)
    splits = ["train", "restval", "train", "val", "test", "train"]
    images = [{"filename": names[i], "imgid": i, "split": splits[i % 6],
               "sentences": [{"raw": samples[i][1]}, {"raw": "a picture"}], **({"filepath": sub} if coco else {})}
              for i in range(n)]
    path = os.path.join(root, "dataset.json")
    with open(path, "w") as f:
        json.dump({"images": images, "dataset": "coco" if coco else "flickr30k"}, f)
    return path


def write_llava(root: str) -> str:
    """LLaVA jsonl: 2 good (one text-only), 1 malformed line, 1 unknown role, 1 missing image."""
    write_image_folder(os.path.join(root, "img"), 2)
    lines = [
        json.dumps({"id": "a", "image": "img/img_0000.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "shapes"},
            {"from": "human", "value": "How many?"}, {"from": "gpt", "value": "three"}]}),
        json.dumps({"id": "b", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}),
        '{"id": "c", "conversations": [',
        json.dumps({"id": "d", "conversations": [{"from": "robot", "value": "x"}]}),
        json.dumps({"id": "e", "image": "img/missing.png", "conversations": [
            {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}),
    ]
    path = os.path.join(root, "llava.jsonl")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_video(path: str, num_frames: int = 24, fps: int = 12, size: int = 32) -> np.ndarray:
    """mp4 whose frame k is a flat gray of level 8*k (+ a world image corner); -> levels [num_frames]."""
    import av

    levels = (8 * np.arange(num_frames)).astype(np.uint8)
    with av.open(path, "w") as c:
        st = c.add_stream("mpeg4", rate=fps)
        st.width = st.height = size
        st.pix_fmt = "yuv420p"
        st.options = {"qscale": "2"}
        for lv in levels:
            frame = np.full((size, size, 3), lv, np.uint8)
            for p in st.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return levels


def write_wav(path: str, wave_f32: np.ndarray, rate: int) -> None:
    """float [S] in [-1, 1] -> 16-bit mono wav."""
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(wave_f32, -1, 1) * 32767).astype("<i2").tobytes())


def write_ply(path: str, points: np.ndarray, fmt: str = "binary_little_endian", faces: bool = True) -> None:
    """float32 [N, 3] -> PLY file (ascii or binary) with an extra uchar property and a face element."""
    n = len(points)
    header = ["ply", f"format {fmt} 1.0", "comment made by vljax tests", f"element vertex {n}",
              "property float x", "property float y", "property float z", "property uchar intensity"]
    if faces:
        header += ["element face 1", "property list uchar int vertex_indices"]
    header.append("end_header")
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode())
        if fmt == "ascii":
            for p in points:
                f.write(f"{p[0]} {p[1]} {p[2]} 7\n".encode())
            if faces:
                f.write(b"3 0 1 2\n")
        else:
            order = "<" if fmt == "binary_little_endian" else ">"
            rec = np.zeros(n, np.dtype([("x", order + "f4"), ("y", order + "f4"), ("z", order + "f4"), ("i", "u1")]))
            rec["x"], rec["y"], rec["z"], rec["i"] = points[:, 0], points[:, 1], points[:, 2], 7
            f.write(rec.tobytes())
            if faces:
                f.write(np.uint8(3).tobytes() + np.array([0, 1, 2], order + "i4").tobytes())
