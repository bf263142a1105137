"""Capturing module inputs/outputs by name pattern, with hooks that are always removed."""

from __future__ import annotations

import fnmatch
from contextlib import contextmanager

import torch


class NoModuleMatched(ValueError):
    """A module pattern that matches nothing in the model; the message lists what exists."""


class UnknownModule(KeyError, ValueError):
    """Module names the model does not have (a KeyError for lookups, a ValueError for arguments)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def modules_by_name(model: torch.nn.Module, names, who: str = "") -> dict[str, torch.nn.Module]:
    """{name: module} for exact module names, checked before any hook is installed: a name the
    model lacks raises UnknownModule naming it (the first few) and the model's class."""
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise UnknownModule(f"{who + ': ' if who else ''}no module named {unknown[:5]} in {type(model).__name__}")
    return {n: modules[n] for n in names}


def match_modules(model: torch.nn.Module, patterns: list[str]) -> list[str]:
    """Names of modules matching any fnmatch pattern, in the model's own (execution-like) order."""
    names = [n for n, _ in model.named_modules() if n]
    for pat in patterns:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            sample = ", ".join(names[:12])
            raise NoModuleMatched(f"module pattern {pat!r} matches no module (names look like: {sample}, ...)")
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def _first_tensor(x):
    """Modules return a tensor or a tuple whose first element is the hidden state."""
    return x[0] if isinstance(x, (tuple, list)) else x


@contextmanager
def capture(model: torch.nn.Module, names: list[str], hook: str = "output", reduce=None):
    """Yield a dict that each forward fills with {name: tensor [batch, pos, d]}.

    hook="output" records what the module returns, hook="input" its first positional input
    (e.g. `*.mlp.down_proj` input = the MLP's hidden activations). `reduce`, if given, is applied to
    each tensor inside the hook, as the forward runs, and only its result is kept (e.g. pooling to
    [batch, d]: memory then holds one module's [batch, pos, d] at a time, not every module's). The
    handles are removed in a finally block, so a failing forward never leaves hooks behind on a
    model that is reused.
    """
    modules = dict(model.named_modules())
    store: dict[str, torch.Tensor] = {}
    keep = reduce or (lambda t: t)
    handles = []
    try:
        for name in names:
            if hook == "output":
                fn = lambda mod, args, out, name=name: store.__setitem__(name, keep(_first_tensor(out).detach()))
                handles.append(modules[name].register_forward_hook(fn))
            else:
                fn = lambda mod, args, name=name: store.__setitem__(name, keep(_first_tensor(args).detach()))
                handles.append(modules[name].register_forward_pre_hook(fn))
        yield store
    finally:
        for h in handles:
            h.remove()
