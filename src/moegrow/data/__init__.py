"""Training data: corpora, tokenizers, token shards, the prepared data folder and batch sampling."""
