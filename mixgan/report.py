"""A run's report.html: training curves, quality over training, a timeline of sample grids,
metrics, clustering and the latent-scale (sigma) figure.

One self-contained file: pictures are embedded as data URIs, curves are inline SVG, the timeline
slider is a few lines of inline script; it opens offline and can be mailed or archived alone.
It reads what training and the other commands wrote into the run directory; a missing part says
why, and names the command or setting that makes it only where that would work for this run.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

from .errors import MixganError
from .io import atomic_write_text
from .training.rundir import RunDir
from .viz import fmt, label_rows, name_classes

# readable names of the keys in stats.jsonl, metrics.json, cluster.json and tradeoff.json
NAMES = {
    "fid": "FID", "kid": "KID", "kid_std": "KID (std over subsets)", "is": "Inception score",
    "is_std": "Inception score (std over splits)", "precision": "Precision", "recall": "Recall",
    "density": "Density", "coverage": "Coverage", "quality": "Quality score", "diversity": "Diversity score",
    "d_intra": "Diversity within classes", "d_inter": "Diversity across classes",
    "conditional_accuracy": "Conditional accuracy", "intra_fid": "Intra-class FID",
    "cas": "Classification accuracy score (CAS)", "modes": "Modes covered", "modes_total": "Modes in the data",
    "high_quality": "High-quality share", "kl": "KL from uniform over modes", "n_real": "Real images",
    "n_fake": "Generated samples", "backbone": "Feature network", "backbone_id": "Feature network weights",
    "classifier_accuracy": "Reference classifier test accuracy", "dataset": "Dataset", "k": "Neighbours (k)",
    "time_s": "Time (s)", "source": "Samples from", "loss_d": "D loss", "loss_g": "G loss",
    "d_real": "D(real)", "d_fake": "D(fake)", "it_per_s": "Steps per second", "samples_per_s": "Samples per second",
    "eval_s": "Evaluation time (s)", "best_step": "Best step by FID", "accuracy": "Accuracy (Hungarian matching)",
    "nmi": "NMI", "ari": "ARI", "method": "Method", "kmeans": "k-means on pixels", "split": "Split",
    "components": "Gaussians (K)", "gaussian_to_class": "Class matched to each Gaussian",
    "purity": "Mean purity by the reference classifier", "classes_covered": "Classes covered", "scales": "Scales s",
    "n": "Samples per scale", "enc_ce": "Encoder cross-entropy", "enc_l2": "Encoder latent L2",
}
from .metrics.registry import TRAINING_KEYS as QUALITY, display_names  # noqa: E402  (one list of metrics)

NAMES.update({k: v[:1].upper() + v[1:] for k, v in display_names().items() if k not in NAMES})
NAMES.update({"feature_net": "Feature network (how it was trained)", "accuracy": "Accuracy (one-to-one, Hungarian)",
              "accuracy_many_to_one": "Accuracy (many-to-one: Gaussians merged into classes)",
              "majority_baseline": "Majority-class baseline", "anchors": "Anchors (held-out real; constant grey)",
              "notes": "Caveats", "class_names": "Class names"})
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
MAX_FRAMES = 40


def readable(key: str) -> str:
    return NAMES.get(key, key.replace("_", " ").capitalize())


def _fmt(v) -> str:
    if isinstance(v, float):
        return fmt(v)
    if isinstance(v, dict):
        return ", ".join(f"{readable(k) if k in NAMES else k} {_fmt(x)}" for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _table(data: dict, names: bool = True) -> str:
    """Key-value rows; ``names``: the keys are raw keys, shown by their readable names."""
    rows = [f"<tr><th>{html.escape(readable(str(k)) if names else str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
            for k, v in data.items()]
    return "<table>" + "".join(rows) + "</table>"


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _img(png: bytes, alt: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} src="{_data_uri(png)}" alt="{html.escape(alt)}">'


def labelled_png(path: Path, labels: list[str]) -> bytes:
    """The grid PNG at ``path`` with ``labels`` written left of its rows, in a font sized to the
    rows (:func:`mixgan.viz.label_rows`); the bytes as they are without labels."""
    if not labels:
        return path.read_bytes()
    import numpy as np
    from PIL import Image

    grid = np.asarray(Image.open(path).convert("RGB"))
    buf = io.BytesIO()
    Image.fromarray(label_rows(grid, labels)).save(buf, format="PNG")
    return buf.getvalue()


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round values (1, 2 or 5 times a power of ten apart) within [lo, hi]."""
    if hi <= lo:
        return [lo]
    if not math.isfinite(hi - lo):  # a range wider than a float holds (+-1e308): its ends and zero
        return [lo, 0.0, hi] if lo < 0 < hi else [lo, hi]
    raw = (hi - lo) / (n - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1, 2, 5, 10)), key=lambda v: abs(math.log(v / raw)))
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def svg_chart(series: dict[str, list[tuple[float, float]]], title: str, xlabel: str = "step",
              width: int = 460, height: int = 230, chart_id: str = "") -> str:
    """A line chart as inline SVG: one ``<polyline data-series=NAME>`` per series (a point per
    (x, y) pair; non-finite y left out), axes with five ticks, and a legend. Where no series has
    two points, the chart says so (``<text class="few">``) rather than draw a bare dot."""
    series = {k: [(float(x), float(y)) for x, y in v if y is not None and math.isfinite(float(y))]
              for k, v in series.items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return ""
    xs = [x for v in series.values() for x, _ in v]
    ys = [y for v in series.values() for _, y in v]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if y0 == y1:  # a flat line: half its size either side, all of it on one side near the float limit
        pad = 0.5 * (abs(y0) or 1)
        y0, y1 = (y0 - pad, y1 + pad) if math.isfinite(y1 + pad) and math.isfinite(y0 - pad) else \
            ((y0 - 2 * pad, y1) if y0 > 0 else (y0, y1 + 2 * pad))
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    left, right, top, bottom = 58, 12, 40, 40
    pw, ph = width - left - right, height - top - bottom

    def px(x):  # halves first: the difference of two huge values of opposite sign overflows
        return left + (x / 2 - x0 / 2) / (x1 / 2 - x0 / 2) * pw

    def py(y):
        return top + (1 - (y / 2 - y0 / 2) / (y1 / 2 - y0 / 2)) * ph

    parts = [f'<svg class="chart" id="{html.escape(chart_id)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" class="title">{html.escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in _ticks(y0, y1):
        parts.append(f'<line x1="{left - 4}" x2="{left}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#999"/>'
                     f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{fmt(t, ".3g")}</text>')
    for t in _ticks(x0, x1):
        parts.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#999"/>'
                     f'<text x="{px(t):.1f}" y="{top + ph + 16}" text-anchor="middle">{fmt(t, ".4g")}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{html.escape(xlabel)}</text>')
    for i, (name, points) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        parts.append(f'<polyline data-series="{html.escape(name)}" points="{coords}" fill="none" '
                     f'stroke="{color}" stroke-width="1.6"/>')
        if len(points) <= 60:
            parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}"/>' for x, y in points]
        # the legend in a row above the plot, 120 px per entry
        parts.append(f'<text x="{left + 120 * i}" y="{top - 8}" fill="{color}">&#9632; {html.escape(readable(name))}</text>')
    if max(len(v) for v in series.values()) < 2:  # a dot, not a curve: say why
        where = ", ".join(sorted({fmt(x) for v in series.values() for x, _ in v}))
        parts.append(f'<text class="few" x="{left + pw / 2}" y="{top + ph / 2 - 10}" text-anchor="middle">'
                     f'one point so far (at {html.escape(xlabel)} {where}):</text>'
                     f'<text class="few" x="{left + pw / 2}" y="{top + ph / 2 + 6}" text-anchor="middle">'
                     f'a curve needs two</text>')
    parts.append("</svg>")
    return "".join(parts)


class _Facts:
    """What the hints need to know of a run, from its files alone: the model's kind (from the
    registry), the data as its newest checkpoint describes it, the step reached and the settings."""

    def __init__(self, rd: RunDir, cfg, stats: list[dict]):
        from .data.base import DataSpec
        from .models import MODELS
        from .training.checkpoint import list_checkpoints

        self.cfg, self.run = cfg, str(rd.path)
        self.step = max((r["step"] for r in stats if isinstance(r.get("step"), int)), default=0)
        self.spec = None
        for record in reversed(list_checkpoints(rd.checkpoints)):
            try:
                self.spec = DataSpec.from_dict(json.loads(record.read_text())["data_spec"])
                self.step = max(self.step, int(json.loads(record.read_text())["step"]))
                break
            except (OSError, ValueError, KeyError, TypeError):
                continue
        cls = MODELS.get(cfg.model.name)
        self.mixture = bool(getattr(cls, "has_components", False))
        toy = cfg.data.dataset in ("ring", "grid")
        self.images = self.spec.kind == "image" if self.spec else not toy
        # labelled images: what the reference classifier (quality during training, the sweep) needs
        self.labelled = self.images and (self.spec.num_classes >= 2 if self.spec else cfg.data.dataset != "folder")
        self.class_names = self.spec.class_names if self.spec else ()

    @property
    def stopped_early(self) -> bool:
        return self.step < self.cfg.train.steps

    def every_hint(self, key: str, what: str, default: int) -> str:
        """Why nothing was made on the ``train.KEY`` schedule, naming a setting or command only
        where it would make it for this run."""
        every, steps, run = getattr(self.cfg.train, key), self.cfg.train.steps, html.escape(self.run)
        new = next((v for v in (default, 500, 200, 100, 50, 20, 10, 5, 2, 1) if v <= max(1, steps // 2)), 1)
        if every <= 0:
            return (f"{what} was not scheduled (<code>train.{key} = {every}</code>): train with "
                    f"<code>--set train.{key}={new}</code>.")
        if self.step >= every:
            return ""
        due = f"The first {what.lower()} is due at step {every}; training stopped at step {self.step} of {steps}"
        if self.stopped_early and every <= steps:
            return f"{due}: continue it with <code>mixgan train --resume --out {run}</code>."
        return (f"{due}, and <code>train.{key} = {every}</code> is beyond the run's {steps} steps: "
                f"train with <code>--set train.{key}={new}</code>.")


def _curves(stats: list[dict], facts: _Facts) -> str:
    """The training section: losses, D outputs, quality and throughput over steps."""
    numeric = [k for k in dict.fromkeys(k for r in stats for k in r)
               if k not in ("step", "time") and any(isinstance(r.get(k), (int, float)) for r in stats)]

    def series(keys):
        return {k: [(r["step"], r[k]) for r in stats if isinstance(r.get(k), (int, float))] for k in keys}

    losses = [k for k in numeric if k.startswith("loss")]
    d_out = [k for k in numeric if k in ("d_real", "d_fake")]
    other = [k for k in numeric if k not in (*losses, *d_out, *QUALITY, "it_per_s", "samples_per_s", "eval_s",
                                             "best_step", "kid_std")]
    charts = [svg_chart(series(losses), "Losses", chart_id="chart-losses"),
              svg_chart(series(d_out), "D(real) and D(fake)", chart_id="chart-d"),
              svg_chart(series(["fid"]), "FID (reference features)", chart_id="chart-fid"),
              svg_chart(series(["kid"]), "KID (reference features)", chart_id="chart-kid"),
              svg_chart(series(["precision", "recall"]), "Precision and recall", chart_id="chart-pr"),
              svg_chart(series(["it_per_s"]), "Throughput (steps per second)", chart_id="chart-throughput")]
    charts += [svg_chart(series([k]), readable(k), chart_id=f"chart-{k}") for k in other]
    out = '<div class="charts">' + "".join(c for c in charts if c) + "</div>"
    if not any(isinstance(r.get("fid"), (int, float)) for r in stats):
        if not facts.labelled:
            why = "2-D points" if not facts.images else "images without class labels"
            out += (f"<p class='hint'>No quality during training: FID, KID, precision and recall during training "
                    f"are measured with a reference classifier of labelled images, and this run's data is {why}.</p>")
        else:
            hint = facts.every_hint("eval_every", "Quality measurement", 500)
            out += f"<p class='hint'>No quality during training. {hint}</p>" if hint else ""
    return out


def _summary(rd: RunDir, cfg, stats: list[dict]) -> dict:
    info = {}
    if (rd.path / "run.json").is_file():
        try:
            info = json.loads((rd.path / "run.json").read_text())
        except json.JSONDecodeError:
            info = {}
    last = stats[-1] if stats else {}
    train_s, eval_s, prev = 0.0, 0.0, 0
    for r in stats:  # robust to resumes: each logged interval at its own rate
        if r.get("it_per_s"):
            train_s += (r["step"] - prev) / r["it_per_s"]
        eval_s += r.get("eval_s", 0.0)
        prev = r["step"]
    steps = last.get("step", 0)
    total = f"{(train_s + eval_s) / 60:.1f} min" + (f", of which {eval_s:.1f} s evaluating" if eval_s else "")
    out = {"Model": cfg.model.name, "Dataset": cfg.data.dataset, "Steps trained": f"{steps} of {cfg.train.steps}",
           "Training time": total if train_s else "unknown",
           "Mean throughput": f"{steps / train_s:.1f} steps/s" if train_s else "unknown"}
    best = rd.read_best()
    if best:
        out["Best FID"] = f"{best['fid']:.4g} at step {best['step']}"
    processes = info.get("processes", 1)
    out.update({"Device": info.get("device", "unknown") + (f" x {processes}" if processes > 1 else ""),
                "mixgan": info.get("mixgan", "unknown"), "torch": info.get("torch", "unknown"),
                "Run directory": str(rd.path)})
    return out


def _timeline(rd: RunDir, model_name: str, facts: _Facts) -> str:
    grids = sorted(rd.samples.glob("step-*.png"))
    if not grids:
        return f"<p class='hint'>No sample grid yet. {facts.every_hint('sample_every', 'Sample grid', 500)}</p>"
    if len(grids) > MAX_FRAMES:
        picks = sorted({round(i * (len(grids) - 1) / (MAX_FRAMES - 1)) for i in range(MAX_FRAMES)})
        grids = [grids[i] for i in picks]
    labels = []
    rows_file = rd.samples / "rows.json"
    if rows_file.is_file():
        try:
            labels = json.loads(rows_file.read_text()).get("labels", [])
        except json.JSONDecodeError:
            labels = []
    labels = name_classes([str(v) for v in labels], facts.class_names) if isinstance(labels, list) else []
    frames = []
    for i, path in enumerate(grids):
        step = int(path.stem.split("-")[1])
        png = labelled_png(path, labels) if path.suffix == ".png" else path.read_bytes()
        hidden = "" if i == len(grids) - 1 else " hidden"
        frames.append(f'<figure class="frame" data-step="{step}"{hidden}>{_img(png, f"samples at step {step}")}'
                      f"<figcaption>step {step}</figcaption></figure>")
    note = ("Each row: one instance; its first picture is the real instance, then samples conditioned on it."
            if model_name.startswith("icgan") else
            "Each row is labelled with what it was sampled from." if labels else "")
    n = len(grids)
    return (f'<p>{note} Slide through training ({n} grid{"s" if n > 1 else ""}).</p>'
            f'<input type="range" id="timeline" min="0" max="{n - 1}" value="{n - 1}" step="1" '
            f'aria-label="training step"> <span id="timeline-step">step {int(grids[-1].stem.split("-")[1])}</span>'
            f'<div class="frames">{"".join(frames)}</div>'
            "<script>(function(){var s=document.getElementById('timeline'),f=document.querySelectorAll('.frame'),"
            "l=document.getElementById('timeline-step');function show(){f.forEach(function(e,i){e.hidden=i!=+s.value});"
            "l.textContent='step '+f[+s.value].dataset.step}s.addEventListener('input',show);})();</script>")


def _tradeoff(rd: RunDir, facts: _Facts) -> str:
    path = rd.path / "tradeoff.json"
    if not path.is_file():
        if not facts.labelled:
            return ("<p class='hint'>The sweep measures quality and diversity with a reference classifier of "
                    "labelled images; this run's data has none.</p>")
        return f"<p>not computed yet: <code>mixgan tradeoff {html.escape(facts.run)}</code></p>"
    t = _read_part(path)
    scales = t.get("scales", [])
    parts = ["<p>Every latent scale multiplied by s (z = &mu;<sub>k</sub> + s&middot;A<sub>k</sub>&epsilon;): "
             "s &lt; 1 fewer, cleaner samples; s &gt; 1 more varied, rougher ones. The same noise in every grid.</p>"]
    grids = t.get("grids", [])
    if grids:
        cells = []
        labels = name_classes([str(v) for v in t.get("grid_labels", [])], facts.class_names)
        for s, name in zip(scales, grids):
            # every grid labelled alike, so that all are drawn at one scale
            if isinstance(name, str) and (rd.path / name).is_file() and (rd.path / name).parent == rd.path:
                png = labelled_png(rd.path / name, labels)
                cells.append(f'<figure class="scale">{_img(png, f"samples at scale {fmt(s)}")}'
                             f"<figcaption>s = {fmt(s)}</figcaption></figure>")
        parts.append('<div class="scales">' + "".join(cells) + "</div>")

    def against_scale(keys):
        return {k: list(zip(scales, t[k])) for k in keys if isinstance(t.get(k), list)}

    charts = [svg_chart(against_scale(["quality", "diversity"]), "Quality and diversity against s", "scale s",
                        chart_id="chart-scale-qd"),
              svg_chart(against_scale(["fid"]), "FID against s", "scale s", chart_id="chart-scale-fid"),
              svg_chart(against_scale(["precision", "recall"]), "Precision and recall against s", "scale s",
                        chart_id="chart-scale-pr")]
    if isinstance(t.get("quality"), list) and isinstance(t.get("diversity"), list):
        charts.append(svg_chart({"quality": list(zip(t["diversity"], t["quality"]))},
                                "Quality against diversity (the trade-off)", "diversity", chart_id="chart-tradeoff"))
    parts.append('<div class="charts">' + "".join(c for c in charts if c) + "</div>")
    rows = "".join(f"<tr><td>{fmt(s)}</td>" + "".join(f"<td>{_fmt(t[k][i])}</td>" for k in ("quality", "diversity",
                   "precision", "recall", "fid") if isinstance(t.get(k), list)) + "</tr>" for i, s in enumerate(scales))
    head = "".join(f"<th>{readable(k)}</th>" for k in ("quality", "diversity", "precision", "recall", "fid")
                   if isinstance(t.get(k), list))
    parts.append(f"<table><tr><th>s</th>{head}</tr>{rows}</table>")
    return "".join(parts)


def _read_part(path: Path) -> dict:
    """A JSON object another command wrote into the run; anything else is one clear error."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MixganError(f"{path} is not readable JSON ({' '.join(str(exc).split())}); remove it or compute it again") from None
    if not isinstance(data, dict):
        raise MixganError(f"{path} holds {type(data).__name__}, not a JSON object; remove it or compute it again")
    return data


def _part(rd: RunDir, json_name: str | None, pictures: list[tuple[str, str]], missing: str,
          class_names=()) -> str:
    """A part another command writes: its JSON as a table and its pictures, else ``missing`` (HTML)."""
    body = []
    if json_name and (rd.path / json_name).is_file():
        part = _read_part(rd.path / json_name)
        matched = part.get("gaussian_to_class")
        if class_names and isinstance(matched, list) and all(isinstance(v, int) for v in matched):
            from .viz import class_label

            part["gaussian_to_class"] = [class_label(v, class_names) for v in matched]
        body.append(_table(part))
    for picture, caption in pictures:
        if (rd.path / picture).is_file():
            body.append(f"<figure>{_img((rd.path / picture).read_bytes(), picture)}"
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "".join(body) or missing


STYLE = ("body{font-family:sans-serif;max-width:1040px;margin:auto;padding:0 12px}table{border-collapse:collapse}"
         "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%;image-rendering:pixelated}"
         ".charts{display:flex;flex-wrap:wrap;gap:8px}.chart text{font-size:11px}.chart .title{font-size:13px;"
         "font-weight:bold}.chart .few{font-size:12px;fill:#555}.hint{color:#444}"
         ".scales{display:flex;flex-wrap:wrap;gap:6px}.scale img{width:320px}"
         "figure{margin:6px 0}figcaption{font-size:13px;color:#444}pre{background:#f6f6f6;padding:8px;overflow:auto}")


def write_report(run_dir: str | Path) -> Path:
    """Render RUN/report.html from what the run directory holds; returns its path."""
    rd = RunDir(run_dir)
    cfg = rd.config()
    stats = rd.read_stats()
    title = f"{cfg.model.name} on {cfg.data.dataset}"
    facts = _Facts(rd, cfg, stats)
    run = html.escape(str(rd.path))
    todo = "<p>not computed yet: <code>{}</code></p>".format
    cluster_missing = (todo(f"mixgan cluster {run}") if facts.mixture else
                       f"<p class='hint'>Clustering assigns images to a GM-GAN's Gaussians; a {html.escape(cfg.model.name)} "
                       "run has none.</p>")
    body = [f"<h1>{html.escape(title)}</h1>", _table(_summary(rd, cfg, stats), names=False),
            "<h2>Training</h2>", _curves(stats, facts) if stats else "<p>nothing logged yet</p>",
            "<h2>Samples over training</h2>", _timeline(rd, cfg.model.name, facts),
            "<h2>Metrics</h2>", _part(rd, "metrics.json", [], todo(f"mixgan evaluate {run}")),
            "<h2>Unsupervised clustering</h2>",
            _part(rd, "cluster.json", [("cluster-confusion.png", "confusion matrix, Gaussians ordered by their "
                                        "Hungarian-matched class"),
                                       ("cluster-gaussians.png", "each Gaussian and its matched class"),
                                       ("cluster-assigned.png", "each Gaussian: generated samples | real images "
                                        "assigned to it")], cluster_missing, facts.class_names),
            "<h2>Quality and diversity against the latent scale</h2>", _tradeoff(rd, facts),
            "<h2>Resolved config</h2>",
            f"<details><summary>config.toml</summary><pre>{html.escape(rd.config_path.read_text())}</pre></details>"]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}: mixgan report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
    path = rd.path / "report.html"
    atomic_write_text(path, page)
    return path
