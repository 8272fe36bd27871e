"""``noisybayes demo --layers``: it runs, and what it prints is what its numbers say."""

from __future__ import annotations

import contextlib
import io
import json

import torch

from noisybayes.cli.demo_layers import METHODS, run_layers_demo
from noisybayes.cli.main import main


def test_layers_demo_runs_from_the_command_line_and_writes_its_figure(tmp_path):
    before = torch.get_num_threads()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["demo", "--layers", "--quick", "--plot", str(tmp_path / "layers.png"),
                     "--json", str(tmp_path / "layers.json")])
    torch.set_num_threads(before)
    assert code == 0
    assert (tmp_path / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "layers.json").read_text())
    assert [f["method"] for f in record["fits"]] == list(METHODS)
    out = buffer.getvalue()
    for sentence in record["sentences"]:
        assert f"- {sentence}" in out


def test_sentences_are_computed_from_the_fits():
    result = run_layers_demo(n_epochs=20, seed=1)
    best = min(result.fits, key=lambda f: f.rmse)
    widest = max(result.fits, key=lambda f: f.gap_widening)
    assert result.sentences[0].startswith(f"Closest to the true curve where there is data: "
                                          f"{best.method} (")
    assert f"the {widest.method} band is {widest.gap_widening:.1f} times" in result.sentences[1]
    for fit in result.fits:
        assert f"{fit.method} {fit.coverage:.0%}" in result.sentences[2]
        assert all(lo <= m <= up for lo, m, up in zip(fit.lower, fit.mean, fit.upper,
                                                      strict=True))
