"""Keep the course honest: ``make course-check`` (part of ``make test``).

Command line (from the repository root)::

    python -m bn_course.course_check

It checks, and exits 1 on the first kind of problem it reports:

* every source notebook (``assignments/source/``) scores full marks, and each check
  cell's nbgrader points equal the number of tests of its task;
* every blank (``assignments/NN_topic.ipynb``) scores "not attempted" in every test: a
  blank that passes a test means the test is too weak;
* every known-wrong implementation in ``assignments/tests/mutants/`` fails the test it
  names (``MUST_FAIL``), while every task it does not touch keeps full marks (a mutant
  is run as one more cell after the source's answer cells, in the same child process);
* every graded test file declares ``BN_LIB_NOT_ALLOWED`` and names only real bn_lib
  objects there;
* the committed blanks equal a fresh ``make student``, and no solution line survives in
  them (``bn_course.make_student --check``).

That the sources pass strict nbval and the blanks run top to bottom is checked by the
Makefile's ``course-check`` target with nbval, after this.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat

from bn_course import make_student
from bn_course.grade import (
    ASSIGNMENTS,
    FAILED,
    NOT_ATTEMPTED,
    PASSED,
    SOURCES,
    TESTS,
    assignments,
    check_not_allowed,
    collect_tests,
    grade_notebook,
    not_allowed,
    open_notebook,
    run_tests,
)

MUTANTS = ASSIGNMENTS / "tests" / "mutants"
TASK_HEADING = re.compile(r"^## Task `(\w+)`: (.+)$", re.MULTILINE)
PRACTISE = re.compile(r"\*\*What you'll practise:\*\* (.+?)(?:\n\n|$)", re.DOTALL)


def test_tasks(test_file):
    """``{test function: task}`` read from a test file's ``task(...)`` marks, without
    importing it (the module-level ``pytestmark = task(...)`` or a ``@task(...)``)."""
    tree = ast.parse(Path(test_file).read_text())

    def task_of(node):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "task":
            return node.args[0].value
        return None

    default = next((task_of(n.value) for n in tree.body if isinstance(n, ast.Assign)
                    and any(getattr(t, "id", None) == "pytestmark" for t in n.targets)), None)
    tasks = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            marks = [task_of(d) for d in node.decorator_list if task_of(d)]
            tasks[node.name] = marks[0] if marks else default
    return tasks


def catalogue():
    """One row per task: assignment, task, what the learner writes, what the assignment
    practises, the number of tests (the check cell's points) and of mutants."""
    mutants = mutant_catalogue()
    rows = []
    for name in assignments().values():
        notebook = nbformat.read(SOURCES / f"{name}.ipynb", as_version=4)
        text = "\n\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
        practise = PRACTISE.search(text)
        points = {c.metadata["nbgrader"]["grade_id"].removesuffix("_tests"):
                  c.metadata["nbgrader"].get("points")
                  for c in notebook.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")}
        for task, title in TASK_HEADING.findall(text):
            rows.append({"assignment": name, "task": task, "title": title.strip(),
                         "practise": " ".join(practise.group(1).split()) if practise else "",
                         "tests": points.get(task),
                         "mutants": sum(m["task"] == task for m in mutants)})
    return rows


def mutant_catalogue():
    """One row per mutant: its file, the mistake (its docstring's first sentence), the
    test it must fail and that test's task."""
    rows = []
    for path in sorted(MUTANTS.glob("[0-9][0-9]_*.py")):
        module = ast.parse(path.read_text())
        doc = " ".join((ast.get_docstring(module) or "").split())
        file_name, _, test = must_fail(path).partition("::")
        function = test.split("[")[0]
        rows.append({"mutant": path.stem, "mistake": doc.split(". ")[0].rstrip("."),
                     "must_fail": test, "task": test_tasks(TESTS / file_name).get(function)})
    return rows


def check_points(source, report):
    """nbgrader's points on each check cell must equal its task's number of tests."""
    problems = []
    counts = {task: total for task, (_, total) in report.task_scores().items()}
    for cell in nbformat.read(source, as_version=4).cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") and meta.get("grade_id", "").endswith("_tests"):
            task = meta["grade_id"].removesuffix("_tests")
            if meta.get("points") != counts.get(task):
                problems.append(f"{source.name}: cell {meta['grade_id']} has "
                                f"{meta.get('points')} points, its task has "
                                f"{counts.get(task)} tests")
    return problems


def check_declarations():
    """Each graded test file declares BN_LIB_NOT_ALLOWED, naming real bn_lib objects."""
    problems = []
    for path in sorted(TESTS.glob("test_[0-9][0-9]_*.py")):
        if not any(isinstance(n, ast.Assign) and any(
                getattr(t, "id", None) == "BN_LIB_NOT_ALLOWED" for t in n.targets)
                for n in ast.parse(path.read_text()).body):
            problems.append(f"{path.name} declares no BN_LIB_NOT_ALLOWED")
            continue
        try:
            check_not_allowed(not_allowed([path]))
        except ValueError as error:
            problems.append(f"{path.name}: {error}")
    return problems


def load_mutant(path, source):
    """The source notebook (a path, or a submission of it) with the mutant run as one more
    cell after its answer cells, and the test the mutant must fail."""
    source = getattr(source, "path", source)
    cell = (f"mutant {Path(path).stem}", Path(path).read_text())
    return open_notebook(source, extra_cells=[cell]), must_fail(path)


def must_fail(path):
    """The test a mutant must fail (its ``MUST_FAIL``), read without running it."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "MUST_FAIL" for t in node.targets):
            return node.value.value
    raise ValueError(f"{path.name} names no test in MUST_FAIL")


def main():
    problems, lines = check_declarations(), []
    sources, all_tasks = {}, set()
    for key, name in assignments().items():
        source = sources[key] = SOURCES / f"{name}.ipynb"
        report = grade_notebook(source)
        if not report.full_marks:
            problems += [f"source {name}: {r.test} {r.outcome}: {r.message}"
                         for r in report.results if r.outcome != PASSED]
        problems += check_points(source, report)
        all_tasks |= set(report.task_scores())
        for task, (passed, total) in report.task_scores().items():
            lines.append(f"{name}  {task}: source {passed}/{total} tests passed")

        blank_report = grade_notebook(ASSIGNMENTS / f"{name}.ipynb")
        attempted = [r for r in blank_report.results if r.outcome != NOT_ATTEMPTED]
        problems += [f"blank {name}: {r.test} is {r.outcome}, not 'not attempted'"
                     + (f" ({r.message})" if r.message else "") for r in attempted]
        lines.append(f"{name}  blank: {len(blank_report.results) - len(attempted)}/"
                     f"{len(blank_report.results)} tests not attempted")

    mutants = sorted(MUTANTS.glob("[0-9][0-9]_*.py"))
    per_task = {}
    for path in mutants:
        key = path.name[:2]
        submission, target_test = load_mutant(path, sources[key])
        with submission:
            report = run_tests(sources[key].stem, submission, expected=collect_tests(key))
        by_test = {r.test: r for r in report.results}
        file_name, _, test = target_test.partition("::")
        target = by_test.get(test)
        if target is None or not file_name.startswith(f"test_{key}_"):
            problems.append(f"mutant {path.name}: no test {target_test}")
            continue
        per_task[target.task] = per_task.get(target.task, 0) + 1
        if target.outcome != FAILED:
            problems.append(f"mutant {path.name}: {target_test} is {target.outcome}, "
                            "it must fail")
        spill = [r.test for r in report.results if r.task != target.task and r.outcome != PASSED]
        if spill:
            problems.append(f"mutant {path.name} costs points outside task {target.task}: "
                            f"{spill}")
        lost = sum(r.outcome != PASSED for r in report.results)
        lines.append(f"mutant {path.stem}: fails {test} ({lost} test(s) lost in "
                     f"{target.task}): {target.message}")
    for task in sorted(all_tasks):
        if per_task.get(task, 0) < 2:
            problems.append(f"task {task} has {per_task.get(task, 0)} mutant(s); it needs two")

    problems += make_student.check()

    print("\n".join(lines))
    if problems:
        print(f"\ncourse check: {len(problems)} problem(s)")
        print("\n".join(f"  {p}" for p in problems))
        return 1
    print(f"\ncourse check passed: {len(sources)} sources at full marks, blanks not "
          f"attempted, {len(mutants)} mutants caught, blanks up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
