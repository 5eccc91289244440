"""The generic training loop: data -> sharded step -> checkpoints, metrics, evals, report.

Resumes automatically from the newest checkpoint in the workdir (params, optimizer,
step, rng and the data iterator position); a finished workdir is left as it is, and one whose
checkpoint does not fit the config is refused before anything is written (WorkdirError).
SIGTERM/SIGINT save a checkpoint and raise Preempted (every process of a multi-process job at
the same step; the CLI exits 128 + the signal number); a non-finite loss stops the run naming
the step and leaves the last good checkpoint as the newest one.
"""
from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from vljax import sharding as shard_lib
from vljax.config import ConfigError
from vljax.data import pipeline, tokenizer as tokenizer_lib
from vljax.methods import get_method
from vljax.train import flops as flops_lib
from vljax.train import optim, report, writers
from vljax.train.checkpoint import Checkpointer
from vljax.train.state import TrainState, abstract_sharded_state, create_sharded_state, param_count
from vljax.train.step import make_train_step


class NonFiniteLossError(RuntimeError):
    """Raised when the loss or gradient norm becomes NaN/inf."""


class WorkdirError(ValueError):
    """The workdir does not fit the command: no checkpoint to evaluate, a checkpoint of another model, or one past
    config.train.steps. Raised before anything in the workdir is written."""


class Preempted(Exception):
    """SIGTERM / SIGINT stopped the run after it saved a checkpoint; rerunning the same command resumes.

    `exit_code` is the shell's convention for the signal (128 + signal number: 143 for SIGTERM, 130 for SIGINT),
    so `vljax train ... && next` does not go on after a stopped run.
    """

    def __init__(self, step: int, signum: int):
        self.step, self.signum, self.exit_code = step, signum, 128 + signum
        super().__init__(f"stopped at step {step} ({signal.Signals(signum).name}); checkpoint saved; rerun the same "
                         f"command to resume")


class Experiment:
    """Everything a run needs, built once from the config (used by train, eval and tests)."""

    def __init__(self, config, workdir: str | Path):
        self.config = config
        self.workdir = Path(workdir)
        shard_lib.maybe_initialize_distributed()
        self.mesh = shard_lib.make_mesh(dict(config.mesh))
        self.rules = shard_lib.rules_from_config(config.sharding.get("rules"))
        self.method = get_method(config.method)
        self.world = None
        if config.data.source == "world":
            from vljax.data import world as world_lib

            self.world = world_lib.World(config.data.world)
        self.tokenizer = tokenizer_lib.make_tokenizer(config.tokenizer, self.world)
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            self.model = self.method.build(config, vocab_size=self.tokenizer.vocab_size)
        batch = int(config.train.batch_size)
        if batch % shard_lib.batch_size_divisor(self.mesh):
            raise ConfigError(f"config.train.batch_size={batch} not divisible by the batch shards "
                              f"(data x fsdp = {shard_lib.batch_size_divisor(self.mesh)})")
        init_fn = lambda r: self.method.init_params(self.model, config, r)
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            boxed = jax.eval_shape(init_fn, jax.random.key(0))
        bad = shard_lib.indivisible_params(boxed, self.mesh, self.rules)
        if bad:
            raise ConfigError(f"the mesh {dict(self.mesh.shape)} does not divide {len(bad)} param dim(s), e.g. "
                              f"{bad[0]}; change config.mesh, config.sharding.rules or the model's dims")
        abstract_params = nn.meta.unbox(boxed)
        self.tx, self.schedule = optim.make_optimizer(config.optim, abstract_params, int(config.train.steps))
        self.init_fn = init_fn

    def create_state(self) -> tuple[TrainState, Any]:
        """Fresh sharded TrainState (+ shardings) from config.seed."""
        return create_sharded_state(self.init_fn, self.tx, jax.random.key(int(self.config.seed)),
                                    self.mesh, self.rules)

    def abstract_state(self) -> tuple[TrainState, Any]:
        """create_state's (state as placed jax.ShapeDtypeStructs, shardings), with nothing compiled or allocated:
        the target a checkpoint is restored into."""
        return abstract_sharded_state(self.init_fn, self.tx, jax.random.key(int(self.config.seed)),
                                      self.mesh, self.rules)

    def train_dataset(self):
        """grain IterDataset of host training batches."""
        cfg = self.config
        spec = self.method.data_spec(cfg)
        augment = self.caption_augment(spec)
        fields = tuple(spec["fields"]) + ((augment.spans_field,) if augment else ())
        src = self.world.source(cfg.data.split, fields=fields)
        if hasattr(self.method, "make_example"):
            # NOTE: methods with structured sequences (prompt + answer + label mask) build their own.
            to_example = lambda sample: self.method.make_example(sample, self.tokenizer, cfg)
        else:
            to_example = pipeline.to_example_fn(self.tokenizer, spec["text_fields"], spec["keep"],
                                                cfg.data.max_len)
        pack = None
        if cfg.data.get("pack", False):
            if not getattr(self.method, "PACKABLE", False):
                raise ValueError(f"config.data.pack=True: method {cfg.method!r} does not support sequence packing "
                                 f"(its loss must take segment_ids / positions; see vljax/methods/text_lm.py)")
            # NOTE: default buffer = one host batch of rows, so each batch is one first-fit buffer.
            bins = cfg.data.get("pack_bins", 0) or pipeline.per_host_batch_size(int(cfg.train.batch_size))
            # NOTE: make_example builders pad with vljax's PAD id whatever the tokenizer (text_lm, lvlm_ntp).
            pack = dict(max_len=int(cfg.data.max_len), num_bins=int(bins), pad_id=tokenizer_lib.PAD)
        return pipeline.build_dataset(src, to_example, cfg.train.batch_size, shuffle_seed=cfg.data.shuffle_seed,
                                      repeat=True, num_threads=cfg.data.num_threads, prefetch=cfg.data.prefetch,
                                      pack=pack, augment=augment, augment_seed=int(cfg.seed))

    def caption_augment(self, spec: dict):
        """config.data.attribute_drop -> transforms.DropAttributeWords for the training captions, or None.

        Its draws are seeded by config.seed and the stream position (pipeline.build_dataset).
        """
        from vljax.data import transforms

        drop = self.config.data.get("attribute_drop")
        if drop is None or float(drop.p) == 0.0:
            return None
        name = self.config.method
        if hasattr(self.method, "make_example") or "caption" not in spec["text_fields"]:
            raise ValueError(f"config.data.attribute_drop.p={drop.p}: method {name!r} does not train on the world's "
                             f"'caption' field (text fields: {sorted(spec['text_fields'])}); set it to 0")
        world = self.config.data.world
        # NOTE: the world's `caption` is always English (captions_ml/<lang> holds the other languages).
        return transforms.DropAttributeWords(p=float(drop.p), attributes=tuple(drop.attributes), field="caption",
                                             spans_field=f"spans/{world.caption.default}")

    def jit_step(self, shardings):
        """The jitted, donated train step with explicit in/out shardings."""
        cfg = self.config
        loss_fn = self.method.make_loss(self.model, cfg, self.mesh)
        step = make_train_step(loss_fn, self.tx, self.schedule, accum_steps=int(cfg.train.grad_accum_steps),
                               mesh=self.mesh)
        return jax.jit(step, in_shardings=(shardings, None), out_shardings=(shardings, None), donate_argnums=0)

    @functools.cached_property
    def encoders(self):
        """The method's (embed_images, embed_texts), built once so every eval reuses their compiled executables."""
        return self.method.encoders(self.model, self.config)

    @functools.cache
    def pair_scorer(self, direction: str):
        """Jitted method.score_pairs(params, images, tokens) for 'i2t' | 't2i', built once per direction."""
        method, model, config = self.method, self.model, self.config
        return jax.jit(lambda p, im, tk: method.score_pairs(model, config, p, im, tk, direction=direction))

    def evaluate(self, params, step: int) -> dict[str, float]:
        """Runs config.evals on params -> flat {name: value}."""
        from vljax.eval import run_evals

        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            return run_evals(self, params, step)


def _install_signal_handlers(flag: dict) -> None:
    def handler(signum, _frame):
        flag["signal"] = signum
        logging.warning("received signal %d: will checkpoint and exit after this step", signum)
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, handler)


class _StopVote:
    """Local 'a signal arrived' flag -> the flag all processes act on, at the same step.

    With several processes, one process's SIGTERM (a preempted host) must stop every process at the same step: one
    that stops alone leaves the others waiting in the next step's collectives. Each step the processes' flags are
    max-reduced on the devices; the result is read one step later, when the host waits for that step's metrics
    anyway, so every process stops one step after the first of them saw the signal. One process: the flag itself.
    """

    def __init__(self):
        self.multi = jax.process_count() > 1
        self.pending = None
        if self.multi:
            mesh = jax.sharding.Mesh(np.array(jax.devices()), ("processes",))
            self.sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("processes"))
            self.reduce = jax.jit(lambda x: x.max(), out_shardings=jax.sharding.NamedSharding(
                mesh, jax.sharding.PartitionSpec()))

    def __call__(self, local: bool) -> bool:
        if not self.multi:
            return local
        flags = np.full((jax.local_device_count(),), int(local), np.int32)
        previous, self.pending = self.pending, self.reduce(jax.make_array_from_process_local_data(self.sharding, flags))
        return previous is not None and bool(np.asarray(previous.addressable_data(0)))


def _fmt_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _saved_config(workdir: Path) -> dict | None:
    """The config.json a run wrote into workdir (a nested dict), or None."""
    path = workdir / "config.json"
    return json.loads(path.read_text()) if path.exists() else None


def _describe_changes(saved: dict | None, config, limit: int = 8) -> str:
    """'key: old -> new, ...' between a workdir's config.json and config ('' when equal or unknown)."""
    from vljax.config import config_changes

    if saved is None:
        return ""
    changes = config_changes(saved, config)
    text = ", ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in changes[:limit])
    return text + (f" (+{len(changes) - limit} more)" if len(changes) > limit else "")


def _mismatch(ckpt: Checkpointer, exp: Experiment, saved: dict | None, error: ValueError) -> WorkdirError:
    """A restore's tree-mismatch error -> WorkdirError naming the first difference and the config keys changed."""
    changes = _describe_changes(saved, exp.config)
    trained = (saved or {}).get("config_spec", "an unknown config")
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    first = first if len(first) <= 600 else first[:600] + " ..."  # NOTE: orbax's first line can be a whole tree.
    return WorkdirError(
        f"the checkpoint in {ckpt.dir} does not fit this config's train state ({first}). The workdir was "
        f"trained with {trained}" + (f"; changed since: {changes}" if changes else "")
        + f". Use another --workdir, or start from these weights with --config.init.model=checkpoint:{exp.workdir}")


def _restore(ckpt: Checkpointer, exp: Experiment, saved: dict | None):
    """Newest checkpoint -> (state, shardings, data state, step); WorkdirError when it cannot fit."""
    # NOTE: restored into an abstract target: a resumed run never initializes (nor holds) a fresh state.
    abstract, shardings = exp.abstract_state()
    try:
        state, data_state, step = ckpt.restore(abstract, shardings)
    except ValueError as e:  # NOTE: orbax and the params check both raise ValueError on a tree mismatch.
        raise _mismatch(ckpt, exp, saved, e) from e
    return state, shardings, data_state, step


def train_and_evaluate(config, workdir: str | Path, *, stop_after: int | None = None) -> dict[str, float]:
    """Trains config.train.steps steps in workdir (resuming), evaluates, writes results.json + report.

    A workdir whose newest checkpoint is at config.train.steps and which holds results.json is finished: its
    results are returned as they are (nothing is re-run or rewritten). Raises WorkdirError, before writing
    anything, when the workdir's checkpoint does not fit the config or is past config.train.steps, and Preempted
    after a SIGTERM / SIGINT has stopped the run with a checkpoint.
    stop_after: stop (with a checkpoint) once this global step is reached, as if preempted, and return {};
    used by the resume test and for debugging.
    """
    workdir = Path(workdir)
    # NOTE: Experiment first: it calls jax.distributed.initialize on a multi-process launch, which must come
    # before anything that starts the backend (jax.process_index included); and a config it refuses (a mesh that
    # does not divide the batch or a param) leaves no workdir behind.
    exp = Experiment(config, workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    is_main = jax.process_index() == 0
    cfg = config
    total = int(cfg.train.steps)
    saved_config = _saved_config(workdir)

    ckpt = Checkpointer(workdir, keep=int(cfg.checkpoint.keep), async_save=bool(cfg.checkpoint.async_save))
    start, data_state, latest = 0, None, ckpt.latest_step()
    if latest is not None and latest == total and (workdir / "results.json").exists():
        # NOTE: decided before any restore: a finished run of a large model is not read back just to be left alone.
        ckpt.close()
        changes = _describe_changes(saved_config, cfg)
        print(f"[vljax] {workdir} is finished (step {latest} of {total}); its results.json is unchanged "
              f"(`vljax eval` evaluates the checkpoint again)" + (f"; note: this config differs from its config.json: "
                                                                   f"{changes}" if changes else ""), flush=True)
        return json.loads((workdir / "results.json").read_text())
    if latest is not None:
        try:
            if latest > total:
                raise WorkdirError(f"{workdir} has a checkpoint at step {latest}, past config.train.steps={total}; "
                                   f"use another --workdir")
            state, shardings, data_state, start = _restore(ckpt, exp, saved_config)
        except WorkdirError:
            ckpt.close()
            raise
        changes = _describe_changes(saved_config, cfg)
        print(f"[vljax] resumed from step {start} in {ckpt.dir}" + (f"; config changed: {changes}" if changes else ""),
              flush=True)
    else:
        state, shardings = exp.create_state()
        if cfg.get("init"):
            from vljax.convert.init import load_pretrained

            # NOTE: pretrained weights only seed a fresh run; a resumed run restores its own.
            state = state.replace(params=load_pretrained(cfg, state.params))
            loaded = {k: v for k, v in dict(cfg.init).items() if v}
            if loaded:
                print(f"[vljax] params initialized from config.init: {loaded}", flush=True)
    (workdir / "config.json").write_text(cfg.to_json_best_effort(indent=2)) if is_main else None
    it = iter(exp.train_dataset())
    if data_state is not None:
        it.set_state(data_state)
    n_params = param_count(state.params)
    step_fn = exp.jit_step(shardings)
    writer = writers.create_writer(workdir, is_main)
    flag: dict[str, Any] = {}
    _install_signal_handlers(flag)
    stop_vote = _StopVote()

    bs = int(cfg.train.batch_size)
    step_flops, compiled = None, None
    peak = flops_lib.peak_flops_per_device(override=cfg.train.get("peak_flops_per_device"))
    log_every, ckpt_every = int(cfg.train.log_every), int(cfg.checkpoint.every)
    eval_every = int(cfg.get("eval_every", 0))
    if is_main:
        print(f"[vljax] method={cfg.method} params={n_params / 1e6:.2f}M mesh={dict(exp.mesh.shape)} "
              f"devices={jax.device_count()} processes={jax.process_count()} batch={bs} steps={total} "
              f"workdir={workdir}", flush=True)
        warmup = int(cfg.optim.get("warmup_steps", 0))
        if warmup >= total:  # NOTE: every schedule peaks at step `warmup`
            print(f"[vljax] note: optim.warmup_steps={warmup} >= the {total} steps this run trains: "
                  f"the learning rate never reaches optim.lr={cfg.optim.lr}", flush=True)

    pending = None
    t_window, n_window = time.perf_counter(), 0
    t_start = time.perf_counter()
    stopped_by = None
    step = last_saved = start

    def drain(pending):
        s, m = pending
        m = jax.device_get(m)
        if not bool(m.pop("finite")):
            raise NonFiniteLossError(
                f"non-finite loss/gradient at step {s} (loss={float(m['loss'])}, grad_norm={float(m['grad_norm'])}); "
                f"the update was skipped and the newest checkpoint ({ckpt.latest_step()}) is the last good one")
        return s, {k: float(np.asarray(v).mean()) for k, v in m.items()}

    def record(pending):
        """Fetches one step's metrics (raises on non-finite), logs every log_every steps."""
        nonlocal t_window, n_window
        s, m = drain(pending)
        n_window += 1
        if s % log_every == 0 or s == total:
            dt = time.perf_counter() - t_window
            sps = n_window / max(dt, 1e-9)
            m.update(steps_per_sec=sps, examples_per_sec=sps * bs)
            if step_flops:
                m["tflops_per_device"] = step_flops * sps / 1e12
                if peak:
                    m["mfu"] = step_flops * sps / peak
            if is_main:
                eta = (total - s) / max(sps, 1e-9)
                mfu = f" mfu={m['mfu']:.1%}" if "mfu" in m else ""
                print(f"[train] step {s:>6}/{total} loss={m['loss']:.4f} lr={m['lr']:.2e} "
                      f"gnorm={m['grad_norm']:.3f} {sps:.2f} steps/s {sps * bs:.0f} ex/s{mfu} "
                      f"ETA {_fmt_eta(eta)}", flush=True)
            t_window, n_window = time.perf_counter(), 0
        writer.write_scalars(s, m)

    try:
        with jax.set_mesh(exp.mesh), nn.logical_axis_rules(exp.rules):
            while step < total:
                host_batch = next(it)
                batch = shard_lib.host_to_global(host_batch, exp.mesh)
                if compiled is None:
                    # NOTE: compile once explicitly so the cost analysis (the FLOPs fallback for MFU)
                    # comes from the very executable that runs.
                    compiled = step_fn.lower(state, batch).compile()
                    step_flops = flops_lib.step_flops(cfg, compiled, exp.method, jax.device_count())
                    t_window = time.perf_counter()
                state, metrics = compiled(state, batch)
                step += 1
                # NOTE: metrics are fetched one step late so the host never stalls the device,
                # except at checkpoints, evals and stops, which must only see finite states.
                if pending is not None:
                    record(pending)
                pending = (step, metrics)
                save = step % ckpt_every == 0
                do_eval = bool(eval_every) and step % eval_every == 0 and step != total
                signalled = stop_vote(flag.get("signal") is not None)
                if signalled or (stop_after is not None and step >= stop_after):
                    stopped_by = "signal" if signalled else "stop_after"
                if save or do_eval or stopped_by or step == total:
                    record(pending)
                    pending = None
                if save and not stopped_by:
                    ckpt.save(step, state, it.get_state())
                    last_saved = step
                if do_eval:
                    res = exp.evaluate(state.params, step)
                    writer.write_scalars(step, res)
                    if is_main:
                        shown = " ".join(f"{k}={res[k]:.4f}" for k in sorted(res, key=report.natural_key))
                        print("[eval] step", step, shown, flush=True)
                if stopped_by:
                    break
    except NonFiniteLossError as e:
        ckpt.close()
        writer.close()
        print(f"[vljax] ERROR: {e}", file=sys.stderr, flush=True)
        raise
    if stopped_by:
        if last_saved != step:
            ckpt.save(step, state, it.get_state(), force=True)
        ckpt.close()
        writer.close()
        if stopped_by == "signal":
            # NOTE: a process stopped by the others' vote saw no signal itself: SIGTERM, as a preemption would send.
            raise Preempted(step, flag.get("signal", signal.SIGTERM))
        print(f"[vljax] stopped at step {step} (stop_after); checkpoint saved; rerun the same command to resume",
              flush=True)
        return {}
    if last_saved != step:
        ckpt.save(step, state, it.get_state(), force=True)
    ckpt.wait()
    train_time = time.perf_counter() - t_start
    results = exp.evaluate(state.params, step)
    results.update(train_steps=float(step), params=float(n_params), examples_seen=float(step * bs))
    if step > start:
        # NOTE: this invocation's training time (a run that only ran its final evaluation has none to report).
        results["train_time_s"] = train_time
    if step_flops:
        results["flops_per_step_per_device"] = step_flops
        results["num_devices"] = float(jax.device_count())
    writer.write_scalars(step, results)
    writer.close()
    ckpt.close()
    if is_main:
        (workdir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
        report.write_report(workdir, cfg, results)
    return results


def restore_latest(config, workdir: str | Path):
    """-> (Experiment, params, step) of the newest checkpoint in workdir (for evaluation and analysis scripts).

    The config may differ from the training one in anything that leaves the parameter tree unchanged, e.g.
    `model.image.token_merging` to evaluate a trained model with ToMe switched on (benchmarks/token_merging.py);
    only the params are read. WorkdirError when workdir has no checkpoint (nothing is created) or its params do
    not fit the config.
    """
    workdir = Path(workdir)
    if not (workdir / "checkpoints").is_dir():
        # NOTE: checked first because the orbax manager would create the directory.
        raise WorkdirError(f"no checkpoint under {workdir}/checkpoints: train first")
    exp = Experiment(config, workdir)
    ckpt = Checkpointer(workdir, async_save=False)
    try:
        if ckpt.latest_step() is None:
            raise WorkdirError(f"no checkpoint under {workdir}/checkpoints: train first")
        # NOTE: the params only: evaluation needs neither the optimizer state (twice the params for AdamW) nor the
        # data iterator, and an eval config may change what those hold (e.g. optim.freeze).
        abstract, _ = exp.abstract_state()
        try:
            params, step = ckpt.restore_params(abstract.params)
        except ValueError as e:
            raise _mismatch(ckpt, exp, _saved_config(workdir), e) from e
    finally:
        ckpt.close()
    return exp, params, step


def evaluate_latest(config, workdir: str | Path, *, output: str | Path | None = None,
                    write_results: bool = True) -> dict[str, float]:
    """Restores the newest checkpoint in workdir, runs the evals, prints them and writes them to `output`.

    output: a JSON file (flat metric -> number, with 'step'); default WORKDIR/eval_step<N>.json, so the training
    run's results.json and report.md stay as training wrote them. write_results=False writes and prints nothing.
    The config may differ from the training one as `restore_latest` allows.
    """
    workdir = Path(workdir)
    exp, params, step = restore_latest(config, workdir)
    if write_results and jax.process_index() == 0:
        print(f"[vljax] evaluating the checkpoint of step {step} in {workdir / 'checkpoints'}", flush=True)
    results = exp.evaluate(params, step)
    results["step"] = float(step)
    if write_results and jax.process_index() == 0:
        path = Path(output) if output is not None else workdir / f"eval_step{step}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, sort_keys=True))
        report.print_summary(results)
        print(f"[vljax] eval results: {path}", flush=True)
    return results
