"""Library calls leave process-wide settings as they found them."""

from __future__ import annotations

import pytest
import torch
from transformers.utils import logging as hf_logging

from moegrow.growth.grow import grow
from moegrow.growth.spec import GrowthSpec
from moegrow.modeling.quiet import quiet_transformers


def test_quiet_transformers_restores_verbosity_and_bars():
    hf_logging.set_verbosity_info()
    hf_logging.enable_progress_bar()
    try:
        with quiet_transformers():
            assert hf_logging.get_verbosity() == hf_logging.ERROR
            assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.INFO
        assert hf_logging.is_progress_bar_enabled()

        @quiet_transformers()
        def fails():
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            fails()
        assert hf_logging.get_verbosity() == hf_logging.INFO
    finally:
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def test_grow_restores_torch_threads(tiny, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grow(tiny("mixtral"), tmp_path / "out", GrowthSpec(width=2), progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
