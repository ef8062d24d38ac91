"""Ports of the authors' components (valeoai/Franca 24f8c60, Apache-2.0), kept as the released code
computes them, to compare rankopt.ssl against: the nested head (``MRLDINOHead``), the Sinkhorn-Knopp
targets of ``MRLDINOLoss`` and ``MRLiBOTPatchLoss``, the iBOT loss and KoLeo. Single process (no
all_reduce), no xformers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sinkhorn_dino(t_out: torch.Tensor, teacher_temp: float, n_iterations: int = 3) -> torch.Tensor:
    t_out = t_out.float()
    Q = torch.exp(t_out / teacher_temp).t()
    B = Q.shape[1]
    K = Q.shape[0]
    for _ in range(n_iterations):
        sum_of_rows = torch.sum(Q, dim=1, keepdim=True)
        Q /= sum_of_rows
        Q /= K
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


def sinkhorn_ibot(teacher_output: torch.Tensor, teacher_temp: float, n_masked: int, n_iterations: int = 3):
    teacher_output = teacher_output.float()
    Q = torch.exp(teacher_output / teacher_temp).t()
    B = n_masked
    K = Q.shape[0]
    Q /= torch.sum(Q)
    for _ in range(n_iterations):
        Q /= torch.sum(Q, dim=1, keepdim=True)
        Q /= K
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


def ibot_loss(
    student_masked: torch.Tensor, teacher_masked: torch.Tensor, student_masks_flat: torch.Tensor, student_temp: float
) -> torch.Tensor:
    loss = torch.sum(teacher_masked * F.log_softmax(student_masked / student_temp, dim=-1), dim=-1)
    masks_weight = (
        (1 / student_masks_flat.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(student_masks_flat)[student_masks_flat]
    )
    loss = loss * masks_weight
    return -loss.sum() / student_masks_flat.shape[0]


def koleo_loss(student_output: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    pdist = nn.PairwiseDistance(2, eps=1e-8)
    student_output = F.normalize(student_output, eps=eps, p=2, dim=-1)
    dots = torch.mm(student_output, student_output.t())
    n = student_output.shape[0]
    dots.view(-1)[:: (n + 1)].fill_(-1)
    _, index = torch.max(dots, dim=1)
    distances = pdist(student_output, student_output[index])
    return -torch.log(distances + eps).mean()


def _build_mlp(nlayers, in_dim, bottleneck_dim, hidden_dim):
    if nlayers == 1:
        return nn.Linear(in_dim, bottleneck_dim)
    layers = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
    for _ in range(nlayers - 2):
        layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
    layers += [nn.Linear(hidden_dim, bottleneck_dim), nn.GELU()]
    return nn.Sequential(*layers)


class MRLDINOHead(nn.Module):
    def __init__(self, in_dim, out_dim, nlayers=3, hidden_dim=2048, bottleneck_dim=384, nesting_list=None):
        super().__init__()
        self.nesting_list = nesting_list
        self.matryoshka_projections = nn.ModuleList([nn.Linear(in_dim, dim) for dim in nesting_list])
        self.mlps = nn.ModuleList([_build_mlp(nlayers, dim, bottleneck_dim, hidden_dim) for dim in nesting_list])
        self.last_layers = nn.ModuleList(
            [
                torch.nn.utils.weight_norm(
                    nn.Linear(bottleneck_dim, int(out_dim * (dim / nesting_list[-1])), bias=False)
                )
                for dim in nesting_list
            ]
        )
        for layer in self.last_layers:
            layer.weight_g.data.fill_(1)

    def forward(self, x):
        return tuple(
            self.last_layers[i](self.mlps[i](self.matryoshka_projections[i](x))) for i in range(len(self.nesting_list))
        )
