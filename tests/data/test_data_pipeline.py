"""Guarded grain pipelines over real sources: deterministic, host-sharded, checkpointable, bad-record safe; and the
trainer's host batches (vljax.data.pipeline) under several processes."""
import grain
import numpy as np
import pytest

import data_fixtures as fx
from vljax.data import sources, transforms as T
from vljax.data.sources.bad_records import BadRecordPolicy


def _image_chain():
    return [T.DecodeImage(), T.RandomResizedCrop(16, scale=(0.5, 1.0)), T.RandomFlip(), T.Normalize(),
            T.KeepFields(("image",))]


@pytest.fixture(scope="module")
def wds(tmp_path_factory):
    root = tmp_path_factory.mktemp("wds")
    info = fx.write_webdataset(str(root))
    return sources.WebDatasetSource(info["shards"]), info


def _batches(it, n):
    return [next(it)["image"] for _ in range(n)]


def test_bad_records_skipped_counted_and_stream_is_deterministic(wds):
    src, info = wds
    ds = sources.make_map_dataset(src, [T.DecodeImage(), T.KeepFields(("key", "image"))], name="wds", seed=3,
                                  policy=BadRecordPolicy(max_bad_fraction=0.6, min_records=1))
    keys = [ds[i]["key"] for i in range(2 * len(src))]
    assert set(keys) == set(info["good_keys"])      # every good record appears, no bad one does
    assert ds.counter.bad >= 2 * len(info["bad_keys"]) - 1 and set(ds.counter.bad_keys) == set(info["bad_keys"])
    again = sources.make_map_dataset(src, [T.DecodeImage(), T.KeepFields(("key", "image"))], name="wds", seed=3,
                                     policy=BadRecordPolicy(max_bad_fraction=0.6, min_records=1))
    assert [again[i]["key"] for i in range(2 * len(src))] == keys


def test_max_bad_fraction_raises_naming_the_source(wds):
    src, _ = wds
    ds = sources.make_map_dataset(src, [T.DecodeImage()], name="laion_shard_17", seed=0,
                                  policy=BadRecordPolicy(max_bad_fraction=0.1, min_records=5))
    with pytest.raises(sources.BadDataError, match="laion_shard_17"):
        for i in range(40):
            ds[i]


def test_iterator_checkpoint_restores_the_exact_stream(wds):
    src, _ = wds
    make = lambda: sources.make_dataset(src, _image_chain(), name="wds", global_batch=4, seed=1,
                                        policy=BadRecordPolicy(max_bad_fraction=0.6), num_threads=1, prefetch=2)
    it = iter(make())
    _batches(it, 2)
    state = it.get_state()
    expected = _batches(it, 3)
    it2 = iter(make())
    it2.set_state(state)
    for a, b in zip(_batches(it2, 3), expected):
        np.testing.assert_array_equal(a, b)
    assert expected[0].shape == (4, 16, 16, 3) and expected[0].dtype == np.float32


def test_augmentation_differs_across_epochs_but_not_across_runs(wds):
    src, _ = wds
    ds = sources.make_map_dataset(src, _image_chain(), name="wds", seed=5, shuffle=False,
                                  policy=BadRecordPolicy(max_bad_fraction=0.6))
    n = len(src)
    assert not np.array_equal(ds[0]["image"], ds[n]["image"])   # same record, next epoch: new crop
    np.testing.assert_array_equal(ds[0]["image"], ds[0]["image"])


def test_host_shards_are_disjoint_and_cover_the_epoch():
    src = [{"key": f"k{i}", "x": np.int32(i)} for i in range(11)]
    keys = []
    for host in range(2):
        ds = sources.make_map_dataset(src, [T.KeepFields(("key",))], name="list", seed=2, repeat=False,
                                      shard=(host, 2))
        keys.append([ds[i]["key"] for i in range(len(ds))])
    assert not set(keys[0]) & set(keys[1])
    assert sorted(keys[0] + keys[1]) == sorted(r["key"] for r in src)
    with pytest.raises(ValueError, match="shard"):
        sources.make_map_dataset(src, name="list", shard=(2, 2))


def test_mixture_follows_weights_with_per_source_transforms(wds, tmp_path):
    src, _ = wds
    path = fx.write_coco(str(tmp_path))
    coco = sources.CocoCaptionsSource(path, str(tmp_path / "images"))
    policy = BadRecordPolicy(max_bad_fraction=0.6)
    comps = [sources.Component("wds", src, 3.0, (T.DecodeImage(), T.Resize(16), T.KeepFields(("image",)))),
             sources.Component("coco", coco, 1.0, (T.DecodeImage(), T.CenterCrop(16), T.KeepFields(("image",))))]
    it = iter(sources.make_mixture_dataset(comps, global_batch=8, seed=0, policy=policy, num_threads=1))
    ids = np.concatenate([next(it)["source_id"] for _ in range(10)])
    assert abs((ids == 0).mean() - 0.75) < 0.05
    with pytest.raises(ValueError, match="weight"):
        sources.Component("x", src, 0.0)


def test_mixture_iterator_checkpoint_restores(wds):
    src, _ = wds
    chain = (T.DecodeImage(), T.RandomResizedCrop(8), T.KeepFields(("image",)))
    comps = [sources.Component("a", src, 1.0, chain), sources.Component("b", src, 2.0, chain)]
    make = lambda: iter(sources.make_mixture_dataset(comps, global_batch=4, seed=9, num_threads=1,
                                                     policy=BadRecordPolicy(max_bad_fraction=0.6)))
    it = make()
    next(it)
    state = it.get_state()
    want = [next(it) for _ in range(2)]
    it2 = make()
    it2.set_state(state)
    for w, g in zip(want, [next(it2) for _ in range(2)]):
        np.testing.assert_array_equal(w["image"], g["image"])
        np.testing.assert_array_equal(w["source_id"], g["source_id"])


def test_guarded_dataset_pickles_for_worker_processes(wds):
    import pickle

    src, _ = wds
    ds = sources.make_map_dataset(src, _image_chain(), name="wds", seed=4,
                                  policy=BadRecordPolicy(max_bad_fraction=0.6))
    first = ds[0]["image"]
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[0]["image"], first)


class _Jitter(grain.transforms.RandomMap):
    """An augmentation whose draw shows in the output (like caption word dropout)."""

    def random_map(self, element, rng):
        return {"x": element["x"], "r": rng.random()}


@pytest.mark.parametrize("n_proc", [2, 4])
def test_host_batches_are_row_blocks_of_the_one_process_batch(monkeypatch, n_proc):
    """With P processes, process p's k-th batch is rows [p B/P, (p+1) B/P) of the one-process k-th batch, with the
    same augmentation draws, so host_to_global assembles the same global batch at any process count."""
    from vljax.data import pipeline

    source = [{"x": np.int32(i)} for i in range(50)]

    def batches(index, count, n=4):
        monkeypatch.setattr(pipeline.jax, "process_index", lambda: index)
        monkeypatch.setattr(pipeline.jax, "process_count", lambda: count)
        ds = pipeline.build_dataset(source, dict, 8, shuffle_seed=5, repeat=True, num_threads=1, prefetch=2,
                                    augment=_Jitter(), augment_seed=3)
        it = iter(ds)
        return [next(it) for _ in range(n)]

    one = batches(0, 1)
    hosts = [batches(p, n_proc) for p in range(n_proc)]
    for k, want in enumerate(one):
        assert len(set(want["x"].tolist())) == 8  # shuffled, distinct rows
        for key in ("x", "r"):
            np.testing.assert_array_equal(np.concatenate([h[k][key] for h in hosts]), want[key])


@pytest.mark.parametrize("n_proc", [2, 4])
def test_real_data_host_batches_are_row_blocks_of_the_one_process_batch(wds, n_proc):
    """make_dataset and make_mixture_dataset split like the trainer: host p's k-th batch is rows [p B/P, (p+1) B/P)
    of the one-process k-th batch, random crops and bad-record replacements included."""
    src, _ = wds
    policy = BadRecordPolicy(max_bad_fraction=0.6)
    chain = (T.DecodeImage(), T.RandomResizedCrop(8), T.KeepFields(("image",)))
    comps = [sources.Component("a", src, 1.0, chain), sources.Component("b", src, 2.0, chain)]
    makers = {
        "single": lambda shard: sources.make_dataset(src, _image_chain(), name="wds", global_batch=8, seed=1,
                                                     policy=policy, shard=shard, num_threads=1, prefetch=2),
        "mixture": lambda shard: sources.make_mixture_dataset(comps, global_batch=8, seed=2, policy=policy,
                                                              shard=shard, num_threads=1, prefetch=2),
    }
    for kind, make in makers.items():
        def batches(shard, n=3):
            it = iter(make(shard))
            return [next(it) for _ in range(n)]

        one = batches((0, 1))
        hosts = [batches((p, n_proc)) for p in range(n_proc)]
        assert one[0]["image"].shape[0] == 8 and hosts[0][0]["image"].shape[0] == 8 // n_proc
        for k, want in enumerate(one):
            for key in want:
                np.testing.assert_array_equal(np.concatenate([h[k][key] for h in hosts]), want[key], err_msg=kind)


def test_finite_host_batches_give_every_host_the_same_number_of_batches():
    """11 elements, global batch 4, 2 hosts: two whole global batches, so two host batches each (not 3 and 2)."""
    src = [{"x": np.int32(i)} for i in range(11)]
    hosts = [list(sources.make_dataset(src, name="list", global_batch=4, shuffle=False, repeat=False,
                                       shard=(p, 2), num_threads=1)) for p in range(2)]
    assert [[b["x"].tolist() for b in h] for h in hosts] == [[[0, 1], [4, 5]], [[2, 3], [6, 7]]]
    with pytest.raises(ValueError, match="not divisible"):
        sources.make_dataset(src, name="list", global_batch=5, shard=(0, 2))
