"""The grader against learner code written to fool, crash or hang it (issue 24).

Each test plants one attack in a copy of a source notebook (its answer cell replaced, or
code put at the top of it) and grades the copy as ``make grade`` does: the code runs in
a child process, and the attack must cost only its own task, with a message that says
what happened. The time limits are shortened here (3 s per cell and per call) so the
endless loops stay cheap; ``make grade`` uses 10 s and 20 s (and 60 s per notebook).
"""

import builtins
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from bn_course import grade, learner
from bn_course.grade import FAILED, NOT_ATTEMPTED, PASSED

LIMIT = 3  # seconds per cell and per call in these tests

RIGHT_FORWARD = '''
import numpy as np


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, {"x_hat": x_hat, "mean": mean, "var": var,
                                  "inv_std": inv_std}
'''


@pytest.fixture(autouse=True)
def short_limits(monkeypatch):
    monkeypatch.setattr(learner, "CELL_TIME_LIMIT", LIMIT)
    monkeypatch.setattr(learner, "CALL_TIME_LIMIT", LIMIT)


def planted(folder, assignment, cell, code, replace=False):
    """A copy of the source notebook with ``code`` put at the top of answer cell ``cell``
    (or in its place)."""
    source = next(grade.SOURCES.glob(f"{assignment}_*.ipynb"))
    notebook = nbformat.read(source, as_version=4)
    cells = [c for c in notebook.cells
             if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == cell]
    assert len(cells) == 1, f"no answer cell {cell} in {source.name}"
    cells[0].source = code if replace else code + "\n" + cells[0].source
    path = Path(folder) / source.name
    nbformat.write(notebook, path)
    return path


def graded(path, task=None):
    report = grade.grade_notebook(path, task=task)
    return report, [r for r in report.results if task is None or r.task == task]


def messages(results):
    return {r.message for r in results}


# ----------------------------------------------------------------------------- ending the run


@pytest.mark.parametrize("code, message", [
    ("import sys\nsys.exit(0)", "your code called sys.exit(0) in answer cell 'forward'"),
    ("import os\nos._exit(0)", "the process running your code exited with status 0 during "
                               "answer cell 'forward'"),
    ("raise KeyboardInterrupt", "your code raised KeyboardInterrupt in answer cell 'forward'"),
], ids=["sys.exit", "os._exit", "KeyboardInterrupt"])
def test_ending_the_process_in_a_cell_costs_that_cells_task(tmp_path, code, message):
    report, results = graded(planted(tmp_path, "02", "forward", code))
    assert report.score == 0 and report.max_score == 6
    assert all(r.outcome == FAILED and message in r.message for r in results)


def test_ending_the_process_in_a_cell_leaves_the_other_tasks_graded(tmp_path):
    report, _ = graded(planted(tmp_path, "03", "compact_backward", "import os\nos._exit(0)"))
    scores = report.task_scores()
    assert scores["compact_backward"][0] == 0
    assert scores["staged_backward"][0] == scores["staged_backward"][1]
    assert scores["gradient_check"][0] == scores["gradient_check"][1]


@pytest.mark.parametrize("body, message", [
    ("    raise SystemExit(0)", "your code called sys.exit(0) in batchnorm_forward"),
    ("    import faulthandler\n    faulthandler._sigsegv()",
     "the process running your code was killed by signal SIGSEGV during the call of "
     "batchnorm_forward"),
    ("    import os\n    os._exit(3)",
     "the process running your code exited with status 3 during the call of "
     "batchnorm_forward"),
], ids=["SystemExit", "segfault", "os._exit"])
def test_ending_the_process_in_a_call_fails_that_test(tmp_path, body, message):
    code = f"def batchnorm_forward(x, gamma, beta, eps=1e-5):\n{body}\n"
    report, results = graded(planted(tmp_path, "02", "forward", code, replace=True))
    assert report.score == 0
    assert messages(results) == {message}


def test_the_command_line_writes_results_and_grades_the_rest(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    planted(work, "02", "forward", "import sys\nsys.exit(0)")
    shutil.copy(next(grade.SOURCES.glob("03_*.ipynb")), work)
    assert grade.main(["-a", "02", "-a", "03", "--work", str(work)]) == 1
    results = json.loads((work / "results.json").read_text())
    by_name = {a["assignment"][:2]: a for a in results["assignments"]}
    assert by_name["02"]["score"] == 0 and by_name["02"]["max_score"] == 6
    assert by_name["03"]["score"] == by_name["03"]["max_score"] == 14
    assert "your code called sys.exit(0)" in capsys.readouterr().out


def test_results_are_written_when_the_grader_itself_fails(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(next(grade.SOURCES.glob("02_*.ipynb")), work)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the grader")

    monkeypatch.setattr(grade, "run_tests", broken)
    assert grade.main(["-a", "02", "--work", str(work)]) == 1
    results = json.loads((work / "results.json").read_text())
    tests = results["assignments"][0]["tests"]
    assert len(tests) == 6 and {t["outcome"] for t in tests} == {FAILED}
    assert tests[0]["message"] == "the grader failed: RuntimeError: a bug in the grader"

    monkeypatch.setattr(grade, "find_notebooks", broken)
    assert grade.main(["-a", "02", "--work", str(work)]) == 1
    results = json.loads((work / "results.json").read_text())
    assert results["errors"] == ["RuntimeError: a bug in the grader"]


# ----------------------------------------------------------------------------- patching


WRONG_FORWARD = RIGHT_FORWARD.replace("** 2).mean(axis=0)", "** 2).sum(axis=0) / (len(x) - 1)")
PATCHES = '''
import sys
import types
try:
    import torch.nn.functional as F
    F.batch_norm = lambda x, *args, **kwargs: x
except ImportError:
    pass
try:
    import bn_lib.testing
except ImportError:  # torch is not there: plant a testing module of our own
    sys.modules["bn_lib.testing"] = types.ModuleType("bn_lib.testing")
sys.modules["bn_lib.testing"].compare = lambda *args, **kwargs: None
sys.modules["bn_lib.testing"].scaled_error = lambda *args, **kwargs: 0.0
import bn_course.grade as grader
grader.FAILED = grader.PASSED = "passed"
grader.TEST_TIME_LIMIT = 0
'''


def test_patching_the_oracle_or_the_grader_changes_nothing(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    planted(work, "02", "forward", WRONG_FORWARD + PATCHES, replace=True)
    shutil.copy(next(grade.SOURCES.glob("03_*.ipynb")), work)
    assert grade.main(["-a", "02", "-a", "03", "--work", str(work)]) == 1
    results = json.loads((work / "results.json").read_text())
    by_name = {a["assignment"][:2]: a for a in results["assignments"]}
    forward = {t["test"]: t for t in by_name["02"]["tests"]}
    assert forward["test_output_matches_pytorch"]["outcome"] == FAILED
    assert "differs from F.batch_norm(training=True)" in \
        forward["test_output_matches_pytorch"]["message"]
    assert by_name["02"]["score"] < by_name["02"]["max_score"]
    assert by_name["03"]["score"] == by_name["03"]["max_score"]  # 02's patch stays in 02
    assert grade.FAILED == "failed" and grade.PASSED == "passed"


# ----------------------------------------------------------------------------- endless loops


@pytest.mark.parametrize("code", [
    "while True:\n    pass",
    "while True:\n    try:\n        while True:\n            pass\n"
    "    except BaseException:\n        pass",
    "import time\ntime.sleep(10**6)",
], ids=["loop", "loop catching TimeoutError", "one C call"])
def test_an_endless_loop_in_a_cell_costs_that_cells_task(tmp_path, code):
    report, _ = graded(planted(tmp_path, "03", "compact_backward", code))
    scores = report.task_scores()
    assert scores["compact_backward"][0] == 0
    assert scores["staged_backward"][0] == scores["staged_backward"][1]
    assert scores["gradient_check"][0] == scores["gradient_check"][1]
    assert all(f"answer cell 'compact_backward' timed out after {LIMIT} s" in r.message
               for r in report.results if r.task == "compact_backward")


@pytest.mark.parametrize("body", ["    while True:\n        pass",
                                  "    import time\n    time.sleep(10**6)"],
                         ids=["loop", "one C call"])
def test_an_endless_loop_in_a_function_is_stopped_once(tmp_path, body):
    code = f"def batchnorm_forward(x, gamma, beta, eps=1e-5):\n{body}\n"
    report, results = graded(planted(tmp_path, "02", "forward", code, replace=True))
    assert report.score == 0
    assert results[0].message == f"batchnorm_forward timed out after {LIMIT} s: is there " \
                                 "an endless loop?"
    assert messages(results[1:]) == {f"batchnorm_forward timed out earlier (after {LIMIT} s)"
                                     "; it is not called again"}


def test_a_function_slow_but_under_the_limit_runs_out_of_the_notebooks_time(
        tmp_path, monkeypatch):
    monkeypatch.setattr(learner, "NOTEBOOK_TIME_LIMIT", 4)
    code = RIGHT_FORWARD.replace("    mean = x.mean(axis=0)",
                                 "    import time\n    time.sleep(1.5)\n"
                                 "    mean = x.mean(axis=0)")
    report, results = graded(planted(tmp_path, "02", "forward", code, replace=True))
    spent = "your notebook's code has used up its 4 s in all; it is not run again"
    assert report.score <= 2 and results[-1].message == spent
    assert all(r.message == spent for r in results if r.outcome == FAILED)


# ----------------------------------------------------------------------------- what is returned


@pytest.mark.parametrize("change, message", [
    ("y = y + 1e3j", "y is complex (complex128); expected real values, a float64 array "
                     "of shape (32, 6)"),
    ("y = y.astype(np.float32)", "y has the wrong precision: yours is float32, expected "
                                 "float64"),
    ("y = np.array(list(y), dtype=object)", "y is a NumPy array of dtype object; expected "
                                            "a float64 array of shape (32, 6)"),
], ids=["complex", "float32", "object"])
def test_an_output_that_is_not_a_float64_array_fails_and_says_why(tmp_path, change, message):
    code = RIGHT_FORWARD.replace("    return gamma * x_hat + beta,",
                                 f"    y = gamma * x_hat + beta\n    {change}\n    return y,")
    _, results = graded(planted(tmp_path, "02", "forward", code, replace=True))
    row = next(r for r in results if r.test == "test_output_matches_pytorch")
    assert row.outcome == FAILED and row.message.startswith(message)


def test_a_return_value_built_to_run_code_when_unpickled_is_only_data(tmp_path):
    code = RIGHT_FORWARD + '''

class Payload:
    def __reduce__(self):
        return (exec, ("import builtins; builtins.PLANTED_BY_A_LEARNER = True",))


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    return Payload(), {"x_hat": Payload(), "mean": Payload(), "var": Payload(),
                       "inv_std": Payload()}
'''
    _, results = graded(planted(tmp_path, "02", "forward", code, replace=True))
    row = next(r for r in results if r.test == "test_output_matches_pytorch")
    assert row.message.startswith("y is an object of type Payload; expected a float64 array")
    assert not hasattr(builtins, "PLANTED_BY_A_LEARNER")


def test_resetting_the_batchnorm_it_receives_does_not_fold_to_a_pass(tmp_path):
    code = '''
import numpy as np


def _identity(bn):
    bn.gamma[...], bn.beta[...] = 1.0, 0.0
    bn.running_mean[...], bn.running_var[...] = 0.0, 1.0 - bn.eps


def fold_linear_bn(W, b, bn):
    _identity(bn)
    return W.copy(), np.zeros(W.shape[0]) if b is None else b.copy()


def fold_conv_bn(W, b, bn):
    _identity(bn)
    return W.copy(), np.zeros(W.shape[0]) if b is None else b.copy()
'''
    report, results = graded(planted(tmp_path, "04", "folding", code, replace=True),
                             task="folding")
    assert report.score == 0 and len(results) == 5
    assert all("differs from" in r.message for r in results)


def test_changes_to_the_arguments_show_only_in_their_copies():
    namespace = {}
    exec("def f(x, store):\n    x[0] = 99.0\n    store['seen'] = True\n    return x.sum()\n",
         namespace)
    import numpy as np

    x, store = np.zeros(3), {}
    submission = grade.Submission(namespace)
    result, (x_after, store_after), _ = submission.call_with_arguments("f", x, store)
    assert result == 99.0 and x_after[0] == 99.0 and store_after == {"seen": True}
    assert x[0] == 0.0 and store == {}


# ----------------------------------------------------------------------------- the rules


@pytest.mark.parametrize("assignment, cell, code, message", [
    ("02", "forward",
     "import torch\n\n\ndef batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
     "    return torch.nn.functional.batch_norm(x), {}\n",
     "the course's answers are NumPy only: torch is not available to your code"),
    ("02", "forward",
     "def batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
     "    import torch.nn.functional as F\n    return F.batch_norm(x), {}\n",
     "crashed with ModuleNotFoundError: the course's answers are NumPy only: torch is not "
     "available to your code (in batchnorm_forward, line 2)"),
    ("03", "staged_backward",
     "def staged_backward(dy, x, gamma, eps=1e-5):\n"
     "    from torch import autograd\n    return autograd.grad(x, dy)\n",
     "crashed with ModuleNotFoundError: the course's answers are NumPy only: torch is not "
     "available to your code (in staged_backward, line 2)"),
    ("02", "forward",
     "import bn_lib\n\n\ndef batchnorm_forward(x, gamma, beta, eps=1e-5):\n"
     "    y, cache = bn_lib.batch_norm_forward(x, gamma, beta, eps)\n"
     "    return y, {'x_hat': cache.x_hat, 'mean': cache.mean, 'var': cache.var,\n"
     "               'inv_std': cache.inv_std}\n",
     "crashed with NotAvailable: assignment 02 asks you to write this yourself: "
     "bn_lib.batch_norm_forward is not available to your answer (in batchnorm_forward, "
     "line 5)"),
    ("03", "gradient_check",
     "from bn_lib.gradcheck import numerical_gradient, relative_error\n",
     "crashed with NotAvailable: assignment 03 asks you to write this yourself: "
     "bn_lib.numerical_gradient is not available to your answer"),
], ids=["torch in a cell", "torch.nn.functional", "autograd", "bn_lib.batch_norm_forward",
        "bn_lib.numerical_gradient"])
def test_what_the_blanks_rule_out_is_not_available(tmp_path, assignment, cell, code,
                                                   message):
    report, results = graded(planted(tmp_path, assignment, cell, code, replace=True),
                             task=cell)
    assert report.score == 0
    assert any(message in r.message for r in results), messages(results)
    assert NOT_ATTEMPTED not in {r.outcome for r in results}


def test_a_print_flood_costs_nothing(tmp_path):
    code = RIGHT_FORWARD.replace("    mean = x.mean(axis=0)",
                                 "    for _ in range(20_000):\n        print('x' * 200)\n"
                                 "    mean = x.mean(axis=0)")
    report, _ = graded(planted(tmp_path, "02", "forward", code, replace=True))
    assert {r.outcome for r in report.results} == {PASSED}


# ----------------------------------------------------------------------------- the sandbox
# The second audit of issue 24: the child wrote a module the grader imported later (mmap,
# which RLIMIT_FSIZE does not stop), signalled the grader, escaped its process group,
# planted a FIFO where results.json goes, and got round the rules (torch without the
# import hook, reload, the solutions read from disk). Each is refused by the child's audit
# hook, tried on files of the test's own folder: nothing real is touched.

PROBE = '''
def probe(code):
    """Run ``code``: what it raised ("Type: message"), or "" when nothing did."""
    try:
        exec(code, {})
    except BaseException as error:
        return f"{type(error).__name__}: {error}"
    return ""
'''
CONTENT = "the answer: failed\n"
MAY_NOT = "PermissionError: your code may not "
OWN_FILES = MAY_NOT + "read the course's own files (bn_lib, the grader, the solutions)"
# the folder that holds bn_lib, in the child's words
CHECKOUT = "import os, bn_lib\nTOP = os.path.dirname(os.path.dirname(bn_lib.__file__))\n"


@pytest.fixture(scope="module")
def child():
    """One child process for the whole module, running a source notebook and ``probe``."""
    source = next(grade.SOURCES.glob("02_*.ipynb"))
    with grade.open_notebook(source, extra_cells=[("probe", PROBE)]) as submission:
        yield submission


@pytest.mark.parametrize("code, message", [
    ("open(VICTIM, 'r+b')", MAY_NOT + "write to files while it is graded (open "),
    ("open(FOLDER + '/new.py', 'w')", MAY_NOT + "write to files"),
    ("import os\nos.open(VICTIM, os.O_WRONLY | os.O_TRUNC)", MAY_NOT + "write to files"),
    ("import mmap\nwith open(VICTIM, 'rb') as f:\n    mmap.mmap(f.fileno(), 0, access=1)",
     MAY_NOT + "map a file into memory while it is graded (mmap)"),
    ("import os\nos.truncate(VICTIM, 0)", MAY_NOT + "change files or folders while it is "
                                          "graded (os.truncate)"),
    ("import os\nos.rename(VICTIM, VICTIM + '.moved')", "(os.rename)"),
    ("import os\nos.replace(VICTIM, FOLDER + '/x')", "(os.rename)"),
    ("import os\nos.remove(VICTIM)", "(os.remove)"),
    ("import os\nos.symlink('/etc/passwd', FOLDER + '/link')", "(os.symlink)"),
    ("import os\nos.mkfifo(FOLDER + '/results.json')",
     MAY_NOT + "create files while it is graded (mkfifo)"),
    ("import os\nos.kill(os.getppid(), 0)", MAY_NOT + "send signals while it is graded "
                                            "(os.kill)"),
    ("import os\nos.killpg(os.getpgid(os.getppid()), 0)", "(os.killpg)"),
    ("import os\nos.pidfd_open(os.getppid())", MAY_NOT + "send signals while it is graded "
                                               "(pidfd_open)"),
    ("import os\nif os.fork() == 0:\n    os.setsid()\n    os._exit(0)",
     MAY_NOT + "start processes while it is graded (os.fork)"),
    ("import os\nos.system('true')", "(os.system)"),
    ("import sys\nsys.meta_path[:] = [f for f in sys.meta_path\n"
     "                 if type(f).__name__ != '_NumpyOnly']\nimport torch",
     "ModuleNotFoundError: the course's answers are NumPy only: torch is not available"),
    ("import subprocess", "NumPy only: subprocess is not available to your code"),
    ("import ctypes", "NumPy only: ctypes is not available to your code"),
    ("import psutil", "NumPy only: psutil is not available to your code"),
    ("import importlib.util\n"
     "importlib.util.module_from_spec(importlib.util.find_spec('_signal'))",
     "ImportError: your code may not load a built-in module afresh"),
    ("import gc\ngc.get_objects()", MAY_NOT + "search the process's objects"),
    ("import importlib, bn_lib.functional\nimportlib.reload(bn_lib.functional)", OWN_FILES),
    (CHECKOUT + "open(TOP + '/assignments/source/02_forward.ipynb').read()", OWN_FILES),
    (CHECKOUT + "open(TOP + '/assignments/../bn_lib/functional.py').read()", OWN_FILES),
    (CHECKOUT + "fd = os.open(TOP, os.O_RDONLY)\n"
     "open(f'/proc/self/fd/{fd}/bn_lib/functional.py').read()", OWN_FILES),
    (CHECKOUT + "fd = os.open(TOP, os.O_RDONLY)\n"
     "os.open('bn_lib/functional.py', os.O_RDONLY, dir_fd=fd)",
     MAY_NOT + "open a relative path with os.open"),
    pytest.param(CHECKOUT + "open(TOP + '/.git/HEAD').read()", OWN_FILES,
                 marks=pytest.mark.skipif(not (grade.ROOT / ".git").is_dir(),
                                          reason="not a git checkout")),
], ids=["open r+b", "create", "os.open O_WRONLY", "mmap", "truncate", "rename", "replace",
        "remove", "symlink", "mkfifo", "kill the grader", "killpg", "pidfd", "fork",
        "os.system", "torch without the import hook", "subprocess", "ctypes",
        "a package besides NumPy", "a fresh _signal", "gc", "reload bn_lib",
        "read the solutions", "read bn_lib by ..", "read bn_lib by /proc/self/fd",
        "read bn_lib by dir_fd", "read the history"])
def test_the_child_refuses_what_reaches_outside_it(child, tmp_path, code, message):
    victim = tmp_path / "victim.txt"
    victim.write_text(CONTENT)
    code = code.replace("VICTIM", repr(str(victim))).replace("FOLDER", repr(str(tmp_path)))
    assert message in child.call("probe", code)
    assert victim.read_text() == CONTENT
    assert [p.name for p in tmp_path.iterdir()] == ["victim.txt"]


def test_what_an_honest_answer_does_still_works(child):
    code = ("import json, math, itertools, functools, collections\n"
            "import numpy as np\n"
            "x = np.random.default_rng(0).standard_normal((8, 3))\n"
            "np.linalg.solve(np.eye(3), x.T); np.einsum('ij->j', x); x.astype(np.float32)\n"
            "print(open(np.__file__).readline(), x)\n")
    assert child.call("probe", code) == ""


def work_with(tmp_path, code):
    """A working folder holding 02_forward.ipynb whose answer cell is ``code`` and then a
    wrong answer (the auditor's: a passing grade would show the attack worked)."""
    work = tmp_path / "work"
    work.mkdir()
    planted(work, "02", "forward", code + "\n" + WRONG_FORWARD, replace=True)
    return work


def forward_messages(work):
    results = json.loads((work / "results.json").read_text())
    assert results["max_score"] == 6 and results["score"] == 0
    return {t["message"] for t in results["assignments"][0]["tests"]}


def test_hole_1_rewriting_a_module_the_grader_imports_later_is_refused(tmp_path):
    shadow = tmp_path / "timeit.py"  # a copy: the auditor rewrote the real one
    shutil.copy(Path(json.__file__).parent.parent / "timeit.py", shadow)
    before = shadow.read_bytes()
    work = work_with(tmp_path, f"import mmap\nwith open({str(shadow)!r}, 'r+b') as f:\n"
                               "    m = mmap.mmap(f.fileno(), 0)\n"
                               "    m[:9] = b'import os'\n")
    assert grade.main(["-a", "02", "--work", str(work)]) == 1
    assert all("your code may not write to files while it is graded" in m
               for m in forward_messages(work))
    assert shadow.read_bytes() == before


def _run_grader(work, *extra):
    return subprocess.Popen([sys.executable, "-m", "bn_course.grade", "-a", "02", *extra,
                             "--work", str(work)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_hole_2_the_child_cannot_stop_or_kill_the_grader(tmp_path):
    # in a process of its own: were the kill not refused, it would stop pytest's
    work = work_with(tmp_path, "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n"
                               "os.kill(os.getppid(), signal.SIGKILL)")
    grader = _run_grader(work)
    try:
        output, _ = grader.communicate(timeout=240)
    finally:
        grader.kill()
    assert grader.returncode == 1, output
    assert forward_messages(work) == {
        "02_forward.ipynb defines no function 'batchnorm_forward' (answer cell 'forward' "
        "raised PermissionError: your code may not send signals while it is graded "
        "(os.kill))"}


def _child_of(pid, deadline):
    """The pid of a process whose parent is ``pid``, once there is one."""
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                    return int(stat.parent.name)
        time.sleep(0.1)
    raise AssertionError("the grader started no process")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_hole_2_sigterm_stops_the_grader_between_tests_with_results_written(tmp_path):
    work = work_with(tmp_path, "import time\ntime.sleep(4)")  # under the cell's 10 s
    shutil.copy(next(grade.SOURCES.glob("03_*.ipynb")), work)
    grader = _run_grader(work, "-a", "03")
    try:
        _child_of(grader.pid, time.monotonic() + 120)  # the handler is in place by then
        grader.send_signal(signal.SIGTERM)
        output, _ = grader.communicate(timeout=60)
    finally:
        grader.kill()
    assert grader.returncode == 1, output
    results = json.loads((work / "results.json").read_text())
    stopped = "the grader was stopped by SIGTERM"
    assert results["errors"] == [f"{stopped}; the tests after that did not run"]
    assert [a["max_score"] for a in results["assignments"]] == [6, 14]
    tests = [t for a in results["assignments"] for t in a["tests"]]
    assert sum(t["message"] == f"the test did not run ({stopped})" for t in tests) >= 19
    assert results["score"] == 0


def test_hole_3_a_daemon_cannot_outlive_the_grader_to_rewrite_the_results(tmp_path):
    work = work_with(tmp_path, "import os, time\nif os.fork() == 0:\n    os.setsid()\n"
                               "    if os.fork() == 0:\n        time.sleep(5)\n"
                               "    os._exit(0)")
    assert grade.main(["-a", "02", "--work", str(work)]) == 1
    assert all("your code may not start processes while it is graded (os.fork)" in m
               for m in forward_messages(work))


def test_hole_4_a_fifo_or_a_folder_where_the_results_go(tmp_path, capsys):
    work = work_with(tmp_path, "import os\nos.mkfifo(os.path.join(WORK, 'results.json'))"
                     .replace("WORK", repr(str(tmp_path / "work"))))
    assert grade.main(["-a", "02", "--work", str(work)]) == 1
    assert all("your code may not create files while it is graded (mkfifo)" in m
               for m in forward_messages(work))

    os.remove(work / "results.json")
    os.mkfifo(work / "results.json")  # planted some other way: replaced, never opened
    assert grade.main(["-a", "02", "--work", str(work)]) == 1
    assert (work / "results.json").is_file() and forward_messages(work)

    os.remove(work / "results.json")
    (work / "results.json").mkdir()
    capsys.readouterr()
    assert grade.main(["-a", "02", "--work", str(work)]) == 2
    assert "the results could not be written to" in capsys.readouterr().out
    assert [p.name for p in work.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("code, message", [
    ("import sys\nsys.meta_path[:] = [f for f in sys.meta_path\n"
     "                 if type(f).__name__ != '_NumpyOnly']\nimport torch",
     "raised ModuleNotFoundError: the course's answers are NumPy only: torch is not "
     "available to your code"),
    ("import subprocess\nsubprocess.run(['python', '-c', 'import torch'])",
     "raised ModuleNotFoundError: the course's answers are NumPy only: subprocess is not "
     "available to your code"),
    ("import importlib, bn_lib.functional\nimportlib.reload(bn_lib.functional)",
     "raised PermissionError: your code may not read the course's own files"),
    ("import json, pathlib, bn_course\n"
     "source = pathlib.Path(bn_course.__file__).parent.parent / 'assignments' / 'source'\n"
     "for cell in json.loads(next(source.glob('02_*.ipynb')).read_text())['cells']:\n"
     "    exec(''.join(cell['source']))",
     "raised PermissionError: your code may not read the course's own files"),
], ids=["torch without the import hook", "torch by subprocess", "reload bn_lib",
        "exec the solution"])
def test_hole_5_the_rules_hold_against_a_determined_answer(tmp_path, code, message):
    report, results = graded(planted(tmp_path, "02", "forward", code + "\n" + WRONG_FORWARD,
                                     replace=True))
    assert report.score == 0
    assert all(message in r.message for r in results), messages(results)


def test_hole_6_a_helper_in_a_cell_the_grader_does_not_run_gets_a_hint(tmp_path):
    path = planted(tmp_path, "02", "forward", "def batchnorm_forward(x, gamma, beta, "
                   "eps=1e-5):\n    return helper(x, gamma, beta, eps)\n", replace=True)
    notebook = nbformat.read(path, as_version=4)
    answer = next(i for i, c in enumerate(notebook.cells)
                  if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "forward")
    helper = RIGHT_FORWARD.replace("def batchnorm_forward(x, gamma, beta, eps=1e-5):",
                                   "def helper(x, gamma, beta, eps):")
    notebook.cells.insert(answer, nbformat.v4.new_code_cell(helper))
    nbformat.write(notebook, path)
    _, results = graded(path)
    assert messages(results) == {
        "crashed with NameError: name 'helper' is not defined (in batchnorm_forward, line "
        "2); helper is defined in a cell the grader does not run; move it into the answer "
        "cell"}


def test_hole_7_float32_inside_a_float64_result_is_named(tmp_path):
    code = RIGHT_FORWARD.replace("    mean = x.mean(axis=0)",
                                 "    x = x.astype(np.float32)\n    mean = x.mean(axis=0)")
    code = code.replace("    return gamma * x_hat + beta,",
                        "    x_hat, var, inv_std = (a.astype(np.float64) for a in "
                        "(x_hat, var, inv_std))\n    mean = mean.astype(np.float64)\n"
                        "    return gamma * x_hat + beta,")
    _, results = graded(planted(tmp_path, "02", "forward", code, replace=True))
    row = next(r for r in results if r.test == "test_output_matches_pytorch")
    assert row.message.endswith("; an error at float32's precision: did part of your "
                                "computation run in float32?")
    yours, expected = re.search(r"yours (\S+), expected (\S+);", row.message).groups()
    assert yours != expected  # enough digits to see the difference
