"""Re-make the screenshots of docs/screenshots/ from a finished demo results folder.

    python docs/screenshots.py RESULTS [--workdir DIR] [--out docs/screenshots]
        [--napari-python /work/napari-venv/bin/python] [--only mlflow,report,napari]

Takes
  1. ``mlflow_runs.png``: the MLflow run list of the demo experiment (``mlflow ui`` on a free
     localhost port, headless Chromium), at the address the summary prints (``MLflow UI:``,
     the model-training view);
  2. ``report_summary.png``: the Summary of ``snakemake --report`` (run in ``--workdir``, the
     checkout whose Snakefile made RESULTS; default RESULTS/..), the table of models open;
  3. ``napari_prediction.png``: napari (napari-ome-zarr, under Xvfb) with the scan
     ``RESULTS/demo/volume.zarr`` and the cleaned prediction of the best model
     (``--scan`` / ``--prediction`` to choose others), layers named and shown as the stores
     ask (``phases: clean`` shown; ``phases: reference`` hidden).

Needs ``chromium`` and ``xvfb-run`` (``apt-get install -y chromium xvfb``) and, for napari, a
separate environment: ``python -m venv /work/napari-venv && /work/napari-venv/bin/pip install
napari pyqt5 napari-ome-zarr`` (not a dlpipe dependency). Each part that cannot run says why
and the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cdp  # docs/cdp.py

WINDOW = "1600,1000"
HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    raise RuntimeError("no chromium: apt-get install -y chromium")


def _shoot(url: str, png: Path, budget_ms: int = 15000) -> None:
    """Headless Chromium screenshot of ``url`` into ``png``."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                _chromium(),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={WINDOW}",
                f"--virtual-time-budget={budget_ms}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no {png}")


@contextlib.contextmanager
def _mlflow_ui(db: Path) -> Iterator[str]:
    """``mlflow ui`` on a free localhost port for the store ``db``; yields its URL."""
    port = _free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow) if mlflow.exists() else "mlflow", "ui", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--workers", "1"]
    cmd += ["--backend-store-uri", f"sqlite:///{db.resolve()}"]
    artifacts = db.parent / "mlartifacts"
    if artifacts.is_dir():
        cmd += ["--artifacts-destination", str(artifacts.resolve())]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(360):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("mlflow ui exited") from None
                time.sleep(0.5)
        else:
            raise RuntimeError("mlflow ui did not answer within 3 minutes")
        yield url
    finally:  # the server and its worker: the process group started here
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def mlflow_runs(results: Path, out: Path, experiment: str | None) -> Path:
    """The run list of the demo experiment (the last one with runs if not named).

    The workflow's parent run is unfolded and the assistant panel closed by clicking them in the
    page (docs/cdp.py): the UI keeps both in the browser's storage, which a fresh headless
    browser does not have, so a plain screenshot shows one folded row.
    """
    db = results / "mlflow.db"
    if not db.is_file():
        raise RuntimeError(f"no MLflow store {db}")
    from mlflow.tracking import MlflowClient  # dlpipe's environment has MLflow

    from dlpipe.tracking.runs import UI_VIEW

    client = MlflowClient(tracking_uri=f"sqlite:///{db.resolve()}")
    exps = [e for e in client.search_experiments() if not experiment or e.name == experiment]
    exps = [e for e in exps if client.search_runs([e.experiment_id], max_results=1)]
    if not exps:
        raise RuntimeError(f"no experiment with runs in {db}")
    exp = exps[-1]
    png = out / "mlflow_runs.png"
    with (
        _mlflow_ui(db) as url,
        cdp.open_page(
            # the page the summary's "MLflow UI:" line names (dlpipe.tracking.ui_hint)
            _chromium(),
            f"{url}/#/experiments/{exp.experiment_id}/runs?{UI_VIEW}",
            WINDOW,
        ) as page,
    ):
        page.wait_for(_RUN_ROWS + ".length > 0")
        page.js(_UNFOLD)
        page.wait_for(_RUN_ROWS + ".length > 1")  # the child runs
        page.js(_CLOSE_ASSISTANT)
        time.sleep(2)  # the table re-lays out without the panel
        page.screenshot(png)
    return png


_RUN_ROWS = "document.querySelectorAll('.ag-center-cols-container .ag-row')"
_UNFOLD = """
document.querySelectorAll('button[data-component-id*="runnamecellrenderer"]')
  .forEach(b => b.click())
"""
_CLOSE_ASSISTANT = """
document.querySelectorAll('button[aria-label="Close"]').forEach(b => b.click())
"""


_REPORT_JS = """
<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var key = Object.keys(results).find(function (k) { return k.endsWith("summary/models.html"); })
      || Object.keys(results).find(function (k) { return k.endsWith("summary/models.csv"); });
    app.showCategory("Summary");
    if (key && results[key].mime_type === "text/html") {
      app.setView({content: "html", contentPath: results[key].data_uri, resultPath: key});
    }
  }, 300);
});
</script>
"""


def report_summary(results: Path, workdir: Path, out: Path, report: Path | None = None) -> Path:
    """``snakemake --report`` of ``workdir`` (or the report file ``report``), opened on its
    Summary (the table of models)."""
    if report is None and not (workdir / "Snakefile").is_file():
        raise RuntimeError(f"no Snakefile in {workdir} (give --workdir or --report)")
    snakemake = Path(sys.executable).parent / "snakemake"
    with tempfile.TemporaryDirectory() as tmp:
        html = report or Path(tmp) / "report.html"
        if report is None:
            cmd = [str(snakemake) if snakemake.exists() else "snakemake", "--report", str(html)]
            cmd += ["--config", f"results={results.resolve()}"]
            done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600)
            if done.returncode or not html.is_file():
                raise RuntimeError(f"snakemake --report failed: {done.stderr.strip()[-500:]}")
        shown = Path(tmp) / "report_summary.html"
        page, _, tail = html.read_text().rpartition("</body>")  # the page's own, the last one
        shown.write_text(page + _REPORT_JS + "</body>" + tail)
        png = out / "report_summary.png"
        _shoot(shown.as_uri(), png)
    return png


_NAPARI = """
import sys, json, warnings
warnings.filterwarnings("ignore")  # no deprecation toast over the canvas
import napari
from napari.settings import get_settings
get_settings().application.gui_notification_level = "none"
scan, pred, png, z = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
viewer = napari.Viewer(show=True)
viewer.window._qt_window.resize(1500, 950)
viewer.open(scan, plugin="napari-ome-zarr")
n_scan = len(viewer.layers)
viewer.open(pred, plugin="napari-ome-zarr")
labels = [l for l in list(viewer.layers)[n_scan:] if l.__class__.__name__ == "Labels"][-1]
labels.opacity = 0.55  # the layer names and visibility are those the stores ask for
viewer.dims.set_point(0, z)
viewer.scale_bar.visible = True
viewer.reset_view()
viewer.layers.selection.active = labels
from qtpy.QtWidgets import QApplication
from napari._qt.dialogs.qt_notification import NapariQtNotification
for widget in QApplication.allWidgets():  # toasts (e.g. the PyQt5 deprecation) off the canvas
    if isinstance(widget, NapariQtNotification):
        widget.hide()
QApplication.processEvents()
viewer.screenshot(png, canvas_only=False, flash=False)
print(json.dumps({"layers": [l.name for l in viewer.layers]}))
viewer.close()
"""


def _best_prediction(results: Path) -> Path:
    """``clean.zarr`` of the model with the best mean Jaccard (any one if none scored)."""
    scored = []
    for metrics in sorted(results.glob("demo/unet/*/clean_metrics.json")):
        with contextlib.suppress(ValueError, OSError):
            score = json.loads(metrics.read_text()).get("mean_jaccard")
            scored.append((score if isinstance(score, float) else -1.0, metrics.parent))
    if not scored:
        raise RuntimeError(f"no demo/unet/*/clean_metrics.json in {results}")
    return max(scored)[1] / "clean.zarr"


def napari_prediction(
    scan: Path, prediction: Path, out: Path, napari_python: Path, z: int | None
) -> Path:
    """napari with ``scan`` and ``prediction`` (napari-ome-zarr) under Xvfb."""
    if not napari_python.is_file():
        raise RuntimeError(f"no napari environment at {napari_python} (see --help)")
    if not shutil.which("xvfb-run"):
        raise RuntimeError("no xvfb-run: apt-get install -y xvfb")
    if z is None:  # the middle of the test slab, else of the volume
        attrs = json.loads((scan / "zarr.json").read_text())["attributes"]
        test = (attrs.get("dlpipe", {}).get("split") or {}).get("test")
        depth = attrs.get("dlpipe", {}).get("source", {}).get("shape", [2])[0]
        z = (test[0] + test[1]) // 2 if test else depth // 2
    png = out / "napari_prediction.png"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "shot.py"
        script.write_text(_NAPARI)
        env = dict(os.environ, XDG_RUNTIME_DIR=tmp)
        done = subprocess.run(
            [
                *("xvfb-run", "-a", "-s", "-screen 0 1600x1000x24"),
                *(str(napari_python), str(script), str(scan), str(prediction), str(png), str(z)),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        if done.returncode or not png.is_file():
            raise RuntimeError(f"napari failed: {done.stderr.strip()[-800:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("results", type=Path, help="a finished demo results folder")
    ap.add_argument("--workdir", type=Path, help="checkout that ran the workflow (RESULTS/..)")
    ap.add_argument("--out", type=Path, default=HERE / "screenshots")
    ap.add_argument("--report", type=Path, help="an existing report.html (else made)")
    ap.add_argument("--experiment", help="MLflow experiment (default: the last with runs)")
    ap.add_argument("--napari-python", type=Path, default=Path("/work/napari-venv/bin/python"))
    ap.add_argument("--scan", type=Path, help="default RESULTS/demo/volume.zarr")
    ap.add_argument("--prediction", type=Path, help="default the best model's clean.zarr")
    ap.add_argument("--z", type=int, help="z-slice shown in napari (default: mid test slab)")
    ap.add_argument("--only", default="mlflow,report,napari", help="comma-separated parts")
    args = ap.parse_args(argv)
    results = args.results.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    parts = {
        "mlflow": lambda: mlflow_runs(results, args.out, args.experiment),
        "report": lambda: report_summary(
            results, (args.workdir or results.parent), args.out, args.report
        ),
        "napari": lambda: napari_prediction(
            (args.scan or results / "demo" / "volume.zarr").resolve(),
            (args.prediction or _best_prediction(results)).resolve(),
            args.out,
            args.napari_python,
            args.z,
        ),
    }
    failed = 0
    for name in args.only.split(","):
        try:
            print(f"{name}: {parts[name.strip()]()}")
        except (RuntimeError, subprocess.SubprocessError, OSError, KeyError) as exc:
            failed += 1
            print(f"{name}: not made: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
