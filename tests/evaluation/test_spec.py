"""Spec validation: bad specs fail before any model loads, with the field named."""

from __future__ import annotations

import pytest

from ehrforge.errors import ConfigError
from evaluation.spec import load_spec


def test_demo_spec_is_valid():
    spec = load_spec("evaluation/specs/demo.yaml")
    assert spec.version >= 1 and {m.kind for m in spec.models} == {"adapter", "base"}


@pytest.mark.parametrize("override, message", [
    ("models=[{name: a, kind: adapter, path: /x}]", "adapter_path"),
    ("models=[{name: a, kind: endpoint, path: m}]", "base_url"),
    ("models=[{name: a, kind: base, path: x}, {name: a, kind: base, path: y}]", "unique"),
    ("metrics={text: [rouge_9]}", "unknown item metric"),
    ("judge.jury=[]", "jury"),
    ("version=0", "version"),
])
def test_bad_specs_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_spec("evaluation/specs/demo.yaml", [override])
