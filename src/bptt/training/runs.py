"""Open a run directory: the checkpoint, validated, and the model it describes."""

from __future__ import annotations

from pathlib import Path

from bptt.errors import CheckpointError, DataError
from bptt.model import RNNModel
from bptt.training import averaging, checkpoint

BEST = "best"  # the subdirectory holding the best evaluation's checkpoint (TrainOptions.keep_best)


def weights_dir(run_dir: Path, last: bool = False) -> Path:
    """Where the weights a trained run is used with live: RUN_DIR/best, the best evaluation's
    checkpoint, when the run kept one (early stopping's result); RUN_DIR itself, the latest
    checkpoint, when it did not or when `last` is asked for."""
    best = Path(run_dir) / BEST
    return Path(run_dir) if last or not (best / checkpoint.INDEX).is_file() else best


def weights_note(run_dir: Path, ckpt, hint: str = "; --last for the latest") -> str:
    """One line saying which weights were loaded: the best evaluation's (its step and metric,
    then `hint`) or the latest."""
    train = ckpt.train_state if isinstance(ckpt.train_state, dict) else {}
    progress = train.get("progress") if isinstance(train.get("progress"), dict) else {}
    options = train.get("options") if isinstance(train.get("options"), dict) else {}
    step, best = progress.get("step"), progress.get("best_valid")
    if Path(run_dir).name != BEST:
        return f"weights: the latest checkpoint (step {step}) of {run_dir}"
    metric = str(options.get("monitor", "valid_loss")).replace("_", " ")
    shown = f", {metric} {best:.4f}" if isinstance(best, (int, float)) else ""
    return f"weights: the best evaluation's (step {step}{shown}) in {run_dir}{hint}"


def load_run(run_dir: Path, *, averaged: bool = True):
    """(model, checkpoint) of the latest checkpoint in run_dir; CheckpointError if unusable.
    The model holds the weights' moving average when the run kept one (--ema) and `averaged`
    (what evaluate, predict, generate and export use), else the weights training reached."""
    ckpt = checkpoint.load(run_dir)
    try:
        model = RNNModel(**ckpt.model_config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{run_dir}: the model configuration in checkpoint.json is not usable ({e})") from None
    shapes = {k: v.shape for k, v in model.params.items()}
    checkpoint.check_params(ckpt.params, shapes, source=str(run_dir))
    params = ckpt.params
    average = averaging.averaged(ckpt.arrays, model.params) if averaged else None
    if average is not None:
        checkpoint.check_params(average, shapes, source=f"{run_dir} (the weights' moving average)")
        params = average
    for k, v in params.items():
        if v.dtype != model.params[k].dtype:
            raise CheckpointError(f"{run_dir}: tensor {k} is {v.dtype}, expected {model.params[k].dtype}")
        model.params[k] = v.copy()
    model.eval()
    return model, ckpt


def load_weights(run_dir: Path, last: bool = False):
    """(model, checkpoint, note) with the weights a trained run is used with (`weights_dir`), and
    the one line saying which they are (`weights_note`), for a command to print."""
    where = weights_dir(run_dir, last)
    model, ckpt = load_run(where)
    return model, ckpt, weights_note(where, ckpt)


def task_extra(ckpt) -> dict:
    """The task data saved with a run (TrainOptions.extra: its task, vocabulary, labels, files), {} if none."""
    options = ckpt.train_state.get("options") if isinstance(ckpt.train_state, dict) else None
    extra = options.get("extra") if isinstance(options, dict) else None
    return extra if isinstance(extra, dict) else {}


def vocab_of(ckpt, run_dir: Path):
    """The vocabulary saved with a language-model run."""
    from bptt.data.text import Vocab

    try:
        vocab = Vocab.from_json(ckpt.train_state["options"]["extra"]["vocab"])
    except (KeyError, TypeError):
        raise CheckpointError(f"{run_dir}: checkpoint.json has no vocabulary (not a language-model run)") from None
    except DataError as e:
        raise CheckpointError(f"{run_dir}: checkpoint.json: {e}") from None
    if len(vocab) != ckpt.model_config.get("vocab_size"):
        raise CheckpointError(
            f"{run_dir}: checkpoint.json: a vocabulary of {len(vocab)} tokens for a model of "
            f"{ckpt.model_config.get('vocab_size')!r}"
        )
    return vocab


def lm_text_ids(ckpt, run_dir: Path, data: Path | None = None, encoding: str = "utf-8"):
    """(ids, name) of the text a language-model run is evaluated on: `data` if
    given, else the run's own validation text (its --valid file or held-out split)."""
    from bptt.data.text import builtin_corpus, read_text, split

    vocab = vocab_of(ckpt, run_dir)
    if data is not None:
        return vocab.encode(read_text(data, encoding), source=str(data)), str(data)
    extra = ckpt.train_state["options"]["extra"]
    if extra.get("valid"):
        return vocab.encode(read_text(Path(extra["valid"]), extra["encoding"]), source=extra["valid"]), extra["valid"]
    text = builtin_corpus() if extra["data"] is None else read_text(Path(extra["data"]), extra["encoding"])
    return split(vocab.encode(text), extra["valid_fraction"])[1], "the run's held-out split"
