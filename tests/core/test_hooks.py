"""Hook plumbing (lensflow.core.hooks): module lookup by exact name."""

import pytest
import torch

from lensflow.core.hooks import UnknownModule, modules_by_name


def test_modules_by_name_names_what_is_missing_before_any_hook():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU())
    assert modules_by_name(model, ["0", "1"]) == {"0": model[0], "1": model[1]}
    for error in (KeyError, ValueError, UnknownModule):  # callers catch either
        with pytest.raises(error, match=r"sae_patch: no module named \['2'\] in Sequential"):
            modules_by_name(model, ["0", "2"], "sae_patch")
