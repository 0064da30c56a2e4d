"""The pure parts of the magics: -p values, sweep axes and grids, the name check."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from nblaunch.errors import SpecError
from nblaunch.extension import names, sweep
from nblaunch.extension.options import literal, parse_param
from nblaunch.extension.setup_cells import SetupCells


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5e-5", 5e-05),
        ("[64,64]", [64, 64]),
        ("run-3", "run-3"),
        ("'quoted'", "quoted"),
        ("True", True),
        ("None", None),
        ("{'a': 1}", {"a": 1}),
        ("adam", "adam"),
        ("", ""),
        ("1/2", "1/2"),  # an expression, not a literal: kept as text
    ],
)
def test_literal_else_string(text: str, value: Any) -> None:
    assert literal(text) == value
    assert type(literal(text)) is type(value)


@pytest.mark.parametrize("text", ["lr", "=3", "1x=2", "class=3", "a-b=1"])
def test_malformed_param(text: str) -> None:
    with pytest.raises(SpecError, match="not name=value"):
        parse_param(text)


def test_axis_values() -> None:
    assert sweep.parse_axis("lr=1e-3,1e-4") == ("lr", [0.001, 0.0001])
    assert sweep.parse_axis("opt=adam,'sgd'") == ("opt", ["adam", "sgd"])
    assert sweep.parse_axis("layers=[64,64],[128]") == ("layers", [[64, 64], [128]])
    assert sweep.parse_axis("dims=(1,2)") == ("dims", [[1, 2]])
    for bad in ("lr=", "lr=  ", "lr", "opt=adam,,sgd"):
        with pytest.raises(SpecError):
            sweep.parse_axis(bad)


def test_grid_and_names() -> None:
    axes = [("lr", [0.1, 0.01]), ("bs", [8, 16, 32])]
    points = sweep.grid({"epochs": 1}, axes)
    assert len(points) == 6
    assert points[0] == {"epochs": 1, "lr": 0.1, "bs": 8}
    assert points[-1] == {"epochs": 1, "lr": 0.01, "bs": 32}
    assert sweep.point_name("train", points[1], axes, 1) == "train[lr=0.1,bs=16]"
    assert sweep.point_name("run{i}-lr{lr}", points[1], axes, 1) == "run1-lr0.1"
    with pytest.raises(SpecError, match="fields available: i, epochs, lr, bs"):
        sweep.point_name("run-{nope}", points[1], axes, 1)
    with pytest.raises(SpecError, match="both a -p parameter and a --sweep"):
        sweep.grid({"lr": 1}, axes)
    with pytest.raises(SpecError, match="given twice"):
        sweep.grid({}, [("lr", [1]), ("lr", [2])])


def _undefined(*sources: str) -> list[str]:
    transform = TransformerManager().transform_cell
    return names.undefined_names([(f"cell {i}", s) for i, s in enumerate(sources)], transform)


def test_undefined_names_follow_cell_order_and_scopes() -> None:
    assert _undefined("import math\ndef f(x):\n    return math.sqrt(x) + k", "f(model)") == [
        "k",
        "model",
    ]
    assert _undefined("lr = 1", "from os import path\nprint(path, lr)") == []
    # magics become get_ipython() calls (a name every kernel has)
    assert _undefined("!echo {x}\nprint(y)") == ["get_ipython", "y"]
    # code run by %time / %%time defines names like any other code
    assert _undefined("%time y = 1\nprint(y)") == []
    assert _undefined("%%time\nz = 1\nprint(z)") == []
    _undefined("await thing()")  # top-level await is fine in a kernel
    with pytest.raises(SpecError, match="cell 1 does not parse: .*line 1"):
        _undefined("x = 1", "def (:")


def test_kernel_only_names_skip_kernel_history_and_hidden() -> None:
    transform = TransformerManager().transform_cell
    ns = {"model": object(), "_": 1, "_i3": "", "_7": 2, "get_ipython": print, "data": 3}
    cells = [("body", "print(model, _, _i3, _7, get_ipython, data, not_anywhere)")]
    found = names.kernel_only_names(cells, ns, {"get_ipython"}, transform)
    assert found == ["model", "data"]
    message = str(names.refusal(["model"]))
    assert "mark the cell that defines `model` with %%launch_setup" in message
    assert "--force" in message and "\n" not in message


def test_setup_cells_replace_by_name_cell_id_or_content() -> None:
    cells = SetupCells()
    cells.record("a = 1", name="data")
    cells.record("b = 1", cell_id="c1")
    cells.record("c = 1")
    cells.record("a = 2", name="data")  # edited: replaces, keeps its place
    cells.record("b = 2", cell_id="c1")
    cells.record("c = 1")  # same content: one copy
    assert [c.source for c in cells] == ["a = 2", "b = 2", "c = 1"]
    cells.record("b = 3", name="model", cell_id="c1")  # the cell was named since
    assert [c.source for c in cells] == ["a = 2", "c = 1", "b = 3"]
    assert cells.clear() == 3 and len(cells) == 0
