"""Files on disk: safetensors headers and streaming I/O, checkpoint folders, atomic folders, growth
cards."""
