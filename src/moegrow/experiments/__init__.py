"""Experiments built from the library: the demo, the paper's reproduction suite and loss curves."""
