"""The process that runs a learner's notebook code: ``python -m bn_course.worker R W``.

Started by the grader (:mod:`bn_course.learner`), never by hand. It reads pickled
requests from file descriptor R and answers on W in the data-only format of
:mod:`bn_course.wire`; its standard input and output are ``/dev/null``, so a print cannot
corrupt an answer or block the process. Before any learner code runs it

* imports bn_lib and puts, in place of each object the assignment's tests name in
  ``BN_LIB_NOT_ALLOWED``, a stub that raises :class:`NotAvailable` saying why;
* makes ``import torch`` (and anything under it) fail: the answers are NumPy only;
* forbids writing to files (``RLIMIT_FSIZE`` = 0) and caps its memory (``RLIMIT_AS``).

Then it runs the answer cells one by one (the grader times each) and calls the learner's
functions on request, answering with the result and the arguments as they are after the
call. Everything here is the learner's to break: the grader trusts none of its answers
beyond their being data, and recomputes every expected value itself.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.abc
import os
import pickle
import pkgutil
import resource
import signal
import sys
import traceback

from bn_course import wire

BLOCKED_PACKAGES = ("torch", "functorch")
NUMPY_ONLY = "the course's answers are NumPy only: torch is not available to your code"
MEMORY_LIMIT = 4 * 2**30  # bytes of address space: ample for any answer of the course
MESSAGE_LENGTH = 2000  # characters of an error message sent back


class NotAvailable(RuntimeError):
    """Raised by a bn_lib function that the assignment asks the learner to write."""


class _NumpyOnly(importlib.abc.MetaPathFinder):
    """An import hook that refuses torch and everything under it."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED_PACKAGES:
            raise ModuleNotFoundError(NUMPY_ONLY, name=name)
        return None


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
    """No output to corrupt, no file to write, a cap on memory, a clean working folder."""
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


def block_torch():
    for name in [n for n in sys.modules if n.split(".")[0] in BLOCKED_PACKAGES]:
        del sys.modules[name]
    sys.meta_path.insert(0, _NumpyOnly())


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
    block_torch()
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
