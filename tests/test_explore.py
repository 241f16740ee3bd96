"""The explorer: grids first and cached, stale requests dropped, scores when asked, a sample
enlarged; it answers only its own address and keeps the terminal quiet on bad or broken requests."""
import http.client
import json
import shutil
import socket
import struct
import threading
import time

import numpy as np
import pytest

import mixgan
from mixgan.errors import MixganError
from mixgan.explore import Explorer, Superseded, open_server

from conftest import small_config


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explore")
    return mixgan.train(small_config(tmp, **{"data.dataset": "digits", "prior.means": "uniform", "prior.sigma": 1.0,
                                             "prior.components": 4, "model.width": 8, "train.steps": 4,
                                             "train.checkpoint_every": 4, "train.sample_every": 4}))


@pytest.fixture
def server(digits_run):
    srv = open_server(digits_run.path, port=0, run=digits_run)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def get(server, path, host=None):
    port = server.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("GET", path, skip_host=True)
    if host is not False:
        conn.putheader("Host", host or f"127.0.0.1:{port}")
    conn.endheaders()
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def raw(server, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=30) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_only_requests_for_its_own_address_are_answered(server):
    port = server.server_address[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        assert get(server, "/info.json", host)[0] == 200, host
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1", False):
        status, body = get(server, "/grid.png?choice=1", host)
        assert status == 421 and b"PNG" not in body, host


def test_bad_request_lines_long_urls_and_hang_ups_leave_the_terminal_quiet(server, capfd):
    for line in (b"GARBAGE", b"GET / HTTP/9.x", b"GET /\xff\x00 HTTP/1.1 extra"):
        assert b"Error code: 400" in raw(server, line + b"\r\n\r\n"), line
    assert raw(server, b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 400 request line too long")
    assert get(server, "/grid.png?" + "x" * 3000)[0] == 400
    for _ in range(5):  # a browser dropping an image request mid-way: reset, not closed politely
        s = socket.create_connection(("127.0.0.1", server.server_address[1]))
        s.sendall(f"GET /score.json?scale=0.7 HTTP/1.1\r\nHost: 127.0.0.1:{server.server_address[1]}\r\n\r\n".encode())
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(1.0)
    assert get(server, "/info.json")[0] == 200  # still serving
    out, err = capfd.readouterr()
    assert err == "" and "Traceback" not in out


def test_grid_is_cached_and_the_score_is_computed_only_when_asked(digits_run, monkeypatch):
    ex = Explorer(digits_run)
    png = ex.grid_png(1, 0.5, 3)
    assert ex._scores == {}
    monkeypatch.setattr(ex.run, "sample", lambda *a, **k: pytest.fail("drawn again"))
    assert ex.grid_png(1, 0.5, 3) == png
    enlarged = ex.sample_png(1, 0.5, 3, index=5)
    from PIL import Image
    import io
    assert Image.open(io.BytesIO(enlarged)).size == (256, 256)
    with pytest.raises(MixganError, match="index must be in"):
        ex.sample_png(1, 0.5, 3, index=32)


def test_a_superseded_request_is_dropped_before_it_uses_the_model(digits_run):
    ex = Explorer(digits_run, score_samples=40, score_chunk=10)
    old, new = ex.ticket("grid"), ex.ticket("grid")
    with pytest.raises(Superseded):
        ex.grid_png(2, 1.0, 0, ticket=old)
    assert ex.grid_png(2, 1.0, 0, ticket=new)[:4] == b"\x89PNG"
    old, new = ex.ticket("score"), ex.ticket("score")
    with pytest.raises(Superseded):
        ex.score(2, 1.0, 0, ticket=old)
    assert ex.score(2, 1.0, 0, ticket=new)["n"] == 40


def test_superseded_requests_answer_409_and_the_newest_gets_its_grid(server):
    ex = server.explorer
    started = threading.Event()
    real = ex.run.sample

    def slow(*a, **k):
        started.set()
        time.sleep(0.5)
        return real(*a, **k)

    ex.run.sample = slow
    results = {}
    try:
        def fetch(name, scale):
            results[name] = get(server, f"/grid.png?choice=0&scale={scale}&seed=7")[0]

        first = threading.Thread(target=fetch, args=("first", 0.3))
        first.start()
        started.wait(10)
        waiting = [threading.Thread(target=fetch, args=(f"w{i}", 0.4 + 0.1 * i)) for i in range(3)]
        for t in waiting:
            t.start()
            time.sleep(0.05)
        for t in [first, *waiting]:
            t.join(30)
    finally:
        ex.run.sample = real
    assert results["first"] == 200 and results["w2"] == 200
    assert results["w0"] == results["w1"] == 409  # overtaken while the model was busy: never drawn


def test_data_deleted_while_serving_is_an_error_the_page_can_show(tmp_path):
    from mixgan.data import load_dataset
    from mixgan.data.pack import pack_dataset

    pack_dataset(load_dataset("digits"), tmp_path / "shards")
    run = mixgan.train(small_config(tmp_path, **{"data.dataset": f"shards:{tmp_path / 'shards'}", "data.workers": 0,
                                                 "model.width": 8, "prior.components": 4, "train.steps": 2,
                                                 "train.checkpoint_every": 2, "train.sample_every": 2}))
    srv = open_server(run.path, port=0, run=run)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        assert run.data is not None
        shutil.rmtree(tmp_path / "shards")
        status, body = get(srv, "/score.json?choice=1")
        assert status == 500 and "cannot read the run's data" in json.loads(body)["error"]
        assert get(srv, "/grid.png?choice=1")[0] == 200  # the grid needs the model alone
    finally:
        srv.shutdown()
        srv.server_close()


def test_class_picker_names_the_classes(tmp_path):
    from PIL import Image

    g = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(g.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "data" / name / f"{i}.png")
    run = mixgan.train(small_config(tmp_path, **{"model.name": "cgan", "data.dataset": "folder",
                                                 "data.data_dir": str(tmp_path / "data"), "model.width": 8,
                                                 "train.steps": 2, "train.checkpoint_every": 2,
                                                 "train.sample_every": 2, "train.batch_size": 8}))
    ex = Explorer(mixgan.load(run.path))
    assert ex.choices == [(0, "class cat"), (1, "class dog")]
    assert '<option value="1">class dog</option>' in ex.page()
