"""vljax.losses.contrastive: local losses vs float64 numpy; sharded versions == local on 8 devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vljax.losses import contrastive as C

B, E = 16, 8
SCALE, BIAS = 7.0, -2.5


def _pair(seed=0, b=B, e=E):
    """Correlated unit-norm pairs so the accuracies are neither 0 nor 1."""
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(b, e))
    txt = img + 1.5 * rng.normal(size=(b, e))
    norm = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return norm(img), norm(txt)


def _softmax_np(img, txt, s):
    """float64 loss, (d img, d txt, d scale) and accuracies for symmetric InfoNCE."""
    img, txt = img.astype(np.float64), txt.astype(np.float64)
    dots = img @ txt.T
    logits = s * dots
    n = len(img)
    eye = np.eye(n)
    lse_r = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    lse_c = np.log(np.exp(logits - logits.max(0, keepdims=True)).sum(0)) + logits.max(0)
    loss = 0.5 * (np.mean(lse_r - np.diag(logits)) + np.mean(lse_c - np.diag(logits)))
    p_r = np.exp(logits - lse_r[:, None])
    p_c = np.exp(logits - lse_c[None, :])
    g = 0.5 * ((p_r - eye) + (p_c - eye)) / n
    grads = (s * g @ txt, s * g.T @ img, np.sum(g * dots))
    acc = (np.mean(logits.argmax(1) == np.arange(n)), np.mean(logits.argmax(0) == np.arange(n)))
    return loss, grads, acc


def _sigmoid_np(img, txt, s, bias):
    """float64 loss, (d img, d txt, d scale, d bias) and accuracies for the SigLIP loss."""
    img, txt = img.astype(np.float64), txt.astype(np.float64)
    dots = img @ txt.T
    logits = s * dots + bias
    n = len(img)
    z = 2 * np.eye(n) - 1
    loss = np.sum(np.logaddexp(0.0, -z * logits)) / n
    g = -z / (1 + np.exp(z * logits)) / n
    grads = (s * g @ txt, s * g.T @ img, np.sum(g * dots), np.sum(g))
    acc = (np.mean(logits.argmax(1) == np.arange(n)), np.mean(logits.argmax(0) == np.arange(n)))
    return loss, grads, acc


def _close(got, want, rtol=1e-5, msg=""):
    """f32 vs reference: relative to the reference's largest magnitude."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(np.abs(want).max(), 1e-3), err_msg=msg)


def test_softmax_infonce_matches_float64_reference():
    img, txt = _pair()
    fn = jax.jit(jax.value_and_grad(lambda i, t, s: C.softmax_infonce(i, t, s), (0, 1, 2), has_aux=True))
    (loss, metrics), grads = fn(img, txt, SCALE)
    ref_loss, ref_grads, (acc_i, acc_t) = _softmax_np(img, txt, SCALE)
    _close(loss, ref_loss)
    for g, r in zip(grads, ref_grads):
        _close(g, r)
    assert 0 < acc_i < 1 and 0 < acc_t < 1
    assert float(metrics["i2t_acc"]) == acc_i and float(metrics["t2i_acc"]) == acc_t


def test_sigmoid_loss_matches_float64_reference():
    img, txt = _pair(1)
    fn = jax.jit(jax.value_and_grad(lambda i, t, s, b: C.sigmoid_loss(i, t, s, b), (0, 1, 2, 3), has_aux=True))
    (loss, metrics), grads = fn(img, txt, SCALE, BIAS)
    ref_loss, ref_grads, (acc_i, acc_t) = _sigmoid_np(img, txt, SCALE, BIAS)
    _close(loss, ref_loss)
    for g, r in zip(grads, ref_grads):
        _close(g, r)
    assert float(metrics["i2t_acc"]) == acc_i and float(metrics["t2i_acc"]) == acc_t


def _hardneg_rows(row_dots, scale, positive, beta=2.0):
    """A row loss other than InfoNCE, for row_contrastive: negatives re-weighted by exp(beta * cos) (no gradient
    through the weights), normalized to mean 1 over a row's negatives; beta = 0 is InfoNCE."""
    neg = jnp.arange(row_dots.shape[1])[None, :] != positive[:, None]
    s = jnp.where(neg, beta * jax.lax.stop_gradient(row_dots), -1e30)
    log_w = jnp.log(neg.sum(1, keepdims=True)) + s - jax.nn.logsumexp(s, axis=1, keepdims=True)
    return C.ce_rows(scale * row_dots + jnp.where(neg, log_w, 0.0), positive)


def test_row_contrastive_is_infonce_with_softmax_rows_and_takes_other_row_losses():
    img, txt = _pair(3)
    vg = lambda f: jax.jit(jax.value_and_grad(f, (0, 1, 2), has_aux=True))
    (loss, metrics), grads = vg(lambda i, t, s: C.row_contrastive(i, t, s, C.softmax_rows))(img, txt, SCALE)
    ref_loss, ref_grads, (acc_i, acc_t) = _softmax_np(img, txt, SCALE)
    _close(loss, ref_loss)
    for g, r in zip(grads, ref_grads):
        _close(g, r)
    assert float(metrics["i2t_acc"]) == acc_i and float(metrics["t2i_acc"]) == acc_t
    beta0 = lambda d, s, p: _hardneg_rows(d, s, p, beta=0.0)
    (loss0, _), grads0 = vg(lambda i, t, s: C.row_contrastive(i, t, s, beta0))(img, txt, SCALE)
    _close(loss0, ref_loss)
    for g, r in zip(grads0, ref_grads):
        _close(g, r)
    (loss2, _), grads2 = vg(lambda i, t, s: C.row_contrastive(i, t, s, _hardneg_rows))(img, txt, SCALE)
    assert float(loss2) > float(loss) + 1e-3  # hard negatives weigh more
    assert not np.allclose(grads2[0], grads[0], atol=1e-4)


MESHES = {
    "data8": ((8,), ("data",)),
    "data2xfsdp4": ((2, 4), ("data", "fsdp")),
    "d2f2t2": ((2, 2, 2), ("data", "fsdp", "tensor")),
}


def _mesh(name):
    shape, axes = MESHES[name]
    return Mesh(np.array(jax.devices()[: int(np.prod(shape))]).reshape(shape), axes)


SHARDED = {
    "softmax": (
        lambda i, t, s, b, m: C.sharded_softmax_infonce(i, t, s, m),
        lambda i, t, s, b: C.softmax_infonce(i, t, s),
    ),
    "row_hardneg": (
        lambda i, t, s, b, m: C.row_contrastive(i, t, s, _hardneg_rows, mesh=m),
        lambda i, t, s, b: C.row_contrastive(i, t, s, _hardneg_rows),
    ),
    "sigmoid_gather": (
        lambda i, t, s, b, m: C.sharded_sigmoid_gather(i, t, s, b, m),
        lambda i, t, s, b: C.sigmoid_loss(i, t, s, b),
    ),
    "sigmoid_ring": (
        lambda i, t, s, b, m: C.sharded_sigmoid_ring(i, t, s, b, m),
        lambda i, t, s, b: C.sigmoid_loss(i, t, s, b),
    ),
    "sigmoid_ring_autodiff": (
        lambda i, t, s, b, m: C.sharded_sigmoid_ring(i, t, s, b, m, custom_grad=False),
        lambda i, t, s, b: C.sigmoid_loss(i, t, s, b),
    ),
}


@pytest.mark.parametrize("mesh_name", sorted(MESHES))
@pytest.mark.parametrize("kind", sorted(SHARDED))
def test_sharded_equals_local_value_grad_metrics(kind, mesh_name):
    mesh = _mesh(mesh_name)
    sharded_fn, local_fn = SHARDED[kind]
    img, txt = _pair(2)
    batch = NamedSharding(mesh, P(("data", "fsdp") if "fsdp" in mesh.shape else "data"))
    gimg, gtxt = jax.device_put(img, batch), jax.device_put(txt, batch)
    vg = lambda f: jax.jit(jax.value_and_grad(f, (0, 1, 2, 3), has_aux=True))
    (loss, metrics), grads = vg(lambda i, t, s, b: sharded_fn(i, t, s, b, mesh))(gimg, gtxt, SCALE, BIAS)
    (ref_loss, ref_metrics), ref_grads = vg(local_fn)(img, txt, SCALE, BIAS)
    _close(loss, ref_loss)
    names = ("img", "txt", "scale", "bias")
    for name, g, r in zip(names, grads, ref_grads):
        if name == "bias" and not kind.startswith("sigmoid"):
            continue
        assert np.abs(np.asarray(r)).max() > 0, name
        _close(g, r, msg=name)
    assert metrics.keys() == ref_metrics.keys()
    assert 0 < float(ref_metrics["i2t_acc"]) < 1
    for key in metrics:
        _close(metrics[key], ref_metrics[key], msg=key)
    assert grads[0].sharding.is_equivalent_to(batch, 2)


def test_ring_uses_collective_permute_not_all_gather():
    mesh = _mesh("data8")
    img, txt = _pair(3)
    fn = jax.jit(jax.grad(lambda i, t: C.sharded_sigmoid_ring(i, t, SCALE, BIAS, mesh)[0], (0, 1)))
    hlo = fn.lower(img, txt).compile().as_text()
    assert "collective-permute" in hlo and "all-gather" not in hlo


def test_dispatcher_routes_and_validates():
    img, txt = _pair(4)
    local = C.contrastive_loss("sigmoid", img, txt, SCALE, BIAS)[0]
    _close(local, _sigmoid_np(img, txt, SCALE, BIAS)[0])
    # NOTE: a mesh whose batch axes have size 1 takes the local path (no shard_map).
    tensor_only = Mesh(np.array(jax.devices()).reshape(1, 8), ("data", "tensor"))
    assert C.num_batch_shards(tensor_only) == 1
    jaxpr = str(jax.make_jaxpr(lambda i, t: C.contrastive_loss("softmax", i, t, SCALE, mesh=tensor_only))(img, txt))
    assert "shard_map" not in jaxpr
    mesh = _mesh("data8")
    jaxpr = str(
        jax.make_jaxpr(lambda i, t: C.contrastive_loss("sigmoid", i, t, SCALE, BIAS, mesh=mesh, sigmoid_impl="gather"))(
            img, txt
        )
    )
    assert "shard_map" in jaxpr and "all_gather" in jaxpr
    with pytest.raises(ValueError, match="kind"):
        C.contrastive_loss("hinge", img, txt, SCALE)
    with pytest.raises(ValueError, match="sigmoid_impl"):
        C.contrastive_loss("sigmoid", img, txt, SCALE, BIAS, sigmoid_impl="tree")
    with pytest.raises(ValueError, match="divisible"):
        C.sharded_sigmoid_ring(img[:12], txt[:12], SCALE, BIAS, mesh)
    with pytest.raises(ValueError, match="axes"):
        C.sharded_softmax_infonce(img, txt, SCALE, mesh, axes=("replica",))
    with pytest.raises(ValueError, match=r"\[B, E\]"):
        C.softmax_infonce(img, txt[:8], SCALE)
