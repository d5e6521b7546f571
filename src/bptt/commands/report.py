"""`bptt report RUN_DIR`: one self-contained HTML page about a run, RUN_DIR/report.html.

The command line and configuration, the model and its parameter count, the loss
and metric curves (hover for values), samples or predictions, the confusion
matrix of a tagger or classifier, the gradient norm of every tensor over
training (a run trained with --diagnostics) and the figures of `bptt diagnose`
(||dh_t/dh_k|| by lag, the (t, k) contributions to dL/dW) when it was run.
Taggers, classifiers, regressors and the speller are evaluated on the run's
validation data (or --data FILE); long-memory tasks show fresh sequences.
Scripts and images are inline: the page opens without a network.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bptt.errors import BpttError, UsageError

EXAMPLES = 8  # rows of samples or predictions shown


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write an HTML page about a run (curves, gradients, diagnostics)",
        description=__doc__,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="tag/classify/regress/spell: evaluate on this file (default: the run's validation data)",
    )
    p.add_argument("--out", type=Path, default=None, help="HTML file (default: RUN_DIR/report.html)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bptt.analysis import report
    from bptt.training.checkpoint import atomic_write_text
    from bptt.training.rundir import check_output_file

    out = args.out or args.run_dir / "report.html"
    run_data = report.read_run(args.run_dir)
    check_output_file(out, args)  # before the work
    evaluation, examples, notes = measure(run_data, args)
    page = report.render(run_data, evaluation, examples, notes)
    atomic_write_text(out, page)  # the one write of this command (into the run directory by default)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {out}")
    return 0


def measure(run_data: dict, args) -> tuple[dict | None, dict | None, list[str]]:
    """(evaluation, examples, notes): what the run's model does on data, per task.

    A data file the run names but that cannot be read any more is a note in the
    page, not an error: everything else about the run is still worth showing."""
    from bptt import tasks
    from bptt.training.runs import task_extra

    model, extra = run_data["model"], task_extra(run_data["ckpt"])
    task = extra.get("task", "lm")
    try:
        if task == "lm":
            if args.data is not None:
                raise UsageError(
                    "--data: for tag, classify, regress and spell runs; a language model's page shows its curves"
                )
            return None, _lm_samples(run_data, extra), []
        if task not in tasks.TASKS:
            return None, None, [f"task {task!r} is not one this bptt knows: no predictions"]
        if task in ("adding", "copy", "temporal-order"):
            if args.data is not None:
                raise UsageError(f"--data: a --task {task} run makes its own data")
            return None, _longmem_examples(model, extra), []
        module = tasks.module(task)
        path = args.data
        if path is None and task != "spell":
            path = extra.get("valid") or extra.get("data")
            if path is None:
                return None, None, ["the run names no data file: no evaluation"]
            path = Path(path)
        return _evaluate(model, extra, module, task, path)
    except UsageError:
        raise
    except (BpttError, OSError) as e:
        if args.data is not None:
            raise
        what = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.strerror else " ".join(str(e).split())
        return None, None, [f"no evaluation: {what}"]


def _evaluate(model, extra: dict, module, task: str, path: Path | None):
    ns = argparse.Namespace(encoding=extra.get("encoding", "utf-8"))
    where = "the held-out numbers" if path is None else str(path)
    if path is not None and str(path) == str(extra.get("data")) and not extra.get("valid"):
        where += " (the training data: the run had no validation file)"
    report = module.evaluate(model, extra, path, ns)
    metrics = {k: v for k, v in report.items() if isinstance(v, (int, float)) and v is not None}
    evaluation = {
        "title": f"Evaluation on {where}",
        "metrics": metrics,
        "labels": extra.get("labels"),
        "confusion": report.get("confusion"),
        "per_class": report.get("per_class"),
    }
    examples = {
        "tag": _tag_examples,
        "classify": _classify_examples,
        "regress": _regress_examples,
        "spell": _spell_examples,
    }[task](model, extra, module, path, ns, report)
    return evaluation, examples, []


def _tag_examples(model, extra, module, path, ns, report) -> dict:
    sentences = module.read_tagged(path, dict(extra, encoding=ns.encoding))[:EXAMPLES]
    predicted = module.predict_tags(model, extra, sentences)
    rows, wrong = [], []
    for s, p in zip(sentences, predicted):
        rows.append(
            [
                " ".join(s.words),
                " ".join(p),
                " ".join(t if t == q else f"*{t}" for t, q in zip(s.tags, p)),
            ]
        )
        wrong.append(list(s.tags) != list(p))
    return {
        "title": f"Predictions on the first sentences of {path}",
        "header": ["sentence", "predicted tags", "true tags (* where the prediction differs)"],
        "rows": rows,
        "wrong": wrong,
    }


def _classify_examples(model, extra, module, path, ns, report) -> dict:
    examples = module.read(path, dict(extra, encoding=ns.encoding))
    lines = module.predict(model, extra, path, ns).splitlines()[1 : 1 + EXAMPLES]
    rows, wrong = [], []
    for e, line in zip(examples, lines):
        label, *probs = line.split("\t")
        rows.append([e.text, e.label, label, f"{max(map(float, probs), default=0.0):.3f}"])
        wrong.append(label != e.label)
    return {
        "title": f"Predictions on the first examples of {path}",
        "header": ["text", "true label", "predicted", "P(predicted)"],
        "rows": rows,
        "wrong": wrong,
    }


def _regress_examples(model, extra, module, path, ns, report) -> dict:
    rows = module.read(path, dict(extra, encoding=ns.encoding))[:EXAMPLES]
    lines = module.predict(model, extra, path, ns).splitlines()[:EXAMPLES]
    out = []
    for (x, y, _), line in zip(rows, lines):
        steps = " ".join(":".join(f"{v:.4g}" for v in s) for s in x)
        target = " ".join(":".join(f"{v:.4g}" for v in s) for s in y)
        out.append([_clip(steps), _clip(target), _clip(line)])
    return {
        "title": f"Predictions on the first sequences of {path}",
        "header": ["input", "target", "predicted"],
        "rows": out,
    }


def _spell_examples(model, extra, module, path, ns, report) -> dict:
    from bptt.data.text import read_text

    numbers = (
        module.split_numbers(extra)[1]
        if path is None
        else np.array(module.parse_numbers(read_text(path, ns.encoding), extra, str(path)))
    )[:EXAMPLES]
    said = module.generate(model, extra, numbers)
    truth = [module.words(int(n)) for n in numbers]
    return {
        "title": "The speller on the first held-out numbers" if path is None else f"The speller on {path}",
        "header": ["number", "written", "correct"],
        "rows": [[int(n), s, t] for n, s, t in zip(numbers, said, truth)],
        "wrong": [s != t for s, t in zip(said, truth)],
    }


def _longmem_examples(model, extra: dict) -> dict:
    from bptt.tasks import longmem

    s = longmem.spec(extra["task"], extra["length"], extra.get("variant"))
    b = s.make(np.random.default_rng([0, 7]), EXAMPLES)
    z = model.predict(b.inputs, b.mask)
    rows, wrong = [], []
    for i in range(EXAMPLES):
        y = np.asarray(b.targets[i])
        if model.head == "softmax":
            p = np.asarray(z[i]).argmax(axis=-1)
            keep = y >= 0
            target, pred = y[keep] if y.ndim else y, p[keep] if y.ndim else p
            rows.append([" ".join(map(str, np.atleast_1d(target))), " ".join(map(str, np.atleast_1d(pred)))])
            wrong.append(not np.array_equal(np.atleast_1d(target), np.atleast_1d(pred)))
        else:
            rows.append([f"{float(np.ravel(y)[0]):.4f}", f"{float(np.ravel(z[i])[0]):.4f}"])
    return {
        "title": f"The model on {EXAMPLES} fresh sequences of {s.title}",
        "header": ["target", "output"],
        "rows": rows,
        "wrong": wrong or None,
    }


def _lm_samples(run_data: dict, extra: dict) -> dict | None:
    """A fresh sample when the run left no samples.txt."""
    if run_data["samples"]:
        return None
    from bptt.generate import sample
    from bptt.training.runs import vocab_of

    vocab = vocab_of(run_data["ckpt"], run_data["dir"])
    model = run_data["model"]
    ids = sample(
        model, np.array([0]), 200, temperature=float(extra.get("temperature", 0.8)), rng=np.random.default_rng(0)
    )
    return {"title": "A sample (temperature {})".format(extra.get("temperature", 0.8)), "text": vocab.decode(ids)}


def _clip(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
