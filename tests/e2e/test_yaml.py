"""``type: ZipFitSelect`` in a Beam YAML pipeline run with ``python -m apache_beam.yaml.main``."""

import glob
import json
import subprocess
import sys

import pyarrow.parquet as pq

from tests.conftest import REPO, oracle_scores, oracle_top_k

K = 5


def no_jinja(text: str) -> bool:
    # Beam YAML renders the pipeline file with Jinja first: inline texts must not hold its tags.
    return not any(tag in text for tag in ("{{", "{%", "{#"))


def test_yaml_pipeline_selects_the_oracles_top_k(tmp_path, sources, targets):
    docs = [{"id": s["id"], "text": s["text"]} for s in sources if no_jinja(s["text"])][:30]
    docs.append({"id": "blank", "text": " "})
    targets = [t for t in targets if no_jinja(t["text"])]
    assert len(docs) == 31 and targets
    pipeline = {  # YAML is a superset of JSON
        "pipeline": {"transforms": [
            {"type": "Create", "config": {"elements": docs}},
            {"type": "ZipFitSelect", "input": "Create",
             "config": {"targets": [t["text"] for t in targets], "top_k": K, "contamination_ngram": 0}},
            {"type": "WriteToParquet", "name": "WriteSelected", "input": "ZipFitSelect.selected",
             "config": {"path": str(tmp_path / "out" / "selected")}},
            {"type": "WriteToParquet", "name": "WriteRejected", "input": "ZipFitSelect.rejected",
             "config": {"path": str(tmp_path / "out" / "rejected")}},
        ]},
        "providers": [{"type": "python", "config": {},
                       "transforms": {"ZipFitSelect": "zipfit_beam.jobs.records.ZipFitSelectYaml"}}],
    }
    spec = tmp_path / "zipfit.yaml"
    spec.write_text(json.dumps(pipeline))
    done = subprocess.run([sys.executable, "-m", "apache_beam.yaml.main", f"--yaml_pipeline_file={spec}",
                           "--runner=FnApiRunner"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    def rows(kind):
        return [r for f in sorted(glob.glob(str(tmp_path / "out" / f"{kind}-*"))) for r in pq.read_table(f).to_pylist()]

    oracle = oracle_scores(docs[:-1], targets)
    selected = rows("selected")
    assert sorted(r["id"] for r in selected) == sorted(oracle_top_k(oracle, K))
    assert all(abs(r["zipfit_score"] - oracle[r["id"]]) < 1e-12 for r in selected)
    assert [r["reason"] for r in rows("rejected")] == ["empty_text"]
