"""The one record of a finished training phase (adapt's and distill's multi-phase runs): tensors, then the JSON
record last; a phase is finished only once both are there."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from transferkit.errors import DataError
from transferkit.runs.lifecycle import PHASE_DONE, PHASE_TENSORS, finish_phase, finished_phase


def test_a_finished_phase_reads_back_its_tensors_and_record(tmp_path):
    root = tmp_path / "phase-a"
    assert finished_phase(root) is None
    w = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    finish_phase(root, lambda p: save_file({"w": w}, str(p)), {"epochs": [1, 2], "seconds": 1.5})
    path, record = finished_phase(root)
    assert record == {"epochs": [1, 2], "seconds": 1.5}
    assert torch.equal(load_file(str(path))["w"], w)
    assert sorted(p.name for p in root.iterdir()) == sorted([PHASE_TENSORS, PHASE_DONE]), "no temporary file left"


def test_a_crash_while_writing_the_tensors_leaves_the_phase_unfinished(tmp_path):
    root = tmp_path / "phase-b"

    def crash(path):
        path.write_bytes(b"half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finish_phase(root, crash, {"seconds": 1.0})
    assert finished_phase(root) is None and not (root / PHASE_TENSORS).exists()


def test_an_unreadable_record_is_a_one_line_error_naming_it(tmp_path):
    root = tmp_path / "phase-c"
    root.mkdir()
    (root / PHASE_DONE).write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match=r"phase-c/done.json' cannot be read.*delete that folder"):
        finished_phase(root)
