"""Started by tests/test_distributed.py under mpirun (never collected by pytest).

    python mpi_driver.py COMMANDS.json

COMMANDS.json is a list of steps, run in order on every rank; a step is
    ["bptt", ARG, ...]            `bptt ARG ...` (bptt.cli.main); a non-zero exit ends the driver
    ["kill-after", RUN_DIR, R]    rank R SIGKILLs itself as soon as RUN_DIR holds a checkpoint
    ["guard"]                     rank 1 changes one weight of a model; every rank runs the
                                  parameter check and prints its one-line error to stdout
"""

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path


def kill_after(run_dir: str, rank: int) -> None:
    from bptt.training import distributed

    if distributed.communicator().rank != rank:
        return

    def watch():
        while not (Path(run_dir) / "checkpoint.json").is_file():
            time.sleep(0.005)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()


def guard() -> None:
    from bptt import RNNModel
    from bptt.training import distributed

    comm = distributed.communicator()
    model = RNNModel(vocab_size=5, hidden_size=3, output_size=5)
    if comm.rank == 1:
        model.params["rnn0.W"][1, 2] += 1e-7
    comm.check_same({k: v for k, v in model.params.items() if k != "rnn0.W"})  # the others agree
    try:
        comm.check_same(model.params)
    except distributed.RanksDisagree as e:
        sys.__stdout__.write(f"rank {comm.rank}: {e}\n")


def main() -> int:
    from bptt.cli import main as bptt

    for step in json.loads(Path(sys.argv[1]).read_text()):
        if step[0] == "bptt":
            code = bptt(step[1:])
            if code:
                return code
        elif step[0] == "kill-after":
            kill_after(step[1], int(step[2]))
        elif step[0] == "guard":
            guard()
    return 0


if __name__ == "__main__":
    sys.exit(main())
