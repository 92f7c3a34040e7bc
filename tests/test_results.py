"""Evaluation result files: one per protocol under eval/, and the older kNN files still read."""

from __future__ import annotations

import json

import pytest
import yaml

from sempairs.errors import SempairsWarning
from sempairs.eval.results import read_result, result_path, write_result


def test_results_go_under_eval_beside_the_checkpoint(tmp_path):
    assert result_path(tmp_path / "last.ckpt", "knn") == tmp_path / "eval" / "knn.json"
    assert result_path(tmp_path / "epoch_0004.ckpt", "linear") == tmp_path / "eval" / "epoch_0004-linear.json"
    write_result(result_path(tmp_path / "last.ckpt", "knn"), {"knn_top1": 51.5})
    assert read_result(tmp_path, "knn") == {"knn_top1": 51.5}


@pytest.mark.parametrize("old, text", [("knn.yaml", yaml.safe_dump({"knn_top1": 40.0})),
                                       ("knn.json", json.dumps({"knn_top1": 40.0}))])
def test_an_older_knn_file_is_read_with_a_deprecation_warning(tmp_path, old, text):
    (tmp_path / old).write_text(text)
    with pytest.warns(SempairsWarning, match="now kept in .*eval/knn.json"):
        assert read_result(tmp_path, "knn") == {"knn_top1": 40.0}


def test_the_current_file_wins_and_other_protocols_have_no_old_names(tmp_path):
    (tmp_path / "knn.yaml").write_text(yaml.safe_dump({"knn_top1": 40.0}))
    write_result(result_path(tmp_path / "last.ckpt", "knn"), {"knn_top1": 52.0})
    assert read_result(tmp_path, "knn") == {"knn_top1": 52.0}
    assert read_result(tmp_path, "linear") is None
