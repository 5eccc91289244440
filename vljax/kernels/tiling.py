"""Shared tile arithmetic and backend choice for the Pallas kernels (Triton on GPU, interpret mode on CPU).

The kernels are written for Triton. Mosaic (the TPU lowering of pallas_call) rejects their block
shapes (its blocks need last two dims divisible by (8, 128) or whole), so on TPU the dispatchers pick
the XLA paths and an explicit request for a Triton kernel fails with a message saying so. Late
interaction and token merging's matching also have kernels written for Mosaic (`late_interaction.mosaic`,
`token_merging.match_mosaic`), which `impl='pallas'` takes on TPU (resolve_interpret_tpu).
"""

import jax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

# NOTE: Mosaic (TPU) tiles a 32-bit array in (8 sublanes, 128 lanes): the Mosaic kernels' block and padding unit.
TPU_SUBLANES, TPU_LANES = 8, 128
# NOTE: jax names the CUDA / ROCm platforms "gpu" in default_backend() but by vendor in some device lists.
_PLATFORM_ALIASES = {"cuda": "gpu", "rocm": "gpu"}


def backend() -> str:
    """The platform being lowered for: 'gpu', 'tpu' or 'cpu' (kernel dispatch, vljax.nn.dense's layout).

    Under `jax.sharding.use_abstract_mesh` with an `AbstractDevice` (ahead-of-time lowering for another
    platform, e.g. `jax.export(..., platforms=("tpu",))` from a CPU host) that device's platform;
    otherwise jax's default backend.
    """
    # NOTE: getattr, so that a jax without abstract devices (or a mesh without one) falls back to the default
    # backend instead of failing every kernel dispatch.
    device = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
    platform = getattr(device, "platform", None) or jax.default_backend()
    return _PLATFORM_ALIASES.get(platform, platform)


def resolve_interpret(interpret, kernel: str) -> bool:
    """interpret (None = by backend) -> whether pallas_call runs in the interpreter.

    None: compiled on GPU (Triton), interpreted on CPU. A compiled call on TPU or CPU is refused with a
    clear error (Mosaic's own is a block-shape message); interpret=True runs anywhere, slowly.
    """
    if interpret:
        return True
    platform = backend()
    if platform == "gpu":
        return False
    if platform == "tpu":
        raise ValueError(
            f"{kernel}: the Pallas kernel is written for Triton (GPU) and does not lower through Mosaic on TPU; "
            "use impl='auto' (the XLA path there) or interpret=True"
        )
    if interpret is None:
        return True
    raise ValueError(f"{kernel}: interpret=False needs a GPU, this backend is {platform!r}")


def resolve_interpret_tpu(interpret, kernel: str) -> bool:
    """interpret (None = by backend) -> whether a kernel written for Mosaic (TPU) runs in the interpreter.

    None: compiled on TPU, interpreted on CPU. A compiled call elsewhere is refused: on GPU jax would lower
    pallas_call through Mosaic GPU, which these kernels do not target.
    """
    if interpret:
        return True
    platform = backend()
    if platform == "tpu":
        return False
    if interpret is None and platform == "cpu":
        return True
    raise ValueError(f"{kernel}: the Mosaic kernel compiles only for TPU, this backend is {platform!r}; "
                     "use impl='auto' or interpret=True")


def round_up(n, multiple):
    """int, int -> smallest multiple of `multiple` that is >= n."""
    return -(-n // multiple) * multiple


def padded_length(n, backend):
    """Length of an untiled axis -> padded length: Triton wants powers of two >= 16, others multiples of 8."""
    if backend == "gpu":
        return max(16, pl.next_power_of_2(n))
    return round_up(n, 8)


def tile(n, chunk, backend):
    """Length, wanted chunk -> (chunk, padded length), chunk dividing it: powers of two >= 16 on GPU."""
    if backend == "gpu":
        chunk = min(pl.next_power_of_2(chunk), padded_length(n, backend))
    else:
        chunk = min(round_up(chunk, 8), round_up(n, 8))
    return chunk, round_up(n, chunk)


def compiler_params(interpret, num_warps=4, num_stages=None):
    """Triton parameters on GPU (jax's default GPU lowering is Mosaic GPU, which these kernels do not target)."""
    if interpret or backend() != "gpu":
        return None
    return pltriton.CompilerParams(num_warps=num_warps, num_stages=num_stages)
