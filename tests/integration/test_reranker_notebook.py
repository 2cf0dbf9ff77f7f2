"""The notebook ``notebooks/fine_tune_cross_encoder.ipynb`` runs top to bottom on a small
sample of Cranfield (its parameters cell replaced), and shows the report and the five plots."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "fine_tune_cross_encoder.ipynb"
CRANFIELD = ROOT.parent / "shared" / "data" / "cranfield"

SMALL = """SAMPLE_QUERIES = 12
EXTRA_DOCS = 30
MAX_STEPS = 2
EPOCHS = 1.0
PRETRAIN_ITEMS = 50
TOP_N = 10
SEED = 7
DATA = None"""


@pytest.mark.skipif(not (CRANFIELD / "cranqrel").exists(), reason=f"Cranfield is not at {CRANFIELD}")
def test_the_notebook_runs_on_a_small_sample_and_shows_report_and_plots():
    nbclient = pytest.importorskip("nbclient")
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# parameters"))
    params.source = "# parameters (small sample, set by the test)\n" + SMALL
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "ndcg@10" in text and "first_stage" in text and "to validate" in text
    assert "pre-trained on 50 catalogue titles" in text  # the abstracts taught the task before the feedback
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 5
