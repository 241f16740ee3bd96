"""GM-GAN with an encoder (``encoder.enabled``; not in the paper): the Gaussians become the clusters.

An encoder E(x) -> (K logits, z-hat) is trained with G so that every real image gets its Gaussian
from E directly. G and E minimise ``encoder.ce`` * CE(E(G(z_k)), k) and ``encoder.l2`` *
|z-hat - eps|^2 (ClusterGAN's terms); E also sees real images: it must give two random views of one
image (or of an image and one of its ``encoder.neighbors`` nearest) the same cluster
(``encoder.real``, SCAN's consistency) while keeping all K clusters in use (``encoder.entropy``
times the entropy of its mean prediction). On images the neighbours can come from the label-free
contrastive embedding (``encoder.space``), and E can start from that embedding's encoder with heads
at its features' k-means clusters (``encoder.init``), as SCAN starts from a pretext network.
With ``encoder.cond_d`` D is conditioned on the Gaussian by projection: k for G(z_k), E's cluster
for a real image, so Gaussian k must generate what E puts in cluster k.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..embeddings import embed, get_embedding, knn, resolve_method, selfsup
from ..embeddings.store import InstanceStore, cached_neighbours, train_batches, train_count
from ..errors import MixganError
from ..nets import build_discriminator
from .. import progress
from ..data.batches import PAIR, Neighbours, Rows
from .base import Batch, held
from .gmgan import GMGAN


@dataclass
class EncoderBatch(Batch):
    """A Batch with what the encoder's terms need: the noise ``eps`` of a generated batch, and a
    second real image (a nearest neighbour) to pair with each real one."""

    eps: torch.Tensor | None = None
    pair: torch.Tensor | None = None


class Encoder(nn.Module):
    """A discriminator body with H·K + d outputs, read as H cluster heads of K logits and z-hat.

    With several heads (``encoder.heads``, SCAN's remedy for a clustering stuck in a poor optimum)
    every head is trained on the real-image terms, and the one in use (``head``, a buffer, so it is
    checkpointed) is the one with the lowest running loss: a label-free choice, frozen after the
    first ``SELECT_FRACTION`` of training so that the Gaussians keep one set of clusters to follow.
    """

    SELECT_FRACTION = 0.25
    LOSS_DECAY = 0.99

    def __init__(self, arch: str, shape, width: int, components: int, latent_dim: int, heads: int = 1,
                 init: str = "scratch"):
        super().__init__()
        self.components, self.heads = components, heads
        out = components * heads + latent_dim
        if init == "selfsup":  # the contrastive encoder's body (its weights come in attach_data) + a linear head
            self.net = nn.Sequential(selfsup.Encoder(shape[0]), nn.Linear(selfsup.FEATURE_DIM, out))
        else:
            self.net = build_discriminator(arch, shape, width, out_dim=out)
        if heads > 1:  # (one head keeps the buffer-free state of runs made before heads existed)
            self.register_buffer("head_loss", torch.zeros(heads))
            self.register_buffer("head", torch.zeros(1, dtype=torch.long))

    def forward(self, x: torch.Tensor, all_heads: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(K logits of the head in use, or B x H x K logits of every head; z-hat)."""
        out = self.net(x)
        k = self.components * self.heads
        logits, zhat = out[:, :k].unflatten(1, (self.heads, self.components)), out[:, k:]
        return (logits if all_heads else self.in_use(logits)), zhat

    def in_use(self, logits: torch.Tensor) -> torch.Tensor:
        """The head in use from B x H x K logits."""
        return logits[:, 0] if self.heads == 1 else logits.index_select(1, self.head).squeeze(1)

    @torch.no_grad()
    def track(self, losses: torch.Tensor, selecting: bool) -> None:
        """Update each head's running loss and, while ``selecting``, use the lowest (on the device: no sync)."""
        if self.heads == 1:
            return
        self.head_loss.mul_(self.LOSS_DECAY).add_((1 - self.LOSS_DECAY) * losses.detach())
        if selecting:
            self.head.copy_(self.head_loss.argmin().view(1))


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random view of each item: images get the self-supervised embedding's augmentations (affine
    jitter, brightness/contrast, noise, an erased square), vectors a little Gaussian noise."""
    if x.ndim == 4:
        return selfsup.augment(x, gen)
    return x + 0.05 * x.std(0, keepdim=True) * torch.randn(x.shape, generator=gen, device=x.device)


SINKHORN_TEMPERATURE = 0.1  # sharpens the targets: at 1 they stay as flat as E's early predictions,
# and the swapped prediction settles on uniform predictions for every item


def balanced_targets(logits: torch.Tensor, iters: int = 10, temperature: float = SINKHORN_TEMPERATURE) -> torch.Tensor:
    """Soft assignments of a batch to K clusters with every cluster given an equal share (Sinkhorn-Knopp,
    as SwAV and SeLa use): softmax(logits / temperature) rescaled alternately per cluster and per
    item, in log space so that a cluster no item favours does not underflow to 0 / 0."""
    k = logits.shape[1]
    log_q = logits.float() / temperature
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, 0, keepdim=True) - math.log(k)
        log_q = log_q - torch.logsumexp(log_q, 1, keepdim=True)
    return log_q.exp()


def consistency_terms(logits_a: torch.Tensor, logits_b: torch.Tensor,
                      balance: str = "entropy") -> tuple[torch.Tensor, torch.Tensor]:
    """(agreement loss, marginal entropy) of two views' cluster logits. 'entropy': -mean log <p_a, p_b>
    (SCAN); 'sinkhorn': each view predicts the other's equal-share assignment (SwAV's swapped
    prediction), so a cluster cannot hold two classes while another class is split. The entropy is
    that of the mean prediction, largest when every cluster is used equally."""
    pa, pb = logits_a.softmax(1), logits_b.softmax(1)
    if balance == "sinkhorn":
        with torch.no_grad():
            qa, qb = balanced_targets(logits_a), balanced_targets(logits_b)
        agree = -0.5 * ((qb * logits_a.log_softmax(1)).sum(1) + (qa * logits_b.log_softmax(1)).sum(1)).mean()
    else:
        agree = -torch.log((pa * pb).sum(1).clamp_min(1e-8)).mean()
    mean = torch.cat([pa, pb]).mean(0)
    return agree, -(mean * torch.log(mean.clamp_min(1e-8))).sum()


def self_label_loss(logits_a: torch.Tensor, logits_b: torch.Tensor, threshold: float) -> torch.Tensor:
    """SCAN's self-labelling: where view a is confident (max p > threshold), view b must predict its
    cluster; 0 when no item is confident."""
    with torch.no_grad():
        conf, target = logits_a.softmax(1).max(1)
        keep = (conf > threshold).float()
    ce = F.cross_entropy(logits_b, target, reduction="none")
    return (ce * keep).sum() / keep.sum().clamp_min(1.0)


KMEANS_MARGIN = 2.0  # logit gap of the k-means head initialisation between an item's two nearest centres


class GMGANWithEncoder(GMGAN):
    """GM-GAN whose Gaussians are an encoder's clusters: E is one more module (checkpointed as
    ``E``/``opt_e``, moved by ``to``, wrapped like G for distributed training, no EMA copy)."""

    neighbors = held()  # with encoder.neighbors = k: each training image's k nearest, M x k

    def check(self, spec) -> None:
        e = self.cfg.encoder
        if "selfsup" in (e.init, e.space) and spec.kind != "image":
            raise MixganError(f"encoder.init and encoder.space 'selfsup' need images; dataset "
                              f"'{spec.name}' holds points (use 'scratch' and 'pixels')")

    def build_networks(self) -> None:
        super().build_networks()
        m, t, p = self.cfg.model, self.cfg.train, self.cfg.prior
        self.E = Encoder(m.arch, self.shape, m.width, p.components, p.latent_dim, self.cfg.encoder.heads,
                         self.cfg.encoder.init)
        self.opt_e = torch.optim.Adam(self.E.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
        self.E_train = self.E

    def wrap_for_training(self, wrap) -> None:
        super().wrap_for_training(wrap)
        self.E_train = wrap(self.E)  # E trains beside G, so its gradients are synchronised like G's

    @property
    def cond_d(self) -> bool:
        return self.cfg.encoder.cond_d

    def build_discriminator(self) -> nn.Module:
        if not self.cond_d:
            return super().build_discriminator()
        m = self.cfg.model
        return build_discriminator(m.arch, self.shape, m.width, cond_dim=self.cfg.prior.components,
                                   spectral_norm=m.spectral_norm)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """E's (cluster logits, z-hat) for every item of x, computed on the model's device in eval
        mode, returned on the CPU."""
        was_training = self.E.training
        self.E.eval()
        try:
            parts = [self.E(x[i:i + batch_size].to(self.device).float()) for i in range(0, len(x), batch_size)]
        finally:
            self.E.train(was_training)
        return torch.cat([p[0] for p in parts]).cpu(), torch.cat([p[1] for p in parts]).cpu()

    # ---- data: neighbours and the contrastive start ----------------------------------
    def contrastive_embedding(self) -> selfsup.SelfSupEmbedding:
        """The label-free contrastive embedding of ``encoder.space``/``encoder.init`` 'selfsup' (unfitted)."""
        e = self.cfg.encoder
        return selfsup.SelfSupEmbedding(self.spec, steps=e.selfsup_steps, batch_size=e.selfsup_batch)

    def attach_data(self, data) -> None:
        super().attach_data(data)
        e, m = self.cfg.encoder, self.cfg.model
        self.neighbors = None
        count = train_count(data)
        if m.knn == "faiss" or count > m.knn_threshold or self.x_train is None:  # not held: read a batch at a time
            self._attach_at_scale(data, count)
            return
        found: dict[str, torch.Tensor] = {}

        def selfsup_features() -> torch.Tensor:
            """The contrastive encoder's features of the training images (one pass, for k-means and kNN)."""
            if "selfsup" not in found:
                emb = self.contrastive_embedding()
                emb.fit(data)  # cached per dataset: trained once, the same network for a resumed run
                with progress.task(f"embedding {count:,} training images (selfsup)", total=count):
                    found["selfsup"] = embed(emb, self.images(), normalize=False)
                found["net"] = emb.net
            return found["selfsup"]

        if e.init == "selfsup":  # a resumed run's checkpoint overwrites these weights afterwards
            feats = selfsup_features()
            self.init_encoder(found["net"], feats)
        if e.neighbors:  # (knn compares directions: cosine); searched once per data set and space
            settings = {"space": e.space, "k": e.neighbors, "device": self.device.type,
                        "selfsup": self.contrastive_embedding().settings if e.space == "selfsup" else None}

            def search() -> torch.Tensor:
                feats = selfsup_features() if e.space == "selfsup" else self.images().flatten(1)
                return knn(feats, e.neighbors)[0]

            self.neighbors = cached_neighbours(data, settings, search)

    INIT_SAMPLE = 100_000  # at scale, the k-means initialisation of E's heads sees this many images' features

    def _attach_at_scale(self, data, count: int) -> None:
        """Above ``model.knn_threshold`` (or with ``model.knn=faiss``): the features are streamed into
        memory-mapped files of the cache, a batch of images at a time, and the neighbours found
        there (``space=pixels`` in a 128-d random projection of the pixels, never a normalised copy
        of the whole pixel set), by the method ``model.knn`` picks; a batch reads its rows of the table."""
        import numpy as np

        e, m = self.cfg.encoder, self.cfg.model

        def features(emb, normalize: bool = True):
            st = InstanceStore.for_data(data, emb, {"normalize": normalize})
            return emb, st, st.features(emb, lambda: emb.fit(data), lambda: train_batches(data), count, self.device,
                                        normalize=normalize)

        if e.init == "selfsup" or (e.neighbors and e.space == "selfsup"):
            emb, st, feats = features(self.contrastive_embedding(), normalize=False)
            if e.init == "selfsup":
                rng = np.random.default_rng(self.cfg.train.seed)
                rows = np.sort(rng.choice(count, min(count, self.INIT_SAMPLE), replace=False))
                self.init_encoder(emb.net, torch.from_numpy(np.asarray(feats[rows])))
        if not e.neighbors:
            return
        if e.space != "selfsup":
            emb, st, feats = features(get_embedding("projection", self.spec))
        backend = resolve_method(m.knn, count, emb.dim, m.knn_threshold)
        self.neighbors = st.neighbors(feats, e.neighbors, backend)

    @torch.no_grad()
    def init_encoder(self, body: nn.Module, feats: torch.Tensor) -> None:
        """E from the contrastive encoder: the weights of its ``body``, and every cluster head set to
        the k-means clustering of that body's features of the training images, ``feats`` (restart h
        of head h, seeded by ``train.seed``), so that clustering starts where k-means on those
        features ends instead of from a random head, which can merge whole classes."""
        from sklearn.cluster import KMeans

        self.E.net[0].load_state_dict(body.state_dict())
        f = feats.double().cpu().numpy()
        head, k = self.E.net[1], self.components
        for h in range(self.E.heads):
            with progress.task(f"k-means of {len(f):,} features for the encoder's head {h + 1} of {self.E.heads}"):
                km = KMeans(k, n_init=10, random_state=self.cfg.train.seed + h).fit(f)
            centres = torch.as_tensor(km.cluster_centers_)
            # logits alpha * (c_k . f - |c_k|^2 / 2) rank clusters as the distance to c_k does; alpha
            # makes the gap between the nearest and the next centre KMEANS_MARGIN on the median item
            dist = torch.cdist(torch.as_tensor(f), centres).pow(2).sort(1).values
            alpha = 2 * KMEANS_MARGIN / (dist[:, 1] - dist[:, 0]).median()
            rows = slice(h * k, (h + 1) * k)
            head.weight[rows] = (alpha * centres).to(head.weight)
            head.bias[rows] = (-alpha * centres.pow(2).sum(1) / 2).to(head.bias)

    # ---- batches ----------------------------------------------------------------------
    def neighbours(self) -> Neighbours | None:
        """With ``encoder.neighbors``: each real image comes with one of its k nearest beside it."""
        return None if self.neighbors is None else Neighbours(self.neighbors, PAIR)

    def real_batch(self, rows: Rows) -> Batch:
        return EncoderBatch(rows.x, y=rows.y, pair=rows.pair)

    def fake(self, n, gen, grad, batch=None) -> Batch:
        eps, k = self.G.prior.draw(n, gen, device=self.device)
        return EncoderBatch(self.generate(eps, k, grad=grad), k=k, eps=eps)

    @torch.no_grad()
    def real_cluster(self, x: torch.Tensor) -> torch.Tensor:
        """The cluster D sees with a real image (``encoder.real_cluster``): E's argmax, or 'balanced',
        the argmax of the batch's equal-share assignment (:func:`balanced_targets`). While E is unsure
        (nearly uniform predictions) an argmax can put every real image in one cluster; D then tells a
        fake by its label alone (k is uniform over the Gaussians), wins, and G never starts. Balanced,
        the real labels are spread like the fakes'; once E's clusters are sure and even, it is the argmax."""
        logits = self.E(x)[0]
        return (balanced_targets(logits) if self.cfg.encoder.real_cluster == "balanced" else logits).argmax(1)

    def d_logits(self, b: Batch, train: bool = True) -> torch.Tensor:
        if not self.cond_d:
            return super().d_logits(b, train)
        k = b.k
        if k is None:  # a real image is shown with a cluster drawn from E's prediction (see real_cluster)
            k = self.real_cluster(b.x)
        cond = F.one_hot(k, self.components).to(b.x.dtype)
        return (self.D_train if train else self.D)(b.x, cond)

    # ---- training ---------------------------------------------------------------------
    def real_terms(self, heads_a: torch.Tensor, heads_b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per head, the real-image loss of two views' B x H x K logits (agreement, entropy, self-label);
        with the agreement and entropy averaged over heads, for the log."""
        e = self.cfg.encoder
        terms, agrees, entropies = [], [], []
        for h in range(self.E.heads):
            la, lb = heads_a[:, h], heads_b[:, h]
            agree, entropy = consistency_terms(la, lb, e.balance)
            term = e.real * agree - e.entropy * entropy
            if e.selflabel:
                term = term + 0.5 * (self_label_loss(la, lb, e.selflabel) + self_label_loss(lb, la, e.selflabel))
            terms.append(term)
            agrees.append(agree)
            entropies.append(entropy)
        return torch.stack(terms), torch.stack(agrees).mean(), torch.stack(entropies).mean()

    def generator_step(self, real: Batch, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """One joint update of G and E on the adversarial loss plus the encoder's terms (module docstring)."""
        e = self.cfg.encoder
        fake = self.fake(self.cfg.train.batch_size, gen, grad=True, batch=real)
        x = real.x
        pair = x if real.pair is None else real.pair
        # E sees the generated images only where a term on them has weight (they cost a pass of E and G's backward)
        n = len(fake.x) if (e.ce or e.l2) else 0
        heads, zhat = self.E_train(torch.cat([fake.x[:n], augment(x, gen), augment(pair, gen)]), all_heads=True)
        terms, agree, entropy = self.real_terms(heads[n:n + len(x)], heads[n + len(x):])
        adv = self.generator_loss(fake)
        loss = adv + terms.sum()
        logs = {"loss_g": adv.detach(), "enc_agree": agree.detach(), "enc_entropy": entropy.detach()}
        if n:
            ce = F.cross_entropy(self.E.in_use(heads)[:n], fake.k)
            l2 = (zhat[:n] - fake.eps).pow(2).mean()
            loss = loss + e.ce * ce + e.l2 * l2
            logs.update(enc_ce=ce.detach(), enc_l2=l2.detach())
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_e.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        self.opt_e.step()
        # after backward, which needs the head index as it was
        self.E.track(terms, selecting=self.step < Encoder.SELECT_FRACTION * self.cfg.train.steps)
        return logs

    # ---- state ----------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "E": self.E}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {**super().optimizers(), "opt_e": self.opt_e}
