"""Grade the course's assignments: the learner's one command, and the same call in a notebook.

Command line (``make grade`` and ``make grade A=03`` call it from the repository root; it
also runs from an installed wheel, in any folder)::

    python -m bn_course.grade [--assignment 03 ...] [--work FOLDER] [--results PATH]

It grades the notebooks ``NN_*.ipynb`` in the working folder (in a checkout it copies in
the blank of any assignment missing there), prints one table per assignment (each test
passed, failed with a message that says what differs or what happened, or not
attempted), a score per task and per assignment, always writes ``results.json`` (also
when the grader itself fails, or SIGTERM stops it between two tests: then it says so
there; a folder in its place is exit status 2) and exits with status 1 below full
marks. The assignments are those of the graded tests shipped in ``bn_course/tests/``
(``test_NN_*.py``), so a wheel installed anywhere (Colab) grades the same way.

The grade of record runs each notebook's set-up and answer cells in a child process
(:class:`bn_course.learner.NotebookSubmission`): learner code never runs in the grading
process. The child withholds torch and the bn_lib objects the tests name in
``BN_LIB_NOT_ALLOWED``, and refuses what reaches outside it (files, signals, processes:
:mod:`bn_course.worker`); each cell has 10 s, each call 20 s and the whole notebook 60 s
(``BN_COURSE_CELL_TIME_LIMIT``, ``BN_COURSE_CALL_TIME_LIMIT``,
``BN_COURSE_NOTEBOOK_TIME_LIMIT``); every expected value is computed here, on the tests'
own arrays.

In a notebook::

    from bn_course.grade import grade
    report = grade("02", globals())                  # every task of assignment 02
    report = grade("02", globals(), task="forward")  # one task

prints the same table from the functions defined in the running kernel, called in the
kernel itself: quick feedback, not the grade of record (torch and bn_lib's answers are
not withheld there). It returns the report without raising (set ``BN_COURSE_STRICT=1``
to make it raise below full marks, as nbgrader's autograder needs).

Tests written by an instructor in the folder named by ``BN_COURSE_PRIVATE_TESTS`` (files
``test_NN_*.py``) run as well. Nothing needs a network, Docker or a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import io
import json
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from bn_course.learner import (
    LearnerError,
    NotAttempted,
    NotebookSubmission,
    Submission,
    check_not_allowed,
    not_allowed,
    time_limit,
)

# what the tests and the course check use from here
__all__ = ["NotAttempted", "Submission", "NotebookSubmission", "assignments", "resolve",
           "graded_test_files", "open_notebook", "collect_tests", "run_tests", "grade",
           "grade_notebook", "format_report", "main"]

# in a checkout (an editable install) the assignments' notebooks sit beside this package
ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = ROOT / "assignments"
SOURCES = ASSIGNMENTS / "source"
IN_CHECKOUT = SOURCES.is_dir()
TESTS = Path(__file__).resolve().parent / "tests"  # installed with the package
DEFAULT_WORK = ASSIGNMENTS / "work" if IN_CHECKOUT else Path(".")
PRIVATE_TESTS_VARIABLE = "BN_COURSE_PRIVATE_TESTS"
STRICT_VARIABLE = "BN_COURSE_STRICT"

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"
TEST_TIME_LIMIT = 60  # seconds per test in the notebook's kernel (a right answer: well under 1)
# what the tests import, some of it late, imported before any learner code runs
ORACLE_MODULES = ("torch", "torch.nn.functional", "torch.optim.swa_utils")
_STOP_REQUESTS = []  # the names of the signals that asked the grader to stop


# ----------------------------------------------------------------------------- assignments


def assignments():
    """``{"02": "02_forward", ...}``: every assignment that has graded tests, named by its
    source notebook in a checkout, by its number elsewhere."""
    keys = sorted({path.name[5:7] for path in TESTS.glob("test_[0-9][0-9]_*.py")})
    names = {}
    for key in keys:
        sources = sorted(SOURCES.glob(f"{key}_*.ipynb")) if IN_CHECKOUT else []
        names[key] = sources[0].stem if sources else key
    return names


def resolve(assignment):
    """The assignment's number, "03", from "03", "3" or "03_backward", or a clear error."""
    known = assignments()
    key = str(assignment).split("_")[0].zfill(2)
    if key not in known:
        raise ValueError(f"no assignment {assignment!r}; the assignments are "
                         f"{', '.join(known.values())}")
    return key


def graded_test_files(assignment, private_dir=None):
    """The graded tests of one assignment: ours, then the instructor's private ones."""
    key = resolve(assignment)
    files = sorted(TESTS.glob(f"test_{key}_*.py"))
    private_dir = private_dir or os.environ.get(PRIVATE_TESTS_VARIABLE)
    if private_dir:
        folder = Path(private_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"{PRIVATE_TESTS_VARIABLE}={private_dir} is not a folder")
        files += sorted(folder.glob(f"test_{key}_*.py"))
    return files


def open_notebook(path, private_dir=None, extra_cells=()):
    """The notebook at ``path`` as a :class:`NotebookSubmission` of the assignment its name
    starts with (the child process starts at the first call)."""
    path = Path(path)
    files = graded_test_files(path.stem, private_dir)
    names = not_allowed(files)
    check_not_allowed(names)
    return NotebookSubmission(path, resolve(path.stem), files, extra_cells)


# ----------------------------------------------------------------------------- reports


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


def _message(excinfo):
    error = excinfo.value
    if isinstance(error, LearnerError):  # the learner's function raised: already worded
        return str(error)
    if isinstance(error, AssertionError):
        text = str(error).strip() or "an assertion failed"
        return text.splitlines()[0]
    return f"crashed with {type(error).__name__}: {error}".splitlines()[0]


# ----------------------------------------------------------------------------- running tests


class _GradingPlugin:
    """A pytest plugin: hands the submission to the tests and records each outcome."""

    def __init__(self, submission, task=None):
        self.submission = submission
        self.task = task
        self.results = []
        self.collected = []  # (test, task) of every test selected, run or not
        self.collection_errors = []

    @pytest.fixture
    def learner(self):
        return self.submission

    @staticmethod
    def _task_of(item):
        marker = item.get_closest_marker("task")
        return marker.args[0] if marker else "other"

    @staticmethod
    def _name_of(item):
        name = item.nodeid.split("::", 1)[-1]
        path = Path(str(item.path))
        return name if path.parent == TESTS else f"{path.name}::{name}"  # private: say so

    def pytest_configure(self, config):
        config.addinivalue_line("markers", "task(name): the graded task a test belongs to")

    def pytest_collection_modifyitems(self, config, items):
        if self.task is not None:
            items[:] = [item for item in items if self._task_of(item) == self.task]
        self.collected = [(self._name_of(item), self._task_of(item)) for item in items]

    def pytest_collectreport(self, report):
        if report.failed:
            self.collection_errors.append((report.nodeid, report.longreprtext.strip()))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        if _STOP_REQUESTS:  # a signal asked us to stop: run no more tests
            item.session.shouldstop = _stopped()
            return True
        return None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item):
        # the child process has its own limits; the notebook's kernel needs this one
        with time_limit(TEST_TIME_LIMIT) if self.submission.in_process \
                else contextlib.nullcontext():
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
        self.results.append(TestResult(self._name_of(item), self._task_of(item), outcome,
                                        message))



def _pytest(files, plugin, *extra):
    # the tests import their shared helpers (course_helpers) from bn_course/tests
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    args = [str(f) for f in files] + ["-p", "no:cacheprovider", "-p", "no:randomly",
                                      "--rootdir", str(ROOT), "-q", "-W", "ignore", *extra]
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        status = pytest.main(args, plugins=[plugin])
    return status, output.getvalue()


_COLLECTED = {}  # test files -> their tests: collected once per process


@functools.cache
def _load_the_oracle():
    """Import torch and run one backward pass, which imports a few hundred modules more
    (sympy among them), so that the tests import nothing after learner code has run.
    Defence in depth: the process that runs that code cannot write a file anyway."""
    try:
        for name in ORACLE_MODULES:
            importlib.import_module(name)
    except ImportError:  # the tests say so, when they load
        return
    import torch

    x = torch.ones(2, 1, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.batch_norm(x, None, None, training=True)
    y.backward(torch.ones_like(y))  # an explicit upstream gradient, as the tests pass


def collect_tests(assignment, private_dir=None):
    """``[(test, task), ...]`` of an assignment, its test files imported without running
    any: once imported they are not read again in this process, so learner code run
    afterwards cannot change them."""
    files = tuple(graded_test_files(assignment, private_dir))
    _load_the_oracle()
    if files not in _COLLECTED:
        plugin = _GradingPlugin(Submission())
        status, output = _pytest(files, plugin, "--collect-only")
        if plugin.collection_errors or status not in (0, 5):
            raise RuntimeError(f"the tests of {assignment} do not load:\n{output}")
        _COLLECTED[files] = plugin.collected
    return list(_COLLECTED[files])


def run_tests(name, submission, task=None, private_dir=None, expected=None):
    """Run the graded tests of assignment ``name`` against ``submission``; a :class:`Report`.

    ``expected`` (from :func:`collect_tests`) lists the tests that must have run: any that
    did not is reported failed, so a test that vanished can never raise the score.
    """
    files = graded_test_files(name, private_dir)
    if not files:
        raise FileNotFoundError(f"no graded tests for {name} in {TESTS}")
    plugin = _GradingPlugin(submission, task)
    status, output = _pytest(files, plugin)
    report = Report(name, plugin.results, task)
    for nodeid, error in plugin.collection_errors:
        report.results.append(TestResult(nodeid, "collection", FAILED,
                                         f"the test file did not load: {error.splitlines()[-1]}"))
    ran = {r.test for r in report.results}
    why = f"the test did not run ({_stopped()})" if _STOP_REQUESTS else "the test did not run"
    for test, test_task in expected or []:
        if test not in ran and (task is None or test_task == task):
            report.results.append(TestResult(test, test_task, FAILED, why))
    if status not in (0, 1) and not report.results and not _STOP_REQUESTS:
        raise RuntimeError(f"pytest could not run the tests of {name} (status {status}):\n"
                           + output)
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
    """Grade the functions defined in a running notebook (pass ``globals()``): feedback,
    in the kernel's own process (the grade of record runs the notebook file in a child).

    Prints the table and returns the :class:`Report`. It does not raise below full marks,
    so the notebook runs on; with ``BN_COURSE_STRICT=1`` it does (nbgrader's autograder
    scores a test cell by whether it raises).
    """
    name = assignments()[resolve(assignment)]
    report = run_tests(name, Submission(namespace, origin="this notebook"), task=task)
    print(format_report(report))
    if os.environ.get(STRICT_VARIABLE) == "1" and not report.full_marks:
        raise AssertionError(f"{report.score}/{report.max_score} tests passed")
    return report


def grade_notebook(path, task=None, private_dir=None, extra_cells=()):
    """Grade a notebook file, its code run in a child process; returns the :class:`Report`."""
    path = Path(path)
    expected = collect_tests(path.stem, private_dir)
    with open_notebook(path, private_dir, extra_cells) as submission:
        return run_tests(path.stem, submission, task, private_dir, expected)


def find_notebooks(work, keys):
    """``{key: notebook}`` in the working folder; in a checkout the blank of an assignment
    missing there is copied in first. A key without a notebook maps to None."""
    work.mkdir(parents=True, exist_ok=True)
    found = {}
    for key in keys:
        candidates = sorted(work.glob(f"{key}_*.ipynb"))
        blanks = sorted(ASSIGNMENTS.glob(f"{key}_*.ipynb")) if IN_CHECKOUT else []
        if not candidates and blanks:
            shutil.copy(blanks[0], work / blanks[0].name)
            print(f"copied the blank {blanks[0].name} into {work}")
            candidates = [work / blanks[0].name]
        preferred = [c for c in candidates if blanks and c.name == blanks[0].name]
        found[key] = (preferred or candidates or [None])[0]
    return found


def _request_stop(signum, frame):
    """SIGTERM or SIGHUP: finish the test under way, run no more, write the results."""
    _STOP_REQUESTS.append(signal.Signals(signum).name)


def _stopped():
    return f"the grader was stopped by {_STOP_REQUESTS[0]}"


def write_results(path, results):
    """Write ``results`` as JSON to ``path`` whole or not at all: into a new file beside it,
    then renamed onto it, so that whatever stood there (a FIFO, a link) is replaced, not
    opened. An OSError where that cannot be done (a folder at ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".json")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(fd, 0o666 & ~umask)  # as an ordinary new file's (mkstemp makes it private)
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps(results, indent=1) + "\n")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _grade_all(keys, notebooks, work, reports):
    # every notebook read and every test imported before any learner code runs
    expected = {key: collect_tests(key) for key in keys}
    submissions = {}
    for key in keys:
        path = notebooks[key]
        submissions[key] = open_notebook(path) if path else Submission(
            cell_errors=[f"there is no notebook {key}_*.ipynb in {work}"],
            origin=f"{work}/{key}_*.ipynb")
    for key in keys:
        path = notebooks[key]
        name = path.stem if path else assignments()[key]
        if _STOP_REQUESTS:  # not graded: every test fails, and says why
            submissions[key].close()
            reports.append(Report(name, [TestResult(t, task, FAILED, f"the test did not run "
                                                    f"({_stopped()})")
                                         for t, task in expected[key]]))
            continue
        try:
            with submissions[key] as submission:
                report = run_tests(name, submission, expected=expected[key])
        except Exception as error:  # the grader's own failure: this assignment, not all
            why = f"the grader failed: {type(error).__name__}: {error}".splitlines()[0]
            report = Report(name, [TestResult(t, task, FAILED, why)
                                   for t, task in expected[key]])
        reports.append(report)
        print(format_report(report, source=str(path) if path else None))
        print()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", "-a", action="append",
                        help="grade this assignment only, e.g. 03 (repeat it for more)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="the folder with the learner's notebooks (default %(default)s)")
    parser.add_argument("--results", type=Path,
                        help="where to write the JSON results (default WORK/results.json)")
    args = parser.parse_args(argv)

    reports, errors = [], []
    results_path = args.results or args.work / "results.json"
    _STOP_REQUESTS.clear()
    handlers = {}
    for name in ("SIGTERM", "SIGHUP"):
        with contextlib.suppress(AttributeError, ValueError):  # no such signal, or not
            number = getattr(signal, name)                     # the main thread: leave it
            handlers[number] = signal.signal(number, _request_stop)
    try:
        keys = [resolve(a) for a in args.assignment] if args.assignment else list(assignments())
        _grade_all(keys, find_notebooks(args.work, keys), args.work, reports)
    except BaseException as error:  # the grader's own failure, or Ctrl-C: still write results
        errors.append(f"{type(error).__name__}: {error}".splitlines()[0])
        print(f"the grader stopped before the end: {errors[-1]}")
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    if _STOP_REQUESTS:
        errors.append(f"{_stopped()}; the tests after that did not run")
        print(errors[-1])
    score = sum(r.score for r in reports)
    max_score = sum(r.max_score for r in reports)
    results = {"score": score, "max_score": max_score,
               "assignments": [r.to_dict() for r in reports]}
    if errors:
        results["errors"] = errors
    try:
        write_results(results_path, results)
    except OSError as error:
        print(f"total: {score}/{max_score} tests passed; the results could not be written to "
              f"{results_path}: {error.strerror or error}")
        return 2
    print(f"total: {score}/{max_score} tests passed; results in {results_path}")
    return 0 if score == max_score and max_score > 0 and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
