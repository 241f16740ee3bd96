"""``mixgan explore``: a local page to browse a run's mixture: pick a Gaussian (a class for
class-conditional models, an instance for IC-GAN), slide the latent scale s and the seed, and see
the samples and the quality/diversity of that setting.

The page and its pictures are served by the standard library's ``ThreadingHTTPServer`` on
127.0.0.1 only; the page loads nothing from anywhere else (no fonts, scripts or styles from the
network). Every picture is rendered on request through :meth:`mixgan.api.Run.sample`.
"""
from __future__ import annotations

import html
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import torch

from .errors import MixganError

DEFAULT_PORT = 8765
SCALE_RANGE = (0.05, 3.0)
MAX_SEED = 10_000
MAX_INSTANCES = 40  # IC-GAN: instances offered (evenly spaced over the stored ones)


def _png(array) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


class Explorer:
    """What the page needs from a run: the choices it offers, a grid and a score per setting.

    Thread-safe: the model is used under one lock (the server answers requests in threads).
    """

    def __init__(self, run, columns: int = 8, rows: int = 4, score_samples: int = 200):
        self.run, self.model, self.data = run, run.model, run.data
        self.columns, self.rows, self.score_samples = columns, rows, score_samples
        self.lock = threading.Lock()
        self._scores: dict[tuple, dict] = {}
        self.kind, self.choices = self._choices()

    def _choices(self) -> tuple[str, list[tuple[int, str]]]:
        m = self.model
        if getattr(m, "instances", 0) and hasattr(m, "grid_instances"):
            count = min(MAX_INSTANCES, m.instances)
            ids = torch.linspace(0, m.instances - 1, count).round().long().tolist()
            return "instance", [(i, f"instance {i}") for i in ids]
        if m.mixture and m.components:
            return "gaussian", [(k, f"Gaussian {k}") for k in range(m.components)]
        if m.class_conditional and m.num_classes:
            return "class", [(y, f"class {y}") for y in range(m.num_classes)]
        return "none", []

    def info(self) -> dict:
        cfg = self.run.cfg
        return {"model": cfg.model.name, "dataset": cfg.data.dataset, "step": self.run.step, "kind": self.kind,
                "choices": [{"value": v, "label": label} for v, label in self.choices],
                "image": self.data.is_image, "scale": list(SCALE_RANGE)}

    def parse(self, query: dict[str, list[str]]) -> tuple[int | None, float, int]:
        """(choice, scale, seed) from a request's query; out-of-range values are a MixganError."""
        def one(key, default):
            return query.get(key, [default])[0]

        try:
            raw = one("choice", "")
            choice = None if raw in ("", "all") else int(raw)
            scale, seed = float(one("scale", "1")), int(one("seed", "0"))
        except ValueError:
            raise MixganError("choice, scale and seed must be numbers") from None
        if choice is not None and choice not in {v for v, _ in self.choices}:
            raise MixganError(f"no {self.kind} {choice} in this run")
        if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
            raise MixganError(f"scale must be in [{SCALE_RANGE[0]}, {SCALE_RANGE[1]}], got {scale}")
        if not 0 <= seed <= MAX_SEED:
            raise MixganError(f"seed must be in [0, {MAX_SEED}], got {seed}")
        return choice, scale, seed

    def _request(self, choice: int | None) -> dict:
        if choice is None:
            return {}
        return {"gaussian": {"component": choice}, "class": {"label": choice},
                "instance": {"instances": [choice]}}[self.kind]

    def samples(self, n: int, choice: int | None, scale: float, seed: int):
        with self.lock:
            return self.run.sample(n, scale=scale, seed=seed, **self._request(choice))

    def grid_png(self, choice: int | None, scale: float, seed: int) -> bytes:
        """A PNG of rows x columns samples (images), or a scatter over the data (points)."""
        from .viz import image_grid

        n = self.rows * self.columns
        s = self.samples(n, choice, scale, seed)
        if self.data.is_image:
            return _png(image_grid(s.x, self.rows))
        return self._scatter(s.x, choice)

    def _scatter(self, points: torch.Tensor, choice) -> bytes:
        from .viz import _figure

        plt = _figure()
        fig, ax = plt.subplots(figsize=(4, 4))
        real = self.data.x_train[:2000]
        ax.scatter(real[:, 0], real[:, 1], s=2, c="#cccccc")
        ax.scatter(points[:, 0], points[:, 1], s=6, c="#d62728")
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        return buf.getvalue()

    def score(self, choice: int | None, scale: float, seed: int) -> dict:
        """The quality/diversity scores of ``score_samples`` samples of this setting (image data with
        a reference classifier), or the high-quality share and modes hit (toy mixtures)."""
        key = (choice, round(scale, 4), seed)
        if key in self._scores:
            return self._scores[key]
        s = self.samples(self.score_samples, choice, scale, seed)
        out: dict = {"n": self.score_samples}
        if self.data.is_image and self.data.y_train is not None and self.data.num_classes >= 2:
            from .metrics.classifier import get_classifier
            from .metrics.quality_diversity import quality_diversity

            with self.lock:
                cls = get_classifier(self.data, device=self.model.device)
                probs = cls.probs(s.x)
            qd = quality_diversity(s.x, probs, pairs=200, seed=seed)
            top = torch.bincount(probs.argmax(1), minlength=probs.shape[1])
            out.update(quality=qd["quality"], diversity=qd["diversity"], top_class=int(top.argmax()),
                       top_share=float(top.max()) / len(probs))
        elif self.data.centers is not None:
            from .metrics.toy import mode_stats

            stats = mode_stats(s.x, self.data.centers, self.data.std, min_count=5)
            out.update(high_quality=stats["high_quality"], modes=stats["modes"])
        self._scores[key] = out
        return out

    def instance_png(self, choice: int) -> bytes | None:
        """The real image of an instance (IC-GAN on images), enlarged; None where there is none."""
        from .viz import image_grid

        held = self.model.x_train is not None
        n = len(self.model.x_train if held else self.data.x_train)
        if self.kind != "instance" or not self.data.is_image or choice >= n:
            return None
        one = torch.tensor([choice])
        x = self.model.images(one.to(self.model.device)) if held else self.data.images("train", one)
        return _png(image_grid(x.cpu(), 1))

    def page(self) -> str:
        info = self.info()
        label = {"gaussian": "Gaussian", "class": "Class", "instance": "Instance"}.get(self.kind, "")
        options = "".join(f'<option value="{v}">{html.escape(text)}</option>' for v, text in self.choices)
        picker = (f'<label>{label} <select id="choice"><option value="all">all (the whole mixture)</option>'
                  f"{options}</select></label>" if self.choices else '<select id="choice" hidden></select>')
        title = f"{info['model']} on {info['dataset']}, step {info['step']}"
        return PAGE.format(title=html.escape(title), picker=picker, lo=SCALE_RANGE[0], hi=SCALE_RANGE[1],
                           max_seed=MAX_SEED, instance_img='<img id="instance" alt="the real instance" hidden>'
                           if self.kind == "instance" and self.data.is_image else "")


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}: mixgan explore</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:auto;padding:0 12px}}
.controls{{display:flex;flex-wrap:wrap;gap:18px;align-items:center;margin:10px 0}}
img{{image-rendering:pixelated}}#grid{{max-width:100%;min-width:320px;border:1px solid #ccc}}
#score{{font-size:15px;margin:8px 0}}</style></head><body>
<h1>{title}</h1>
<div class="controls">{picker}
<label>scale s <input type="range" id="scale" min="{lo}" max="{hi}" step="0.05" value="1">
<output id="scale-value">1.00</output></label>
<label>seed <input type="range" id="seed" min="0" max="99" step="1" value="0"> <output id="seed-value">0</output></label>
</div>
{instance_img}
<div><img id="grid" alt="samples"></div>
<div id="score">measuring...</div>
<p>Samples z = &mu;<sub>k</sub> + s&middot;A<sub>k</sub>&epsilon;: s &lt; 1 fewer, cleaner samples; s &gt; 1 more
varied, rougher ones. Quality: the reference classifier's mean top-class probability; diversity:
sqrt(within-class 1 &minus; MS-SSIM &times; normalised entropy of the predicted classes).</p>
<script>
(function(){{
var c=document.getElementById('choice'),s=document.getElementById('scale'),d=document.getElementById('seed'),
g=document.getElementById('grid'),sc=document.getElementById('score'),inst=document.getElementById('instance'),n=0;
function q(){{return 'choice='+encodeURIComponent(c.value||'all')+'&scale='+(+s.value).toFixed(2)+'&seed='+d.value;}}
function fmt(v){{return typeof v==='number'?v.toFixed(3):v;}}
function update(){{
  document.getElementById('scale-value').textContent=(+s.value).toFixed(2);
  document.getElementById('seed-value').textContent=d.value;
  var query=q(),mine=++n;
  g.src='grid.png?'+query;
  if(inst){{if(c.value==='all'){{inst.hidden=true;}}else{{inst.src='instance.png?choice='+c.value;inst.hidden=false;}}}}
  sc.textContent='measuring...';
  fetch('score.json?'+query).then(function(r){{return r.json();}}).then(function(r){{
    if(mine!==n)return;
    if(r.error){{sc.textContent=r.error;return;}}
    var parts=[];
    if('quality' in r)parts.push('quality '+fmt(r.quality),'diversity '+fmt(r.diversity),
      'classified as class '+r.top_class+' ('+Math.round(100*r.top_share)+'%)');
    if('high_quality' in r)parts.push('high-quality share '+fmt(r.high_quality),'modes hit '+r.modes);
    sc.textContent=(parts.join(', ')||'no score for this data')+' ('+r.n+' samples)';
  }});
}}
[c,s,d].forEach(function(e){{e.addEventListener('input',update);e.addEventListener('change',update);}});
update();
}})();
</script></body></html>"""


class _Handler(BaseHTTPRequestHandler):
    server: "ExplorerServer"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        self.server.log.append(f"{self.command} {self.path}")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (the base class's name)
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        ex = self.server.explorer
        try:
            if url.path in ("/", "/index.html"):
                self._send(200, ex.page().encode(), "text/html; charset=utf-8")
            elif url.path == "/info.json":
                self._send(200, json.dumps(ex.info()).encode(), "application/json")
            elif url.path == "/grid.png":
                self._send(200, ex.grid_png(*ex.parse(query)), "image/png")
            elif url.path == "/score.json":
                self._send(200, json.dumps(ex.score(*ex.parse(query))).encode(), "application/json")
            elif url.path == "/instance.png":
                choice, _, _ = ex.parse(query)
                png = ex.instance_png(choice) if choice is not None else None
                self._send(200, png, "image/png") if png else self._send(404, b"no instance image", "text/plain")
            else:
                self._send(404, b"not found", "text/plain")
        except MixganError as exc:
            body = json.dumps({"error": str(exc)}).encode()
            self._send(400, body, "application/json")


class ExplorerServer(ThreadingHTTPServer):
    """The explorer's HTTP server on 127.0.0.1; ``url`` is its address, ``log`` the requests served."""

    daemon_threads = True

    def __init__(self, explorer: Explorer, port: int):
        self.explorer, self.log = explorer, []
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def open_server(run_dir: str | Path, port: int | None = None, device: str = "auto", step: int | None = None,
                run=None) -> ExplorerServer:
    """An explorer server for a run (not yet serving: call ``serve_forever``). ``port`` None tries
    8765 and else takes a free port; 0 takes a free port; any other port must be free."""
    from .api import load

    if port is not None and not 0 <= port <= 65535:
        raise MixganError(f"--port must be in [0, 65535], got {port}")
    explorer = Explorer(run if run is not None else load(run_dir, device=device, step=step))
    tries = [DEFAULT_PORT, 0] if port is None else [port]
    for p in tries:
        try:
            return ExplorerServer(explorer, p)
        except OSError as exc:
            error = exc
    raise MixganError(f"cannot listen on 127.0.0.1:{tries[-1]} ({error.strerror})")
