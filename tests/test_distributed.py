"""Training with two processes on the CPU (gloo), as users launch it: the same update as one process
with the whole batch, identical state in every process, every pair once per epoch, one stop
decision, no process left waiting; two-node runs under torchrun and SLURM; a killed run resumes.

Starting processes is slow (each imports torch), so the in-process checks share one launch of
tests/multiprocess_checks.py, and the command-line checks one sequence of runs; every launch has a
timeout, so a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from multiprocess_checks import METHODS, run_steps
from sempairs.trained.loading import load_method
from sempairs.train.loop import HISTORY as HISTORY_FILE

HERE = Path(__file__).resolve().parent
TIMEOUT = 600  # seconds for one launch; far above what it takes, far below a hang's 30-minute gloo timeout


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE"))}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent), **extra}  # 1 thread: the same sums in every launch


def _start(cmd: list[str], log: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=_env(**env), start_new_session=True)


def _finish(*procs: subprocess.Popen, logs: list[Path]) -> list[int]:
    """Wait for the processes (each a process group); on timeout kill them and fail with their output."""
    deadline = time.monotonic() + TIMEOUT
    try:
        return [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("a launch hung:\n" + "\n".join(log.read_text()[-3000:] for log in logs))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- one launch of multiprocess_checks.py


@pytest.fixture(scope="module")
def checks(tiny_cifar_zip, tmp_path_factory):
    """Run tests/multiprocess_checks.py as 2 processes; its output folder and its console output."""
    out = tmp_path_factory.mktemp("multiprocess")
    log = out / "console.txt"
    cache = out / "cache"
    proc = _start([sys.executable, str(HERE / "multiprocess_checks.py"), str(out / "results"), str(tiny_cifar_zip)], log,
                  SEMPAIRS_CACHE=str(cache))
    _finish(proc, logs=[log])
    return out / "results", log.read_text()


def _rows_match(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` hold the same rows (queues hold a batch's keys in another order)."""
    distance = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
    return a.shape == b.shape and bool((distance.min(dim=1).values < 1e-9).all() and (distance.min(dim=0).values < 1e-9).all())


QUEUES = ("queue",)  # buffers that hold a batch in the order its rows were gathered


@pytest.mark.parametrize("name", METHODS)
def test_two_processes_reach_the_parameters_of_one_process_with_the_whole_batch(checks, name):
    results, _ = checks
    two = [torch.load(results / f"{name}.rank{r}.pt") for r in (0, 1)]
    one = run_steps(name, devices=1)  # the reference: one process, batch 2B, plain BatchNorm
    assert one.keys() == two[0].keys() == two[1].keys()
    for key, ref in one.items():
        assert torch.equal(two[0][key], two[1][key]), f"{key} differs between the processes"
        if key.endswith(QUEUES):
            assert _rows_match(ref, two[0][key]), key
        elif ref.is_floating_point():
            torch.testing.assert_close(two[0][key], ref, rtol=1e-9, atol=1e-11, msg=key)
        else:
            assert torch.equal(two[0][key], ref), key


def test_every_pair_is_trained_on_once_per_epoch_across_the_processes(checks):
    results, _ = checks
    orders = [torch.load(results / f"orders.rank{r}.pt") for r in (0, 1)]
    assert len(orders[0]) == len(orders[1]) == 2  # epochs
    for epoch in range(2):
        rank0, rank1 = orders[0][epoch], orders[1][epoch]
        assert rank0.shape == rank1.shape == (2, 10)  # 40 pairs, global batch 20, 10 per process
        both = torch.cat([rank0.flatten(), rank1.flatten()])
        assert sorted(both.tolist()) == list(range(40))
    assert not torch.equal(orders[0][0], orders[0][1])  # a new draw each epoch


def test_a_nan_on_one_process_stops_every_process_with_the_same_message(checks):
    results, _ = checks
    outcomes = [(results / f"nan.rank{r}.txt").read_text() for r in (0, 1)]
    assert outcomes[0].startswith("TrainingStopped rank=0: the loss became nan in epoch 1")
    assert outcomes[1] == outcomes[0].replace("rank=0", "rank=1")


def test_a_collapse_on_one_process_stops_every_process_at_the_same_step_with_the_same_message(checks):
    results, _ = checks
    outcomes = [(results / f"collapse.rank{r}.txt").read_text() for r in (0, 1)]
    assert outcomes[0].startswith("TrainingStopped rank=0 step=3: the representation collapsed in epoch 2 "
                                  "(embedding spread 0.5000 < train.collapse_std=0.75)"), outcomes[0]
    assert f"The last good checkpoint is {results / 'collapse' / 'last.ckpt'}." in outcomes[0]  # written after epoch 1
    assert outcomes[1] == outcomes[0].replace("rank=0", "rank=1")


# --------------------------------------------------------------------------- the command line


def _train_args(zip_path: Path, out: Path, name: str, *extra: str) -> list[str]:
    """``sempairs train`` on 40 pairs, batch 20, 4 epochs of 2 steps, a backbone quick to set up and step."""
    return ["-m", "sempairs.cli", "train", f"data.dataset={zip_path}", "data.size=16", "data.test_split=null",
            f"out_dir={out}", f"name={name}", "pairs.source=labels", "pairs.per_class=4", "backbone.name=vit_tiny",
            "train.batch_size=20", "train.epochs=4", "train.log_every=1", "train.checkpoint_every=1",
            "optim.warmup_epochs=0", "train.accelerator=cpu", "train.strategy=ddp", *extra]


def _history(run: Path) -> list[dict]:
    return list(csv.DictReader(open(run / "history.csv")))


def test_two_nodes_under_torchrun_and_slurm_and_a_killed_two_process_run_resume(tiny_cifar_zip, tmp_path):
    two_nodes = ["train.num_nodes=2", "train.devices=1"]
    logs = [tmp_path / f"{n}.log" for n in ("torchrun0", "torchrun1")]
    port = _free_port()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                "--master-addr=127.0.0.1", f"--master-port={port}"]
    nodes = [_start([*torchrun, f"--node-rank={node}", *_train_args(tiny_cifar_zip, tmp_path, "nodes", *two_nodes)], log)
             for node, log in zip((0, 1), logs)]
    assert _finish(*nodes, logs=logs) == [0, 0], logs[0].read_text()[-3000:]
    assert [int(r["epoch"]) for r in _history(tmp_path / "nodes")] == [1, 2, 3, 4]

    # one machine, 2 processes from Lightning's launcher, killed (the whole process group) after its first checkpoint
    killed_log = tmp_path / "killed.log"
    killed = _start([sys.executable, *_train_args(tiny_cifar_zip, tmp_path, "devices", "train.devices=2")], killed_log)
    last = tmp_path / "devices" / "last.ckpt"
    while not last.exists() and killed.poll() is None:
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    saved_epoch = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert saved_epoch < 4, "the run finished before it could be killed"
    resume_log = tmp_path / "resume.log"
    resumed = _start([sys.executable, *_train_args(tiny_cifar_zip, tmp_path, "devices", "train.devices=2"), "--resume"],
                     resume_log)
    assert _finish(resumed, logs=[resume_log]) == [0], resume_log.read_text()[-3000:]
    assert f"resuming {tmp_path / 'devices'} after epoch {saved_epoch}" in resume_log.read_text()
    a, _ = load_method(tmp_path / "nodes")
    b, _ = load_method(tmp_path / "devices")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), f"{name}: the resumed 2-process run differs from the 2-node run"
    assert [r["loss"] for r in _history(tmp_path / "devices")] == [r["loss"] for r in _history(tmp_path / "nodes")]

    # the 2-node run continued for a 5th epoch, launched as SLURM's srun would (two tasks on two nodes)
    port = _free_port()
    logs = [tmp_path / f"slurm{r}.log" for r in (0, 1)]
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "2", "SLURM_LOCALID": "0",
             "SLURM_JOB_NAME": "sempairs", "SLURM_JOB_ID": "4242", "SLURM_NODELIST": "127.0.0.1", "MASTER_PORT": str(port)}
    tasks = [_start([sys.executable, *_train_args(tiny_cifar_zip, tmp_path, "nodes", *two_nodes, "train.epochs=5"), "--resume"],
                    log, **slurm, SLURM_PROCID=str(r), SLURM_NODEID=str(r)) for r, log in zip((0, 1), logs)]
    assert _finish(*tasks, logs=logs) == [0, 0], logs[0].read_text()[-3000:]
    assert [int(r["epoch"]) for r in _history(tmp_path / "nodes")] == [1, 2, 3, 4, 5]
    assert (tmp_path / "nodes" / "logs" / "resume-1").is_dir()


def test_an_error_in_process_zero_alone_ends_the_other_process_and_is_reported_once(tiny_cifar_zip, tmp_path):
    # process 0 writes history.csv after each epoch; a folder in its place makes that fail there only, while
    # process 1 goes on to its next step and waits for process 0 in the gradient all-reduce
    (tmp_path / "fails" / "history.csv").mkdir(parents=True)
    log = tmp_path / "fails.log"
    started = time.monotonic()
    proc = _start([sys.executable, *_train_args(tiny_cifar_zip, tmp_path, "fails", "train.devices=2")], log)
    assert _finish(proc, logs=[log]) != [0]
    assert time.monotonic() - started < TIMEOUT
    output = log.read_text()
    assert sum("history.csv" in line for line in output.splitlines()) == 1, output[-3000:]  # one error, not one per process
    assert "Connection closed by peer" not in output  # process 1 was ended, it did not fail on its own


# started by Python in every process (PYTHONPATH): in process 1 alone (LOCAL_RANK=1, set by Lightning's launcher for
# the process it starts), ACTION runs in its 3rd optimiser step
IN_PROCESS_ONE = """
import os
if os.environ.get("LOCAL_RANK") == "1":
    import signal
    from sempairs.errors import InputError
    from sempairs.train import loop

    original, calls = loop.optimizer_step, []

    def step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            ACTION
        return original(*args, **kwargs)

    loop.optimizer_step = step
"""
# the first step of epoch 2 raises in process 1, while process 0 goes on and waits for it in the all-reduce
FAIL_IN_PROCESS_ONE = IN_PROCESS_ONE.replace("ACTION", 'raise InputError("injected failure in process 1")')


def _live_processes(group: int) -> list[str]:
    """The processes of process group ``group`` that still run (zombies excluded), as ``pid state``."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            alive.append(f"{stat.parent.name} {fields[0]}")
    return alive


def test_an_error_in_process_one_alone_ends_both_processes_and_is_reported_once(tiny_cifar_zip, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAIL_IN_PROCESS_ONE)
    log = tmp_path / "fails.log"
    started = time.monotonic()
    proc = _start([sys.executable, *_train_args(tiny_cifar_zip, tmp_path, "fails", "train.devices=2")], log,
                  PYTHONPATH=f"{hook}{os.pathsep}{HERE.parent}")
    codes = _finish(proc, logs=[log])
    deadline = time.monotonic() + 30  # process 1 is process 0's child: it may end a moment after it
    while _live_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _live_processes(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    output = log.read_text()
    assert not left, f"processes left running: {left}\n{output[-3000:]}"
    assert codes != [0], output[-3000:]
    assert time.monotonic() - started < TIMEOUT
    assert (tmp_path / "fails" / HISTORY_FILE).exists()  # epoch 1 finished: the failure came mid-run
    assert sum("injected failure in process 1" in line for line in output.splitlines()) == 1, output[-3000:]
    assert "Connection closed by peer" not in output, output[-3000:]  # process 0 did not fail on its own
    assert "Traceback" not in output, output[-3000:]  # a user error: one line, no traceback from either process


def test_sync_batchnorm_setting_converts_the_layers_which_compute_plain_batchnorm_in_one_process():
    from lightning.fabric import Fabric

    from sempairs.config import load_config
    from sempairs.train.distributed import CPUSyncBatchNorm
    from sempairs.train.loop import setup_model

    fabric = Fabric(accelerator="cpu", devices=1)
    for setting, converted in (("null", False), ("true", True), ("false", False)):  # null: on with several processes
        cfg = load_config(None, ["data.size=16", "backbone.small_stem=false", "method.proj_hidden_dim=32",
                                 "method.proj_dim=8", "train.accelerator=cpu", f"train.sync_batchnorm={setting}"])
        torch.manual_seed(0)
        method, model, _ = setup_model(fabric, cfg)
        layers = [m for m in method.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert layers and all(isinstance(m, CPUSyncBatchNorm) == converted for m in layers)
        x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        out = model(x, x.flip(0)).loss  # one process: the converted layers compute plain BatchNorm
        if setting == "null":
            plain = out
        else:
            torch.testing.assert_close(out, plain)


def test_two_processes_on_an_empty_cache_decode_the_dataset_once_and_leave_whole_entries(checks, monkeypatch):
    """The launch starts on an empty cache: process 0 of the node decodes, process 1 waits and reads the entry."""
    from sempairs.data import cache

    results, console = checks
    assert console.count("decoding ") == 1, console[-3000:]
    assert (results / "orders.rank0.pt").exists() and (results / "orders.rank1.pt").exists()  # both trained
    monkeypatch.setenv("SEMPAIRS_CACHE", str(results.parent / "cache"))
    entries = sorted(cache.stores_dir().glob("*.json"))
    assert entries
    for meta in entries:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert cache.load_store(meta.stem) is not None  # size and checksum match


# process 1 alone receives SIGUSR1 while it runs its 3rd step; process 0 does not, and must stop after the same step
SIGNAL_PROCESS_ONE = IN_PROCESS_ONE.replace("ACTION", "os.kill(os.getpid(), signal.SIGUSR1)")


def test_a_two_process_run_preempted_on_one_process_stops_both_and_resumes_auto_bit_for_bit(tiny_cifar_zip, tmp_path):
    from sempairs.trained.checkpoint import read_checkpoint

    def launch(name: str, *extra: str, **env: str) -> tuple[int, str]:  # 40 pairs, batch 10: 2 epochs of 4 steps
        log = tmp_path / f"{name}-{len(list(tmp_path.glob('*.log')))}.log"
        proc = _start([sys.executable, *_train_args(tiny_cifar_zip, tmp_path, name, "train.devices=2", "train.batch_size=10",
                                                    "train.epochs=2", *extra)], log, **env)
        return _finish(proc, logs=[log])[0], log.read_text()

    code, output = launch("whole", "--resume", "auto")  # an empty folder: --resume auto starts
    assert code == 0, output[-3000:]
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SIGNAL_PROCESS_ONE)
    code, output = launch("cut", PYTHONPATH=f"{hook}{os.pathsep}{HERE.parent}")
    assert code == 75, output[-3000:]
    assert output.count("preempted by") == 1 and "--resume auto" in output, output[-3000:]  # reported once, by process 0
    run = tmp_path / "cut"
    assert sorted(p.name for p in run.glob("*.ckpt")) == ["last.ckpt"]
    saved = read_checkpoint(run / "last.ckpt")
    assert saved["preempted"] and (saved["epoch"], saved["step"], saved["position"]["step"]) == (0, 3, 3)
    assert saved["position"]["generators"].shape[0] == 2  # each process's augmentation generator
    code, output = launch("cut", "--resume", "auto")
    assert code == 0, output[-3000:]
    assert f"resuming {run} after epoch 0, step 3 of epoch 1" in output
    assert [r["loss"] for r in _history(run)] == [r["loss"] for r in _history(tmp_path / "whole")]
    a, _ = load_method(tmp_path / "whole")
    b, _ = load_method(run)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), f"{name}: the preempted and resumed run differs from the uninterrupted one"
