"""The course's tools: the blank generator, the grader's verdicts and messages, private
tests, the command line, the in-notebook call, the data-only format between the grader
and the learner's process, and the wheel graded outside the checkout (the assignments
themselves are checked by ``make course-check``; attacks on the grader are in
``test_grader_attacks.py``)."""

import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest

from bn_course import course_check, grade, make_student, wire
from bn_course.grade import FAILED, NOT_ATTEMPTED, PASSED, Submission

ROOT = Path(__file__).resolve().parent.parent


def course_helpers():
    """The graded tests' helpers, imported as the grader imports them."""
    if str(grade.TESTS) not in sys.path:
        sys.path.insert(0, str(grade.TESTS))
    return importlib.import_module("course_helpers")

SOLUTION = '''
def f(x):
    """Docstring stays."""
    y = 2 * x
    ### BEGIN SOLUTION: double x, then add one
    z = y + 1
    return z
    ### END SOLUTION
'''


def learner_code(source, cell="forward"):
    """A namespace as the grader builds it from an answer cell."""
    namespace = {}
    exec(compile(source, f"<answer cell {cell}>", "exec"), namespace)
    return Submission(namespace, origin="the test")


def forward_results(submission, **kwargs):
    report = grade.run_tests("02_forward", submission, **kwargs)
    return report, {r.test: r for r in report.results}


def test_blank_source_keeps_the_rest_and_names_what_to_write():
    blank = make_student.blank_source(SOLUTION)
    assert '"""Docstring stays."""' in blank and "y = 2 * x" in blank
    assert "z = y + 1" not in blank and "BEGIN SOLUTION" not in blank
    assert '    raise NotImplementedError("f: double x, then add one")' in blank


@pytest.mark.parametrize("broken", [SOLUTION.replace("    ### END SOLUTION\n", ""),
                                    SOLUTION.replace("    ### BEGIN SOLUTION: double x, "
                                                     "then add one\n", "")])
def test_blank_source_rejects_unbalanced_markers(broken):
    with pytest.raises(ValueError, match="SOLUTION"):
        make_student.blank_source(broken)


def test_committed_blanks_are_up_to_date():
    assert make_student.check() == []


def test_stub_is_not_attempted_and_missing_function_fails():
    stub = learner_code("def batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
                        "    raise NotImplementedError('write it')\n")
    with pytest.raises(grade.NotAttempted, match="batchnorm_forward: write it"):
        stub.call("batchnorm_forward", 1, 2, 3)
    with pytest.raises(AssertionError, match="defines no function 'staged_backward'"):
        stub.call("staged_backward")


def test_a_crash_names_the_exception_and_the_learners_line():
    crash = learner_code("def batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
                         "    m = 0\n"
                         "    return x.shape[0] // m\n")
    report, results = forward_results(crash)
    row = results["test_output_matches_pytorch"]
    assert row.outcome == FAILED
    assert "ZeroDivisionError" in row.message and "in batchnorm_forward, line 3" in row.message
    assert report.score == 0


def test_returning_none_fails_with_what_to_return():
    none = learner_code("def batchnorm_forward(x, gamma, beta, eps=1e-5):\n    pass\n")
    _, results = forward_results(none)
    assert results["test_output_matches_pytorch"].outcome == FAILED
    assert "returned None; it must return y, cache" in results["test_smallest_batch"].message


def test_private_tests_run_beside_the_public_ones(tmp_path, monkeypatch):
    (tmp_path / "test_02_private.py").write_text(
        "from course_helpers import task\n\n"
        "pytestmark = task('forward')\n\n\n"
        "def test_private_always_fails(learner):\n"
        "    assert False, 'the private test failed'\n")
    monkeypatch.setenv(grade.PRIVATE_TESTS_VARIABLE, str(tmp_path))
    report = grade.grade_notebook(grade.SOURCES / "02_forward.ipynb")
    results = {r.test: r for r in report.results}
    private = results["test_02_private.py::test_private_always_fails"]
    assert private.outcome == FAILED and private.task == "forward"
    assert private.message == "the private test failed"
    assert report.score == report.max_score - 1


def test_one_task_only(capsys):
    report = grade.grade_notebook(grade.SOURCES / "03_backward.ipynb", task="gradient_check")
    assert {r.task for r in report.results} == {"gradient_check"} and report.full_marks


def test_in_notebook_call_prints_and_raises_only_when_strict(monkeypatch, capsys):
    namespace = {"batchnorm_forward": lambda *args: (_ for _ in ()).throw(
        NotImplementedError("not yet"))}
    report = grade.grade("02", namespace)
    out = capsys.readouterr().out
    assert "not attempted" in out and "score: forward 0/" in out
    assert {r.outcome for r in report.results} == {NOT_ATTEMPTED}
    monkeypatch.setenv(grade.STRICT_VARIABLE, "1")
    with pytest.raises(AssertionError, match="tests passed"):
        grade.grade("02", namespace)


def test_command_line_copies_blanks_and_exits_by_the_score(tmp_path, capsys):
    work = tmp_path / "work"
    assert grade.main(["--assignment", "02", "--work", str(work)]) == 1
    assert (work / "02_forward.ipynb").exists()
    results = json.loads((work / "results.json").read_text())
    assert results["score"] == 0 and results["max_score"] > 0
    assert {t["outcome"] for t in results["assignments"][0]["tests"]} == {NOT_ATTEMPTED}

    shutil.copy(grade.SOURCES / "02_forward.ipynb", work / "02_forward.ipynb")
    assert grade.main(["-a", "2", "--work", str(work)]) == 0
    results = json.loads((work / "results.json").read_text())
    assert results["score"] == results["max_score"]
    assert {t["outcome"] for t in results["assignments"][0]["tests"]} == {PASSED}
    assert "assignment 02: " in capsys.readouterr().out


def test_unknown_assignment_is_a_clear_error():
    with pytest.raises(ValueError, match="no assignment '99'"):
        grade.resolve("99")


def test_an_unreadable_notebook_fails_every_test(tmp_path):
    broken = tmp_path / "02_forward.ipynb"
    broken.write_text("{ not json")
    report = grade.grade_notebook(broken)
    assert report.score == 0 and report.max_score > 0
    assert "cannot be read" in report.results[0].message


def test_an_endless_loop_is_stopped(monkeypatch):
    monkeypatch.setattr(grade, "TEST_TIME_LIMIT", 1)
    loop = learner_code("def batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
                        "    while True:\n"
                        "        pass\n")
    report = grade.run_tests("02_forward", loop, task="forward")
    assert report.score == 0
    assert "ran longer than 1 s" in report.results[0].message


def test_a_broken_answer_cell_costs_only_its_task(tmp_path):
    notebook = nbformat.read(grade.SOURCES / "03_backward.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "compact_backward":
            cell.source = "def compact_backward(dy, x_hat, gamma, inv_std:\n    pass\n"
    nbformat.write(notebook, tmp_path / "03_backward.ipynb")
    report = grade.grade_notebook(tmp_path / "03_backward.ipynb")
    scores = report.task_scores()
    assert scores["compact_backward"][0] == 0
    assert scores["staged_backward"][0] == scores["staged_backward"][1]
    assert scores["gradient_check"][0] == scores["gradient_check"][1]
    message = next(r.message for r in report.results if r.task == "compact_backward")
    assert "answer cell 'compact_backward' raised SyntaxError" in message


def test_every_graded_test_file_declares_what_bn_lib_withholds():
    assert course_check.check_declarations() == []
    with pytest.raises(ValueError, match="'batch_norm_forwrd', which bn_lib does not have"):
        grade.check_not_allowed(["batch_norm_forwrd"])
    grade.check_not_allowed(["BatchNorm.update_running_stats", "numerical_gradient"])


# ----------------------------------------------------------------------------- the checks


@pytest.mark.parametrize("value, message", [
    (None, "y is None; expected a float64 array of shape (2,)"),
    ([1.0, 2.0], "y is a list; expected a float64 array of shape (2,) (return NumPy arrays)"),
    (wire.ForeignObject("Tensor"), "y is an object of type Tensor; expected"),
    (np.array([1, 2]), "y has dtype int64; expected a float64 array of shape (2,)"),
    (np.array([1.0, 2.0, 3.0]), "y has shape (3,); expected a float64 array of shape (2,)"),
    (np.array([1.0, 2.0], dtype=np.float16), "y has the wrong precision: yours is float16"),
    (np.array([1.0, 2.0]) + 0j, "y is complex (complex128); expected real values"),
    (np.array([1.0, np.nan]), "y has a non-finite value at (1,)"),
])
def test_an_array_that_is_not_real_float64_of_the_shape_is_refused(value, message):
    with pytest.raises(AssertionError) as error:
        course_helpers().check_array("y", value, (2,))
    assert str(error.value).startswith(message)


def test_one_number_is_a_real_scalar():
    check_number = course_helpers().check_number
    assert check_number("e", np.float64(0.5)) == 0.5 and check_number("e", 2) == 2.0
    for value in (np.array([0.5]), 1j, True, "0.5", wire.ForeignObject("X")):
        with pytest.raises(AssertionError, match="must be one real number"):
            check_number("e", value)


# ----------------------------------------------------------------------------- the format


def round_trip(value, functions=()):
    body = wire.data_frame({"value": value, "values": ["value"]}, functions)[8:]
    return wire.read_data(body, ["value"], functions)["value"]


def test_data_keeps_its_types_and_dtypes():
    value = {"y": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.float64(2.5),
             "parts": (1, 2.0, "three", None, True, [np.int8(4)]), 7: False}
    back = round_trip(value)
    assert back["y"].dtype == np.float32 and np.array_equal(back["y"], value["y"])
    assert type(back["n"]) is np.float64 and back["n"] == 2.5
    assert back["parts"][:5] == (1, 2.0, "three", None, True)
    assert type(back["parts"][4]) is bool and isinstance(back["parts"][5], list)
    assert back["parts"][5][0].dtype == np.int8 and back[7] is False


def test_anything_else_arrives_as_a_foreign_object_with_its_data():
    class Layer:
        def __init__(self):
            self.gamma, self.name = np.ones(2), "bn"

    back = round_trip([Layer(), np.array([object()]), len])
    assert isinstance(back[0], wire.ForeignObject) and back[0].type_name == "Layer"
    assert np.array_equal(back[0].gamma, np.ones(2)) and back[0].name == "bn"
    assert back[1].description == "a NumPy array of dtype object"
    assert back[2].description == "an object of type builtin_function_or_method"
    assert round_trip([len], functions=[len]) == [len]  # a function the grader passed


@pytest.mark.parametrize("body", [
    b"", b"\x00\x00\x00\x05[1,2", b"\x00\x00\x00\x02[]",
    b'\x00\x00\x00\x1a{"value": {"pickle": "x"}}',
    b'\x00\x00\x00\x19{"value": {"array": 0}, }',
    b'\x00\x00\x00\x2a{"value": {"array": 0}, "blobs": [3]}abc',
], ids=["empty", "not JSON", "not an object", "unknown tag", "broken JSON", "bad array"])
def test_malformed_data_is_refused(body):
    with pytest.raises(wire.WireError):
        wire.read_data(body, ["value"])


def test_an_array_header_larger_than_its_data_is_refused():
    frame = wire.data_frame({"value": np.zeros(4), "values": ["value"]})
    forged = frame[8:].replace(b"(4,)", b"(9999999999,)")
    length = len(frame[8:]) - len(forged)  # the blob grew: fix the declared size
    header = json.loads(forged[4:4 + int.from_bytes(forged[:4], "big")])
    header["blobs"][0] -= length
    text = json.dumps(header).encode()
    blob = forged[4 + int.from_bytes(forged[:4], "big"):]
    with pytest.raises(wire.WireError, match="does not match its shape"):
        wire.read_data(len(text).to_bytes(4, "big") + text + blob, ["value"])


# ----------------------------------------------------------------------------- the wheel


@pytest.mark.skipif(os.environ.get("BN_COURSE_SKIP_WHEEL_TEST") == "1",
                    reason="BN_COURSE_SKIP_WHEEL_TEST=1: pip cannot build the wheel here")
def test_the_wheel_grades_the_sources_outside_the_checkout(tmp_path):
    """The wheel, installed into a fresh environment (its dependencies from .venv), grades
    the source notebooks copied to a folder outside the repository: full marks."""
    python = Path(sys.executable)
    # built from a copy of what packaging reads: no build/ folder left in the checkout
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    for package in ("bn_lib", "bn_triton", "bn_course"):
        shutil.copytree(ROOT / package, tree / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([python, "-m", "pip", "wheel", str(tree), "--no-deps",
                    "--no-build-isolation", "--quiet", "-w", tmp_path / "wheel"],
                   check=True, cwd=tmp_path, capture_output=True)
    wheel = next((tmp_path / "wheel").glob("bn_lib-*.whl"))
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert "tools" not in top_level and "bn_course" in top_level
    environment = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", "--without-pip", environment], check=True)
    fresh = environment / "bin" / "python"
    site = subprocess.run([fresh, "-c", "import sysconfig; print(sysconfig.get_path("
                           "'purelib'))"], check=True, capture_output=True, text=True)
    # the dependencies (numpy, torch, pytest, nbformat) from .venv, after the wheel
    Path(site.stdout.strip(), "dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n")
    subprocess.run([python, "-m", "pip", "--python", fresh, "install", "--no-deps",
                    "--quiet", wheel], check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    for source in grade.SOURCES.glob("[0-9][0-9]_*.ipynb"):
        shutil.copy(source, work)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    run = subprocess.run([fresh, "-m", "bn_course.grade", "--work", "."], cwd=work,
                         env=clean, capture_output=True, text=True)
    where = subprocess.run([fresh, "-c", "import bn_course; print(bn_course.__file__)"],
                           cwd=work, env=clean, capture_output=True, text=True)
    assert where.stdout.startswith(str(environment)), where.stdout + where.stderr
    results = json.loads((work / "results.json").read_text())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert results["score"] == results["max_score"] > 0
    assert len(results["assignments"]) == len(list(work.glob("*.ipynb")))
