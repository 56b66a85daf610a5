"""Grade the course's assignments: the learner's one command, and the same call in a notebook.

Command line (from the repository root; ``make grade`` and ``make grade A=03`` call it)::

    python -m bn_course.grade [--assignment 03] [--work assignments/work] [--results PATH]

It grades the learner's copies in the working folder (copying in the blank of any
assignment that is missing there), prints one table per assignment (each test passed,
failed with a message that says what differs, or not attempted), a score per task and per
assignment, writes ``results.json`` and exits with status 1 below full marks.

In a notebook::

    from bn_course.grade import grade
    report = grade("02", globals())                  # every task of assignment 02
    report = grade("02", globals(), task="forward")  # one task

prints the same table from the functions defined in the running notebook and returns the
report without raising (set ``BN_COURSE_STRICT=1`` to make it raise below full marks, as
nbgrader's autograder needs).

How a notebook is graded: its set-up cell (the imports) and its answer cells (nbgrader's
``solution: true`` cells, named by their ``grade_id``, which is the task) are executed one
by one in a fresh namespace, and the
graded pytest tests in ``assignments/tests/test_NN_*.py`` call the functions they define.
Tests written by an instructor in the folder named by ``BN_COURSE_PRIVATE_TESTS`` (files
``test_NN_*.py``) are run as well. Nothing needs a network, Docker or a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import sys
import threading
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
import pytest

# the checkout this package sits in (an editable install): assignments/ is beside it
ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = ROOT / "assignments"
SOURCES = ASSIGNMENTS / "source"
TESTS = Path(__file__).resolve().parent / "tests"  # installed with the package
DEFAULT_WORK = ASSIGNMENTS / "work"
PRIVATE_TESTS_VARIABLE = "BN_COURSE_PRIVATE_TESTS"
STRICT_VARIABLE = "BN_COURSE_STRICT"

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
TEST_TIME_LIMIT = 60  # seconds; every test takes well under one with a right answer


class NotAttempted(Exception):
    """The learner's function still raises the blank's ``NotImplementedError``."""


# ----------------------------------------------------------------------------- assignments


def assignments():
    """``{"02": "02_forward", ...}``: every assignment, from its source notebook's name."""
    return {path.stem[:2]: path.stem for path in sorted(SOURCES.glob("[0-9][0-9]_*.ipynb"))}


def resolve(assignment):
    """The assignment's full name from "03", "3" or "03_backward", or a clear error."""
    known = assignments()
    key = str(assignment).split("_")[0].zfill(2)
    if key not in known:
        raise ValueError(f"no assignment {assignment!r}; the assignments are "
                         f"{', '.join(known.values())}")
    return known[key]


def answer_cells(notebook):
    """The set-up cell (``grade_id`` "setup": the imports) and the nbgrader answer cells,
    in the notebook's order, as ``(grade_id, source)`` pairs."""
    cells = []
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") == "setup"):
            cells.append((meta.get("grade_id", f"cell {len(cells) + 1}"), cell.source))
    return cells


def graded_test_files(name, private_dir=None):
    """The graded tests of one assignment: ours, then the instructor's private ones."""
    files = sorted(TESTS.glob(f"test_{name[:2]}_*.py"))
    private_dir = private_dir or os.environ.get(PRIVATE_TESTS_VARIABLE)
    if private_dir:
        folder = Path(private_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"{PRIVATE_TESTS_VARIABLE}={private_dir} is not a folder")
        files += sorted(folder.glob(f"test_{name[:2]}_*.py"))
    return files


# ----------------------------------------------------------------------------- submissions


class Submission:
    """The learner's functions, and what went wrong while defining them.

    Tests reach it as the ``learner`` fixture and call ``learner.call("name", *args)``.
    """

    def __init__(self, namespace=None, cell_errors=None, origin="the notebook"):
        self.namespace = {} if namespace is None else namespace
        self.cell_errors = list(cell_errors or [])  # what went wrong, one phrase each
        self.origin = origin

    @classmethod
    def from_notebook(cls, path):
        """Run the notebook's answer cells, each on its own, in one fresh namespace.

        A cell that raises is recorded and the others still run, so one broken cell costs
        only the functions it defines.
        """
        namespace = {"__name__": "submission"}
        try:
            notebook = nbformat.read(path, as_version=4)
        except Exception as error:  # not JSON, not a notebook: every test fails, and says so
            return cls(namespace, [f"the notebook cannot be read ({type(error).__name__})"],
                       origin=str(path))
        errors = []
        for grade_id, source in answer_cells(notebook):
            try:
                code = compile(source, f"<answer cell {grade_id}>", "exec")
                with contextlib.redirect_stdout(io.StringIO()), \
                        contextlib.redirect_stderr(io.StringIO()):
                    exec(code, namespace)
            except Exception as error:  # the learner's code: anything can go wrong
                errors.append(f"answer cell {grade_id!r} raised {type(error).__name__}: {error}")
        return cls(namespace, errors, origin=str(path))

    def function(self, name):
        value = self.namespace.get(name)
        if not callable(value):
            broken = "; ".join(self.cell_errors)
            raise AssertionError(f"{self.origin} defines no function {name!r}"
                                 + (f" ({broken})" if broken else ""))
        return value

    def call(self, name, *args, **kwargs):
        """Call the learner's ``name``; the blank's stub makes the test "not attempted"."""
        function = self.function(name)
        try:
            return function(*args, **kwargs)
        except NotImplementedError as error:
            raise NotAttempted(f"{name}: {error}" if str(error) else name) from None


# ----------------------------------------------------------------------------- running tests


@dataclass
class TestResult:
    test: str
    task: str
    outcome: str
    message: str = ""


@dataclass
class Report:
    assignment: str
    results: list = field(default_factory=list)
    task: str | None = None  # the one task graded, or None for the whole assignment

    @property
    def score(self):
        return sum(r.outcome == PASSED for r in self.results)

    @property
    def max_score(self):
        return len(self.results)

    @property
    def full_marks(self):
        return self.max_score > 0 and self.score == self.max_score

    def task_scores(self):
        scores = {}
        for r in self.results:
            passed, total = scores.get(r.task, (0, 0))
            scores[r.task] = (passed + (r.outcome == PASSED), total + 1)
        return scores

    def to_dict(self):
        return {"assignment": self.assignment, "score": self.score, "max_score": self.max_score,
                "tasks": {t: {"score": s, "max_score": m}
                          for t, (s, m) in self.task_scores().items()},
                "tests": [asdict(r) for r in self.results]}


def _learner_location(tb):
    """"in batchnorm_forward, line 7" for the deepest frame of the learner's code."""
    where = None
    for frame in traceback.extract_tb(tb):
        if frame.filename.startswith("<answer cell") or frame.filename.startswith("<ipython"):
            where = f"in {frame.name}, line {frame.lineno}"
    return where


def _message(excinfo):
    error = excinfo.value
    if isinstance(error, AssertionError):
        text = str(error).strip() or "an assertion failed"
        return text.splitlines()[0]
    where = _learner_location(excinfo.tb)
    text = f"{type(error).__name__}: {error}".splitlines()[0]
    return f"crashed with {text}" + (f" ({where})" if where else "")


@contextlib.contextmanager
def _time_limit(seconds):
    """Stop a test after ``seconds`` (an endless loop in an answer), where signals allow."""
    usable = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def stop(signum, frame):
        raise TimeoutError(f"the test ran longer than {seconds} s: is there an endless loop?")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class _GradingPlugin:
    """A pytest plugin: hands the submission to the tests and records each outcome."""

    def __init__(self, submission, task=None):
        self.submission = submission
        self.task = task
        self.results = []
        self.collection_errors = []

    @pytest.fixture
    def learner(self):
        return self.submission

    @staticmethod
    def _task_of(item):
        marker = item.get_closest_marker("task")
        return marker.args[0] if marker else "other"

    def pytest_configure(self, config):
        config.addinivalue_line("markers", "task(name): the graded task a test belongs to")

    def pytest_collection_modifyitems(self, config, items):
        if self.task is not None:
            items[:] = [item for item in items if self._task_of(item) == self.task]

    def pytest_collectreport(self, report):
        if report.failed:
            self.collection_errors.append((report.nodeid, report.longreprtext.strip()))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        with _time_limit(TEST_TIME_LIMIT):
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        yield
        broken_setup = call.when == "setup" and call.excinfo is not None
        if call.when != "call" and not broken_setup:
            return
        if call.excinfo is None:
            outcome, message = PASSED, ""
        elif call.excinfo.errisinstance(NotAttempted):
            outcome, message = NOT_ATTEMPTED, str(call.excinfo.value)
        else:
            outcome, message = FAILED, _message(call.excinfo)
        path = Path(str(item.path))
        name = item.nodeid.split("::", 1)[-1]
        if path.parent != TESTS:  # an instructor's private test: say so
            name = f"{path.name}::{name}"
        self.results.append(TestResult(name, self._task_of(item), outcome, message))


def run_tests(name, submission, task=None, private_dir=None):
    """Run the graded tests of assignment ``name`` against ``submission``; a :class:`Report`."""
    files = graded_test_files(name, private_dir)
    if not files:
        raise FileNotFoundError(f"no graded tests for {name} in {TESTS}")
    # the tests import their shared helpers (course_helpers) from assignments/tests
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    plugin = _GradingPlugin(submission, task)
    args = [str(f) for f in files] + ["-p", "no:cacheprovider", "-p", "no:randomly",
                                      "--rootdir", str(ROOT), "-q", "-W", "ignore"]
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        status = pytest.main(args, plugins=[plugin])
    report = Report(name, plugin.results, task)
    for nodeid, error in plugin.collection_errors:
        report.results.append(TestResult(nodeid, "collection", FAILED,
                                         f"the test file did not load: {error.splitlines()[-1]}"))
    if status not in (0, 1) and not report.results:
        raise RuntimeError(f"pytest could not run the tests of {name} (status {status}):\n"
                           + output.getvalue())
    return report


# ----------------------------------------------------------------------------- the table


def format_report(report, source=None):
    """The table a learner reads: one row per test, then the scores."""
    lines = [f"Assignment {report.assignment}" + (f": {source}" if source else "")]
    width = max([len(r.test) for r in report.results] + [4])
    task_width = max([len(r.task) for r in report.results] + [4])
    lines.append(f"  {'task':<{task_width}}  {'test':<{width}}  result")
    for r in report.results:
        result = {PASSED: "passed", FAILED: "FAILED", NOT_ATTEMPTED: "not attempted"}[r.outcome]
        message = f": {r.message}" if r.outcome == FAILED and r.message else ""
        lines.append(f"  {r.task:<{task_width}}  {r.test:<{width}}  {result}{message}")
    scores = ", ".join(f"{t} {s}/{m}" for t, (s, m) in report.task_scores().items())
    total = "" if report.task else (f"; assignment {report.assignment[:2]}: "
                                    f"{report.score}/{report.max_score}")
    lines.append(f"  score: {scores or 'no tests ran'}{total}")
    return "\n".join(lines)


def grade(assignment, namespace, task=None):
    """Grade the functions defined in a running notebook (pass ``globals()``).

    Prints the table and returns the :class:`Report`. It does not raise below full marks,
    so the notebook runs on; with ``BN_COURSE_STRICT=1`` it does (nbgrader's autograder
    scores a test cell by whether it raises).
    """
    name = resolve(assignment)
    report = run_tests(name, Submission(namespace, origin="this notebook"), task=task)
    print(format_report(report))
    if os.environ.get(STRICT_VARIABLE) == "1" and not report.full_marks:
        raise AssertionError(f"{report.score}/{report.max_score} tests passed")
    return report


def grade_notebook(path, task=None, private_dir=None):
    """Grade a notebook file; returns the :class:`Report`."""
    path = Path(path)
    return run_tests(resolve(path.stem), Submission.from_notebook(path), task, private_dir)


def prepare_work(work, names):
    """Create the working folder, copying in the blank of each assignment it lacks."""
    work.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (work / f"{name}.ipynb").exists():
            shutil.copy(ASSIGNMENTS / f"{name}.ipynb", work / f"{name}.ipynb")
            print(f"copied the blank {name}.ipynb into {work}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", "-a", help="grade one assignment, e.g. 03")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="the folder with the learner's notebooks (default %(default)s)")
    parser.add_argument("--results", type=Path,
                        help="where to write the JSON results (default WORK/results.json)")
    args = parser.parse_args(argv)

    names = [resolve(args.assignment)] if args.assignment else list(assignments().values())
    prepare_work(args.work, names)
    reports = []
    for name in names:
        report = grade_notebook(args.work / f"{name}.ipynb")
        reports.append(report)
        print(format_report(report, source=str(args.work / f"{name}.ipynb")))
        print()
    score, max_score = sum(r.score for r in reports), sum(r.max_score for r in reports)
    results_path = args.results or args.work / "results.json"
    results_path.write_text(json.dumps(
        {"score": score, "max_score": max_score,
         "assignments": [r.to_dict() for r in reports]}, indent=1) + "\n")
    print(f"total: {score}/{max_score} tests passed; results in {results_path}")
    return 0 if score == max_score and max_score > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
