"""``tinybptt bench`` refuses numeric options that would measure nothing or make no sense.

Before, ``--train-steps 0`` ended every contender in an IndexError, ``--gemm-sizes 0``
in a ZeroDivisionError, and ``--rounds 0``, ``--budget 0`` or ``--warmup -1`` ran
without a word.  Each must now stop at the command line, before any worker starts,
with a message that names the option.
"""
import pytest

from tinybptt.bench import cli


def _refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2  # argparse's usage error
    return capsys.readouterr().err


@pytest.mark.parametrize("option, value", [
    ("--repeat", "0"), ("--min-repeat", "0"), ("--rounds", "0"), ("--warmup", "-1"), ("--settle", "-0.5"),
    ("--budget", "0"), ("--max-iter-s", "0"), ("--timeout", "0"), ("--timeout", "nan"),
    ("--scaling-repeat", "0"), ("--gemm-repeat", "0"), ("--train-steps", "0"), ("--train-rounds", "0"),
    ("--train-warmup", "-1"), ("--profile-steps", "-1"), ("--profile-warmup", "-3"),
])
def test_a_number_below_the_option_s_lowest_is_refused(option, value, capsys):
    err = _refused([option, value, "--peers", ""], capsys)
    assert option in err and value in err


def test_gemm_sizes_and_thread_counts_must_be_positive(capsys):
    assert "--gemm-sizes" in _refused(["--gemm-only", "--gemm-sizes", "64,0"], capsys)
    assert "--threads" in _refused(["--threads", "1,0"], capsys)


def test_the_lowest_values_themselves_are_accepted(monkeypatch):
    ran = {}
    monkeypatch.setattr(cli, "_run_sections", lambda args, out: ran.setdefault("args", args) and 0)
    cli.main(["--repeat", "1", "--min-repeat", "1", "--rounds", "1", "--warmup", "0", "--settle", "0",
              "--budget", "0.01", "--train-steps", "1", "--profile-steps", "0", "--peers", "", "--quiet"])
    assert ran["args"].train_steps == 1 and ran["args"].warmup == 0


def test_an_unknown_training_task_is_refused_with_the_known_ones(capsys):
    err = _refused(["--section", "train", "--train-tasks", "adding,copy"], capsys)
    assert "--train-tasks" in err and "unknown task copy" in err and "adding,agreement" in err


def test_the_training_tasks_are_parsed_in_the_order_given(monkeypatch):
    ran = {}
    monkeypatch.setattr(cli, "_run_sections", lambda args, out: ran.setdefault("args", args) and 0)
    cli.main(["--section", "train", "--train-tasks", "agreement,adding", "--peers", "", "--quiet"])
    assert ran["args"].train_tasks == ["agreement", "adding"]
