"""torchrun + DistributedDataParallel on CPU (gloo): data slicing, summed metrics, equivalence
with one process, kill and resume, and a failing rank ending the job."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tools_util import needs_cxx, run_tool

from splitbrain import checkpoint as ckpt
from splitbrain.loaders import StepBatches, eval_loader
from splitbrain.metrics import ColorMetrics

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "tools" / "train.py"
# Split-brain without normalisation layers: per-rank BatchNorm statistics would differ from the
# whole batch's (SyncBatchNorm has no CPU kernel), so this is the setting where two processes
# must match one.
TINY = ["--task", "splitbrain", "model.norm=none", "data.crop=64", "data.val_crop=64",
        "data.train_length=16", "data.val_length=8", "optim.batch_size=4", "run.log_every=1",
        "run.image_every=100", "run.val_every=3", "run.ckpt_every=2", "run.device=cpu"]


def env():
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def torchrun(args, nproc=2, script=TRAIN, timeout=300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", str(script), *map(str, args)]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_all(proc)  # no worker left behind to slow the rest of the suite
        out, err = proc.communicate()
        raise AssertionError(f"torchrun ran past {timeout} s; its last output:\n"
                             f"{(out or '')[-2000:]}\n{(err or '')[-3000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def single(args):
    """The one-process reference, in this process (torch is imported already; the tests pin it
    to one thread, as the workers are): its exit code; what it said goes to pytest's capture."""
    code = run_tool("train", args)
    return subprocess.CompletedProcess(["tools/train.py", *map(str, args)], code, "",
                                       "(its output is in the captured stdout and stderr)")


def descendants(pid):
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def kill_all(proc):
    """SIGKILL a launcher and all its workers at once, as a crashed node would lose them."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def weights(path):
    return ckpt.load(path)["state_dict"]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference run of the equivalence tests: TINY for three steps in one process, with
    the whole batch (under run.sync_debug, which only watches, so every comparison can share
    it); trained once, in this process."""
    out = tmp_path_factory.mktemp("one_process")
    assert single([*TINY, "optim.iterations=3", "run.sync_debug=true",
                   f"run.out={out}"]).returncode == 0
    return out


def max_diff(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


# --- pieces -----------------------------------------------------------------------------------

def test_rank_slices_make_up_the_global_batch_with_the_same_seeds():
    whole = iter(StepBatches(20, 8, seed=3, start_step=2))
    parts = [iter(StepBatches(20, 8, seed=3, start_step=2, rank=r, world_size=4))
             for r in range(4)]
    for _ in range(5):  # crosses an epoch boundary
        assert next(whole) == [item for p in parts for item in next(p)]
    with pytest.raises(ValueError, match="does not split evenly over 3 processes"):
        StepBatches(20, 8, world_size=3)


def test_validation_shards_cover_the_same_items_once():
    data = list(range(23))
    one = [i for b in eval_loader(data, 4, max_batches=5) for i, _ in zip(b, b)]
    shards = [i for r in range(3)
              for b in eval_loader(data, 4, max_batches=5, rank=r, world_size=3)
              for i, _ in zip(b, b)]
    assert sorted(x.item() if torch.is_tensor(x) else x for x in shards) == \
        sorted(x.item() if torch.is_tensor(x) else x for x in one) == list(range(20))


def test_colour_metrics_summed_over_ranks_equal_one_pass_over_all_images():
    g = torch.Generator().manual_seed(0)
    pred, true = torch.randn(6, 2, 8, 8, generator=g) * 30, torch.randn(6, 2, 8, 8, generator=g) * 30
    L, w = torch.rand(6, 1, 8, 8, generator=g) * 100, torch.rand(6, 8, 8, generator=g)
    whole = ColorMetrics()
    whole.update(pred, true, L, w)
    halves = [ColorMetrics(), ColorMetrics()]
    for m, sl in zip(halves, (slice(0, 2), slice(2, 6))):
        m.update(pred[sl], true[sl], L[sl], w[sl])
    # A two-rank all-reduce, done by hand: rank 0's vector plus rank 1's.
    vectors = []
    halves[1].reduce(lambda t: vectors.append(t.clone()) or t)
    summed = halves[0].reduce(lambda t: t + vectors[0])
    got, ref = summed.compute(), whole.compute()
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-9), k


def test_a_difference_between_processes_names_each_value_with_its_ranks_and_hosts(monkeypatch):
    """Ten ranks faked in-process: node-a's eight (rank 0 among them) see 3 files, node-b's
    two see 4; each side is one entry, not rank 0 against a list of the others."""
    from splitbrain import distributed

    def gather(out, value, group=None):
        for r in range(10):
            out[r] = ("node-a" if r < 8 else "node-b", {"files": 3 if r < 8 else 4})
    monkeypatch.setattr(distributed, "_active", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 10)
    monkeypatch.setattr(distributed.dist, "all_gather_object", gather)
    with pytest.raises(ValueError) as err:
        distributed.check_same({"files": 3}, "data.train=/d", "Copy it again.")
    assert str(err.value) == ("data.train=/d: the processes differ. 8 ranks (0, 1, ...) on "
                              "node-a: files 3; ranks 8, 9 on node-b: files 4. Copy it again.")

    def peer_gone(out, value, group=None):
        raise RuntimeError("Connection closed by peer [10.0.0.2]:1234")
    monkeypatch.setattr(distributed.dist, "all_gather_object", peer_gone)
    with pytest.raises(ValueError, match="another process stopped before the processes could "
                                         "compare it .Connection closed by peer"):
        distributed.check_same({"files": 3}, "data.train=/d", "Copy it again.")


# --- torchrun ---------------------------------------------------------------------------------

PIECES = """
import json, os, sys, time
import torch
from splitbrain import distributed
from splitbrain.data_health import DataHealth

ctx = distributed.init("cpu")
r, out = ctx.rank, {}

# Stop votes: rank 1 alone wants to stop after step 3; both ranks leave after step 4.
vote = distributed.StopVote()
out["stop_step"] = next(step for step in range(1, 100) if vote(r == 1 and step >= 3))
vote.finish()

# Unreadable files: each rank marked the ones it read; both must count both.
class Marks:
    _paths = list(range(10))
    _unreadable = torch.zeros(10, dtype=torch.int8)
Marks._unreadable[r] = 2 + r  # rank 0: file 0 corrupt; rank 1: file 1 empty
health = DataHealth(Marks(), 0.15, log=lambda line: None)
try:
    health(1)
    out["health"] = "went on"
except Exception as err:
    out["health"] = type(err).__name__
out["counts"] = health.counts()

# Buffers: every rank ends with rank 0's.
bn = torch.nn.BatchNorm1d(3)
bn.running_mean.fill_(float(r + 1))
distributed.broadcast_buffers(bn)
out["running_mean"] = bn.running_mean.tolist()

# Keys logged on one rank only are summed on all.
out["keys"] = distributed.union_of_keys({"loss": 1.0} if r == 0 else {})

# In turns: rank 0 first, the others after it finished.
log = sys.argv[1]
def work():
    with open(log, "a") as f:
        f.write(f"start {r} {time.time()}\\n")
    time.sleep(0.5)
    with open(log, "a") as f:
        f.write(f"end {r} {time.time()}\\n")
    return r
out["in_turns"] = distributed.in_turns(work)

# The same data everywhere, or an error naming who differs: folder b has one photo more.
from splitbrain.data import ImageFiles, fingerprint
folders = sys.argv[2]
distributed.check_same(fingerprint(ImageFiles(os.path.join(folders, "a"))), "data.train",
                       "fix")
try:
    mine = ImageFiles(os.path.join(folders, "a" if r == 0 else "b"))
    distributed.check_same(fingerprint(mine), "data.train", "Copy the data again.")
    out["data"] = "went on"
except ValueError as err:
    out["data"] = str(err)
# One write (under 4 KiB, so the pipe takes it whole): print() writes piece by piece when
# unbuffered, and the two ranks' lines could interleave.
os.write(1, f"RESULT {r} {json.dumps(out)}\\n".encode())
distributed.close()
"""


def test_host_collectives_agree_across_ranks(tmp_path, write_photos):
    """Stop votes, unreadable-file marks, BatchNorm buffers, logged keys, downloads in turn and
    the data check, with two gloo processes."""
    script = tmp_path / "pieces.py"
    script.write_text(PIECES)
    write_photos(tmp_path / "data" / "a", n=3)
    write_photos(tmp_path / "data" / "b", n=4)
    run = torchrun([tmp_path / "turns.log", tmp_path / "data"], script=script, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    import json
    results = {int(line.split()[1]): json.loads(line.split(" ", 2)[2])
               for line in run.stdout.splitlines() if line.startswith("RESULT")}
    assert sorted(results) == [0, 1]
    for r, res in results.items():
        assert res["stop_step"] == 4, res  # the step after rank 1's vote, on both ranks
        # 2 of 10 files unreadable is above 0.15 on every rank: all stop together.
        assert res["health"] == "DataHealthError"
        assert res["counts"] == {"truncated or corrupt": 1, "empty file": 1}
        assert res["running_mean"] == [1.0, 1.0, 1.0]
        assert res["keys"] == ["loss"]
        assert res["in_turns"] == r
        # Both ranks stop, with one message naming each side.
        assert res["data"].startswith("data.train: the processes differ. Rank 0 on ")
        assert "files 3" in res["data"] and "rank 1 on " in res["data"]
        assert "files 4" in res["data"] and res["data"].endswith("Copy the data again.")
    events = sorted((float(t), kind, int(rank)) for kind, rank, t in
                    (line.split() for line in (tmp_path / "turns.log").read_text().splitlines()))
    assert [(kind, rank) for _, kind, rank in events][:2] == [("start", 0), ("end", 0)]



@needs_cxx
def test_two_compiled_processes_match_one_eager_process(tmp_path, one_process):
    # torch.compile around DistributedDataParallel (run.compile; not under the CPU's sync
    # watch, which cannot see compiled code): the same updates (measured 7e-7 here).
    compiled = torchrun([*TINY, "optim.iterations=3", "run.compile=true",
                         f"run.out={tmp_path / 'compiled'}"])
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    log = (tmp_path / "compiled" / "train.log").read_text()
    assert re.search(r"run.compile: [1-9]\d* graph\(s\) compiled", log), log[-2000:]
    assert max_diff(weights(tmp_path / "compiled" / "latest.pt"),
                    weights(one_process / "latest.pt")) < 1e-5


def test_a_killed_two_process_run_resumes_to_the_same_weights(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(TRAIN), *TINY, "optim.iterations=100000", "run.val_every=1000", f"run.out={out}"],
        env=env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while not (out / "latest.pt").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (out / "latest.pt").exists(), "no checkpoint was written"
    finally:
        kill_all(proc)  # torchrun and both workers, mid-run
    step = ckpt.load(out / "latest.pt")["step"]
    target = step + 3
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "latest.pt").write_bytes((out / "latest.pt").read_bytes())
    resumed = torchrun(["--task", "splitbrain", "--resume", f"run.out={out}",
                        f"optim.iterations={target}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = torchrun([*TINY, f"optim.iterations={target}", "run.val_every=1000",
                         f"run.out={tmp_path / 'straight'}"])
    assert straight.returncode == 0, straight.stderr[-3000:]
    a, b = weights(out / "latest.pt"), weights(tmp_path / "straight" / "latest.pt")
    assert all(torch.equal(a[k], b[k]) for k in a), (step, max_diff(a, b))
    # The same checkpoint resumed by one process sees the same global batches.
    one = single(["--task", "splitbrain", "--resume", f"run.out={tmp_path / 'one'}",
                  f"optim.iterations={target}"])
    assert one.returncode == 0, one.stderr[-3000:]
    assert max_diff(weights(tmp_path / "one" / "latest.pt"), b) < 1e-5


def worker_of_rank(launcher, rank):
    """The pid of the torchrun worker with ``rank`` (read from its environment)."""
    for pid in descendants(launcher.pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"TORCHELASTIC_RUN_ID=" in b" ".join(environ):
            return pid
    return None


def test_a_stop_signal_to_one_rank_stops_every_rank_at_once_and_rank_0_saves(tmp_path):
    """As when one node of several is preempted: torchrun forwards SIGTERM to that node's
    workers only, and kills them 30 s later. Every rank leaves the loop one step later (not
    at the next logging step, here never), rank 0 saves and says how to resume."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(TRAIN), *TINY, "optim.iterations=100000", "run.log_every=100000",
         "run.val_every=100000", f"run.out={out}"],
        env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not (out / "latest.pt").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (out / "latest.pt").exists(), "no checkpoint was written"
        pid = worker_of_rank(proc, 1)
        assert pid is not None
        signalled = time.time()
        os.kill(pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            kill_all(proc)
    assert time.time() - signalled < 30, "not within torchrun's 30 s grace period"
    assert proc.returncode != 0  # stopped, not finished
    lines = (out / "train.log").read_text()
    assert "a stop signal on another process: stopped at step" in lines, lines[-2000:]
    assert f"--resume run.out={out}" in lines
    step = int(lines.split("stopped at step ")[1].split()[0])
    assert ckpt.load(out / "latest.pt")["step"] == step


def test_a_restart_with_the_same_command_line_continues_the_run(tmp_path):
    """A worker is lost mid-run and the job is started again with the very same command line
    (what torchrun --max-restarts and a requeued cluster job do): with --auto-resume it
    continues from latest.pt and ends where one uninterrupted process ends. One validation
    image for two processes: rank 1's shard is empty, and the sums still match one process's."""
    wrapper = tmp_path / "crash_once.py"
    marker = tmp_path / "crashed"
    wrapper.write_text(
        "import importlib.util, os, sys\n"
        f"spec = importlib.util.spec_from_file_location('train', {str(TRAIN)!r})\n"
        "train = importlib.util.module_from_spec(spec); spec.loader.exec_module(train)\n"
        "from splitbrain import engine\n"
        "real, calls = engine.train_step, [0]\n"
        "def crash_once(*args, **kwargs):\n"
        "    calls[0] += 1\n"
        f"    first = not os.path.exists({str(marker)!r})\n"
        "    if os.environ['RANK'] == '1' and calls[0] == 5 and first:\n"
        f"        open({str(marker)!r}, 'w').close()\n"
        "        os._exit(9)  # a worker lost mid-run, after the checkpoint of step 4\n"
        "    return real(*args, **kwargs)\n"
        "engine.train_step = crash_once\n"
        "train.main(sys.argv[1:])\n")
    args = [*TINY, "data.val_length=1", "optim.iterations=7", "run.val_every=1000",
            "run.ckpt_every=4"]  # validation at the last step only
    command = ["--auto-resume", *args, f"run.out={tmp_path / 'restarted'}"]
    first = torchrun(command, script=wrapper, timeout=200)
    assert first.returncode != 0 and marker.exists()  # the lost worker ended the job
    assert ckpt.load(tmp_path / "restarted" / "latest.pt")["step"] == 4
    again = torchrun(command, script=wrapper, timeout=200)
    assert again.returncode == 0, again.stderr[-3000:]
    log = (tmp_path / "restarted" / "train.log").read_text()
    assert "resumed from" in log and "at step 4" in log
    one = single([*args, f"run.out={tmp_path / 'one'}"])
    assert one.returncode == 0, one.stderr[-3000:]
    assert ckpt.load(tmp_path / "restarted" / "latest.pt")["step"] == 7
    assert max_diff(weights(tmp_path / "restarted" / "latest.pt"),
                    weights(tmp_path / "one" / "latest.pt")) < 1e-5

    def val_loss(run_dir):
        line = next(x for x in (run_dir / "train.log").read_text().splitlines()
                    if "step 7 validation:" in x)
        return float(line.split(" loss=")[1].split()[0])
    assert val_loss(tmp_path / "restarted") == pytest.approx(val_loss(tmp_path / "one"),
                                                            rel=1e-3)


@pytest.mark.parametrize("error", ["RuntimeError", "HostSyncError"])
def test_an_error_on_one_rank_ends_the_job_with_its_message(tmp_path, error):
    """An unexpected error (its traceback), or one the tool reports as a message: either way
    the failing rank's words reach the user, not only rank 0's."""
    wrapper = tmp_path / "failing_rank.py"
    wrapper.write_text(
        "import importlib.util, os, sys\n"
        f"spec = importlib.util.spec_from_file_location('train', {str(TRAIN)!r})\n"
        "train = importlib.util.module_from_spec(spec); spec.loader.exec_module(train)\n"
        "from splitbrain import engine\n"
        "from splitbrain.hostsync import HostSyncError\n"
        "real = engine.train_step\n"
        "def failing(*args, **kwargs):\n"
        "    if os.environ['RANK'] == '1':\n"
        f"        raise {error}('injected failure on rank 1')\n"
        "    return real(*args, **kwargs)\n"
        "engine.train_step = failing\n"
        "train.main(sys.argv[1:])\n")
    start = time.time()
    run = torchrun([*TINY, "optim.iterations=50", f"run.out={tmp_path / 'run'}"],
                   script=wrapper, timeout=200)
    assert run.returncode != 0
    assert "injected failure on rank 1" in run.stderr
    assert time.time() - start < 120  # ended, not hung until a collective's timeout


def test_probe_runs_under_torchrun_with_one_set_of_results(tmp_path):
    args = ["--init", "random", "--arch", "alexnet_colorization_small", "--layer", "conv2,conv5",
            "data.crop=64", "data.train_length=32", "data.val_length=14", "optim.batch_size=16",
            "optim.iterations=4", "optim.lr_steps=[2]", "run.log_every=1", "run.device=cpu"]
    two = torchrun([*args, "--out", tmp_path / "two"], script=ROOT / "tools" / "probe.py")
    assert two.returncode == 0, two.stderr[-3000:]
    import json
    results = json.loads((tmp_path / "two" / "results.json").read_text())
    assert results["world_size"] == 2 and list(results["layers"]) == ["conv2", "conv5"]
    for r in results["layers"].values():
        # Accuracies are counts over all 14 validation crops, summed over the two shards.
        assert 0 <= r["top1"] <= r["top5"] <= 100
        assert abs(r["top1"] * 14 / 100 - round(r["top1"] * 14 / 100)) < 1e-6
    assert two.stdout.count("done: heads.pt, results.csv") == 1  # rank 0 alone reports
    refused = torchrun([*args, "probe.solver=sklearn", "--out", tmp_path / "sk"],
                       script=ROOT / "tools" / "probe.py")
    assert refused.returncode != 0 and "without torchrun" in refused.stderr


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_through_rendezvous_match_one_process_with_the_whole_batch(tmp_path,
                                                                            one_process):
    """Multi-node launch as README shows it (c10d rendezvous), with two 'nodes' on this host:
    two torchrun agents of one process each, half the batch each, train as one process with the
    whole batch; validated on two shards, summed; rank 0 alone writes. Under run.sync_debug, as
    the reference: the steps stay free of host reads under DDP too (the other torchrun tests
    run without it)."""
    port = free_port()
    out = tmp_path / "nodes"
    args = [*TINY, "optim.iterations=3", "run.sync_debug=true", f"run.out={out}"]
    agents = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
         "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=splitbrain-test",
         str(TRAIN), *args],
        env=env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)]
    try:
        results = [agent.communicate(timeout=300) for agent in agents]
    finally:
        for agent in agents:
            if agent.poll() is None:
                kill_all(agent)
    for agent, (_, err) in zip(agents, results):
        assert agent.returncode == 0, err[-3000:]
    # The same updates up to float rounding (sums in another order, then three Adam steps).
    assert max_diff(weights(out / "latest.pt"), weights(one_process / "latest.pt")) < 1e-5
    # Validation on two shards, summed, equals validation in one process.
    m2 = ckpt.load(out / "best.pt")["metrics"]
    m1 = ckpt.load(one_process / "best.pt")["metrics"]
    for key in ("val/loss", "val/loss_l2ab", "val/model/auc", "val/grey/auc", "val/model/psnr"):
        assert m2[key] == pytest.approx(m1[key], abs=1e-4), key
    config = ckpt.load(out / "latest.pt")["config"]
    assert config["run"]["world_size"] == 2 and config["optim"]["batch_size"] == 4
    # Rank 0 alone writes: one log, one events file.
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    assert "x 2 process(es)" in (out / "train.log").read_text()


def test_the_hints_task_trains_under_torchrun(tmp_path):
    """User-hint training (four input channels, ab plus a distribution out) with two processes:
    each rank draws its own hints (tests/test_hints.py), rank 0 saves one hints checkpoint."""
    hints = ["--task", "hints", "data.crop=32", "data.val_crop=32", "data.train_length=16",
             "data.val_length=8", "optim.batch_size=4", "color.prior_images=8",
             "optim.iterations=3", "run.val_every=3", "run.log_every=1", "run.device=cpu",
             f"run.out={tmp_path / 'hints'}"]
    run = torchrun(hints)
    assert run.returncode == 0, run.stderr[-3000:]
    state = ckpt.load(tmp_path / "hints" / "latest.pt", task="hints")
    assert state["step"] == 3 and state["config"]["run"]["world_size"] == 2
    log = (tmp_path / "hints" / "train.log").read_text()
    assert "x 2 process(es)" in log and "step 3 validation:" in log and "hint_pixels=" in log
