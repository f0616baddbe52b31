"""A reference for the image path: how far a minimal two-tower model gets from the pixels alone on the demo's split.

A 4-block CNN (conv 3x3, BatchNorm, ReLU, 2x2 max-pool; 32-64-128-128 channels; average pool; linear) against a
word-level bidirectional GRU over the training captions' vocabulary (mean of its states; linear), a learnable logit
scale, multi-positive InfoNCE over person ids in both directions (paper eq. 3), AdamW 1e-3, P x K batches with
horizontal flips. No BDAM, no fusion, no descriptions: the gallery is the images alone. Prints test R1/mAP per seed
and their mean, the number the full model's image path is measured against in docs/benchmarks.md.

    python jobs/bench_image_baseline.py [--data runs/demo/dataset] [--steps 200] [--seeds 0,1,2] [--p 16 --k 4]
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reid.data.transforms import eval_transform
from reid.evaluation.ranking import rank_embeddings
from reid.evaluation.split_reader import read_images, read_split_index
from reid.losses.contrastive import infonce

WORD = re.compile(r"[a-z]+")


class Cnn(nn.Module):
    def __init__(self, dim: int = 128) -> None:
        super().__init__()
        layers, cin = [], 3
        for cout in (32, 64, 128, 128):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
            cin = cout
        self.body, self.head = nn.Sequential(*layers), nn.Linear(cin, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


class Gru(nn.Module):
    def __init__(self, vocab: int, dim: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.gru = nn.GRU(dim, dim, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * dim, dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids > 0).unsqueeze(-1).float()
        states, _ = self.gru(self.embed(ids))
        return self.head((states * mask).sum(1) / mask.sum(1).clamp_min(1))


def encode_words(captions: list[str], vocab: dict[str, int], length: int = 48) -> torch.Tensor:
    rows = [[vocab.get(w, 1) for w in WORD.findall(c.lower())][:length] for c in captions]
    return torch.tensor([r + [0] * (length - len(r)) for r in rows])


def images_of(data: str, split: str, size: tuple[int, int]) -> tuple[torch.Tensor, object]:
    index = read_split_index(data, split)
    blobs = read_images(data, split, index.image_ids)
    pixels = np.stack([eval_transform(blobs[i], size) for i in index.image_ids])
    return torch.from_numpy(pixels).float().div(255).sub(0.5).div(0.5), index


def run(data: str, seed: int, steps: int, p: int, k: int) -> dict[str, float]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    size = (128, 64)
    train_images, train = images_of(data, "train", size)
    test_images, test = images_of(data, "test", size)
    words = sorted({w for c in train.captions for w in WORD.findall(c.lower())})
    vocab = {w: i + 2 for i, w in enumerate(words)}
    image_net, text_net = Cnn(), Gru(len(vocab) + 2)
    scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
    optimizer = torch.optim.AdamW([*image_net.parameters(), *text_net.parameters(), scale], lr=1e-3)
    by_person: dict[int, list[int]] = {}
    for caption, image in enumerate(train.caption_images):
        by_person.setdefault(int(train.person_ids[image]), []).append(caption)
    people = sorted(by_person)
    for _ in range(steps):
        chosen = rng.choice(people, size=min(p, len(people)), replace=False)
        captions = np.concatenate([rng.choice(by_person[int(c)], size=k) for c in chosen])
        images = train_images[train.caption_images[captions]]
        flip = torch.from_numpy(rng.random(len(images)) < 0.5)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        pids = torch.from_numpy(train.caption_pids[captions])
        query = F.normalize(text_net(encode_words([train.captions[i] for i in captions], vocab)), dim=-1)
        gallery = F.normalize(image_net(images), dim=-1)
        loss = infonce(query, gallery, pids, 1 / scale.exp())  # a tensor temperature: the scale is learned
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    image_net.eval()
    text_net.eval()
    with torch.no_grad():
        query = F.normalize(text_net(encode_words(test.captions, vocab)), dim=-1)
        gallery = F.normalize(torch.cat([image_net(b) for b in test_images.split(64)]), dim=-1)
    return rank_embeddings(query, gallery, test.caption_pids, test.person_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="runs/demo/dataset")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--p", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        start = time.perf_counter()
        metrics = run(args.data, seed, args.steps, args.p, args.k)
        results.append(metrics)
        print(f"seed {seed}: test R1 {metrics['R1']:.1f}  mAP {metrics['mAP']:.1f}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    r1 = np.array([m["R1"] for m in results])
    spread = r1.std(ddof=1) if len(r1) > 1 else 0.0
    print(f"image-only baseline, {args.steps} steps: test R1 {r1.mean():.1f} ± {spread:.1f}")


if __name__ == "__main__":
    main()
