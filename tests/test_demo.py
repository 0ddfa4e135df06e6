"""The main job: ``python -m fastlstm demo`` and its data."""
import re
import subprocess
import sys

import numpy as np

from fastlstm.demo import load_sunspots


def test_the_shipped_series_is_the_yearly_sunspot_record():
    years, values = load_sunspots()
    np.testing.assert_array_equal(years, np.arange(1700, 2009))
    assert np.all(values >= 0) and values.max() == 190.2   # 1957, the record year of the series


def test_demo_trains_beats_the_naive_forecasts_and_writes_its_plot(tmp_path):
    plot = tmp_path / "forecast.png"
    completed = subprocess.run([sys.executable, "-m", "fastlstm", "demo", "--plot", str(plot), "--no-progress"],
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    errors = dict(re.findall(r"^  (LSTM|last value|seasonal naive \(11 y\))\s+([0-9.]+)$", completed.stdout,
                             re.MULTILINE))
    assert set(errors) == {"LSTM", "last value", "seasonal naive (11 y)"}, completed.stdout
    assert float(errors["LSTM"]) < float(errors["last value"]) < float(errors["seasonal naive (11 y)"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_line_lists_demo_check_and_bench():
    completed = subprocess.run([sys.executable, "-m", "fastlstm", "--help"], capture_output=True, text=True)
    assert completed.returncode == 0
    assert "{demo,check,bench}" in completed.stdout


def test_every_command_line_option_has_plain_help_text():
    from fastlstm.__main__ import build_parser

    parser, commands = build_parser()
    for name, command in [("", parser), *commands.items()]:
        undocumented = [a.dest for a in command._actions if not a.help and a.dest != "command"]
        assert not undocumented, (name, undocumented)
        text = command.format_help()
        assert "``" not in text and ":mod:" not in text and ":func:" not in text, (name, text)


def test_demo_refuses_a_test_period_it_cannot_have():
    completed = subprocess.run([sys.executable, "-m", "fastlstm", "demo", "--test-years", "0"],
                               capture_output=True, text=True)
    assert completed.returncode == 2
    assert "test_years: expected 1 to" in completed.stderr
