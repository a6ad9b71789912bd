"""The torch lowerings, one per op type: ``LOWERINGS[op](node, ctx)`` adds the node's modules to the
network being built (``lower/__init__.py``). Which ops exist and what they mean is ``graph/ops.py``'s
table; a test checks that every op with a rule has a lowering and no lowering lacks a rule."""
from __future__ import annotations

from typing import Callable, Dict

LOWERINGS: Dict[str, Callable] = {}


def lowers(*ops: str):
    """Register ``fn`` as the lowering of ``ops``; a second one for an op is an error, not a silent replacement."""
    def wrap(fn):
        for op in ops:
            if op in LOWERINGS:
                raise ValueError(f"a lowering for {op} is already registered ({LOWERINGS[op].__name__})")
            LOWERINGS[op] = fn
        return fn
    return wrap
