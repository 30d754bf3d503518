"""One pipeline step as a subprocess: output to its log, a progress bar from the trainer's lines."""

from __future__ import annotations

import pytest

from megacpt.errors import UserError
from megacpt.recipes.runner import python, run_step

TRAINER_LIKE = "for i in (1, 2, 3): print(f'step {i:>6} | loss {10 - i:.3f} | lr 0.001')"


def test_training_lines_drive_the_bar_and_everything_is_logged(tmp_path, capsys):
    log = tmp_path / "logs" / "train.log"
    run_step("train", python("-c", TRAINER_LIKE), log, train_steps=3)
    assert log.read_text().splitlines()[1:] == [
        f"step {i:>6} | loss {10 - i:.3f} | lr 0.001" for i in (1, 2, 3)
    ]
    bar = capsys.readouterr().err
    assert "3/3" in bar and "loss=7.000" in bar


def test_a_failing_step_shows_its_tail_and_names_its_log(tmp_path, capsys):
    log = tmp_path / "fail.log"
    with pytest.raises(UserError, match=f"step 'broken' failed with exit status 3; full output in {log}"):
        run_step("broken", python("-c", "print('what went wrong'); raise SystemExit(3)"), log)
    assert "what went wrong" in capsys.readouterr().err
    assert "what went wrong" in log.read_text()
