"""`bptt report RUN_DIR`: one self-contained HTML page per run, for every task; bad input is one
line and writes nothing; the page opens in a real browser (headless Chromium, network off)
without console errors, its plots render, and hovering a chart shows values."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from bptt.analysis import charts
from bptt.analysis import report as report_page
from bptt.cli import main

EX = Path(__file__).resolve().parents[1] / "examples"
TINY = ["--hidden-size", "4"]
LONGMEM = ["--length", "10", "--batches-per-epoch", "5", "--valid-size", "50", "--test-size", "50", "--eval-every", "5"]
TASKS = {
    "lm": ["--seq-length", "16", "--batch-size", "4", "--eval-every", "10", "--samples", "1", "--sample-length", "20"],
    "tag": [
        "--task",
        "tag",
        "--data",
        EX / "tag-train.conllu",
        "--valid",
        EX / "tag-dev.conllu",
        "--embedding-size",
        "4",
    ],
    "classify": ["--task", "classify", "--data", EX / "sentiment-train.tsv", "--valid", EX / "sentiment-dev.tsv"],
    "classify3": ["--task", "classify", "--data", EX / "sentiment3.csv"],
    "regress": ["--task", "regress", "--data", EX / "regress.csv", "--valid", EX / "regress-dev.csv"],
    "regress-steps": ["--task", "regress", "--data", EX / "regress-steps.csv"],
    "spell": ["--task", "spell", "--max-number", "99"],
    "adding": ["--task", "adding", *LONGMEM],
    "copy": ["--task", "copy", *LONGMEM],
    "temporal-order": ["--task", "temporal-order", *LONGMEM],
}
# what each task's page shows beyond the sections every page has
SECTIONS = {
    "lm": ["samples"],
    "tag": ["evaluation", "examples", 'class="confusion"'],
    "classify": ["evaluation", "examples", 'class="confusion"'],
    "classify3": ["evaluation", "examples", 'class="confusion"', "the training data"],
    "regress": ["evaluation", "examples"],
    "regress-steps": ["evaluation", "examples"],
    "spell": ["evaluation", "examples"],
    "adding": ["result", "examples"],
    "copy": ["result", "examples"],
    "temporal-order": ["result", "examples"],
}


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def train(capsys, out: Path, task: str, *more) -> Path:
    args = ["train", *TASKS[task], *TINY, "--max-epochs", "1", "--out", out, *more]
    if task == "lm":
        text = out.parent / "text.txt"
        text.write_text("the cat sat on the mat. " * 120, encoding="utf-8")
        args += ["--data", text]
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    return out


def external_refs(page: str) -> list[str]:
    """Every src/href that is not inline data or a same-page anchor."""
    refs = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", page)
    return [r for r in refs if not r.startswith(("data:", "#"))]


@pytest.fixture(scope="module")
def regress_run(tmp_path_factory):
    """A small finished run (regress: the fastest task to train)."""
    out = tmp_path_factory.mktemp("regress") / "run"
    code = main(["train", *map(str, TASKS["regress"]), *TINY, "--max-epochs", "1", "--out", str(out)])
    assert code == 0
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("report.html"))
    return dst


# ---- every task ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_every_task(tmp_path, capsys, task):
    run = train(capsys, tmp_path / task, task, "--diagnostics")
    code, out, err = cli(capsys, "report", run)
    assert code == 0, err
    assert out.strip().endswith(f"wrote {run / 'report.html'}")
    page = (run / "report.html").read_text(encoding="utf-8")
    for section in ["summary", "configuration", "model", "curves", "gradients", *SECTIONS[task]]:
        assert f'id="{section}"' in page or section in page, section
    assert "<pre>bptt train " in page  # the command line the run was started with
    assert page.count('<svg class="chart"') >= 3  # loss, gradient norm per evaluation, per tensor
    assert "Gradient norm per tensor, every update" in page
    assert external_refs(page) == []
    if task in ("lm", "adding"):  # they make or have their own data
        code, _, err = cli(capsys, "report", run, "--data", EX / "regress.csv")
        assert code == 2 and err.startswith("bptt: error: --data: "), err
    n_params = sum(int(np.prod(v.shape)) for v in report_page.read_run(run)["model"].params.values())
    assert f"<b>{n_params:,}</b> parameters" in page


def test_diagnose_figures(tmp_path, capsys, regress_run):
    run = copy_run(regress_run, tmp_path / "run")
    code, _, err = cli(capsys, "diagnose", run, "--steps", "8", "--no-plot")
    assert code == 0, err
    d = json.loads((run / "diagnose.json").read_text())
    d["layers"][0]["jacobian"]["cell_spectral"] = [1.0] * len(
        d["layers"][0]["jacobian"]["lag"]
    )  # a key bptt adds later
    d["layers"][0]["something_new"] = {"x": [1, 2]}
    (run / "diagnose.json").write_text(json.dumps(d))
    assert cli(capsys, "report", run)[0] == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "||dh_t/dh_k|| by lag" in page and "||cell_spectral||" in page
    assert "gradient by lag" in page and "Share of the gradient by lag" in page
    assert "(t, k) term of dL/dW" in page
    assert "No gradient-norm history" in page  # trained without --diagnostics: the page says how to get it


def test_heatmap_rows_are_t_from_the_bottom():
    heat = np.tril(np.exp(-np.subtract.outer(np.arange(12), np.arange(12)).clip(0)))
    fig = charts.heatmap(heat, "T", "k (x)", "t (y)")
    assert "data:image/png;base64," in fig and "data-cells" in fig
    png = fig.split("data:image/png;base64,")[1].split('"')[0]
    import base64

    image = decode_png(base64.b64decode(png))
    assert image.shape == (12, 12, 3)
    assert (image[0, -1] == charts.VIRIDIS[-1]).all()  # top right: t = 11, k = 11, the largest term
    assert (image[-1, -1] == charts.EMPTY).all()  # bottom right: t = 0, k = 11 > t, zero
    assert (image[:, 0] != charts.EMPTY).any(axis=1).all()  # k = 0 is reached from every t


# ---- bad input ---------------------------------------------------------------------------


def test_no_such_run_dir(tmp_path, capsys):
    code, out, err = cli(capsys, "report", tmp_path / "nope")
    assert code == 2 and err.count("\n") == 1 and "no such run directory" in err


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda run: (run / "metrics.jsonl").unlink(), "metrics.jsonl: missing"),
        (lambda run: (run / "metrics.jsonl").write_text(""), "metrics.jsonl: empty"),
        (
            lambda run: (run / "metrics.jsonl").write_text('{"step": 1, "train_loss": 1.0}\n{not json\n'),
            "metrics.jsonl:2: not a JSON line",
        ),
        (lambda run: (run / "grad-norms.jsonl").write_text('{"step": 1}\n'), "grad-norms.jsonl:1: expected"),
        (lambda run: (run / "diagnose.json").write_text("{"), "diagnose.json: not valid JSON"),
        (lambda run: (run / "result.json").write_text("[1]"), "result.json: expected a JSON object"),
        (lambda run: (run / "checkpoint.json").write_text("{}"), "checkpoint.json"),
    ],
)
def test_bad_run_files(tmp_path, capsys, regress_run, damage, message):
    run = copy_run(regress_run, tmp_path / "run")
    damage(run)
    code, out, err = cli(capsys, "report", run)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert err.startswith("bptt: error: ") and "Traceback" not in err
    assert not (run / "report.html").exists()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_bad_data_and_out(tmp_path, capsys, regress_run):
    run = copy_run(regress_run, tmp_path / "run")
    code, _, err = cli(capsys, "report", run, "--data", tmp_path / "missing.csv")
    assert code == 2 and err.count("\n") == 1 and "missing.csv" in err
    code, _, err = cli(capsys, "report", run, "--out", tmp_path)
    assert code == 2 and "is a directory" in err
    assert not (run / "report.html").exists()


def test_moved_data_is_a_note(tmp_path, capsys, regress_run):
    """The data a run names has gone: the page is still written, saying why there is no evaluation."""
    run = copy_run(regress_run, tmp_path / "run")
    ckpt = json.loads((run / "checkpoint.json").read_text())
    from bptt.training.checkpoint import index_sha256

    ckpt["train"]["options"]["extra"]["valid"] = str(tmp_path / "gone.csv")
    ckpt["sha256"] = index_sha256(ckpt)
    (run / "checkpoint.json").write_text(json.dumps(ckpt))
    code, out, err = cli(capsys, "report", run)
    assert code == 0, err
    assert "note: no evaluation:" in out and "gone.csv" in out
    assert "gone.csv" in (run / "report.html").read_text(encoding="utf-8")


def test_strings_from_the_run_are_escaped(tmp_path, capsys, regress_run):
    run = copy_run(regress_run, tmp_path / 'r<b>&"x')
    data = report_page.read_run(run)
    evaluation = {
        "title": "<i>t</i>",
        "metrics": {"a<b": 1.0},
        "labels": ["<script>x</script>", "y"],
        "confusion": [[1, 2], [3, 4]],
    }
    examples = {"title": "e", "header": ["<u>h</u>"], "rows": [["<img src=x>"]]}
    page = report_page.render(data, evaluation, examples, notes=["<hr>"])
    for raw in ("r<b>", "<i>t</i>", "a<b", "<script>x</script>", "<u>h</u>", "<img src=x>", "<hr>"):
        assert raw not in page
    assert "r&lt;b&gt;&amp;&quot;x" in page and "&lt;script&gt;x&lt;/script&gt;" in page


def test_no_matplotlib_needed(tmp_path, capsys, regress_run, monkeypatch):
    run = copy_run(regress_run, tmp_path / "run")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert cli(capsys, "report", run)[0] == 0
    assert "<svg" in (run / "report.html").read_text(encoding="utf-8")


# ---- the charts ------------------------------------------------------------------------


def decode_png(data: bytes) -> np.ndarray:
    """The RGB image of a PNG that charts.png_rgb wrote (8-bit RGB, filter 0 on every row)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h = size
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, 3)


def test_png_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(charts.png_rgb(rgb)), rgb)


def test_ticks_and_thinning():
    assert charts.nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert charts.nice_ticks(0.03, 0.31, 3) == pytest.approx([0.1, 0.2, 0.3])
    log = charts._Scale(1e-6, 10, 0, 100, log=True).ticks()
    assert all(np.log10(t).is_integer() for t in log) and 1e-6 in log and 10 in log
    xs = list(range(10_000))
    ys = [1.0] * 10_000
    ys[5_123] = 50.0
    tx, ty = charts.thin(xs, ys, 100)
    assert len(tx) == 100 and 50.0 in ty and tx[ty.index(50.0)] == 5_123  # the peak survives


# ---- in a browser --------------------------------------------------------------------------

PROBE = """<script>(function () {
  var svg = document.querySelector("svg.chart"), r = svg.getBoundingClientRect();
  svg.dispatchEvent(new MouseEvent("mousemove", {clientX: r.left + r.width * 0.6, clientY: r.top + r.height / 2, bubbles: true}));
  var tip = svg.parentNode.querySelector(".tip"), p = document.createElement("pre");
  p.id = "probe"; p.textContent = tip.style.display + "|" + tip.textContent; document.body.appendChild(p);
  var heat = document.querySelector("svg.heat"), box = heat.getAttribute("data-box").split(",").map(Number);
  var vb = heat.viewBox.baseVal, hr = heat.getBoundingClientRect(), scale = hr.width / vb.width;
  heat.dispatchEvent(new MouseEvent("mousemove", {clientX: hr.left + (box[0] + 0.5) * scale,
    clientY: hr.top + (box[1] + box[2] - 0.5) * scale, bubbles: true}));  // the bottom left cell: t = 0, k = 0
  var q = document.createElement("pre"), heatTip = heat.parentNode.querySelector(".tip");
  q.id = "probe-heat"; q.textContent = heatTip.style.display + "|" + heatTip.textContent; document.body.appendChild(q);
  console.log("probe done");
})();</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no Chromium: install Debian's chromium package (.ci/run does when it is missing)")


@pytest.mark.slow
def test_in_a_browser(tmp_path, capsys):
    """The page of a tagger trained with --diagnostics and diagnosed: headless Chromium with every
    network fetch failing opens it; no console message but the probe's own, the charts, the
    confusion matrix and the heatmap are in the rendered DOM, hovering the first chart shows values,
    and the screenshot shows the plots' colours."""
    run = train(capsys, tmp_path / "tag", "tag", "--diagnostics")
    assert cli(capsys, "diagnose", run, "--steps", "10", "--no-plot")[0] == 0
    assert cli(capsys, "report", run)[0] == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    assert external_refs(page) == []
    probe = tmp_path / "probe.html"  # the page, plus a script that moves the mouse over the first chart
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",  # containers often have a small /dev/shm
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--proxy-server=127.0.0.1:9",  # network off: every fetch fails
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            "--hide-scrollbars",
            "--window-size=1200,5000",
            f"--screenshot={shot}",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert len(console) == 1 and '"probe done"' in console[0], console  # the page itself logs nothing
    dom = result.stdout
    n_charts = dom.count('<svg class="chart"')
    assert n_charts >= 5 and dom.count("<polyline") >= 10
    assert dom.count('<circle r="4"') >= n_charts  # the hover script ran: one marker per line
    tip = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S).group(1)
    assert tip.startswith("block|train loss: ")  # the loss chart's values under the mouse
    heat_tip = re.search(r'<pre id="probe-heat">(.*?)</pre>', dom, re.S).group(1)
    assert re.fullmatch(r"block\|t = 0, k = 0: [0-9.e+-]+", heat_tip), heat_tip  # the heatmap's value under the mouse
    labels = len(json.loads((run / "checkpoint.json").read_text())["train"]["options"]["extra"]["labels"])
    confusion = re.search(r'<table class="confusion">(.*?)</table>', dom, re.S).group(1)
    assert 1 < confusion.count("<tr>") <= labels + 1
    assert dom.count('<svg class="heat"') == 2  # the (t, k) heatmap of each direction
    image = plt_image(shot)
    assert image.shape[:2] == (5000, 1200)
    ink = (image < 0.9).any(axis=2).mean()
    assert ink > 0.02  # not blank
    assert near(image, charts.PALETTE[0]) > 500  # the first line of every chart
    assert near(image, "#fde725") + near(image, "#5ec962") > 50  # the bright end of the heatmaps' viridis


def plt_image(path: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(path)[..., :3]


def near(image: np.ndarray, colour: str, tol: float = 0.06) -> int:
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return int((np.abs(image - rgb).max(axis=2) < tol).sum())
