"""examples/linear_w.py: the chapter's part 2 numbers, computed by the engine's autodiff."""
import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_example(name):
    """Import examples/NAME.py as a module (examples/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


linear_w = load_example("linear_w")


def test_iterations_1_and_2_are_the_chapters_numbers():
    first, second = linear_w.chapter_rows()[:2]
    expected_first = dict(iteration=1, x=1, y_true=2, y_pred=0.5, loss=2.25, gradient=-3.0, w=0.8)
    expected_second = dict(iteration=2, x=2, y_true=4, y_pred=1.6, loss=5.76, gradient=-9.6, w=1.76)
    for row, expected in ((first, expected_first), (second, expected_second)):
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, abs=1e-12), key


def test_lr_0_1_overshoots_on_the_first_pass():
    # the chapter's "1.76 → 1.88 → 1.94 …" is illustrative: the true per-sample updates at x = 3, 4, 5
    ws = [row["w"] for row in linear_w.chapter_rows()]
    assert ws == pytest.approx([0.8, 1.76, 2.192, 1.5776, 3.6896], abs=1e-12)


def test_the_error_is_multiplied_by_one_minus_2_lr_x_squared():
    rows = linear_w.chapter_rows()
    previous = linear_w.INITIAL_W
    for row in rows:
        factor = linear_w.error_factor(linear_w.CHAPTER_LR, row["x"])
        assert row["w"] - 2 == pytest.approx(factor * (previous - 2), abs=1e-12)
        previous = row["w"]


def test_a_small_learning_rate_converges_to_2():
    rows = linear_w.converging_rows()
    assert abs(rows[-1]["w"] - 2) < 0.005
    assert all(abs(row["w"] - 2) >= 0.005 for row in rows[:-1])   # it stops at the first iteration within 0.005
    ws = [linear_w.INITIAL_W] + [row["w"] for row in rows]
    assert all(a < b <= 2 for a, b in zip(ws, ws[1:]))              # lr·2x² < 1: it climbs, never overshoots
    assert len(rows) == 23


def test_a_learning_rate_that_cannot_converge_is_refused():
    with pytest.raises(ValueError, match="does not converge"):
        linear_w.converging_rows(lr=0.1)


def test_lr_0_1_over_all_five_samples_diverges():
    rows = linear_w.divergence_rows(passes=20)
    ends_of_passes = [row["w"] - 2 for row in rows if row["x"] == 5]   # the error after each full pass
    for before, after in zip(ends_of_passes, ends_of_passes[1:]):
        # each pass multiplies the error by 0.8 · 0.2 · (−0.8) · (−2.2) · (−4) = −1.1264: it grows and flips sign
        assert after == pytest.approx(-1.1264 * before, rel=1e-9)
    first_beyond_10 = next(row["iteration"] for row in rows if abs(row["w"]) > 10)
    assert first_beyond_10 == 75                                      # pass 15, at x = 5
    assert max(abs(row["w"]) for row in rows) > 15


def test_the_script_prints_the_table_the_note_and_the_plot():
    result = subprocess.run([sys.executable, "examples/linear_w.py", "--show-divergence"], cwd=ROOT,
                            capture_output=True, text=True, encoding="utf-8", timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "|   1 |      2 |    0.5000 |     2.2500 |    -3.0000 |    0.8000" in out
    assert "|   2 |      4 |    1.6000 |     5.7600 |    -9.6000 |    1.7600" in out
    assert "is illustrative" in out                                   # the note on the chapter's sequence
    assert "w = 1.9956 ≈ 2.00 after 23 iterations" in out
    assert "w的变化过程" in out and "target w = 2" in out               # the text plot
    assert "|w| first exceeds 10 at iteration 75" in out


def graph_labels(dot):
    """{header: the label's other lines} of each node in to_dot's DOT text (the header is the name or the op)."""
    labels = {}
    for label in re.findall(r"label=<<table.*?</table>>", dot):
        lines = [html.unescape(re.sub(r"</?b>", "", line)) for line in re.findall(r"<td>(.*?)</td>", label)]
        labels[lines[0]] = lines[1:]
    return labels


def test_iteration_1_graph_shows_the_chapters_numbers():
    labels = graph_labels(linear_w.iteration_1_graph())
    assert labels["w"] == ["parameter, scalar float64", "value 0.5", "grad -3.0"]      # ∂loss/∂w = −3.0
    assert labels["y_pred"] == ["Mul, scalar float64", "value 0.5", "grad -3.0"]       # y_pred = 0.5·1
    assert labels["loss"] == ["Pow ** 2, scalar float64", "value 2.25", "grad 1.0"]   # (0.5 − 2)² = 2.25
    assert labels["x"] == ["constant, scalar float64", "value 1.0"]
    assert labels["y_true"] == ["constant, scalar float64", "value 2.0"]
    assert labels["Sub"] == ["scalar float64", "value -1.5", "grad -3.0"]              # y_pred − y_true


def run_script(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "examples" / "linear_w.py"), *args], cwd=cwd,
                          capture_output=True, text=True, encoding="utf-8", timeout=60)


def test_the_script_draws_the_graph_to_a_dot_file(tmp_path):
    result = run_script("--graph", str(tmp_path / "w.dot"))
    assert result.returncode == 0, result.stderr
    dot = (tmp_path / "w.dot").read_text(encoding="utf-8")
    assert dot.startswith("digraph") and graph_labels(dot)["w"][1:] == ["value 0.5", "grad -3.0"]
    assert f"drawn to {tmp_path / 'w.dot'}" in result.stdout


def test_the_script_refuses_a_graph_or_plot_path_it_cannot_write_before_it_runs(tmp_path):
    for args, message in ((["--graph", "w.txt"], "extension must be one of"), (["--plot", "w.jpg"], "ending in .png")):
        result = run_script(*args, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr and result.stdout == ""


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path):
    script = str(ROOT / "examples" / "linear_w.py")
    code = ("import runpy, sys\nsys.modules['matplotlib'] = None\n"   # None in sys.modules: not importable
            f"sys.argv = ['linear_w.py', '--plot', 'w.png']\nrunpy.run_path({script!r}, run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "pip install -e '.[plot]'" in result.stderr
    assert not (tmp_path / "w.png").exists()


def test_the_script_saves_w_against_iteration_as_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    result = run_script("--plot", str(tmp_path / "w.png"))
    assert result.returncode == 0, result.stderr
    picture = (tmp_path / "w.png").read_bytes()
    assert picture[:8] == b"\x89PNG\r\n\x1a\n" and len(picture) > 1000
    assert f"w against iteration saved to {tmp_path / 'w.png'}" in result.stdout


def test_the_plotted_series_climb_to_2():
    series = linear_w.w_series(linear_w.converging_rows())
    iterations, ws = series["w"]
    assert iterations[0] == 0 and ws[0] == linear_w.INITIAL_W and abs(ws[-1] - 2) < 0.005
    assert series["target w = 2"] == (iterations, [2.0] * len(ws))
