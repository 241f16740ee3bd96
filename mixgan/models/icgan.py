"""Instance-conditioned GAN (Casanova et al. 2021): p(x) = 1/M sum_i p(x | h_i).

Every training image x_i is embedded, h_i = f(x_i) (L2-normalised; ``model.embedding``), and
its neighbourhood A_i is the ``model.k`` nearest other instances by cosine similarity. A
training step picks instances i (the loop's batch indices), takes a random real neighbour
x_j from each A_i, and shows D (x_j, h_i) as real and (G(z, h_i), h_i) as fake. h enters G
through conditional batch norm (conv bodies) or joined with z (MLP bodies), and D through a
projection head. The loss is always the hinge loss, as in the paper (``model.loss`` is ignored).

``icgan-class`` also conditions G and D on the neighbour's class y_j: p(x | h, y).

The features (M x d float32) and neighbour table (M x k int32) are computed a batch at a time
into .npy files of the cache (``mixgan.embeddings.store``), linked into ``RUN/instances/`` and
reused on resume; on the CPU a training step reads its batch's rows of them (``NpyRows``). The
embedding's state travels in every checkpoint, so a loaded run samples stored instances, or embeds
unseen ones, without the training set.
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataSpec, Dataset
from ..embeddings import embed, get_embedding, resolve_method
from ..data.batches import REAL, Neighbours, Rows
from ..embeddings.store import InstanceStore, embedding_key, train_batches, train_count
from ..errors import MixganError
from ..nets import build_discriminator
from ..data.rows import NpyRows
from .base import Batch, GANModel, SamplePlan, Samples, as_tensor, check_labelled, held

INSTANCES_DIR = "instances"
INSTANCES_VERSION = 1


class ICGAN(GANModel):
    name = "icgan"
    instance_conditional = True
    uses_labels = False  # icgan-class: also conditioned on the neighbour's class

    features = held()  # h_i, M x h_dim, L2-normalised
    neighbors = held()  # A_i, M x k indices
    labels = held()  # y_i (icgan-class), or None

    def __init__(self, cfg, spec: DataSpec, device: torch.device | str = "cpu"):
        super().__init__(cfg, spec, device)
        self.loss_kind = "hinge"
        self.features = torch.zeros(0, self.h_dim)
        self.neighbors = torch.zeros(0, cfg.model.k, dtype=torch.long)
        self.labels = None
        self._files = None  # instance files of the cache, to link into the run

    @cached_property
    def embedding(self):
        """f, the instance embedding (``model.embedding``), derived from the config and data spec."""
        return get_embedding(self.cfg.model.embedding, self.spec)

    @property
    def h_dim(self) -> int:
        return self.embedding.dim

    # ---- conditioning ---------------------------------------------------------------
    def check(self, spec: DataSpec) -> None:
        if self.uses_labels:
            check_labelled(self.name, spec, " (use model.name=icgan)")

    def g_cond_dim(self) -> int:
        return self.h_dim + (self.num_classes if self.uses_labels else 0)

    def g_cond_mode(self) -> str:
        return "cbn" if self.conv_body else "concat"

    def build_discriminator(self) -> nn.Module:
        m = self.cfg.model
        return build_discriminator(m.arch, self.shape, m.width, cond_dim=self.g_cond_dim(),
                                   spectral_norm=m.spectral_norm)

    def condition(self, h: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The vector G and D see: h, joined with the one-hot class for icgan-class."""
        if not self.uses_labels:
            return h
        return torch.cat([h, F.one_hot(y, self.num_classes).to(h.dtype)], 1)

    def d_logits(self, b: Batch, train: bool = True) -> torch.Tensor:
        c = b.c if b.c is not None else self.condition(b.h, b.y)
        return (self.D_train if train else self.D)(b.x, c)

    # ---- instances and neighbourhoods -------------------------------------------------
    def _meta(self, data: Dataset, m: int) -> dict:
        mc = self.cfg.model
        backend = resolve_method(mc.knn, m, self.h_dim, mc.knn_threshold)
        return {"version": INSTANCES_VERSION, "embedding": self.embedding.name,
                "embedding_key": embedding_key(self.embedding), "k": mc.k, "backend": backend,
                "instances": m, "dim": self.h_dim, "fingerprint": data.fingerprint(),
                "labels": self.uses_labels or data.y_train is not None}

    def open_run(self, path: Path, expect: dict | None = None) -> bool:
        """Use the instance files of the run at ``path`` (read on demand) if they are complete and,
        with ``expect``, were made for the same data and settings; False otherwise."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(path) / INSTANCES_DIR
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            return False
        if expect is not None and meta != expect:
            return False
        try:
            m, k, d = int(meta["instances"]), int(meta["k"]), int(meta["dim"])
            state = load_file(str(folder / "embedding.safetensors"))
        except (OSError, KeyError, TypeError, ValueError, SafetensorError):
            return False
        feats = NpyRows.open(folder / "features.npy", (m, d), np.float32)
        nbrs = NpyRows.open(folder / "neighbors.npy", (m, k), np.int32)
        labels = NpyRows.open(folder / "labels.npy", (m,), np.int64) if meta.get("labels") else None
        if feats is None or nbrs is None or (meta.get("labels") and labels is None) or d != self.h_dim:
            return False
        self.embedding.load_state_dict(state)
        self._set_instances(feats, nbrs, labels)
        self._files = None
        return True

    def _set_instances(self, features, neighbors, labels) -> None:
        """Hold the tables: on the CPU the files' rows, read a batch at a time (:class:`NpyRows`),
        on a GPU a copy in device memory."""
        self.features = features
        self.neighbors = neighbors if isinstance(neighbors, NpyRows) else torch.as_tensor(neighbors).cpu()
        self.labels = None if labels is None else as_tensor(labels).long()

    def attach_data(self, data: Dataset) -> None:
        """Embed the training set a batch at a time and find each instance's neighbours, into
        .npy files of the cache (reused by any run on the same data and embedding), or
        reuse the run's own files on resume."""
        super().attach_data(data)
        m, k = train_count(data), self.cfg.model.k
        if k >= m:
            raise MixganError(f"k={k} neighbours need more than {k} training instances; '{data.name}' has {m}")
        self._meta_now = self._meta(data, m)
        if self.cfg.out and self.open_run(Path(self.cfg.out), self._meta_now):
            return
        store = InstanceStore.for_data(data, self.embedding)
        feats = store.features(self.embedding, lambda: self.embedding.fit(data), lambda: train_batches(data), m,
                               self.device)
        nbrs = store.neighbors(feats, k, self._meta_now["backend"])
        self._set_instances(feats, nbrs, data.y_train)
        self._files = {"features.npy": store.folder / store.FEATURES,
                       "neighbors.npy": store.folder / store.neighbors_name(k, self._meta_now["backend"]),
                       "embedding.safetensors": store.folder / store.EMBEDDING}

    def attach_run(self, path: Path) -> None:
        """Link (or copy) the instance files into ``RUN/instances/`` the first time; meta.json
        is written last, so a run holds either complete files or none it would use."""
        from ..embeddings.store import atomic_npy, link_or_copy, write_json
        from ..training import dist

        if not getattr(self, "_files", None) or not dist.is_main():
            return
        folder = Path(path) / INSTANCES_DIR
        (folder / "meta.json").unlink(missing_ok=True)
        for name, src in self._files.items():
            link_or_copy(src, folder / name)
        if self._meta_now["labels"]:
            with atomic_npy(folder / "labels.npy", (self.instances,), np.int64) as out:
                out[:] = self.labels.cpu().numpy()
        write_json(folder / "meta.json", self._meta_now)
        self._files = None

    def neighbours(self) -> Neighbours:
        """The image shown for instance i is a random real neighbour x_j of it (see ``pick_rows``)."""
        return Neighbours(self.neighbors, REAL)

    def real_batch(self, rows: Rows) -> Batch:
        """The neighbours' images, conditioned on the features of the instances they were picked for
        (only the batch's rows of the features are read)."""
        h = self.features[rows.index.to(self.features.device)].to(self.device)
        return Batch(rows.x, h=h, y=rows.y if self.uses_labels else None)

    def fake(self, n: int, gen: torch.Generator, grad: bool, batch: Batch | None = None):
        """G(z, h_i) for the batch's instances i (cycled if more samples than instances are asked)."""
        if batch is None:
            raise MixganError("IC-GAN generates for given instances: a training batch is required")
        rows = torch.arange(n, device=batch.h.device) % len(batch.h)
        c = self.condition(batch.h[rows], batch.y[rows] if self.uses_labels else None)
        eps, k = self.G.prior.draw(n, gen, device=self.device)
        return Batch(self.generate(eps, k, c, grad), c=c)

    # ---- state ----------------------------------------------------------------------
    def extra_tensors(self) -> dict[str, torch.Tensor]:
        """The embedding's state (the features and neighbours live in ``RUN/instances/``)."""
        return {f"embedding.{k}": v.detach().cpu().contiguous() for k, v in self.embedding.state_dict().items()}

    def load_extra_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        state = {k[len("embedding."):]: v for k, v in tensors.items() if k.startswith("embedding.")}
        if state:
            self.embedding.load_state_dict(state)
        if "features" in tensors:  # a checkpoint made before the instance files existed
            self._set_instances(tensors["features"].float(), tensors["neighbors"].long(),
                                tensors["labels"] if "labels" in tensors else None)

    # ---- sampling -------------------------------------------------------------------
    @property
    def instances(self) -> int:
        return len(self.features)

    def embed_instances(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised features of new instances (images or points shaped like the training data)."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if tuple(x.shape[1:]) != tuple(self.shape) or len(x) == 0:
            raise MixganError(f"instances must be N x {' x '.join(map(str, self.shape))} like the training data, "
                              f"got shape {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise MixganError("instances contain NaN or infinite values")
        return embed(self.embedding, x.to(self.device))

    def representatives(self, count: int, seed: int = 0) -> torch.Tensor:
        """Indices of ``count`` stored instances that represent them all: the member of each k-means
        cluster (on the features) nearest its centre. Above ``model.knn_threshold`` instances,
        mini-batch k-means over the stored features, read a batch at a time (a cluster left empty gives none, so
        a few fewer may come back)."""
        from sklearn.cluster import KMeans

        from ..embeddings.store import rows_of, streamed_representatives

        m = self.instances
        if count < 1:
            raise MixganError(f"the number of representative instances must be >= 1, got {count}")
        if count >= m:
            return torch.arange(m)
        if m > self.cfg.model.knn_threshold:
            return torch.from_numpy(streamed_representatives(self.features, count, seed)).long()
        h = rows_of(self.features, slice(None)).astype(np.float64)
        km = KMeans(n_clusters=count, n_init=1, max_iter=50, random_state=seed).fit(h)
        dist = ((h - km.cluster_centers_[km.labels_]) ** 2).sum(1)
        order = np.lexsort((dist, km.labels_))
        first = np.ones(len(order), bool)
        first[1:] = km.labels_[order][1:] != km.labels_[order][:-1]
        return torch.from_numpy(np.sort(order[first])).long()

    def _pool(self, instances, conditions, condition_labels, label):
        """(features, labels or None, ids) of the instances to condition on."""
        from ..data.photos import as_images

        images = None if instances is None else as_images(instances, self.shape)
        if images is not None:
            if conditions is not None:
                raise MixganError("give instances as images or as conditions, not both")
            conditions, instances = self.embed_instances(images), None
        if conditions is not None:
            h = torch.as_tensor(conditions, dtype=torch.float32).to(self.device)
            if h.ndim != 2 or h.shape[1] != self.h_dim or len(h) == 0:
                raise MixganError(f"conditions must be N x {self.h_dim} instance features, got shape {tuple(h.shape)}")
            h = F.normalize(h, dim=1)
            y = None
            if self.uses_labels and label is None:
                if condition_labels is None:
                    raise MixganError(f"model '{self.name}' needs a class for unseen instances: "
                                      "give one (--class) or their labels (an array 'y')")
                y = torch.as_tensor(condition_labels).long().flatten().to(self.device)
                if len(y) != len(h):
                    raise MixganError(f"{len(h)} instances but {len(y)} labels")
                if y.min() < 0 or y.max() >= self.num_classes:
                    raise MixganError(f"labels must be in [0, {self.num_classes - 1}]")
            return h, y, torch.arange(len(h))
        if self.instances == 0:
            raise MixganError("this model holds no instances to condition on")
        if instances is None:
            ids = torch.arange(self.instances)
        else:
            ids = torch.as_tensor(instances).long().flatten().cpu()
            if len(ids) == 0 or ids.min() < 0 or ids.max() >= self.instances:
                raise MixganError(f"instance indices must be in [0, {self.instances - 1}]")
        dev_ids = ids.to(self.device)
        y = self.labels[dev_ids] if (self.uses_labels and self.labels is not None) else None
        return self.features[dev_ids], y, ids

    def plan(self, n, component, label, generator, instances=None, conditions=None, condition_labels=None,
             per_instance: int | None = None, **request) -> SamplePlan:
        """Each sample's instance, drawn uniformly from a pool.

        The pool is every stored instance, the stored ``instances`` (indices), unseen instances
        given by their ``conditions`` (features from :meth:`embed_instances`), or unseen images
        given as ``instances``: image files or folders, a uint8 array (resized and centre-cropped
        like the files) or a float array in [-1, 1] shaped like the training images. With
        ``per_instance``, each pool member gets that many samples in order and n is ignored.
        ``Samples.instance`` says which pool entry each sample came from: a stored instance's index,
        or a row of ``conditions`` (or of the images).
        """
        plan = super().plan(n, component, label, generator, **request)
        h, y, ids = self._pool(instances, conditions, condition_labels, label)
        if per_instance is not None:
            if per_instance < 1:
                raise MixganError(f"per_instance must be >= 1, got {per_instance}")
            pick = torch.arange(len(h)).repeat_interleave(per_instance)
        else:
            dev = generator.device if generator is not None else torch.device("cpu")
            if n < 1:
                raise MixganError(f"the number of samples must be >= 1, got {n}")
            pick = torch.randint(len(h), (n,), generator=generator, device=dev).cpu()
        dp = pick.to(self.device)
        labels = (torch.full((len(pick),), label, dtype=torch.long, device=self.device) if label is not None
                  else (y[dp] if y is not None else None))
        plan.n, plan.label = len(pick), None
        plan.cond, plan.instance = self.condition(h[dp], labels), ids[pick]
        plan.labels = labels if self.uses_labels else None
        return plan

    def sample_batch(self, plan: SamplePlan, scale, generator) -> Samples:
        eps, k = self.G.prior.draw(plan.n, generator, device=self.device)
        return Samples(self.generator(eps, k, plan.cond, scale=scale), label=plan.labels, instance=plan.instance)

    def grid_instances(self) -> torch.Tensor:
        """The instances of the grid's rows: 10, evenly spaced over the stored ones."""
        return torch.linspace(0, self.instances - 1, min(10, self.instances)).round().long()

    def grid_labels(self) -> list[str]:
        return [f"instance {i}" for i in self.grid_instances().tolist()]

    def sample_grid(self, columns: int = 10, seed: int = 0) -> tuple[torch.Tensor, int]:
        """One row per instance (:meth:`grid_instances`): the real instance first when the
        training set is attached, then its samples."""
        idx = self.grid_instances()
        rows = len(idx)
        real = self.x_train is not None and len(self.x_train) == self.instances
        per = columns - 1 if real else columns
        gen = torch.Generator(self.device).manual_seed(seed)
        x = self.sample(0, generator=gen, instances=idx, per_instance=per).x.view(rows, per, *self.shape)
        if real:
            x = torch.cat([self.images(idx.to(self.device)).cpu().unsqueeze(1), x], 1)
        return x.flatten(0, 1), rows


class ClassICGAN(ICGAN):
    """Class-conditional IC-GAN: p(x | h, y), y the class of the real neighbour."""

    name = "icgan-class"
    uses_labels = True
    class_conditional = True
