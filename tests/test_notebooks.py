"""Every notebook in notebooks/ runs top to bottom at the tiny size (so none of them rots), and none is
committed with outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["01_quickstart.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "MJX_TECRL_NOTEBOOK_SIZE" in code[0].source  # the size switch is at the top


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_at_tiny_size(path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MJX_TECRL_NOTEBOOK_SIZE", "tiny")
    # The kernel inherits this: XLA compiles with most optimisations off, as in conftest's fast_compile.
    # Compiling dominates a tiny run on the CPU; what the cells compute is the same.
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the failing cell and its traceback
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    showing = [c for c in code if "Image(" in c.source]
    assert showing and all(any("image/png" in o.get("data", {}) for o in c.outputs) for c in showing)
    assert list(tmp_path.rglob("metrics.csv"))  # it trained in its own directory
