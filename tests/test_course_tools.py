"""The course's tools: the blank generator, the grader's verdicts and messages, private
tests, the command line and the in-notebook call (the assignments themselves are checked
by ``make course-check``)."""

import json
import shutil

import nbformat
import pytest

from bn_course import grade, make_student
from bn_course.grade import FAILED, NOT_ATTEMPTED, PASSED, Submission

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
    solution = Submission.from_notebook(grade.SOURCES / "02_forward.ipynb")
    report, results = forward_results(solution)
    private = results["test_02_private.py::test_private_always_fails"]
    assert private.outcome == FAILED and private.task == "forward"
    assert private.message == "the private test failed"
    assert report.score == report.max_score - 1


def test_one_task_only(capsys):
    solution = Submission.from_notebook(grade.SOURCES / "03_backward.ipynb")
    report = grade.run_tests("03_backward", solution, task="gradient_check")
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
    with pytest.raises(ValueError, match="no assignment '09'"):
        grade.resolve("09")


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
