"""The learner's functions as the graded tests reach them: the ``learner`` fixture.

A test calls ``learner.call("name", *args, **kwargs)`` and gets the learner's result, or
:class:`NotAttempted` where the function is still the blank's stub. The arguments are
the test's own: the learner's function works on copies, so whatever it does to them
cannot change what the test computes afterwards from the same arrays (the expected
values). ``learner.call_with_arguments`` also returns the copies as they are after the
call, for the tests that check an answer leaves its input alone.

Two kinds of submission:

* :class:`NotebookSubmission`, the grade of record (``make grade``, the workflow, the
  course check): the notebook's set-up and answer cells run in a child process
  (``python -m bn_course.worker``, :mod:`bn_course.worker`), each cell with a time limit
  (:data:`CELL_TIME_LIMIT`), each call with another (:data:`CALL_TIME_LIMIT`) and all of
  them together with a third (:data:`NOTEBOOK_TIME_LIMIT`). The
  child sends data only (:mod:`bn_course.wire`); it cannot reach the grader's memory, and
  a ``sys.exit``, a crash, an endless loop or a patched library in it costs the cell's
  task or the test, with a message that says what happened. A cell that times out or
  ends the process is skipped from then on (a fresh child runs the other cells); a
  function that timed out once fails its later calls at once.
* :class:`Submission`, feedback in the learner's running notebook
  (``grade("02", globals())``): the functions of the kernel, called in the kernel's own
  process on copies of the arguments, with the same results and messages for an honest
  answer; torch and bn_lib's answers are not withheld there, and only a test's time is
  limited (``bn_course.grade.TEST_TIME_LIMIT``).
"""

from __future__ import annotations

import ast
import atexit
import builtins
import contextlib
import copy
import functools
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import types
from pathlib import Path

import numpy as np

from bn_course import wire

CELL_TIME_LIMIT = float(os.environ.get("BN_COURSE_CELL_TIME_LIMIT", 10))  # seconds
CALL_TIME_LIMIT = float(os.environ.get("BN_COURSE_CALL_TIME_LIMIT", 20))  # seconds
# seconds for all of one notebook's code, cells and calls together (a right answer: ~1 s):
# a function that is slow but never quite times out cannot make grading last for hours
NOTEBOOK_TIME_LIMIT = float(os.environ.get("BN_COURSE_NOTEBOOK_TIME_LIMIT", 60))
START_TIME_LIMIT = 120  # seconds for the child to import NumPy and bn_lib (a loaded machine)
FUNCTION_TYPES = (types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                  functools.partial, np.ufunc)


class NotAttempted(Exception):
    """The learner's function still raises the blank's ``NotImplementedError``."""


class LearnerError(Exception):
    """The learner's function raised (an instance also is of the learner's exception type
    when that is a built-in one, so ``pytest.raises(ValueError)`` works). ``str()`` is the
    grader's one-line message: "crashed with ValueError: ... (in f, line 3)"."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return self.text


@functools.cache
def _error_class(type_name):
    base = getattr(builtins, type_name, None)
    if isinstance(base, type) and issubclass(base, Exception) and base is not Exception:
        with contextlib.suppress(TypeError):
            return type(type_name, (LearnerError, base), {"__init__": LearnerError.__init__,
                                                          "__str__": LearnerError.__str__})
    return LearnerError


def learner_error(type_name, message, where=None, hint=None):
    text = f"crashed with {type_name}: {message}".strip().splitlines()[0].rstrip(": ")
    return _error_class(type_name)(text + (f" ({where})" if where else "")
                                   + (f"; {hint}" if hint else ""))


# ----------------------------------------------------------------------------- notebooks


def answer_cells(notebook):
    """The set-up cell (``grade_id`` "setup": the imports) and the nbgrader answer cells,
    in the notebook's order, as ``(grade_id, source)`` pairs."""
    cells = []
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") == "setup"):
            cells.append((meta.get("grade_id", f"cell {len(cells) + 1}"), cell.source))
    return cells


def defined_elsewhere(notebook):
    """The names bound at the top level (def, class, import, assignment) of the code cells
    the grader does not run: the learner's own cells, added beside the answer cells."""
    graded = {id(cell) for cell in notebook.cells
              if cell.get("metadata", {}).get("nbgrader", {}).get("solution")
              or cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "setup"}
    names = set()
    for cell in notebook.cells:
        if cell.cell_type != "code" or id(cell) in graded:
            continue
        try:
            body = ast.parse(cell.source).body
        except (SyntaxError, ValueError):  # IPython magics, half-written code: no names
            continue
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).partition(".")[0] for a in node.names}
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names |= {n.id for t in targets for n in ast.walk(t)
                          if isinstance(n, ast.Name)}
    names.discard("*")
    return names


def elsewhere_hint(message, names):
    """The hint for a NameError whose name only a cell the grader does not run defines."""
    match = re.search(r"name '(\w+)' is not defined", message)
    if match and match[1] in names:
        return (f"{match[1]} is defined in a cell the grader does not run; move it into "
                "the answer cell")
    return None


def not_allowed(test_files):
    """The union of the ``BN_LIB_NOT_ALLOWED`` tuples that the test files declare at
    module level, read without importing them."""
    names = []
    for path in test_files:
        for node in ast.parse(Path(path).read_text()).body:
            if isinstance(node, ast.Assign) and any(
                    getattr(t, "id", None) == "BN_LIB_NOT_ALLOWED" for t in node.targets):
                value = ast.literal_eval(node.value)
                if not isinstance(value, (tuple, list)) or not all(
                        isinstance(v, str) for v in value):
                    raise ValueError(f"{path}: BN_LIB_NOT_ALLOWED must be a tuple of names")
                names += [v for v in value if v not in names]
    return names


def check_not_allowed(names):
    """Raise unless each name is a bn_lib object ("batch_norm_forward") or a method of a
    bn_lib class ("BatchNorm.update_running_stats"): a misspelt name withholds nothing."""
    import importlib
    import pkgutil

    import bn_lib

    modules = [bn_lib] + [importlib.import_module(f"bn_lib.{m.name}")
                          for m in pkgutil.iter_modules(bn_lib.__path__)
                          if m.name not in ("testing", "torch_distributed")]
    for name in names:
        owner, _, attribute = name.rpartition(".")
        found = any(attribute in vars(vars(m)[owner]) if isinstance(vars(m).get(owner), type)
                    else False for m in modules) if owner else \
            any(name in vars(m) for m in modules)
        if not found:
            raise ValueError(f"BN_LIB_NOT_ALLOWED names {name!r}, which bn_lib does not have")


# ----------------------------------------------------------------------------- submissions


class Submission:
    """The learner's functions in this process, from a namespace (``globals()``)."""

    in_process = True
    elsewhere = frozenset()  # names only the cells the grader does not run define

    def __init__(self, namespace=None, cell_errors=None, origin="the notebook"):
        self.namespace = {} if namespace is None else namespace
        self.cell_errors = list(cell_errors or [])  # what went wrong, one phrase each
        self.origin = origin

    @classmethod
    def from_notebook(cls, path, extra_cells=()):
        """A notebook file's functions, run in a child process: a
        :class:`NotebookSubmission` of the assignment its name starts with."""
        from bn_course.grade import open_notebook

        return open_notebook(path, extra_cells=extra_cells)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Nothing to release here; a :class:`NotebookSubmission` ends its process."""

    def call(self, name, *args, **kwargs):
        """The learner's ``name`` called on copies of the arguments: its result."""
        return self.call_with_arguments(name, *args, **kwargs)[0]

    def call_with_arguments(self, name, *args, **kwargs):
        """``(result, args, kwargs)``: the result and the copies of the arguments as they
        are after the call (a changed input shows there, never in the test's own)."""
        result, args_after, kwargs_after = self._call(name, args, kwargs)
        if isinstance(result, wire.ForeignObject):
            raise AssertionError(f"{name} returned {result.description}; "
                                 "return NumPy arrays")
        return result, tuple(args_after), kwargs_after

    def _missing(self, name, found=None):
        broken = "; ".join(self.cell_errors)
        what = f"function {name!r}" if found is None else \
            f"function {name!r} ({name} is a {found})"
        hint = elsewhere_hint(f"name '{name}' is not defined", self.elsewhere)
        return AssertionError(f"{self.origin} defines no {what}"
                              + (f" ({broken})" if broken else "") + (f"; {hint}" if hint else ""))

    def _call(self, name, args, kwargs):
        function = self.namespace.get(name)
        if not callable(function):
            raise self._missing(name, None if function is None else type(function).__name__)
        functions = _functions((args, kwargs))
        # copies of the arguments, but the functions themselves (the grader's, not data)
        args, kwargs = copy.deepcopy((args, kwargs), {id(f): f for f in functions})
        try:
            result = function(*args, **kwargs)
        except NotImplementedError as error:
            raise NotAttempted(f"{name}: {error}" if str(error) else name) from None
        except KeyboardInterrupt:  # the person at the notebook pressed stop
            raise
        except Exception as error:
            raise learner_error(type(error).__name__, str(error),
                                _where(error.__traceback__)) from None
        except BaseException as error:  # sys.exit in an answer: the test fails, no more
            from bn_course.worker import describe_exit

            raise AssertionError(describe_exit(error, f"in {name}")) from None
        # the same data the child process would send: the same checks and messages
        header = wire.data_frame({"result": result, "args": list(args), "kwargs": kwargs,
                                  "values": ["result", "args", "kwargs"]}, functions)[8:]
        answer = wire.read_data(header, ("result", "args", "kwargs"), functions)
        return answer["result"], answer["args"], answer["kwargs"]


def _functions(value, found=None):
    """The functions among a call's arguments (they are passed, not copied)."""
    found = [] if found is None else found
    if isinstance(value, FUNCTION_TYPES):
        if not any(value is f for f in found):
            found.append(value)
    elif isinstance(value, (tuple, list)):
        for item in value:
            _functions(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            _functions(item, found)
    return found


def _references(value, functions):
    """The arguments with each function replaced by a :class:`wire.FunctionRef`."""
    if isinstance(value, FUNCTION_TYPES):
        return wire.FunctionRef(next(i for i, f in enumerate(functions) if f is value))
    if isinstance(value, (tuple, list)):
        items = [_references(v, functions) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        return {k: _references(v, functions) for k, v in value.items()}
    return value


def _where(tb):
    """"in batchnorm_forward, line 7" for the deepest frame of the learner's code."""
    where = None
    for frame in traceback.extract_tb(tb):
        name = frame.filename
        if name.startswith(("<answer cell", "<ipython")) or "ipykernel_" in name:
            where = f"in {frame.name}, line {frame.lineno}"
    return where


_RUNNING = set()  # the child processes alive, ended at exit whatever happens


@atexit.register
def _end_all():
    for process in list(_RUNNING):
        _kill(process)
    if _empty_folder.cache_info().currsize:
        import shutil

        shutil.rmtree(_empty_folder(), ignore_errors=True)


def _kill(process):
    # the child's process group; it cannot start a process of its own to escape it (its
    # audit hook refuses fork, exec and spawn), so this kills all that runs learner code
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    process.wait()
    _RUNNING.discard(process)


class _Child:
    """One worker process and the two pipes to it."""

    def __init__(self, settings):
        to_child_read, self.to_child = os.pipe()
        self.from_child, from_child_write = os.pipe()
        paths = {str(Path(__file__).resolve().parent.parent)}
        import bn_lib

        paths.add(str(Path(bn_lib.__file__).resolve().parent.parent))
        environment = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
                           PYTHONPATH=os.pathsep.join(
                               sorted(paths) + [os.environ.get("PYTHONPATH", "")]).rstrip(
                               os.pathsep))
        self.folder = _empty_folder()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bn_course.worker", str(to_child_read),
                 str(from_child_write)],
                pass_fds=(to_child_read, from_child_write), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.folder,
                env=environment, start_new_session=True)
        finally:
            os.close(to_child_read)
            os.close(from_child_write)
        _RUNNING.add(self.process)
        os.set_blocking(self.to_child, False)
        self.send(settings, time.monotonic() + START_TIME_LIMIT)
        self.receive(time.monotonic() + START_TIME_LIMIT, kind="ready")

    def send(self, message, deadline):
        wire.write_all(self.to_child, wire.pickle_frame(message), deadline)

    def receive(self, deadline, kind=None, values=(), functions=()):
        header = wire.read_data(wire.read_frame(self.from_child, deadline), values,
                                functions)
        if kind is not None and header.get("kind") != kind:
            raise wire.WireError(f"a {header.get('kind')!r} message where {kind!r} was due")
        return header

    def end(self):
        """Kill the process; what became of it, for a message ("exited with status 0")."""
        code = self.process.poll()
        if code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.process.wait(timeout=0.5)  # it may be exiting right now
        _kill(self.process)
        for fd in (self.to_child, self.from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        if code is None:
            return "stopped answering"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"was killed by signal {signal.Signals(-code).name}"
        return f"exited with status {code}"


@functools.cache
def _empty_folder():
    import tempfile

    return tempfile.mkdtemp(prefix="bn_course_worker_")


class NotebookSubmission(Submission):
    """A notebook file's functions, run in a child process (see the module docstring).

    ``extra_cells``, ``(name, source)`` pairs, run after the notebook's answer cells (the
    course check plants a mutant this way). Use it as a context manager, or ``close()``
    it, to end the process.
    """

    in_process = False

    def __init__(self, path, assignment, test_files=(), extra_cells=()):
        import nbformat  # slow to import: only where a notebook is read

        self.path = Path(path)
        super().__init__(origin=self.path.name)
        try:
            notebook = nbformat.read(self.path, as_version=4)
            self.cells = answer_cells(notebook) + list(extra_cells)
            self.elsewhere = defined_elsewhere(notebook)
            self.readable = True
        except Exception as error:  # not JSON, not a notebook: every test fails, and says so
            self.cells, self.readable, self.elsewhere = [], False, set()
            self.cell_errors.append(f"the notebook cannot be read ({type(error).__name__})")
        self.settings = {"assignment": assignment, "not_allowed": not_allowed(test_files)}
        self._child = None
        self._skipped = set()  # cells that timed out or ended the process: not run again
        self._recorded = set()
        self._timed_out = {}  # function name -> why it is not called again
        self._sequence = 0
        self._used = 0.0  # seconds the notebook's code has run, cells and calls

    def _deadline(self, limit):
        """The deadline of the next wait, and whether the notebook's budget (rather than
        ``limit``) sets it; an AssertionError once the budget is spent."""
        left = NOTEBOOK_TIME_LIMIT - self._used
        if left <= 0:
            raise AssertionError(self._spent())
        return time.monotonic() + min(limit, left), left < limit

    @staticmethod
    def _spent():
        return (f"your notebook's code has used up its {NOTEBOOK_TIME_LIMIT:g} s in all; "
                "it is not run again")

    def close(self):
        if self._child is not None:
            self._child.end()
            self._child = None

    def _record(self, grade_id, message):
        if grade_id not in self._recorded:
            self._recorded.add(grade_id)
            self.cell_errors.append(message)

    def _start(self):
        """A running child with every answer cell run (but the skipped ones)."""
        if self._child is not None and self._child.process.poll() is None:
            return self._child
        self.close()
        while True:
            try:
                child = self._child = _Child(self.settings)
            except wire.WireError as error:
                self.close()
                raise RuntimeError(f"the grader could not start the process that runs "
                                   f"your code ({error})") from None
            for grade_id, source in self.cells:
                if grade_id in self._skipped:
                    continue
                started = time.monotonic()
                deadline, by_budget = self._deadline(CELL_TIME_LIMIT)
                try:
                    child.send(("cell", grade_id, source), deadline)
                    answer = child.receive(deadline, kind="cell")
                except wire.WireError as error:
                    status = child.end()
                    self._child = None
                    if isinstance(error, wire.Timeout) and by_budget:
                        self._record(grade_id, f"answer cell {grade_id!r}: {self._spent()}")
                        raise AssertionError(self._spent()) from None
                    self._skipped.add(grade_id)
                    if isinstance(error, wire.Timeout):
                        why = (f"answer cell {grade_id!r} timed out after "
                               f"{CELL_TIME_LIMIT:g} s (an endless loop?)")
                    elif isinstance(error, wire.Closed):
                        why = f"the process running your code {status} during answer " \
                              f"cell {grade_id!r}"
                    else:
                        why = f"answer cell {grade_id!r} sent data the grader cannot read"
                    self._record(grade_id, why)
                    break
                finally:
                    self._used += time.monotonic() - started
                if answer.get("error"):
                    error = str(answer["error"])[:2000]
                    hint = elsewhere_hint(error, self.elsewhere) \
                        if " raised NameError: " in error else None
                    self._record(grade_id, error + (f"; {hint}" if hint else ""))
            else:
                return child

    def _call(self, name, args, kwargs):
        if not self.readable:
            raise self._missing(name)
        if name in self._timed_out:
            raise AssertionError(self._timed_out[name])
        child = self._start()
        functions = _functions((args, kwargs))
        self._sequence += 1
        try:
            arguments = pickle.dumps((_references(args, functions),
                                      _references(kwargs, functions)))
        except Exception as error:
            raise RuntimeError(f"the grader cannot send the arguments of {name} to the "
                               f"process running your code ({type(error).__name__}: "
                               f"{error})") from None
        request = ("call", self._sequence, name, arguments)
        started = time.monotonic()
        deadline, by_budget = self._deadline(CALL_TIME_LIMIT)
        try:
            child.send(request, deadline)
            while True:
                answer = child.receive(deadline, values=("result", "args", "kwargs"),
                                       functions=functions)
                if answer.get("kind") != "callback":
                    break
                child.send(_run_callback(functions, answer), deadline)
            if answer.get("kind") != "result" or answer.get("sequence") != self._sequence:
                raise wire.WireError("an answer to another request")
        except wire.Timeout:
            self.close()
            if by_budget:
                raise AssertionError(self._spent()) from None
            self._timed_out[name] = (f"{name} timed out earlier (after "
                                     f"{CALL_TIME_LIMIT:g} s); it is not called again")
            raise AssertionError(f"{name} timed out after {CALL_TIME_LIMIT:g} s: is there "
                                 "an endless loop?") from None
        except wire.Closed:
            status = self._child.end()
            self._child = None
            raise AssertionError(f"the process running your code {status} during the "
                                 f"call of {name}") from None
        except wire.WireError as error:
            self.close()
            raise AssertionError(f"{name}: the process running your code sent data the "
                                 f"grader cannot read ({error})") from None
        finally:
            self._used += time.monotonic() - started
        return self._outcome(name, answer)

    def _outcome(self, name, answer):
        outcome = answer.get("outcome")
        if outcome == "returned":
            return answer["result"], answer["args"] or [], answer["kwargs"] or {}
        if outcome == "missing":
            found = answer.get("found")
            raise self._missing(name, found if isinstance(found, str) else None)
        message = str(answer.get("message", ""))
        if outcome == "not_attempted":
            raise NotAttempted(f"{name}: {message}" if message else name)
        if outcome == "raised":
            where = answer.get("where")
            type_name = str(answer.get("type", "an exception"))[:100]
            hint = elsewhere_hint(message, self.elsewhere) if type_name == "NameError" else None
            raise learner_error(type_name, message, where if isinstance(where, str) else None,
                                hint)
        if outcome == "exited":
            raise AssertionError(message.splitlines()[0] if message else
                                 f"your code ended the call of {name}")
        if outcome == "arguments_lost":  # the grader's problem, not the learner's
            raise RuntimeError(f"the process running your code could not read the "
                               f"arguments of {name} ({message})")
        if outcome == "unsendable":
            raise AssertionError(f"{name} returned something that cannot be sent back "
                                 f"({message}); return NumPy arrays")
        raise AssertionError(f"{name}: an answer the grader cannot read")


def _run_callback(functions, request):
    """Run, here, a function the grader passed, on the arguments the child sent."""
    index = request.get("index")
    if type(index) is not int or not 0 <= index < len(functions):
        raise wire.WireError("a call back to no function")
    args, kwargs = request.get("args"), request.get("kwargs")
    if not isinstance(args, list) or not isinstance(kwargs, dict) or \
            not all(isinstance(k, str) for k in kwargs):
        raise wire.WireError("a call back with malformed arguments")
    try:
        return "returned", functions[index](*args, **kwargs)
    except Exception as error:
        return "raised", f"{type(error).__name__}: {error}"


# ----------------------------------------------------------------------------- time limit


@contextlib.contextmanager
def time_limit(seconds):
    """Stop a test after ``seconds`` (an endless loop in the notebook's own kernel),
    where signals allow; the child process has its own limits."""
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
