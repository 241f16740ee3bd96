"""The colour image benchmarks: the emoji set as the harness installs it, the step-speed log, the
colour-quality comparison, and DiffAugment's colour op."""
from __future__ import annotations

import io
import json
import re
import tarfile

import numpy as np
import pytest
import torch

from benchmarks import _harness as harness

CATEGORIES = {"Smileys & Emotion": 3, "Food & Drink": 2, "Component": 1}


def fake_emoji_package(root, size: int = 64, categories: dict[str, int] = CATEGORIES) -> None:
    """A tarball laid out like the npm package: package/emoji.json and img/twitter/64/*.png (RGBA,
    a red disc on a transparent ground); the first emoji has a skin-tone variant."""
    from PIL import Image, ImageDraw

    root.mkdir(parents=True, exist_ok=True)
    table, files = [], {}
    for category, count in categories.items():
        for i in range(count):
            name = f"{category[:3].lower()}{i}.png"
            entry = {"category": category, "image": name}
            if not table:
                entry["skin_variations"] = {"1F3FB": {"image": "tone-" + name}}
                files["tone-" + name] = None
            table.append(entry)
            files[name] = None
    for name in files:
        im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        ImageDraw.Draw(im).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(255, 0, 0, 255))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        files[name] = buf.getvalue()
    with tarfile.open(root / "emoji-datasource-twitter-16.0.0.tgz", "w:gz") as tar:
        for name, data in [("package/emoji.json", json.dumps(table).encode())] + [
                (f"package/img/twitter/64/{n}", b) for n, b in files.items()]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_emoji_folder_sorts_pictures_into_category_folders_and_fits_other_sizes_on_white(tmp_path):
    root = tmp_path / "emoji"
    fake_emoji_package(root)
    folder = harness.emoji_folder(root=root)
    counts = {d.name: len(list(d.glob("*.png"))) for d in folder.iterdir() if d.is_dir()}
    # skin-tone variants join their emoji's category; the swatches of 'Component' are left out
    assert counts == {"Smileys-and-Emotion": 4, "Food-and-Drink": 2}
    assert harness.emoji_folder(root=root) == folder  # unpacked once, then reused

    from mixgan.data import load_dataset

    small = harness.emoji_folder(32, root=root)
    data = load_dataset("folder", str(small))
    assert data.x_train.shape[1:] == (3, 32, 32) and data.num_classes == 2
    x = torch.cat([data.x_train, data.x_test])
    assert (x[:, :, 0, 0] == 255).all()  # transparent corners on white
    assert (x[:, 0, 16, 16] == 255).all() and (x[:, 1:, 16, 16] == 0).all()  # the red disc


def tiny_folder(path, n: int = 12, size: int = 32):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(2):
        (path / f"class{c}").mkdir(parents=True)
        for i in range(n // 2):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path / f"class{c}" / f"{i}.png")
    return path


def test_step_speed_smoke_logs_flops_and_the_fraction_of_the_measured_peak(tmp_path, monkeypatch):
    from benchmarks import step_speed

    monkeypatch.setenv("MIXGAN_RESULTS_DIR", str(tmp_path / "results"))
    folder = tiny_folder(tmp_path / "images")
    rows = step_speed.main(["--smoke", "--data-dir", str(folder), "--profile", "32",
                            "--variant", "fused adam=fused train.channels_last=true"])
    assert [r["label"] for r in rows] == ["script", "gan", "gan fused"]
    script, gan, fused = rows
    # the script's G runs 128 channels at full size: more work per step than the default gan
    assert script["gflop"] > gan["gflop"] > 1
    assert gan["gflop"] == pytest.approx(fused["gflop"])  # the same work, another Adam and memory layout
    assert "Adam fused" in fused["setting"] and "channels_last True" in fused["setting"]
    for r in rows:
        assert r["fraction"] == pytest.approx(r["gflops"] / r["peak"])
        assert r["fraction_cpu"] == pytest.approx(r["gflop"] / r["cpu_s_step"] / r["peak_cpu"])
        assert r["img_s"] == pytest.approx(r["gflops"] / r["gflop"] * (64 if r["label"] == "script" else 32))
    entry = (tmp_path / "results" / "step_speed.md").read_text().split("\n## ")[-1]
    assert f"| 32 | gan | {gan['setting']} | {gan['img_s']:.1f} |" in entry
    assert re.search(r"Where the time goes, gan at 32 px \(self CPU time\): aten::\w+ \d+%", entry)


def test_colour_quality_summary_checks_every_seed_against_the_script():
    from benchmarks import colour_quality

    def rows(script_recall, gan_ratio, gan_recall):
        return [{"label": "dcgan", "steps": 10, "fid": 100.0, "fid_ratio": 1.0, "recall": script_recall},
                {"label": "gan", "steps": 30, "fid": 100.0 * gan_ratio, "fid_ratio": gan_ratio, "recall": gan_recall}]

    text, stats = colour_quality.summary({0: rows(0.2, 0.4, 0.3), 1: rows(0.2, 0.45, 0.25)})
    assert "gan: FID ≤ 0.5 × script's in 2 of 2 seeds, recall ≥ script's in 2 of 2: met" in text
    assert "| gan | 30 ± 0 | 42.5 ± 3.5 | 0.425 ± 0.035 |" in text
    text, _ = colour_quality.summary({0: rows(0.2, 0.4, 0.3), 1: rows(0.2, 0.6, 0.3)})
    assert "in 1 of 2 seeds" in text and "not met" in text
    text, _ = colour_quality.summary({0: rows(0.3, 0.4, 0.2)})
    assert "recall ≥ script's in 0 of 1: not met" in text


@pytest.mark.slow  # trains the reference classifier on the (fake) set and two entries in their own processes
def test_colour_quality_smoke_logs_the_script_and_gan_on_the_emoji(tmp_path, monkeypatch):
    from benchmarks import colour_quality

    monkeypatch.setenv("MIXGAN_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("MIXGAN_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MIXGAN_CACHE", str(tmp_path / "mixgan-cache"))
    fake_emoji_package(tmp_path / "cache" / "emoji-twitter", categories={"Flags": 50, "Food & Drink": 50})
    stats = colour_quality.main(["--smoke", "--out", str(tmp_path / "runs")])
    assert set(stats) == {"dcgan", "gan"} and stats["gan"]["steps"] == [8]
    entry = (tmp_path / "results" / "colour_quality.md").read_text().split("\n## ")[-1]
    assert "at 32 px" in entry and f"| gan | 8 | {stats['gan']['fid'][0]:.3g} |" in entry


def test_colour_augment_changes_each_image_differently_and_passes_gradients():
    from mixgan.nets.augment import DiffAugment

    x = (torch.rand(16, 3, 8, 8) * 2 - 1).requires_grad_(True)
    torch.manual_seed(0)
    out = DiffAugment("color")(x)
    torch.manual_seed(0)
    again = DiffAugment("color")(x)
    assert torch.equal(out, again)  # the global RNG decides, so a seeded step repeats
    shift = (out - x).mean((1, 2, 3))
    assert shift.std() > 0.05  # brightness and contrast drawn per image
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
