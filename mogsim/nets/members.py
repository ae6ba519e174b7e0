"""M separate networks as the members of one model, for network families that have no batched form (the UNets).

The batched :class:`~mogsim.nets.mlp.MLP` stacks its members' weights on a leading axis; a UNet cannot (its
convolutions and group norms would have to become grouped ones, which was slower on an H200 and failed under bf16
autocast, see BENCHMARKS.md). :class:`MemberList` keeps M ordinary modules instead and offers the member-axis
interface the training engine and :class:`~mogsim.nets.PreconditionedDenoiser` expect: ``members``, ``forward`` on
(M, B, *shape) inputs and :meth:`MemberList.member`. The registry builds one for ``members > 1`` of a UNet family;
the trainer runs each member's forward and backward on its own CUDA stream inside one captured graph.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..errors import InputError


class MemberList(nn.Module):
    """``members`` independent networks ``F_m(x, c_noise)`` behind one member axis; parameters are those of the M
    networks in order (``nets.0.*``, ``nets.1.*``, ...), so member m's parameters are contiguous."""

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(nets) < 2:
            raise InputError("MemberList needs at least 2 networks; use the network itself for one")
        self.nets = nn.ModuleList(nets)
        self.members = len(nets)
        self.config: dict[str, Any] = {**getattr(nets[0], "config", {}), "members": self.members}

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor) -> torch.Tensor:
        """x (M, B, *shape) and noise_labels (M, B) -> (M, B, *out_shape), member by member."""
        if x.shape[0] != self.members or noise_labels.shape[0] != self.members:
            raise InputError(f"x has shape {tuple(x.shape)}; a model of {self.members} members takes "
                             f"({self.members}, B, ...) with noise labels ({self.members}, B)", parameter="x")
        return torch.stack([net(x[m], noise_labels[m]) for m, net in enumerate(self.nets)])

    def member(self, index: int) -> nn.Module:
        """Member ``index``'s network itself (it shares, not copies, the weights)."""
        if not 0 <= int(index) < self.members:
            raise InputError(f"member={index}: out of range 0..{self.members - 1}", parameter="member")
        return self.nets[int(index)]
