"""``mixgan explore``: a local page to browse a run's mixture: pick a Gaussian (a class for
class-conditional models, an instance for IC-GAN), slide the latent scale s and the seed, and see
the samples and the quality/diversity of that setting.

The page and its pictures are served by the standard library's ``ThreadingHTTPServer`` on
127.0.0.1 only, and answer only requests addressed to it (``Host`` 127.0.0.1, localhost or [::1]
with its port), so another web page cannot read them through a rebound DNS name. The page loads
nothing from anywhere else (no fonts, scripts or styles from the network).

A move of a control asks for its grid first; the grid is drawn at once (cached per setting) and a
request that a newer one has overtaken is dropped before it uses the model. The score of a
setting is computed only when the page asks for it, once its grid is shown, in chunks that give
way to a newer request, and is cached per setting.
"""
from __future__ import annotations

import html
import io
import json
import threading
from collections import OrderedDict
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


class Superseded(Exception):
    """A newer request of the same kind arrived while this one waited: it is dropped unanswered."""


class Explorer:
    """What the page needs from a run: the choices it offers, a grid and a score per setting.

    Thread-safe: the model is used under one lock (the server answers requests in threads). Each
    grid or score request may take a ticket (:meth:`ticket`); one whose ticket is no longer the
    newest of its kind raises :class:`Superseded` instead of computing, and a score gives way
    (between chunks of ``score_chunk`` samples) to any grid waiting for the model.
    """

    def __init__(self, run, columns: int = 8, rows: int = 4, score_samples: int = 200, score_chunk: int = 50,
                 cache_size: int = 64):
        self.run, self.model, self.data = run, run.model, run.data
        self.columns, self.rows, self.score_samples, self.score_chunk = columns, rows, score_samples, score_chunk
        self.lock = threading.Lock()
        self._state = threading.Condition()  # guards the caches, tickets and waiting grids
        self._scores: dict[tuple, dict] = {}
        self._grids: OrderedDict[tuple, tuple[bytes, torch.Tensor]] = OrderedDict()
        self.cache_size = cache_size
        self._tickets = {"grid": 0, "score": 0}
        self._grids_waiting = 0
        self._classifier = None
        self.kind, self.choices = self._choices()

    def _choices(self) -> tuple[str, list[tuple[int, str]]]:
        from .viz import class_label

        m = self.model
        if m.instance_conditional and m.instances:
            count = min(MAX_INSTANCES, m.instances)
            ids = torch.linspace(0, m.instances - 1, count).round().long().tolist()
            return "instance", [(i, f"instance {i}") for i in ids]
        if m.has_components and m.components:
            return "gaussian", [(k, f"Gaussian {k}") for k in range(m.components)]
        if m.class_conditional and m.num_classes:
            names = m.spec.class_names
            return "class", [(y, f"class {class_label(y, names)}" if names else f"class {y}")
                             for y in range(m.num_classes)]
        return "none", []

    def info(self) -> dict:
        cfg = self.run.cfg
        return {"model": cfg.model.name, "dataset": cfg.data.dataset, "step": self.run.step, "kind": self.kind,
                "choices": [{"value": v, "label": label} for v, label in self.choices],
                "image": self.data.is_image, "scale": list(SCALE_RANGE), "rows": self.rows, "columns": self.columns}

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

    def ticket(self, kind: str) -> int:
        """A place in line for a ``grid`` or ``score`` request: the newest ticket of a kind is the
        only one still served."""
        with self._state:
            self._tickets[kind] += 1
            return self._tickets[kind]

    def _check(self, kind: str, ticket: int | None) -> None:
        if ticket is not None and ticket != self._tickets[kind]:
            raise Superseded(kind)

    def _request(self, choice: int | None) -> dict:
        if choice is None:
            return {}
        return {"gaussian": {"component": choice}, "class": {"label": choice},
                "instance": {"instances": [choice]}}[self.kind]

    def samples(self, n: int, choice: int | None, scale: float, seed: int):
        with self.lock:
            return self.run.sample(n, scale=scale, seed=seed, **self._request(choice))

    @staticmethod
    def _key(choice, scale, seed) -> tuple:
        return choice, round(scale, 4), seed

    def _grid(self, choice: int | None, scale: float, seed: int, ticket: int | None = None) -> tuple[bytes, torch.Tensor]:
        """(PNG, samples) of a setting, from the cache or drawn now."""
        from .viz import image_grid

        key = self._key(choice, scale, seed)
        with self._state:
            if key in self._grids:
                self._grids.move_to_end(key)
                return self._grids[key]
            self._check("grid", ticket)
            self._grids_waiting += 1
        try:
            with self.lock:
                self._check("grid", ticket)
                x = self.run.sample(self.rows * self.columns, scale=scale, seed=seed, **self._request(choice)).x
        finally:
            with self._state:
                self._grids_waiting -= 1
                self._state.notify_all()
        png = _png(image_grid(x, self.rows)) if self.data.is_image else self._scatter(x, choice)
        with self._state:
            self._grids[key] = (png, x)
            while len(self._grids) > self.cache_size:
                self._grids.popitem(last=False)
        return png, x

    def grid_png(self, choice: int | None, scale: float, seed: int, ticket: int | None = None) -> bytes:
        """A PNG of rows x columns samples (images), or a scatter over the data (points)."""
        return self._grid(choice, scale, seed, ticket)[0]

    def sample_png(self, choice: int | None, scale: float, seed: int, index: int, size: int = 256) -> bytes:
        """One sample of a setting's grid (row-major ``index``), enlarged to ``size`` px."""
        from .viz import image_grid

        if not self.data.is_image:
            raise MixganError("points have no single-sample picture")
        if not 0 <= index < self.rows * self.columns:
            raise MixganError(f"index must be in [0, {self.rows * self.columns - 1}], got {index}")
        x = self._grid(choice, scale, seed)[1]
        return _png(image_grid(x[index: index + 1], 1, pad=0, upscale=max(1, size // x.shape[-1])))

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

    def _score_samples(self, choice, scale: float, seed: int, ticket: int | None) -> torch.Tensor:
        """``score_samples`` samples of a setting, drawn ``score_chunk`` at a time; before each
        chunk any waiting grid goes first, and a superseded request stops."""
        gen = torch.Generator(self.model.device).manual_seed(seed)
        parts, done = [], 0
        while done < self.score_samples:
            n = min(self.score_chunk, self.score_samples - done)
            with self._state:
                while self._grids_waiting:
                    self._state.wait(0.05)
                self._check("score", ticket)
            with self.lock:
                self._check("score", ticket)
                parts.append(self.model.sample(n, scale=scale, generator=gen, **self._request(choice)).x)
            done += n
        return torch.cat(parts)

    def score(self, choice: int | None, scale: float, seed: int, ticket: int | None = None) -> dict:
        """The quality/diversity scores of ``score_samples`` samples of this setting (image data with
        a reference classifier), or the high-quality share and modes hit (toy mixtures)."""
        key = self._key(choice, scale, seed)
        with self._state:
            if key in self._scores:
                return self._scores[key]
        x = self._score_samples(choice, scale, seed, ticket)
        out: dict = {"n": self.score_samples}
        if self.data.is_image and self.data.y_train is not None and self.data.num_classes >= 2:
            from .metrics.quality_diversity import quality_diversity
            from .viz import class_label

            with self.lock:
                if self._classifier is None:
                    from .metrics.classifier import get_classifier

                    self._classifier = get_classifier(self.data, device=self.model.device)
                probs = self._classifier.probs(x)
            self._check("score", ticket)
            qd = quality_diversity(x, probs, pairs=200, seed=seed)
            top = torch.bincount(probs.argmax(1), minlength=probs.shape[1])
            out.update(quality=qd["quality"], diversity=qd["diversity"], top_class=int(top.argmax()),
                       top_name=class_label(int(top.argmax()), self.data.class_names),
                       top_share=float(top.max()) / len(probs))
        elif self.data.centers is not None:
            from .metrics.toy import mode_stats

            stats = mode_stats(x, self.data.centers, self.data.std, min_count=5)
            out.update(high_quality=stats["high_quality"], modes=stats["modes"])
        with self._state:
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
                           rows=self.rows, columns=self.columns, image="true" if self.data.is_image else "false",
                           max_seed=MAX_SEED, instance_img='<img id="instance" alt="the real instance" hidden>'
                           if self.kind == "instance" and self.data.is_image else "")


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}: mixgan explore</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:auto;padding:0 12px}}
.controls{{display:flex;flex-wrap:wrap;gap:18px;align-items:center;margin:10px 0}}
img{{image-rendering:pixelated}}#grid{{max-width:100%;min-width:320px;border:1px solid #ccc;cursor:zoom-in}}
#score{{font-size:15px;margin:8px 0}}#status{{color:#a00;min-height:1.2em}}
#zoom{{position:fixed;inset:0;background:rgba(0,0,0,.75);display:flex;align-items:center;justify-content:center;
cursor:zoom-out}}#zoom[hidden]{{display:none}}#zoom img{{width:min(80vw,80vh);height:auto;background:#fff}}</style></head><body>
<h1>{title}</h1>
<div class="controls">{picker}
<label>scale s <input type="range" id="scale" min="{lo}" max="{hi}" step="0.05" value="1">
<output id="scale-value">1.00</output></label>
<label>seed <input type="range" id="seed" min="0" max="99" step="1" value="0"> <output id="seed-value">0</output></label>
</div>
{instance_img}
<div><img id="grid" alt="samples" title="click a sample to enlarge it"></div>
<div id="status"></div>
<div id="score">measuring...</div>
<div id="zoom" hidden><img id="zoom-img" alt="one sample, enlarged"></div>
<p>Samples z = &mu;<sub>k</sub> + s&middot;A<sub>k</sub>&epsilon;: s &lt; 1 fewer, cleaner samples; s &gt; 1 more
varied, rougher ones. Quality: the reference classifier's mean top-class probability; diversity:
sqrt(within-class 1 &minus; MS-SSIM &times; normalised entropy of the predicted classes). Click a sample to enlarge it.</p>
<script>
(function(){{
var c=document.getElementById('choice'),s=document.getElementById('scale'),d=document.getElementById('seed'),
g=document.getElementById('grid'),sc=document.getElementById('score'),st=document.getElementById('status'),
inst=document.getElementById('instance'),zoom=document.getElementById('zoom'),zi=document.getElementById('zoom-img'),
ROWS={rows},COLS={columns},IMAGE={image},gridCtl=null,scoreCtl=null,scoreTimer=null;
function q(){{return 'choice='+encodeURIComponent(c.value||'all')+'&scale='+(+s.value).toFixed(2)+'&seed='+d.value;}}
function fmt(v){{if(typeof v!=='number')return v;var t=v.toFixed(3);return /^-0\\.?0*$/.test(t)?t.slice(1):t;}}
function failed(r){{return r.json().then(function(e){{throw new Error(e.error||r.statusText);}},
  function(){{throw new Error(r.status+' '+r.statusText);}});}}
function score(query){{
  var ctl=scoreCtl=new AbortController();
  fetch('score.json?'+query,{{signal:ctl.signal}}).then(function(r){{
    if(r.status===409)return null;
    return r.ok?r.json():failed(r);
  }}).then(function(r){{
    if(!r||ctl!==scoreCtl)return;
    var parts=[];
    if('quality' in r)parts.push('quality '+fmt(r.quality),'diversity '+fmt(r.diversity),
      'classified as class '+r.top_name+' ('+Math.round(100*r.top_share)+'%)');
    if('high_quality' in r)parts.push('high-quality share '+fmt(r.high_quality),'modes hit '+r.modes);
    sc.textContent=(parts.join(', ')||'no score for this data')+' ('+r.n+' samples)';
  }}).catch(function(e){{if(e.name!=='AbortError'&&ctl===scoreCtl)sc.textContent='no score: '+e.message;}});
}}
function update(){{
  document.getElementById('scale-value').textContent=(+s.value).toFixed(2);
  document.getElementById('seed-value').textContent=d.value;
  var query=q();
  if(gridCtl)gridCtl.abort();
  if(scoreCtl)scoreCtl.abort();
  scoreCtl=null;clearTimeout(scoreTimer);
  if(inst){{if(c.value==='all'){{inst.hidden=true;}}else{{inst.src='instance.png?choice='+c.value;inst.hidden=false;}}}}
  sc.textContent='measuring...';
  var ctl=gridCtl=new AbortController();
  fetch('grid.png?'+query,{{signal:ctl.signal}}).then(function(r){{
    if(r.status===409)return null;
    return r.ok?r.blob():failed(r);
  }}).then(function(b){{
    if(!b||ctl!==gridCtl)return;
    var old=g.src;g.src=URL.createObjectURL(b);g.dataset.query=query;st.textContent='';
    if(old.indexOf('blob:')===0)URL.revokeObjectURL(old);
    scoreTimer=setTimeout(function(){{score(query);}},250);
  }}).catch(function(e){{
    if(e.name==='AbortError'||ctl!==gridCtl)return;
    st.textContent='no grid: '+e.message;sc.textContent='';
  }});
}}
g.addEventListener('click',function(e){{
  if(!IMAGE||!g.dataset.query)return;
  var b=g.getBoundingClientRect(),col=Math.floor((e.clientX-b.left)/b.width*COLS),
      row=Math.floor((e.clientY-b.top)/b.height*ROWS);
  col=Math.min(COLS-1,Math.max(0,col));row=Math.min(ROWS-1,Math.max(0,row));
  zi.src='sample.png?'+g.dataset.query+'&index='+(row*COLS+col);zoom.hidden=false;
}});
zoom.addEventListener('click',function(){{zoom.hidden=true;}});
[c,s,d].forEach(function(e){{e.addEventListener('input',update);e.addEventListener('change',update);}});
update();
}})();
</script></body></html>"""

MAX_URL = 2048  # longer request targets are refused (400): no setting needs one
QUIET = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)  # the browser went away: nothing to say


class _Handler(BaseHTTPRequestHandler):
    server: "ExplorerServer"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        self.server.log.append(f"{getattr(self, 'command', '') or '-'} {getattr(self, 'path', '') or '-'} "
                               + (format % args if args else format)[:200])

    def send_error(self, code, message=None, explain=None):
        if code == 414:  # a request line longer than the standard library reads: a bad request like any other
            code, message = 400, "request line too long"
        super().send_error(code, message, explain)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except QUIET:
            self.close_connection = True

    def _send(self, status: int, body: bytes, kind: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
        except QUIET:
            self.close_connection = True

    def _json(self, status: int, data: dict) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _host_allowed(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        port = self.server.server_address[1]
        return host in {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}

    def do_GET(self):  # noqa: N802 (the base class's name)
        if len(self.path) > MAX_URL:
            self._send(400, b"request target too long", "text/plain")
            return
        if not self._host_allowed():
            self._send(421, b"this server answers only requests for its own address", "text/plain")
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        ex = self.server.explorer
        try:
            if url.path in ("/", "/index.html"):
                self._send(200, ex.page().encode(), "text/html; charset=utf-8")
            elif url.path == "/info.json":
                self._json(200, ex.info())
            elif url.path == "/grid.png":
                ticket = ex.ticket("grid")
                self._send(200, ex.grid_png(*ex.parse(query), ticket=ticket), "image/png")
            elif url.path == "/score.json":
                ticket = ex.ticket("score")
                self._json(200, ex.score(*ex.parse(query), ticket=ticket))
            elif url.path == "/sample.png":
                try:
                    index = int(query.get("index", [""])[0])
                except ValueError:
                    raise MixganError("index must be a number") from None
                self._send(200, ex.sample_png(*ex.parse(query), index=index), "image/png")
            elif url.path == "/instance.png":
                choice, _, _ = ex.parse(query)
                png = ex.instance_png(choice) if choice is not None else None
                self._send(200, png, "image/png") if png else self._send(404, b"no instance image", "text/plain")
            else:
                self._send(404, b"not found", "text/plain")
        except Superseded:
            self._json(409, {"superseded": True})
        except QUIET:
            self.close_connection = True
        except MixganError as exc:
            self._json(400, {"error": str(exc)})
        except OSError as exc:  # the run's data moved or deleted while serving
            where = f" ({exc.filename})" if exc.filename else ""
            self._json(500, {"error": f"cannot read the run's data: {exc.strerror or exc}{where}"})
        except Exception as exc:  # noqa: BLE001 (one line to the page, never a traceback in the terminal)
            self.log_message("error: %s", " ".join(str(exc).split()) or type(exc).__name__)
            self._json(500, {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]})


class ExplorerServer(ThreadingHTTPServer):
    """The explorer's HTTP server on 127.0.0.1; ``url`` is its address, ``log`` the requests served."""

    daemon_threads = True

    def __init__(self, explorer: Explorer, port: int):
        self.explorer, self.log = explorer, []
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request, client_address):
        """An error outside a request's own handling: one line in the log, no traceback."""
        import sys

        exc = sys.exc_info()[1]
        if not isinstance(exc, QUIET):
            self.log.append(f"error: {type(exc).__name__}: {exc}")

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
