"""grain source over the world: length, pickling, shuffled checkpoint/resume, host sharding."""
import pickle

import grain
import numpy as np
import pytest

from vljax.data import world

pytestmark = pytest.mark.filterwarnings("ignore:.*annotate unavailable")
FIELDS = ("image", "boxes")


def small_world():
    """-> World with small eval splits so full passes stay cheap."""
    cfg = world.get_config("image32")
    cfg.split_sizes.val = 64
    return world.World(cfg)


def to_arrays(ex):
    """Sample -> the numeric subset that batches (stands in for tokenization of text)."""
    return {"image": ex["image"], "boxes": ex["boxes"], "index": ex["meta/index"],
            "count": ex["labels/count"]}


def test_len_getitem_and_errors():
    w = small_world()
    src = w.source("val", FIELDS)
    assert len(src) == 64 and len(w.source("train")) == 10_000_000
    ex = src[5]
    ref = w.sample("val", 5, FIELDS)
    np.testing.assert_array_equal(ex["image"], ref["image"])
    with pytest.raises(IndexError):
        src[64]
    with pytest.raises(ValueError, match="split"):
        w.source("nope")


def test_pickle_roundtrip_same_samples():
    src = small_world().source("val", FIELDS)
    clone = pickle.loads(pickle.dumps(src))
    for i in (0, 9, 63):
        np.testing.assert_array_equal(clone[i]["image"], src[i]["image"])
        np.testing.assert_array_equal(clone[i]["boxes"], src[i]["boxes"])


def _pipeline(src):
    return grain.MapDataset.source(src).shuffle(seed=7).map(to_arrays).batch(8)


def test_shuffled_iterator_checkpoint_resume():
    src = small_world().source("val", FIELDS)
    it = iter(_pipeline(src))
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(3)]
    fresh = iter(_pipeline(pickle.loads(pickle.dumps(src))))
    fresh.set_state(state)
    for a, b in zip(expected, [next(fresh) for _ in range(3)]):
        assert a["image"].shape == (8, 32, 32, 3)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    seen = np.concatenate([b["index"] for b in _pipeline(src)])
    assert sorted(seen.tolist()) == list(range(64))  # one epoch is a permutation
    assert seen.tolist() != list(range(64))


def test_host_sharding_by_slicing_is_a_partition():
    src = small_world().source("val", ())
    ds = grain.MapDataset.source(src)
    shards = [[int(ex["meta/index"]) for ex in ds[h::4]] for h in range(4)]
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(64)) and all(len(s) == 16 for s in shards)
