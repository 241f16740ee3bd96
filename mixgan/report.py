"""A run's report.html: grids per Gaussian, metric tables, clustering and trade-off plots.

Self-contained (pictures embedded as data URIs) so that it can be mailed or archived alone.
It reads what the other commands wrote into the run directory; missing parts are listed as
"not computed yet" with the command that makes them.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from .io import atomic_write_text
from .training.rundir import RunDir

PARTS = [
    # (title, json file in the run, picture in the run, command that makes them)
    ("Metrics", "metrics.json", None, "mixgan evaluate RUN"),
    ("Unsupervised clustering", "cluster.json", "cluster-confusion.png", "mixgan cluster RUN"),
    ("Gaussians and their matched classes", None, "cluster-gaussians.png", "mixgan cluster RUN"),
    ("Each Gaussian: generated samples | real images assigned to it", None, "cluster-assigned.png",
     "mixgan cluster RUN"),
    ("Quality–diversity trade-off", "tradeoff.json", "tradeoff.png", "mixgan tradeoff RUN"),
]


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}">'


def _table(data: dict) -> str:
    rows = []
    for key, value in data.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in value)
        elif isinstance(value, float):
            value = f"{value:.4g}"
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def write_report(run_dir: str | Path) -> Path:
    """Render RUN/report.html from what the run directory holds; returns its path."""
    rd = RunDir(run_dir)
    cfg = rd.config()
    body = [f"<h1>{html.escape(cfg.model.name)} on {html.escape(cfg.data.dataset)}</h1>",
            f"<p>{html.escape(str(rd.path))}</p>"]
    grids = sorted(rd.samples.glob("step-*.png"))
    body.append("<h2>Samples (one row per Gaussian component)</h2>")
    body.append(_img(grids[-1]) + f"<p>{grids[-1].name}</p>" if grids else "<p>no sample grid yet</p>")
    for title, json_name, picture, command in PARTS:
        body.append(f"<h2>{html.escape(title)}</h2>")
        found = False
        if json_name and (rd.path / json_name).is_file():
            body.append(_table(json.loads((rd.path / json_name).read_text())))
            found = True
        if picture and (rd.path / picture).is_file():
            body.append(_img(rd.path / picture))
            found = True
        if not found:
            body.append(f"<p>not computed yet: <code>{html.escape(command)}</code></p>")
    stats = rd.read_stats()
    if stats:
        last = stats[-1]
        body.append("<h2>Training</h2>" + _table({k: v for k, v in last.items() if k != "time"}))
    style = ("body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}"
             "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>mixgan report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
    path = rd.path / "report.html"
    atomic_write_text(path, page)
    return path
