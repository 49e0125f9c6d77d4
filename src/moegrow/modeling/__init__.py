"""Models for training: moegrow's registered variants, presets, loading, kernels and the fused head
loss."""
