"""The registry of recurrent cells: a name -> a `bptt.layers.cell.Cell` subclass.

Adding a cell is one new file in layers/ and one line here;
`RNNModel(cell=name)`, `bptt train --cell name` and checkpoints pick it up
from this dict.
"""

from __future__ import annotations

from bptt.errors import UsageError
from bptt.layers.cell import Cell
from bptt.layers.elman import Elman
from bptt.layers.gru import GRU
from bptt.layers.lstm import LSTM

CELLS: dict[str, type[Cell]] = {
    "elman": Elman,
    "lstm": LSTM,
    "gru": GRU,
}


def make_cell(name: str, **options) -> Cell:
    """A cell object by its registry name; options (nonlinearity, ...) go to its constructor."""
    if name not in CELLS:
        raise UsageError(f"cell: got {name!r}, expected one of {', '.join(CELLS)}")
    return CELLS[name](**options)
