"""docs/architecture.md stays true: the modules it names exist, and imports point its way."""

from __future__ import annotations

import re

from tests.architecture import (
    DOC,
    existing_names,
    layer_of,
    layers,
    module_name,
    package_modules,
    wrong_way_imports,
)


def test_every_module_the_doc_names_exists():
    existing = existing_names()
    named = [name for name in layers() if not name.endswith(".*")]
    assert [name for name in named if name not in existing] == []


def test_every_module_of_the_app_has_a_place_in_the_doc():
    table = layers()
    names = [module_name(p) for p in package_modules()]
    unplaced = [name for name in names if layer_of(name, table) is None]
    assert unplaced == []


def test_no_import_points_the_wrong_way():
    assert wrong_way_imports() == []


def test_the_walk_names_functions_that_exist():
    source = "\n".join(p.read_text() for p in package_modules())
    walk = DOC.read_text().split("## The walk of one text")[1]
    for dotted in re.findall(r"`([a-z_]+(?:\.[A-Za-z_]+)+)`", walk):
        function = dotted.split(".")[-1]
        assert re.search(rf"def {function}\b", source), f"{dotted} is named but not defined"
