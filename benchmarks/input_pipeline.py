"""Input pipeline throughput: decode + augment images/s per source, side by side with tf.data.

    .venv/bin/python benchmarks/input_pipeline.py [--n 512] [--threads 1] [--size 56]

Fixtures (world image64 scenes as JPEG) are written to a temp dir in each format: COCO json + image
folder, webdataset tars, array_record (converted), TFDS (array_record builder). Each source runs the same
chain DecodeImage -> RandomResizedCrop -> RandomFlip -> Normalize through vljax.data.sources.make_dataset.
The tf.data column runs the equivalent tf.image chain on the same bytes (files for COCO, the same
encoded bytes held in memory for the container formats tf.data cannot read) with the interpreter at
/tmp/tfvenv/bin/python, if present.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

TF_PYTHON = "/tmp/tfvenv/bin/python"

TF_SCRIPT = r"""
import json, sys, time, os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
cfg = json.loads(sys.argv[1])
size, n, threads = cfg["size"], cfg["n"], cfg["threads"]
mean = tf.constant([0.485, 0.456, 0.406]); std = tf.constant([0.229, 0.224, 0.225])
def aug(data):
    img = tf.io.decode_jpeg(data, channels=3)
    begin, sz, _ = tf.image.sample_distorted_bounding_box(tf.shape(img), tf.zeros([0, 0, 4]),
        min_object_covered=0.0, aspect_ratio_range=(0.75, 1.333), area_range=(0.08, 1.0),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    img = tf.image.resize(tf.slice(img, begin, sz), (size, size))
    img = tf.image.random_flip_left_right(img)
    return (img / 255.0 - mean) / std
out = {}
for name, spec in cfg["sources"].items():
    if spec["kind"] == "files":
        ds = tf.data.Dataset.from_tensor_slices(spec["paths"]).map(tf.io.read_file)
    else:
        ds = tf.data.Dataset.from_tensor_slices([open(p, "rb").read() for p in spec["paths"]])
    ds = ds.shuffle(1024, seed=0).repeat().map(aug, num_parallel_calls=threads).batch(32).prefetch(2)
    opts = tf.data.Options(); opts.threading.private_threadpool_size = threads; ds = ds.with_options(opts)
    it = iter(ds); next(it)
    t = time.perf_counter(); k = 0
    while k < n:
        next(it); k += 32
    out[name] = k / (time.perf_counter() - t)
print(json.dumps(out))
"""


def write_fixtures(root: str, n: int) -> dict:
    """-> {source name: source object} plus the JPEG paths for tf.data."""
    from PIL import Image

    from vljax.data import sources
    from vljax.data.convert import convert_to_array_record
    from vljax.data.world import World, get_config

    world = World(get_config("image64")).source("train", fields=("image", "caption"))
    os.makedirs(f"{root}/images")
    images, paths = [], []
    for i in range(n):
        s = world[i]
        buf = io.BytesIO()
        Image.fromarray(s["image"]).save(buf, format="JPEG", quality=90)
        images.append((buf.getvalue(), s["caption"]))
        paths.append(f"{root}/images/{i:06d}.jpg")
        with open(paths[-1], "wb") as f:
            f.write(images[-1][0])
    with open(f"{root}/captions.json", "w") as f:
        json.dump({"images": [{"id": i, "file_name": os.path.basename(p)} for i, p in enumerate(paths)],
                   "annotations": [{"image_id": i, "caption": c} for i, (_, c) in enumerate(images)]}, f)
    with tarfile.open(f"{root}/00000.tar", "w") as tar:
        for i, (data, caption) in enumerate(images):
            for ext, payload in (("jpg", data), ("txt", caption.encode())):
                info = tarfile.TarInfo(f"{i:09d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    coco = sources.CocoCaptionsSource(f"{root}/captions.json", f"{root}/images")
    wds = sources.WebDatasetSource(f"{root}/00000.tar")
    summary = convert_to_array_record(wds, f"{root}/ar/train", name="wds", progress=False)
    out = {"coco (files)": coco, "webdataset": wds, "array_record": sources.ArrayRecordSource(summary.shards)}
    try:
        out["tfds"] = _tfds_fixture(root, images)
    except Exception as e:  # NOTE: the benchmark reports the other sources when tfds cannot build.
        print(f"tfds: n/a ({e})", file=sys.stderr)
    return out, paths


def _tfds_fixture(root: str, images):
    import tensorflow_datasets as tfds

    from vljax.data import sources

    class VljaxBench(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "jpeg": tfds.features.Tensor(shape=(), dtype=np.object_), "caption": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, (data, caption) in enumerate(images):
                yield i, {"jpeg": data, "caption": caption}

    VljaxBench(data_dir=f"{root}/tfds", file_format="array_record").download_and_prepare()
    return sources.TfdsSource("vljax_bench", "train", data_dir=f"{root}/tfds",
                              fields={"image": "jpeg", "text": "caption"})


def grain_images_per_s(source, n: int, size: int, threads: int, batch: int = 32) -> float:
    """Source -> images/s of decode + RandomResizedCrop + flip + normalize (after one warm-up batch)."""
    from vljax.data import sources, transforms as T

    chain = [T.DecodeImage(), T.RandomResizedCrop(size), T.RandomFlip(), T.Normalize(), T.KeepFields(("image",))]
    it = iter(sources.make_dataset(source, chain, name="bench", global_batch=batch, num_threads=threads,
                                   prefetch=2 * threads))
    next(it)
    t, k = time.perf_counter(), 0
    while k < n:
        next(it)
        k += batch
    return k / (time.perf_counter() - t)


def main() -> int:
    """Prints one row per source: grain images/s, tf.data images/s, ratio."""
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=512, help="images timed per source (and fixture size)")
    p.add_argument("--size", type=int, default=56, help="output crop size")
    p.add_argument("--threads", type=int, default=1, help="grain read threads / tf.data parallel calls")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as root:
        srcs, paths = write_fixtures(root, args.n)
        rows = {name: grain_images_per_s(src, args.n, args.size, args.threads) for name, src in srcs.items()}
        tf_rates = {}
        if os.path.exists(TF_PYTHON):
            cfg = {"size": args.size, "n": args.n, "threads": args.threads, "sources": {
                name: {"kind": "files" if name.startswith("coco") else "memory", "paths": paths} for name in srcs}}
            res = subprocess.run([TF_PYTHON, "-c", TF_SCRIPT, json.dumps(cfg)], capture_output=True, text=True)
            if res.returncode == 0:
                tf_rates = json.loads(res.stdout.strip().splitlines()[-1])
            else:
                print(f"tf.data: failed ({res.stderr.strip().splitlines()[-1:]})")
        else:
            print("tf.data: n/a (tensorflow not installed)")
    print(f"decode + RandomResizedCrop({args.size}) + flip + normalize, 64px JPEG, threads={args.threads}")
    print(f"{'source':<16}{'grain img/s':>12}{'tf.data img/s':>15}{'grain/tf':>10}")
    for name, rate in rows.items():
        tf_rate = tf_rates.get(name)
        print(f"{name:<16}{rate:>12.0f}" + (f"{tf_rate:>15.0f}{rate / tf_rate:>10.2f}" if tf_rate else
                                            f"{'n/a':>15}{'n/a':>10}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
