"""Pictures: image grids with Pillow, scatter plots and curves with matplotlib (Agg)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1], N x C x H x W -> uint8 N x H x W x C."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def image_grid(x: torch.Tensor, rows: int, pad: int = 1, upscale: int | None = None) -> np.ndarray:
    """Tile N images into ``rows`` rows; small images are enlarged so the grid is legible."""
    imgs = to_uint8(x)
    n, h, w, c = imgs.shape
    cols = -(-n // rows)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = imgs[i]
    scale = upscale or max(1, 64 // h)
    if scale > 1:
        grid = grid.repeat(scale, 0).repeat(scale, 1)
    return grid[..., 0] if c == 1 else grid


def _write_png(save, path: str | Path) -> None:
    """Render a PNG with ``save(buffer)`` and write it atomically."""
    import io

    from .io import atomic_write_bytes

    buf = io.BytesIO()
    save(buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def save_png(array: np.ndarray, path: str | Path) -> None:
    from PIL import Image

    _write_png(lambda buf: Image.fromarray(array).save(buf, format="PNG"), path)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> None:
    _write_png(lambda buf: fig.savefig(buf, format="png", dpi=110, bbox_inches="tight"), path)
    _figure().close(fig)


def scatter(points: torch.Tensor, path: str | Path, colors: torch.Tensor | None = None,
            reference: torch.Tensor | None = None, title: str = "") -> None:
    """2-D samples coloured by component, over the true mode centres."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 5))
    p = points.detach().cpu().numpy()
    c = colors.cpu().numpy() if colors is not None else None
    ax.scatter(p[:, 0], p[:, 1], s=2, c=c, cmap="tab20" if c is not None else None, alpha=0.6)
    if reference is not None:
        r = reference.cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=30, marker="x", c="k")
    ax.set_aspect("equal")
    ax.set_title(title)
    save_figure(fig, path)


def save_samples_picture(x: torch.Tensor, rows: int, path: str | Path, colors: torch.Tensor | None = None,
                         reference: torch.Tensor | None = None, title: str = "") -> None:
    """A grid PNG for images, a scatter PNG for points."""
    if x.ndim == 4:
        save_png(image_grid(x, rows), path)
    else:
        scatter(x, path, colors, reference, title)


def confusion_plot(counts: np.ndarray, path: str | Path, xlabel: str = "true class", ylabel: str = "cluster",
                   title: str = "", yticklabels: list[str] | None = None,
                   xticklabels: list[str] | None = None) -> None:
    """A confusion matrix with counts written in the cells (rows named by ``yticklabels``, columns by
    ``xticklabels``, else numbered)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(0.45 * counts.shape[1] + 2, 0.45 * counts.shape[0] + 1.5))
    ax.imshow(counts, cmap="Blues")
    for (i, j), v in np.ndenumerate(counts):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if v > counts.max() / 2 else "black")
    ax.set_xticks(range(counts.shape[1]))
    ax.set_yticks(range(counts.shape[0]))
    if yticklabels is not None:
        ax.set_yticklabels(yticklabels, fontsize=7)
    if xticklabels is not None:
        ax.set_xticklabels(xticklabels, fontsize=7, rotation=45, ha="right")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    save_figure(fig, path)


def labelled_rows(x: torch.Tensor, rows: int, labels: list[str], path: str | Path, title: str = "",
                  divider: int | None = None) -> None:
    """An image grid with a text label at the start of every row (e.g. "G3 -> class 7"), and a
    vertical line before column ``divider`` where given (between generated and real images)."""
    plt = _figure()
    grid = image_grid(x, rows, upscale=1)
    fig, ax = plt.subplots(figsize=(8, 0.45 * rows + 1))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, interpolation="nearest")
    if divider is not None:
        width = x.shape[-1] + 1  # an image and its padding of 1 (image_grid's default)
        ax.axvline(divider * width, color="#d62728", linewidth=2)
    h = grid.shape[0] / rows
    ax.set_yticks([h * (r + 0.5) for r in range(rows)])
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xticks([])
    ax.set_title(title)
    save_figure(fig, path)


def tradeoff_plot(quality: list[float], diversity: list[float], scales: list[float], path: str | Path,
                  title: str = "") -> None:
    """Quality against diversity along the latent-scale sweep, each point marked with its s."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(diversity, quality, "o-")
    for d, q, s in zip(diversity, quality, scales):
        ax.annotate(f"s={s:g}", (d, q), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("diversity")
    ax.set_ylabel("quality")
    ax.set_title(title)
    save_figure(fig, path)
