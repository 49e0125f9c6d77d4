"""moegrow: recycle pretrained checkpoints by growing them in depth and width.

Implements the orthogonal growth of Wang et al., "Recycling Pretrained Checkpoints: Orthogonal
Growth of Mixture-of-Experts for Efficient Large Language Model Pre-Training" (arXiv 2510.08008):
depth growth by layer interposition and width growth by expert duplication with small relative
noise, done as streaming surgery on Hugging Face safetensors checkpoints.
"""

from __future__ import annotations

__version__ = "0.1.0"

from moegrow.errors import CheckpointError, GrowthError, MoegrowError

__all__ = ["CheckpointError", "GrowthError", "MoegrowError", "__version__"]
