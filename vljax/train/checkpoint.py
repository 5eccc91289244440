"""orbax CheckpointManager: async, atomic, keeps N; saves the TrainState and the data iterator state."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves/restores (TrainState, grain iterator state) under WORKDIR/checkpoints/<step>."""

    def __init__(self, workdir: str | Path, keep: int = 3, async_save: bool = True):
        self.dir = Path(workdir).resolve() / "checkpoints"
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.dir, options=options)

    def latest_step(self) -> int | None:
        """Step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_state: dict | None, force: bool = False) -> bool:
        """Starts an (async) save of state + data iterator state at step."""
        args = {"state": ocp.args.StandardSave(state)}
        if data_state is not None:
            args["data"] = ocp.args.JsonSave(data_state)
        saved = self.manager.save(step, args=ocp.args.Composite(**args), force=force)
        if saved:
            logging.info("checkpoint step %d -> %s", step, self.dir)
        return saved

    def restore(self, abstract_state: Any, shardings: Any, step: int | None = None) -> tuple[Any, dict | None, int]:
        """Restores (state placed with `shardings`, data state, step) from step (default: latest)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.dir}")
        if getattr(abstract_state, "params", None) is not None:
            # NOTE: a clear message naming the params that differ, before orbax's whole-tree mismatch dump.
            self._check_params(abstract_state.params, step, str(self.dir))
        target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                              abstract_state, shardings)
        args = {"state": ocp.args.StandardRestore(target)}
        # NOTE: item_metadata() does not report Json items without a handler registry; the
        # item's directory is the reliable signal that a data-iterator state was saved.
        has_data = (self.dir / str(step) / "data").exists()
        if has_data:
            args["data"] = ocp.args.JsonRestore()
        restored = self.manager.restore(step, args=ocp.args.Composite(**args))
        return restored["state"], (restored["data"] if has_data else None), step

    def restore_params(self, target: Any, step: int | None = None, context: str = "") -> tuple[Any, int]:
        """Restores only the saved TrainState's params (step default: latest), placed like `target`.

        target: the model's param tree of placed arrays (or ShapeDtypeStructs with shardings); each
        restored leaf gets its sharding and dtype, read shard by shard (never gathered on one host).
        Optimizer state, step and rng are not read, so a run with another optimizer or freezing
        (the next stage of a recipe) can start from them. A param missing on either side or a
        shape mismatch raises ValueError naming the path (messages start with `context`).
        """
        where = f"{context}{self.dir}"
        steps = sorted(self.manager.all_steps())
        if not steps:
            raise FileNotFoundError(f"{where}: no checkpoint (train the previous stage first)")
        step = steps[-1] if step is None else int(step)
        if step not in steps:
            raise FileNotFoundError(f"{where}: no checkpoint at step {step}; saved steps: {steps}")
        self._check_params(target, step, where)
        item = jax.tree.map(lambda t: jax.ShapeDtypeStruct(t.shape, t.dtype, sharding=t.sharding), target)
        restore_args = jax.tree.map(
            lambda t: ocp.ArrayRestoreArgs(sharding=t.sharding, global_shape=t.shape, dtype=t.dtype), item)
        args = ocp.args.PyTreeRestore(item={"params": item}, restore_args={"params": restore_args},
                                      partial_restore=True)
        restored = self.manager.restore(step, args=ocp.args.Composite(state=args))
        return restored["state"]["params"], step

    def _check_params(self, target: Any, step: int, where: str) -> None:
        """ValueError naming the first params missing on either side, or of another shape, in checkpoint `step`."""
        from flax import traverse_util

        # NOTE: read the params subtree's metadata straight from the item directory: the manager
        # (built without a handler registry) reports no item metadata. Reading it there makes orbax warn that the
        # item has no step-level metadata file (it is one level up), on every resume: muted for this call.
        absl_log = logging.getLogger("absl")
        level = absl_log.level
        absl_log.setLevel(logging.ERROR)
        try:
            saved = ocp.StandardCheckpointer().metadata(self.dir / str(step) / "state").item_metadata.tree
        finally:
            absl_log.setLevel(level)
        if "params" not in saved:
            raise ValueError(f"{where} step {step}: the saved state has no 'params' (keys: {sorted(saved)})")
        flat_saved = traverse_util.flatten_dict(saved["params"], sep="/")
        flat_target = traverse_util.flatten_dict(target, sep="/")
        missing, extra = sorted(set(flat_target) - set(flat_saved)), sorted(set(flat_saved) - set(flat_target))
        if missing or extra:
            raise ValueError(f"{where} step {step}: model params {missing[:6]} are missing from the checkpoint and "
                             f"checkpoint params {extra[:6]} are not in the model")
        for path, t in flat_target.items():
            if tuple(flat_saved[path].shape) != tuple(t.shape):
                raise ValueError(f"{where} step {step}: {path} is {list(flat_saved[path].shape)} in the checkpoint "
                                 f"but {list(t.shape)} in the model (config dims differ?)")

    def wait(self) -> None:
        """Blocks until pending async saves are committed."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        """Waits and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
