"""Data-parallel training under mpirun (bptt.training.distributed).

N ranks with a global batch B end with the parameters one process with batch B
ends with (float64: relative 1e-10; float32: 1e-5), for a language model with
TBPTT, dropout, weight dropout and clipping, tagging (word dropout) and classification (a last batch with
fewer rows than ranks); two runs with the same N are bitwise identical; a rank
killed with SIGKILL ends the job with a non-zero exit and a line naming the
rank, and --resume (under 2 ranks, or under 1 process) finishes with the
uninterrupted run's weights. Dataset-task evaluation is sharded: every
evaluation record equals one process's (float64: relative 1e-10), and each
rank evaluates only its batches (checked without MPI, the ranks simulated in
turn). The tests start mpirun (the `mpi` extra's Open MPI), as root too, with
more ranks than cores; they never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bptt.cli import main
from bptt.training import checkpoint, distributed

ROOT = Path(__file__).resolve().parents[1]
EX = ROOT / "examples"
DRIVER = Path(__file__).with_name("mpi_driver.py")

# SGD with momentum: a gradient off by a factor shows (Adam would hide it); --clip-norm 0.5 clips
# some updates and not others (the norms are 0.3 to 0.5), so clipping must see the summed gradient
SGD = ["--optimizer", "momentum", "--lr", "0.1"]
LM = [
    "--hidden-size",
    "8",
    "--embedding-size",
    "4",
    "--num-layers",
    "2",
    "--dropout",
    "0.3",
    "--weight-dropout",
    "0.2",
    *SGD,
    "--clip-norm",
    "0.5",
]
LM += ["--seq-length", "5", "--backprop-steps", "8", "--batch-size", "8", "--eval-every", "7", "--samples", "0"]
TAG = ["--task", "tag", "--data", EX / "tag-dev.conllu", "--features", "suffix", "--word-dropout", "0.1"]
TAG += ["--valid", EX / "tag-dev.conllu"]  # 100 sentences: 2 evaluation batches (64 and 36)
TAG += [*SGD, "--hidden-size", "6", "--embedding-size", "4", "--batch-size", "8", "--max-epochs", "2"]
CLASSIFY = ["--task", "classify", "--hidden-size", "6", "--embedding-size", "4", "--num-layers", "2"]
CLASSIFY += [*SGD, "--dropout", "0.2", "--pooling", "mean", "--batch-size", "8", "--max-epochs", "4"]


def mpirun_command() -> list[str]:
    """mpirun from the environment the tests run in (the `mpi` extra puts it next to python)."""
    exe = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or shutil.which("mpirun")
    assert exe, "mpirun not found: pip install -e '.[mpi]' (Open MPI from PyPI)"
    return [exe, "--oversubscribe"]  # more ranks than cores


def mpi_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    # Open MPI refuses root unless told twice; containers often run the tests as root
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
    env["OMPI_MCA_mpi_yield_when_idle"] = "1"  # ranks waiting in a collective give up the core: more ranks than cores
    env.update(OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for name in distributed.LAUNCHER_VARS:  # a test session itself started by mpirun
        env.pop(name, None)
    return env


def mpirun(n: int, steps: list, tmp_path: Path, name: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the driver's steps on n ranks (tests/mpi_driver.py)."""
    script = tmp_path / f"{name}.json"
    script.write_text(json.dumps([[str(a) for a in step] for step in steps]))
    return subprocess.run(
        [*mpirun_command(), "-n", str(n), sys.executable, str(DRIVER), str(script)],
        cwd=tmp_path,
        env=mpi_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def corpus(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    words = "the a cat dog sat on mat and ran far".split()
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(rng.choice(words, 8)) for _ in range(60)) + "\n")
    return path


def sentences(tmp_path: Path, n: int = 42, name: str = "sentences", seed: int = 1) -> Path:
    """n labelled sentences: with --batch-size 8 the last batch of 42 has 2 rows, fewer than 4 ranks;
    150 make 3 evaluation batches (64, 64 and 22 rows), so one of 4 ranks evaluates none."""
    rng = np.random.default_rng(seed)
    words = "good bad film plot not very dull fine".split()
    rows = [f"{' '.join(rng.choice(words, int(rng.integers(2, 9))))}\t{i % 2}" for i in range(n)]
    path = tmp_path / f"{name}.tsv"
    path.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return path


def runs(tmp_path: Path) -> dict[str, list]:
    """The `bptt train` command lines compared, by run name (without --out)."""
    lm = ["train", "--data", corpus(tmp_path), *LM, "--max-epochs", "0.5"]
    classify = ["train", *CLASSIFY, "--data", sentences(tmp_path), "--valid", sentences(tmp_path, 150, "valid", seed=2)]
    out = {}
    for dtype in ("float64", "float32"):
        out[f"lm-{dtype}"] = [*lm, "--dtype", dtype]
        out[f"tag-{dtype}"] = ["train", *TAG, "--dtype", dtype]
        out[f"classify-{dtype}"] = [*classify, "--dtype", dtype]
    return out


def weights(run_dir: Path) -> dict[str, np.ndarray]:
    return checkpoint.load(run_dir).params


def relative_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max() / max(np.abs(a[k]).max(), 1e-30)) for k in a)


def evaluations(run_dir: Path) -> list[dict]:
    """The step and the validation metrics of each line of metrics.jsonl."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k == "step" or k.startswith("valid_")} for r in lines]


def same_evaluations(got: list[dict], expected: list[dict], tolerance: float) -> None:
    assert [r.keys() for r in got] == [r.keys() for r in expected] and len(expected) > 1
    for a, b in zip(got, expected):
        assert len(b) > 2, b  # the loss and at least one metric
        for k in b:
            assert a[k] == pytest.approx(b[k], rel=tolerance, abs=1e-300), (k, a, b)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict[str, dict]:
    """Each run in this process (one process, no MPI): name -> final weights; the run directories
    are in single["dirs"]."""
    tmp = tmp_path_factory.mktemp("single")
    out = {}
    for name, argv in runs(tmp).items():
        assert main([str(a) for a in [*argv, "--out", tmp / name]]) == 0, name
        out[name] = weights(tmp / name)
    return {"weights": out, "dirs": {name: tmp / name for name in out}}


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 4])
def test_n_ranks_end_with_the_weights_of_one_process(tmp_path, single, n):
    steps = [["bptt", *argv, "--out", tmp_path / name] for name, argv in runs(tmp_path).items()]
    again = ["bptt", *runs(tmp_path)["lm-float64"], "--out", tmp_path / "lm-float64-again"]
    steps += [again, [*again, "--overwrite"]]  # every rank deletes the old run's files
    done = mpirun(n, steps, tmp_path, "equivalence")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("stopped after") == len(steps)  # rank 0 alone prints
    for name, expected in single["weights"].items():
        tolerance = 1e-10 if name.endswith("float64") else 1e-5
        assert relative_difference(weights(tmp_path / name), expected) < tolerance, name
        assert checkpoint.load(tmp_path / name).train_state["ranks"] == n
    # the validation sets evaluated in shards and reduced: the one-process numbers (loss, accuracy,
    # macro F1, ROC AUC), every evaluation of the run
    for name in ("tag-float64", "classify-float64"):
        same_evaluations(evaluations(tmp_path / name), evaluations(single["dirs"][name]), 1e-10)
    again, first = weights(tmp_path / "lm-float64-again"), weights(tmp_path / "lm-float64")
    for k in first:
        np.testing.assert_array_equal(again[k], first[k], err_msg=k)
    lines = [json.loads(line) for line in (tmp_path / "lm-float64" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [7, 14, 21, 22]  # one line per evaluation: rank 0 wrote it
    assert 0 < sum(r["clipped"] for r in lines) < 22  # some updates clipped, by the summed gradient's norm


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_and_resume_finishes_exactly(tmp_path):
    lm = ["train", "--data", corpus(tmp_path), *LM, "--max-epochs", "3", "--dtype", "float64"]
    killed = tmp_path / "killed"
    done = mpirun(2, [["kill-after", killed, 1], ["bptt", *lm, "--out", killed]], tmp_path, "kill", timeout=120)
    assert done.returncode != 0
    assert "rank 1" in done.stdout + done.stderr and "signal 9" in done.stdout + done.stderr
    step = checkpoint.load(killed).train_state["progress"]["step"]
    assert 0 < step < 132
    shutil.copytree(killed, tmp_path / "killed-copy")
    done = mpirun(
        2, [["bptt", *lm, "--out", tmp_path / "straight"], ["bptt", "train", "--resume", killed]], tmp_path, "resume"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming {killed} at step {step}" in done.stdout
    straight = weights(tmp_path / "straight")
    resumed = weights(killed)
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
    # the same checkpoint resumed by one process: the data layout depends on the global batch only
    assert main(["train", "--resume", str(tmp_path / "killed-copy")]) == 0
    assert relative_difference(weights(tmp_path / "killed-copy"), straight) < 1e-10


@pytest.mark.slow
def test_diverged_ranks_and_a_batch_that_does_not_divide_stop_with_one_line(tmp_path):
    done = mpirun(
        2,
        [["guard"], ["bptt", "train", "--data", corpus(tmp_path), *LM, "--batch-size", "7", "--out", tmp_path / "x"]],
        tmp_path,
        "guard",
    )
    assert done.returncode != 0
    out = done.stdout.splitlines()
    for rank in (0, 1):
        assert any(line.startswith(f"rank {rank}: the 2 MPI ranks") and "rnn0.W differs" in line for line in out)
    assert (
        "bptt: error: --batch-size 7: the global batch is split over 2 MPI ranks, so it must divide by 2; use 6 or 8"
        in done.stderr
    )
    assert not (tmp_path / "x").exists()


# ---- without mpirun ------------------------------------------------------------


def test_without_a_launcher_nothing_imports_mpi(tmp_path):
    code = (
        "import sys; from bptt.cli import main; "
        f"assert main(['train', '--data', {str(corpus(tmp_path))!r}, '--hidden-size', '4', '--embedding-size', '2', "
        f"'--max-epochs', '0.1', '--samples', '0', '--out', {str(tmp_path / 'r')!r}]) == 0; "
        "assert 'mpi4py' not in sys.modules, 'mpi4py imported'"
    )
    env = {k: v for k, v in mpi_env().items() if k not in distributed.LAUNCHER_VARS}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert checkpoint.load(tmp_path / "r").train_state["ranks"] == 1


def test_the_share_of_a_rank_makes_the_sum_the_global_gradient():
    # rows 3 of 8 sequences holding 10 of 25 loss terms
    assert distributed.share("sum-over-time", (10, 3), (25, 8)) == 3 / 8
    assert distributed.share("mean", (10, 3), (25, 8)) == 10 / 25
    assert distributed.share("sum", (10, 3), (25, 8)) == 1.0
    comm = distributed.Single()
    assert comm.rows(5) == slice(0, 5) and comm.is_root and comm.size == 1
    distributed.check_batch(7, comm)


class FakeRank(distributed.MPI):
    """Rank `rank` of `size` in this process, without MPI: the ranks run one after another and `sum`
    adds this rank's values to what the earlier ranks contributed (`parts`), so the last rank gets
    the reduced sums."""

    def __init__(self, rank: int, size: int, parts: list | None = None):
        self.rank, self.size, self.parts = rank, size, [] if parts is None else parts

    def sum(self, values):
        self.parts.append(np.array(values, np.float64))
        return np.sum(self.parts, axis=0)


def test_rows_are_contiguous_blocks_covering_the_batch():
    for n in (0, 2, 7, 8):
        blocks = [FakeRank(r, 4).rows(n) for r in range(4)]
        assert [b.start for b in blocks[1:]] == [b.stop for b in blocks[:-1]]
        assert blocks[0].start == 0 and blocks[-1].stop == n


def test_evaluation_shards_are_disjoint_and_cover_the_work():
    for n in (0, 2, 3, 7, 8):
        shards = [FakeRank(r, 4).shard(list(range(n))) for r in range(4)]
        assert sorted(i for s in shards for i in s) == list(range(n))
        assert [len(s) for s in shards] == [len(range(r, n, 4)) for r in range(4)]  # round robin
    assert distributed.Single().shard([3, 1, 2]) == [3, 1, 2]


@pytest.mark.parametrize("name,n_valid", [("tag-float64", 100), ("classify-float64", 150)])
def test_each_rank_evaluates_its_shard_and_the_sums_give_one_process_numbers(single, monkeypatch, name, n_valid):
    from bptt import tasks
    from bptt.training.runs import load_run, task_extra

    model, ckpt = load_run(single["dirs"][name])
    extra = task_extra(ckpt)
    evaluate = tasks.module(extra["task"]).load(extra, fresh=False).evaluate
    forward, seen = model.forward, {}  # the id of each evaluated batch's inputs -> its rows

    def counting(inputs, *args, **kwargs):
        seen[id(inputs)] = len(inputs)
        return forward(inputs, *args, **kwargs)

    monkeypatch.setattr(model, "forward", counting)
    monkeypatch.setattr(distributed, "_COMM", distributed.Single())
    expected, everything = evaluate(model), dict(seen)
    assert sum(everything.values()) == n_valid
    for size in (2, 4):
        parts, shards = [], []
        for rank in range(size):
            seen.clear()
            monkeypatch.setattr(distributed, "_COMM", FakeRank(rank, size, parts))
            got = evaluate(model)
            shards.append(dict(seen))
        assert sorted(i for s in shards for i in s) == sorted(everything)  # each batch on exactly one rank
        assert sum(sum(s.values()) for s in shards) == n_valid
        if size == 2:
            assert all(shards)  # both ranks evaluate
        assert got.keys() == expected.keys()
        for k in expected:  # counts are exact; the loss is summed in another order
            assert got[k] == (pytest.approx(expected[k], rel=1e-12) if k == "valid_loss" else expected[k]), k
