"""Which IGC strengths let the regularized runs of chapter *Applications* meet the stopping rule within the cap.

Reproduces the chapter's IsSame setup ("Countering the locality bias": 1D CNN, 256 training examples, batches of
64, Adam, patience 5, penalty on 16 examples per batch) for several strengths and prints, per condition and
distance, test accuracy, its change against the plain network (mean +- sd over paired seeds), the |cos| diagnostic,
the epochs trained and how many runs met the stopping rule. Environment: LNN_SEED, LAMS (far-pair strengths),
LOCAL (local-control strengths), SEEDS, CAP (epochs), LR (Adam step), OUTJ (JSON output path).

    OMP_NUM_THREADS=1 LR=6e-3 LAMS=0.03,0.1,0.3,1 LOCAL=0.1,0.3 SEEDS=0,1,2 python scripts/igc_strength_scan.py
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
from lnn.locality import (input_gradient_change, is_same_slots, is_same_task, is_same_templates, patch_mask,
                          train_to_fit)
from lnn.tutorial_cnn import accuracy
torch.set_num_threads(1)
SEED = int(os.environ.get("LNN_SEED", "0"))


def seeded(k):
    return torch.Generator().manual_seed(SEED + k)


LAMS = [float(v) for v in os.environ.get("LAMS", "0.03,0.1,0.3").split(",")]
LOCAL = [float(v) for v in os.environ.get("LOCAL", "0.1").split(",") if v]
IGC_SEEDS = [int(v) for v in os.environ.get("SEEDS", "0,1,2").split(",")]
MAX_EPOCHS = int(os.environ.get("CAP", "60"))
def conv_net(length, channels=8, seed=0):
    torch.manual_seed(SEED * 1000 + seed)
    blocks, c_in = [], 1
    while length > 1:
        blocks += [nn.Conv1d(c_in, channels, 3, padding=1), nn.GELU(), nn.MaxPool1d(2)]
        c_in, length = channels, length // 2
    net = nn.Sequential(*blocks, nn.Flatten(), nn.Linear(channels, 1))
    for m in net.modules():
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net
LENGTH, PATCH, N_TRAIN = 64, 8, 256
DISTANCES = [0, 48]
PATIENCE, PENALTY_BATCH = 5, 16
CONDITIONS = {"plain": (0.0, "far")}
for lam in LAMS:
    CONDITIONS[f"igc{lam}"] = (lam, "far")
for lam in LOCAL:
    CONDITIONS[f"local{lam}"] = (lam, "local")
templates = is_same_templates(4, PATCH, generator=seeded(100))
left = (torch.arange(N_TRAIN) % 2 == 0)[:, None, None]
runs, tests, models, keys = [], [], [], []
for cond, (lam, where) in CONDITIONS.items():
    for d in DISTANCES:
        a, b = is_same_slots(LENGTH, PATCH, d)
        if where == "local":
            a, b = slice(a.start, a.start + PATCH // 2), slice(a.start + PATCH // 2, a.stop)
        slot_a, slot_b = patch_mask(LENGTH, a), patch_mask(LENGTH, b)
        mask_i = torch.where(left, slot_a, slot_b).expand(N_TRAIN, 1, LENGTH)
        mask_j = torch.where(left, slot_b, slot_a).expand(N_TRAIN, 1, LENGTH)
        for s in IGC_SEEDS:
            gen = seeded(1000 * d + s)
            x, y = is_same_task(N_TRAIN, d, templates, length=LENGTH, generator=gen)
            runs.append((x, y, mask_i, mask_j, torch.full((N_TRAIN,), lam)))
            tests.append(is_same_task(1000, d, templates, length=LENGTH, generator=gen))
            models.append(conv_net(LENGTH, seed=s))
            keys.append((cond, d, s))
data = [torch.stack(t) for t in zip(*runs)]
def bce_igc(f, x, y, mask_i, mask_j, lam):
    logits = f(x).squeeze(-1)
    k = PENALTY_BATCH
    R = input_gradient_change(lambda z: f(z).squeeze(-1), x[:k], mask_i[:k], mask_j[:k])
    return F.binary_cross_entropy_with_logits(logits, y) + lam[0] * R, logits
def bce(f, x, y, mask_i, mask_j, lam):
    logits = f(x).squeeze(-1)
    return F.binary_cross_entropy_with_logits(logits, y), logits
t0 = time.process_time()
n_plain = len(DISTANCES) * len(IGC_SEEDS)
fits = [train_to_fit(models[sl], loss, [t[sl] for t in data], lr=float(os.environ.get("LR", "3e-3")), optimizer="adam", batch_size=64,
                     patience=PATIENCE, max_epochs=MAX_EPOCHS, generator=seeded(0))
        for sl, loss in [(slice(0, n_plain), bce), (slice(n_plain, None), bce_igc)]]
cpu = time.process_time() - t0
epochs = torch.cat([f[0] for f in fits]).numpy()
nets = fits[0][2] + fits[1][2]
train = np.concatenate([f[1][-1].numpy() for f in fits])
shape = (len(CONDITIONS), len(DISTANCES), len(IGC_SEEDS))
acc = np.array([accuracy(net, *t) for net, t in zip(nets, tests)]).reshape(shape)
cos = np.empty(shape)
for k, (net, (x, _)) in enumerate(zip(nets, tests)):
    a, b = is_same_slots(LENGTH, PATCH, keys[k][1])
    cos.flat[k] = input_gradient_change(lambda z: net(z).squeeze(-1), x[:256], patch_mask(LENGTH, a),
                                        patch_mask(LENGTH, b)).item()
ep = epochs.reshape(shape)
tr = train.reshape(shape)
print(f"SEED {SEED} seeds {IGC_SEEDS} cap {MAX_EPOCHS}: train cpu {cpu:.1f} s")
for c, cond in enumerate(CONDITIONS):
    for j, d in enumerate(DISTANCES):
        diff = acc[c, j] - acc[0, j]
        print(f"{cond:10s} d={d:2d} acc {acc[c,j].mean():.3f}+-{acc[c,j].std():.3f} diff {diff.mean():+.3f}+-{diff.std():.3f}"
              f" cos {cos[c,j].mean():.2f} epochs {ep[c,j].tolist()} fit {(ep[c,j]<MAX_EPOCHS).sum()}/{len(IGC_SEEDS)}"
              f" train_min {tr[c,j].min():.3f}")
json.dump(dict(conds=list(CONDITIONS), acc=acc.tolist(), cos=cos.tolist(), ep=ep.tolist(), tr=tr.tolist(), cpu=cpu),
          open(os.environ.get("OUTJ", "igc_strength_scan.json"), "w"))
