"""The process that runs a learner's notebook code: ``python -m bn_course.worker R W``.

Started by the grader (:mod:`bn_course.learner`), never by hand. It reads pickled
requests from file descriptor R and answers on W in the data-only format of
:mod:`bn_course.wire`; its standard input and output are ``/dev/null``, so a print cannot
corrupt an answer or block the process. Before any learner code runs it

* refuses, from its first line, the imports that reach outside a NumPy answer (torch,
  ctypes, subprocess, ...: :data:`REFUSED_MODULES`), so that NumPy loads without ctypes;
* imports NumPy and every bn_lib module but the two that need torch, and puts, in place of
  each object the assignment's tests name in ``BN_LIB_NOT_ALLOWED``, a stub that raises
  :class:`NotAvailable` saying why;
* caps its memory (``RLIMIT_AS``) and the size of a file it writes (``RLIMIT_FSIZE`` = 0);
* installs an audit hook (:func:`guard`, ``sys.addaudithook``: Python offers no way to
  remove one) that refuses, with a message that says why, what an answer never needs:
  opening a file to write, mapping one into memory, reading the course's own files (bn_lib,
  bn_course, the solutions in ``assignments/source``, the repository's ``.git``), changing
  files or folders, signals, new processes, ctypes, sockets, importing anything but NumPy
  and the standard library, and searching the heap for the withheld objects. The few
  system calls that raise no audit event (``os.mkfifo``, ``os.pidfd_open``, ...) are
  replaced by stubs, and built-in modules can no longer be created afresh to get them back.

Then it runs the answer cells one by one (the grader times each) and calls the learner's
functions on request, answering with the result and the arguments as they are after the
call. Everything here is the learner's to break: the grader trusts none of its answers
beyond their being data, and recomputes every expected value itself. The hook is a speed
bump for the rest of the machine, not a wall: the process runs as the grader's user, so
untrusted work is graded on a disposable machine (CONTRIBUTING.md, the threat model).
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import importlib.abc
import linecache
import os
import pickle
import pkgutil
import resource
import signal
import sys
import traceback
import types
from pathlib import Path

# imports the child refuses: the oracle, and what reaches outside the process unaudited
REFUSED_MODULES = frozenset({
    "torch", "functorch", "ctypes", "_ctypes", "_ctypes_test", "subprocess",
    "_posixsubprocess", "multiprocessing", "_multiprocessing", "_posixshmem", "socket",
    "_socket", "ssl", "_ssl", "pty", "readline", "dbm", "_dbm", "_gdbm", "sqlite3",
    "_sqlite3", "curses", "_curses", "_curses_panel", "tkinter", "_tkinter", "ossaudiodev",
    "_xxsubinterpreters", "_xxinterpchannels", "_testcapi", "_testinternalcapi",
    "_testbuffer", "_testmultiphase", "_testimportmultiple", "_testclinic", "_xxtestfuzz",
})
# the only packages outside the standard library an answer may import
ALLOWED_PACKAGES = frozenset({"numpy", "bn_lib"})
MEMORY_LIMIT = 4 * 2**30  # bytes of address space: ample for any answer of the course
MESSAGE_LENGTH = 2000  # characters of an error message sent back


def numpy_only(module):
    return f"the course's answers are NumPy only: {module} is not available to your code"


NUMPY_ONLY = numpy_only("torch")


class _NumpyOnly(importlib.abc.MetaPathFinder):
    """An import hook that refuses :data:`REFUSED_MODULES` and everything under them (the
    audit hook refuses them too, and everything else outside NumPy and the standard
    library: this one is first in line, and in place before NumPy loads)."""

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in REFUSED_MODULES:
            raise ModuleNotFoundError(numpy_only(top), name=name)
        return None


if __name__ == "__main__":  # the child, before NumPy loads: NumPy then does without ctypes
    sys.meta_path.insert(0, _NumpyOnly())

from bn_course import wire  # noqa: E402


class NotAvailable(RuntimeError):
    """Raised by a bn_lib function that the assignment asks the learner to write."""


class GraderFunction:
    """A function the grader passed (e.g. the f of a gradient check): calling it runs the
    grader's function in the grader's process, on the arguments sent as data."""

    def __init__(self, index, channel):
        self.index, self.channel = index, channel

    def __call__(self, *args, **kwargs):
        return self.channel.call_back(self, args, kwargs)

    def __repr__(self):
        return f"<function {self.index} passed by the grader>"


class Channel:
    def __init__(self, read_fd, write_fd):
        self.read_fd, self.write_fd = read_fd, write_fd
        self.functions = []  # the GraderFunctions of the call being served

    def receive(self):
        return pickle.loads(wire.read_frame(self.read_fd))  # the grader's: trusted

    def send(self, header):
        wire.write_all(self.write_fd, wire.data_frame(header, self.functions))

    def call_back(self, function, args, kwargs):
        self.send({"kind": "callback", "index": function.index, "args": list(args),
                   "kwargs": kwargs, "values": ("args", "kwargs")})
        outcome, value = self.receive()
        if outcome == "returned":
            return value
        raise RuntimeError(f"the function the grader passed raised {value}")

    def with_functions(self, value):
        """The call's arguments with each :class:`wire.FunctionRef` made callable."""
        if isinstance(value, wire.FunctionRef):
            while len(self.functions) <= value.index:
                self.functions.append(GraderFunction(len(self.functions), self))
            return self.functions[value.index]
        if isinstance(value, (tuple, list)):
            items = [self.with_functions(v) for v in value]
            return tuple(items) if isinstance(value, tuple) else items
        if isinstance(value, dict):
            return {k: self.with_functions(v) for k, v in value.items()}
        return value


# ----------------------------------------------------------------------------- set-up


def _isolate():
    """No output to corrupt, no file to write, a cap on memory, no bytecode written."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    try:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ValueError, OSError):  # a lower hard limit is already in place
        pass
    sys.dont_write_bytecode = True


def _import_bn_lib():
    """Every bn_lib module but the two that need torch (the oracle and chapter 10's
    transport), so that the stubs below reach every copy of a withheld object."""
    import bn_lib

    for module in pkgutil.iter_modules(bn_lib.__path__):
        if module.name not in ("testing", "torch_distributed"):
            importlib.import_module(f"bn_lib.{module.name}")
    return [m for n, m in sys.modules.items() if n == "bn_lib" or n.startswith("bn_lib.")]


def _unavailable(name, assignment):
    message = (f"assignment {assignment} asks you to write this yourself: "
               f"bn_lib.{name} is not available to your answer")

    def unavailable(*args, **kwargs):
        raise NotAvailable(message)

    unavailable.__name__ = unavailable.__qualname__ = name.rpartition(".")[2]
    unavailable.__doc__ = message
    return unavailable


def withhold(names, assignment):
    """Replace each named bn_lib object ("batch_norm_forward", or "Class.method") by a
    stub wherever a bn_lib module or class holds it."""
    modules = _import_bn_lib()
    for name in names:
        stub = _unavailable(name, assignment)
        owner, _, attribute = name.rpartition(".")
        if owner:
            for module in modules:
                cls = vars(module).get(owner)
                if isinstance(cls, type) and attribute in vars(cls):
                    setattr(cls, attribute, stub)
            continue
        originals = [vars(m)[name] for m in modules if name in vars(m)]
        for module in modules:
            for key, value in list(vars(module).items()):
                if any(value is original for original in originals):
                    setattr(module, key, stub)


# ----------------------------------------------------------------------------- the guard


WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# audit events (the Python documentation's "Audit events table") -> what they do
REFUSED_EVENTS = {
    **dict.fromkeys(("os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.symlink",
                     "os.link", "os.truncate", "os.chmod", "os.chown", "os.utime",
                     "os.setxattr", "os.removexattr", "shutil.rmtree"),
                    "change files or folders"),
    **dict.fromkeys(("os.kill", "os.killpg", "signal.pthread_kill"), "send signals"),
    **dict.fromkeys(("os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn",
                     "os.system", "os.startfile", "subprocess.Popen"), "start processes"),
    **dict.fromkeys(("resource.setrlimit", "resource.prlimit"), "change resource limits"),
    **dict.fromkeys(("gc.get_objects", "gc.get_referrers", "gc.get_referents"),
                    "search the process's objects (the withheld answers are among them)"),
    "cpython.PyInterpreterState_New": "start another interpreter",
    "fcntl.ioctl": "control a terminal or a device",
}
REFUSED_PREFIXES = (("ctypes.", "call C code"), ("socket.", "use the network"),
                    ("sqlite3.", "open a database"), ("syslog.", "write to the system log"))
# what raises no audit event: replaced, in os, posix, signal and _signal, by a stub
UNAUDITED = {"mkfifo": "create files", "mknod": "create files",
             "pidfd_open": "send signals", "pidfd_send_signal": "send signals",
             **dict.fromkeys(("setpriority", "sched_setaffinity", "sched_setscheduler",
                              "sched_setparam"), "change how a process is scheduled")}


def course_files():
    """``(st_dev, st_ino)`` of what an answer may not read: the folders of bn_lib and
    bn_course (the withheld answers, the grader and its tests) and every file in them, and
    beside them the solutions (``assignments/source``) and the repository's ``.git``."""
    import bn_lib

    packages = {Path(bn_lib.__file__).resolve().parent, Path(__file__).resolve().parent}
    found = set()
    for package in packages:
        solutions = package.parent / "assignments" / "source"
        git = package.parent / ".git"  # a folder, or in a worktree a file naming the folder
        paths = [package, *package.rglob("*"), solutions, *solutions.rglob("*"), git]
        with contextlib.suppress(OSError, ValueError):
            named = git.read_text().partition("gitdir:")[2].strip()
            paths += [Path(named)] if named else []
        for path in paths:
            with contextlib.suppress(OSError):  # not there, or gone since it was listed
                st = os.stat(package.parent / path)
                found.add((st.st_dev, st.st_ino))
    return frozenset(found)


def guard(protected):
    """The child's audit hook (see the module docstring): it raises PermissionError (an
    OSError, which the code that writes bytecode or caches lines already handles), or
    ModuleNotFoundError for an import, with a message that says why.

    ``protected`` holds the ``(st_dev, st_ino)`` of the files and folders an answer may
    not read; a path is refused when it, or any folder on the way to it, is one of them,
    each looked up by ``os.stat`` (so a link, a ``..`` or ``/proc/self/fd`` cannot hide
    one). Everything the hook uses is bound here, so an answer that replaces a builtin, a
    module's function, a type's method or this module's globals cannot change its checks.
    """
    allowed_modules = (sys.stdlib_module_names - REFUSED_MODULES) | ALLOWED_PACKAGES
    refused_events, refused_prefixes = dict(REFUSED_EVENTS), REFUSED_PREFIXES
    stat, getcwd, getcwdb, item, partition = (os.stat, os.getcwd, os.getcwdb,
                                              tuple.__getitem__, str.partition)
    str_, bytes_, int_, type_, repr_ = str, bytes, int, type, repr
    Refused, NotFound, Unresolved = PermissionError, ModuleNotFoundError, (OSError, ValueError)
    write_flags = WRITE_FLAGS

    def refusal(action, detail):
        return Refused(f"your code may not {action} while it is graded ({detail})")

    def is_protected(path):
        sep = "/" if type_(path) is str_ else b"/"
        if not path.startswith(sep):
            path = (getcwd() if type_(path) is str_ else getcwdb()) + sep + path
        prefix, *parts = path.split(sep)
        for part in parts:
            prefix = prefix + sep + part
            try:
                st = stat(prefix)
            except Unresolved:  # not there: the open fails the same way
                continue
            if (item(st, 2), item(st, 1)) in protected:  # (st_dev, st_ino)
                return True
        return False

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            kind = type_(path)
            if kind is not str_ and kind is not bytes_ and kind is not int_:
                raise refusal("open a path that is not a str", "give open() str(path)")
            if flags & write_flags:
                raise refusal("write to files", f"open {repr_(path)[:200]} for writing")
            if kind is int_:  # a file descriptor already open: nothing new
                return
            if mode is None and not path.startswith("/" if kind is str_ else b"/"):
                # os.open may be relative to a dir_fd, which the event does not show
                raise refusal("open a relative path with os.open", "give the full path")
            if is_protected(path):
                raise refusal("read the course's own files (bn_lib, the grader, the solutions)",
                              f"open {repr_(path)[:200]}")
        elif event == "import":
            name = args[0]
            top = partition(name, ".")[0] if type_(name) is str_ else None
            if top not in allowed_modules:
                raise NotFound(f"the course's answers are NumPy only: {top} is not "
                               "available to your code", name=top)
        elif event == "mmap.__new__":
            if args[0] != -1:  # a file descriptor: the mapping would write to the file
                raise refusal("map a file into memory", "mmap")
        else:
            action = refused_events.get(event)
            if action is None:
                for prefix, what in refused_prefixes:
                    if event.startswith(prefix):
                        action = what
            if action is not None:
                raise refusal(action, event)

    return hook


def _refused(name, action, error=PermissionError):
    def refused(*args, **kwargs):
        raise error(f"your code may not {action} while it is graded ({name})")

    refused.__name__ = refused.__qualname__ = name
    return refused


def _stand_in_grader():
    """What the set-up cell imports, ``from bn_course.grade import grade``: the check cells
    do not run here, and the grader itself (pytest, subprocess) stays out of this process."""
    import bn_course

    module = types.ModuleType("bn_course.grade", "A stand-in: the grader is not here.")

    def grade(*args, **kwargs):
        raise RuntimeError("grade() checks your work in your notebook; it does not run "
                           "while your notebook is graded")

    module.grade = grade
    sys.modules[module.__name__] = bn_course.grade = module


def lock_down():
    """Make the process what the module docstring says, just before the first answer
    cell runs: nothing the set-up needs is imported from here on."""
    for name in [n for n in sys.modules if n.partition(".")[0] in REFUSED_MODULES]:
        del sys.modules[name]
    _stand_in_grader()
    for name in sys.builtin_module_names:  # imported now: none can be created afresh below
        importlib.import_module(name)
    for module in filter(None, map(sys.modules.get, ("os", "posix", "signal", "_signal"))):
        for name, action in UNAUDITED.items():
            if hasattr(module, name):
                setattr(module, name, _refused(name, action))
    import _imp  # a fresh copy of posix or _signal would bring back what the stubs replace

    for name in ("create_builtin", "exec_builtin"):
        setattr(_imp, name, _refused(name, "load a built-in module afresh", ImportError))
    linecache.clearcache()  # no source line of bn_lib left to read
    sys.addaudithook(guard(course_files()))


# ----------------------------------------------------------------------------- running


def _text(error):
    try:
        return str(error)[:MESSAGE_LENGTH]
    except BaseException:  # a learner's __str__ can raise too
        return ""


def _where(tb):
    """"in batchnorm_forward, line 7": the deepest frame of the learner's code."""
    where = None
    for frame in traceback.extract_tb(tb):
        if frame.filename.startswith("<answer cell"):
            where = f"in {frame.name}, line {frame.lineno}"
    return where


def describe_exit(error, place):
    """What a BaseException that is not an Exception means, for the learner."""
    if isinstance(error, SystemExit):
        code = "" if error.code is None else repr(error.code)
        return f"your code called sys.exit({code}) {place}"
    return f"your code raised {type(error).__name__} {place}"


def run_cell(namespace, grade_id, source):
    """Run one answer cell; None, or what went wrong in one phrase."""
    try:
        exec(compile(source, f"<answer cell {grade_id}>", "exec"), namespace)
    except Exception as error:
        return f"answer cell {grade_id!r} raised {type(error).__name__}: {_text(error)}"
    except BaseException as error:  # sys.exit, KeyboardInterrupt, ...: only this cell
        return describe_exit(error, f"in answer cell {grade_id!r}")
    return None


def call(channel, namespace, name, args, kwargs):
    """Call the learner's ``name``; the answer's header (its values still to encode)."""
    function = namespace.get(name)
    if not callable(function):
        return {"outcome": "missing",
                "found": None if function is None else type(function).__name__}
    args, kwargs = channel.with_functions(args), channel.with_functions(kwargs)
    answer = {"args": list(args), "kwargs": kwargs, "values": ["args", "kwargs"]}
    try:
        result = function(*args, **kwargs)
    except NotImplementedError as error:
        answer.update(outcome="not_attempted", message=_text(error))
    except Exception as error:
        answer.update(outcome="raised", type=type(error).__name__, message=_text(error),
                      where=_where(error.__traceback__))
    except BaseException as error:
        answer.update(outcome="exited", message=describe_exit(error, f"in {name}"))
    else:
        answer.update(outcome="returned", result=result, values=["result", "args", "kwargs"])
    return answer


def serve(channel):
    settings = channel.receive()
    withhold(settings["not_allowed"], settings["assignment"])
    lock_down()
    namespace = {"__name__": "submission", "__builtins__": builtins}
    channel.send({"kind": "ready"})
    while True:
        request = channel.receive()
        if request[0] == "cell":
            _, grade_id, source = request
            channel.functions = []
            channel.send({"kind": "cell", "error": run_cell(namespace, grade_id, source)})
        elif request[0] == "call":
            _, sequence, name, arguments = request
            channel.functions = []
            try:
                args, kwargs = pickle.loads(arguments)  # the grader's: trusted
            except Exception as error:  # a class the grader cannot import here, ...
                answer = {"outcome": "arguments_lost",
                          "message": f"{type(error).__name__}: {_text(error)}"}
            else:
                answer = call(channel, namespace, name, args, kwargs)
            answer.update(kind="result", sequence=sequence)
            try:
                channel.send(answer)
            except Exception as error:  # the result could not be encoded at all
                channel.send({"kind": "result", "sequence": sequence, "outcome": "unsendable",
                              "message": f"{type(error).__name__}: {_text(error)}"})
        else:
            return


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    read_fd, write_fd = int(argv[0]), int(argv[1])
    _isolate()
    try:
        serve(Channel(read_fd, write_fd))
    except wire.Closed:  # the grader is done with us
        pass


if __name__ == "__main__":
    main()
