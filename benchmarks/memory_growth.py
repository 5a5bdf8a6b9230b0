"""Memory over a long run: does the process grow with the step count, and is it the library or malloc?

Trains the reference MNIST MLP GAN (``mlp_generator``/``mlp_discriminator``, ``NonSaturatingLoss``,
``TensorLoader(mnist()[:4096], batch_size=128)``: 32 steps an epoch, on the CPU) for ``--steps``
steps and samples, every ``--every`` steps:

- ``VmRSS``, ``RssAnon`` and ``RssFile`` from ``/proc/self/status`` (RssFile: pages of mapped
  files, mostly the shared libraries' code, faulted in as new code paths run);
- glibc's ``mallinfo2()``: ``in_use`` (bytes malloc has handed out and not got back) and
  ``free`` (bytes malloc holds but nobody uses: fragmentation and retention), when glibc's
  malloc is the allocator;
- the Python heap: ``sys.getallocatedblocks()``, ``len(gc.get_objects())``, and the number and
  bytes of live ``torch.Tensor`` objects (a tensor kept alive per step shows here).

Each configuration runs in its own subprocess, so none shares a heap with another:

- ``bare``: the ``trainer.train_step`` loop alone;
- ``fit``: ``trainer.fit`` with no callbacks (a probe at STEP_END every ``--every`` steps samples);
- ``callbacks``: ``fit`` with the training command's outputs: HistoryCSV, JSONLHistory, LossPlot,
  SampleGrid, ProgressBar (to /dev/null), EpochLogger, ModelCheckpoint and run.json, every epoch;
- ``cli``: ``python -m torchgan_lite.train --subset 4096 --no-progress`` itself, its RSS read by
  this process from ``/proc/PID/status`` at each epoch end (skipped, with the reason, if the
  command fails);
- ``bare-arena2``: ``bare`` with ``MALLOC_ARENA_MAX=2``;
- ``bare-trim``: ``bare`` calling glibc's ``malloc_trim(0)`` before each sample;
- ``bare-jemalloc`` / ``bare-tcmalloc``: ``bare`` under ``LD_PRELOAD`` of jemalloc / tcmalloc
  (skipped when the library is not installed: ``apt-get install libjemalloc2 libtcmalloc-minimal4``);
- ``callbacks-trim`` / ``callbacks-jemalloc``: the same two checks on ``callbacks``.

The slope of each series is a least-squares line through the samples from step ``--skip`` (200)
on, in MB (MiB) per 1,000 steps. ``--tracemalloc-diff CONFIG`` instead runs one configuration under
``tracemalloc`` and prints the allocation sites that grew most between two steps (500 and 2500 by
default), once as the process holds them (garbage the collector has not reached included) and once
after a full collection (live objects only), to tell a leak from uncollected garbage (a snapshot
allocates enough to set off a full collection itself, so the first listing can miss garbage; to
count a callback's garbage directly, call it under ``gc.set_debug(gc.DEBUG_SAVEALL)``).

Measured and explained in ``docs/reliability.md``, "Memory over a long run"; the samples are in
``benchmarks/results/memory_growth_*.json``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/memory_growth.py                       # every configuration
    python benchmarks/memory_growth.py --configs bare,bare-trim --steps 1000 --json out.json
    python benchmarks/memory_growth.py --tracemalloc-diff callbacks

One thread per process (``torch.set_num_threads(1)``); a configuration of 3,000 steps takes
about 2-3 minutes on one core.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MB = 1 << 20
STEPS_PER_EPOCH = 32  # 4096 images, batches of 128
ALLOCATORS = {"jemalloc": "libjemalloc.so.2", "tcmalloc": "libtcmalloc_minimal.so.4"}
CONFIGS = ("bare", "fit", "callbacks", "cli", "bare-arena2", "bare-trim", "bare-jemalloc", "bare-tcmalloc",
           "callbacks-trim", "callbacks-jemalloc")
SERIES = ("rss", "rss_anon", "rss_file", "malloc_in_use", "malloc_free", "py_blocks", "gc_objects", "tensors",
          "tensor_mb")


# --------------------------------------------------------------------------- measuring


def proc_status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS, RssAnon and RssFile of a process, in MiB."""
    keys = {"VmRSS": "rss", "RssAnon": "rss_anon", "RssFile": "rss_file"}
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in keys:
                out[keys[name]] = int(rest.split()[0]) / 1024
    return out


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def glibc_malloc() -> Any | None:
    """glibc's ``mallinfo2`` if glibc's malloc is the allocator (no LD_PRELOAD), else None."""
    if os.environ.get("LD_PRELOAD"):
        return None
    fn = getattr(_libc(), "mallinfo2", None)
    if fn is None:
        return None
    fn.restype = _Mallinfo2
    return fn


def sample(step: int, mallinfo: Any | None, count_tensors: bool = True) -> dict[str, float]:
    """One row of measurements at ``step``."""
    import torch

    row: dict[str, float] = {"step": step, **proc_status()}
    if mallinfo is not None:
        mi = mallinfo()
        row["malloc_in_use"] = (mi.uordblks + mi.hblkhd) / MB  # sbrk/arena chunks in use + mmapped chunks
        row["malloc_free"] = mi.fordblks / MB
    row["py_blocks"] = sys.getallocatedblocks()
    objects = gc.get_objects()
    row["gc_objects"] = len(objects)
    if count_tensors:
        storages: dict[int, int] = {}
        n = 0
        for o in objects:
            if isinstance(o, torch.Tensor):
                n += 1
                try:
                    s = o.untyped_storage()
                    storages[s.data_ptr()] = s.nbytes()
                except (RuntimeError, NotImplementedError):
                    pass
        row["tensors"] = n
        row["tensor_mb"] = sum(storages.values()) / MB
    del objects
    return row


def slope(rows: list[dict[str, float]], key: str, skip: int) -> float | None:
    """Least-squares slope of ``key`` against the step, per 1,000 steps, over the rows at step >= skip."""
    pts = [(r["step"], r[key]) for r in rows if r["step"] >= skip and key in r]
    if len(pts) < 3:
        return None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return None
    return 1000 * sum((x - mx) * (y - my) for x, y in pts) / sxx


# --------------------------------------------------------------------------- the worker (one configuration)


def _attach_cli_callbacks(trainer: Any, out: Path) -> None:
    """The training command's outputs, as ``torchgan_lite/cli`` attaches them, every epoch."""
    import torchgan_lite as tl

    tl.HistoryCSV(out / "history.csv").attach(trainer)
    tl.JSONLHistory(out / "history.jsonl").attach(trainer)
    tl.LossPlot(out / "losses.png").attach(trainer)
    tl.SampleGrid(out, tl.fixed_noise(64, trainer.latent_dim, seed=0), every=1).attach(trainer)
    tl.ProgressBar(file=open(os.devnull, "w")).attach(trainer)
    tl.EpochLogger().attach(trainer)
    tl.ModelCheckpoint(out / "checkpoint.pt", every=1).attach(trainer)
    started = time.perf_counter()
    trainer.add_callback(tl.Event.EPOCH_END, lambda t: tl.write_json(
        out / "run.json", tl.run_info(t, {"subset": 4096}, time.perf_counter() - started, "running")))


def worker(config: str, steps: int, every: int, trace: tuple[int, int] | None, top: int) -> dict[str, Any]:
    """Run one configuration in this process; returns its samples (and the tracemalloc diff)."""
    import torch

    torch.set_num_threads(1)
    import torchgan_lite as tl

    base = config.split("-")[0]
    trim = config.endswith("-trim")
    libc = _libc() if trim else None
    mallinfo = glibc_malloc()
    if trace is not None:
        import tracemalloc

        tracemalloc.start(25)
    snapshots: dict[int, Any] = {}
    found: dict[int, int] = {}

    tl.seed_everything(0)
    trainer = tl.GANTrainer(tl.mlp_generator(), tl.mlp_discriminator(), tl.NonSaturatingLoss(), device="cpu")
    loader = tl.TensorLoader(tl.mnist()[:4096], batch_size=128)
    rows: list[dict[str, float]] = []
    t0 = time.perf_counter()

    def probe(step: int) -> None:
        if libc is not None:
            libc.malloc_trim(0)
        if trace is not None and step in trace:
            import tracemalloc

            snapshots[step] = tracemalloc.take_snapshot()  # garbage not yet collected included
            found[step] = gc.collect()
            snapshots[-step] = tracemalloc.take_snapshot()  # live objects only
        rows.append({**sample(step, mallinfo, count_tensors=trace is None), "seconds": time.perf_counter() - t0})

    probe(0)
    with tempfile.TemporaryDirectory(prefix="memory_growth_") as tmp:
        if base == "bare":
            step = 0
            while step < steps:
                for batch in loader:
                    trainer.train_step(batch)
                    step += 1
                    if step % every == 0:
                        probe(step)
                    if step >= steps:
                        break
        else:
            if base == "callbacks":
                _attach_cli_callbacks(trainer, Path(tmp))
            trainer.add_callback(tl.Event.STEP_END, lambda t: probe(t.state.step), every=every)
            trainer.fit(loader, epochs=10**9, max_steps=steps)
    result: dict[str, Any] = {"config": config, "rows": rows}
    if trace is not None and len(snapshots) == 4:
        for kind, sign in (("raw", 1), ("live", -1)):
            a, b = (snapshots[sign * s] for s in trace)
            stats = b.compare_to(a, "traceback")
            result[f"tracemalloc_{kind}"] = [
                {"size_diff_kb": s.size_diff / 1024, "count_diff": s.count_diff, "size_kb": s.size / 1024,
                 "where": [f"{fr.filename}:{fr.lineno}" for fr in s.traceback[-6:]]}
                for s in stats[:top]]
            result[f"tracemalloc_{kind}_total_diff_kb"] = sum(s.size_diff for s in stats) / 1024
        result["unreachable_found"] = found
    return result


# --------------------------------------------------------------------------- the parent


def _env(config: str) -> dict[str, str] | None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("LD_PRELOAD", None)
    if config.endswith("-arena2"):
        env["MALLOC_ARENA_MAX"] = "2"
    for name, lib in ALLOCATORS.items():
        if config.endswith(f"-{name}"):
            path = next((p for p in (f"/usr/lib/x86_64-linux-gnu/{lib}", f"/usr/lib/aarch64-linux-gnu/{lib}",
                                     f"/usr/lib/{lib}") if os.path.exists(p)), None)
            if path is None:
                return None
            env["LD_PRELOAD"] = path
    return env


def run_config(config: str, args: argparse.Namespace) -> dict[str, Any]:
    """One configuration in a fresh subprocess."""
    if config == "cli":
        return run_cli(args)
    env = _env(config)
    if env is None:
        return {"config": config, "skipped": "allocator library not installed"}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", config, "--steps", str(args.steps),
           "--every", str(args.every)]
    if args.tracemalloc_diff:
        cmd += ["--trace-steps", args.trace_steps, "--top", str(args.top)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"config": config, "skipped": f"worker failed ({proc.returncode}): {proc.stderr.strip()[-400:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_cli(args: argparse.Namespace) -> dict[str, Any]:
    """The training command itself, its RSS polled from here at each epoch end (history.jsonl's lines)."""
    env = _env("cli")
    assert env is not None
    epochs = -(-args.steps // STEPS_PER_EPOCH)
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="memory_growth_cli_") as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "torchgan_lite.train", "--subset", "4096", "--epochs", str(epochs),
               "--no-progress", "--seed", "0", "--out", str(out)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seen = -1
        while proc.poll() is None:
            try:
                done = (out / "history.jsonl").read_text().count("\n")
            except OSError:
                done = 0
            if done != seen:
                try:
                    rows.append({"step": done * STEPS_PER_EPOCH, **proc_status(proc.pid),
                                 "seconds": time.perf_counter() - t0})
                except OSError:
                    break
                seen = done
            time.sleep(0.05)
        err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0 or len(rows) < 4:
        return {"config": "cli", "skipped": f"the command failed ({proc.returncode}): "
                f"{err.strip().splitlines()[-1] if err.strip() else ''}", "rows": rows}
    return {"config": "cli", "rows": rows}


def summarise(result: dict[str, Any], skip: int) -> dict[str, Any]:
    rows = result.get("rows", [])
    first = next((r for r in rows if r["step"] >= skip), None)
    return {
        "slopes_per_1000_steps": {k: slope(rows, k, skip) for k in SERIES if any(k in r for r in rows)},
        "at_skip": first,
        "last": rows[-1] if rows else None,
    }


def _fmt(v: float | None, width: int = 8, digits: int = 2) -> str:
    return f"{v:>{width}.{digits}f}" if v is not None else f"{'-':>{width}}"


def print_table(results: list[dict[str, Any]], skip: int) -> None:
    print(f"\nslopes per 1,000 steps, least squares over the samples from step {skip} on "
          "(MB = MiB; objects and blocks in thousands)")
    print(f"{'config':<20}{'RSS@skip':>9}{'RSS end':>9} | {'RSS':>7}{'anon':>7}{'file':>7}{'m.used':>8}"
          f"{'m.free':>8}{'pyblk k':>8}{'objs k':>8}{'tensors':>8}{'t.MB':>7}")
    for res in results:
        if "skipped" in res:
            print(f"{res['config']:<20}skipped: {res['skipped']}")
            continue
        s = summarise(res, skip)
        sl = s["slopes_per_1000_steps"]
        a, z = s["at_skip"] or {}, s["last"] or {}
        k = {key: (None if sl.get(key) is None else sl[key] / 1000) for key in ("py_blocks", "gc_objects")}
        print(f"{res['config']:<20}{_fmt(a.get('rss'), 9, 0)}{_fmt(z.get('rss'), 9, 0)} | "
              f"{_fmt(sl.get('rss'), 7)}{_fmt(sl.get('rss_anon'), 7)}{_fmt(sl.get('rss_file'), 7)}"
              f"{_fmt(sl.get('malloc_in_use'), 8)}{_fmt(sl.get('malloc_free'), 8)}{_fmt(k['py_blocks'], 8)}"
              f"{_fmt(k['gc_objects'], 8)}{_fmt(sl.get('tensors'), 8, 1)}{_fmt(sl.get('tensor_mb'), 7)}")


def print_trace(result: dict[str, Any], steps: str) -> None:
    found = result.get("unreachable_found", {})
    print(f"\ntracemalloc, {result['config']}: a full collection at each step found "
          + ", ".join(f"{n} unreachable objects at step {s}" for s, n in found.items()))
    for kind, what in (("raw", "as the process holds them (uncollected garbage included)"),
                       ("live", "after a full collection (live objects only)")):
        print(f"\nPython allocations that grew most from step {steps.replace(',', ' to ')}, {what}: "
              f"total {result.get(f'tracemalloc_{kind}_total_diff_kb', 0):+.1f} KiB")
        for s in result.get(f"tracemalloc_{kind}", []):
            print(f"{s['size_diff_kb']:+10.1f} KiB {s['count_diff']:+7d} blocks  "
                  f"{' <- '.join(reversed(s['where']))}")


def environment() -> dict[str, Any]:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "python": platform.python_version(), "glibc": " ".join(platform.libc_ver())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=3000, help="training steps per configuration (default: 3000)")
    p.add_argument("--every", type=int, default=100, help="steps between samples (default: 100)")
    p.add_argument("--skip", type=int, default=200, help="warm-up steps left out of the slopes (default: 200)")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of: {', '.join(CONFIGS)}")
    p.add_argument("--json", type=Path, help="also write the samples and slopes here")
    p.add_argument("--tracemalloc-diff", metavar="CONFIG",
                   help="run CONFIG under tracemalloc and print the sites that grew between --trace-steps")
    p.add_argument("--trace-steps", default="500,2500", help="the two steps of the diff (default: 500,2500)")
    p.add_argument("--top", type=int, default=15, help="sites shown by --tracemalloc-diff (default: 15)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        trace = None
        if "--trace-steps" in (argv if argv is not None else sys.argv):
            a, b = (int(x) for x in args.trace_steps.split(","))
            trace = (a, b)
        print(json.dumps(worker(args.worker, args.steps, args.every, trace, args.top)))
        return 0

    env = environment()
    print(f"{env['cpu']}, {env['cpu_capability']}, torch {env['torch']}, {env['glibc']}; "
          f"{args.steps} steps, a sample every {args.every}")
    if args.tracemalloc_diff:
        configs = [args.tracemalloc_diff]
    else:
        configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        p.error(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(CONFIGS)}")
    results = []
    for config in configs:
        t0 = time.perf_counter()
        res = run_config(config, args)
        res["wall_seconds"] = round(time.perf_counter() - t0, 1)
        results.append(res)
        s = summarise(res, args.skip)["slopes_per_1000_steps"] if "skipped" not in res else {}
        print(f"  {config}: {res['wall_seconds']} s"
              + (f", RSS {s['rss']:+.2f} MB per 1,000 steps" if s.get("rss") is not None else
                 f", {res.get('skipped', 'no slope')}"), flush=True)
    print_table(results, args.skip)
    if args.tracemalloc_diff and results and "skipped" not in results[0]:
        print_trace(results[0], args.trace_steps)
    if args.json:
        payload = {"environment": env, "steps": args.steps, "every": args.every, "skip": args.skip,
                   "results": [{**r, **({} if "skipped" in r else summarise(r, args.skip))} for r in results]}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
