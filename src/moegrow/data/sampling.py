"""Training batches as a pure function of the step.

The training split is cut into blocks of ``seq_len + 1`` tokens, shuffled per epoch with a
seed, and global sample g is block ``order(epoch)[g mod blocks]`` with ``epoch = g // blocks``.
A run resumed at step s therefore needs nothing but s to see exactly the batches it would have.
"""

from __future__ import annotations

import numpy as np
import torch

from moegrow.errors import MoegrowError


class BlockSampler:
    """Step -> batch of token blocks, deterministic from the seed (see module docstring)."""

    def __init__(self, split, seq_len: int, seed: int):
        self.split = split
        self.seq_len = seq_len
        self.seed = seed
        self.num_blocks = (len(split) - 1) // seq_len
        if self.num_blocks < 1:
            raise MoegrowError(
                f"training split has {len(split)} tokens, fewer than one sequence of "
                f"{seq_len + 1}; use a smaller --seq-len or more data"
            )
        self._perms: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {
                epoch: np.random.default_rng([self.seed, epoch]).permutation(self.num_blocks)
            }
        return self._perms[epoch]

    def rows(self, first: int, count: int) -> torch.Tensor:
        """Global sample indices first..first+count-1 as ``[count, seq_len + 1]`` token ids."""
        out = []
        for g in range(first, first + count):
            epoch, i = divmod(g, self.num_blocks)
            block = int(self._order(epoch)[i])
            out.append(self.split.window(block * self.seq_len, self.seq_len + 1))
        return torch.from_numpy(np.stack(out)).long()
