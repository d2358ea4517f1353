"""Every notebook runs headless: jupytext .py → nbformat → nbclient.

Each runs with ``QUICK=1`` in a ``python3`` kernel whose working directory is
``notebooks/``, and must finish without an error output (the notebooks hold their own
``assert``s). Measured on the busy 2-core development machine with QUICK=1: 02 ≈ 55–70 s
(marked slow), 03 ≈ 15 s, 04 ≈ 20 s, 05 ≈ 15 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

CASES = [
    pytest.param("00_quickstart", marks=pytest.mark.slow),
    pytest.param("01_liflow_solid_electrolytes", marks=pytest.mark.slow),
    pytest.param("02_flashmd_long_strides", marks=pytest.mark.slow),
    "03_cg_polymers",
    "04_train_your_own_liflow",
    "05_exercises",
]


def execute_notebook(path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Run a jupytext notebook headless; return its error outputs."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{path.name}: {exc}")
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]


@pytest.mark.parametrize("name", CASES)
def test_notebook_executes(name, monkeypatch):
    path = NOTEBOOKS / f"{name}.py"
    assert path.exists(), path
    errors = execute_notebook(path, monkeypatch)
    assert not errors, [f"{e['ename']}: {e['evalue']}" for e in errors]


def test_notebooks_are_jupytext_percent_files():
    jupytext = pytest.importorskip("jupytext")
    names = ("01_liflow_solid_electrolytes", "02_flashmd_long_strides", "03_cg_polymers",
             "04_train_your_own_liflow", "05_exercises")  # fmt: skip
    for name in names:
        path = NOTEBOOKS / f"{name}.py"
        text = path.read_text()
        assert "format_name: percent" in text, name
        notebook = jupytext.read(path)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        assert code and any("assert" in c.source for c in code), name
        assert any("QUICK" in c.source for c in code), name


def test_every_notebook_is_executed_here():
    names = {getattr(c, "values", (c,))[0] for c in CASES}
    assert names == {p.stem for p in NOTEBOOKS.glob("*.py")}
