"""Keep the course honest: ``make course-check`` (part of ``make test``).

Command line (from the repository root)::

    python -m tools.course_check

It checks, and exits 1 on the first kind of problem it reports:

* every source notebook (``assignments/source/``) scores full marks, and each check
  cell's nbgrader points equal the number of tests of its task;
* every blank (``assignments/NN_topic.ipynb``) scores "not attempted" in every test: a
  blank that passes a test means the test is too weak;
* every known-wrong implementation in ``assignments/tests/mutants/`` fails the test it
  names (``MUST_FAIL``), while every task it does not touch keeps full marks;
* the committed blanks equal a fresh ``make student``, and no solution line survives in
  them (``tools.make_student --check``).

That the sources pass strict nbval and the blanks run top to bottom is checked by the
Makefile's ``course-check`` target with nbval, after this.
"""

from __future__ import annotations

import sys
import nbformat

from tools import make_student
from tools.grade import (
    ASSIGNMENTS,
    FAILED,
    NOT_ATTEMPTED,
    PASSED,
    SOURCES,
    TESTS,
    Submission,
    assignments,
    run_tests,
)

MUTANTS = TESTS / "mutants"


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


def load_mutant(path, base):
    """The solution's namespace with the mutant's functions put in place of the right ones."""
    namespace = dict(base.namespace)
    code = compile(path.read_text(), str(path), "exec")
    exec(code, namespace)
    must_fail = namespace.get("MUST_FAIL")
    if not must_fail:
        raise ValueError(f"{path.name} names no test in MUST_FAIL")
    return Submission(namespace, origin=path.name), must_fail


def main():
    problems, lines = [], []
    solutions, all_tasks = {}, set()
    for key, name in assignments().items():
        source = SOURCES / f"{name}.ipynb"
        solutions[key] = Submission.from_notebook(source)
        report = run_tests(name, solutions[key])
        if not report.full_marks:
            problems += [f"source {name}: {r.test} {r.outcome}: {r.message}"
                         for r in report.results if r.outcome != PASSED]
        problems += check_points(source, report)
        all_tasks |= set(report.task_scores())
        for task, (passed, total) in report.task_scores().items():
            lines.append(f"{name}  {task}: source {passed}/{total} tests passed")

        blank = Submission.from_notebook(ASSIGNMENTS / f"{name}.ipynb")
        blank_report = run_tests(name, blank)
        attempted = [r for r in blank_report.results if r.outcome != NOT_ATTEMPTED]
        problems += [f"blank {name}: {r.test} is {r.outcome}, not 'not attempted'"
                     + (f" ({r.message})" if r.message else "") for r in attempted]
        lines.append(f"{name}  blank: {len(blank_report.results) - len(attempted)}/"
                     f"{len(blank_report.results)} tests not attempted")

    mutants = sorted(MUTANTS.glob("[0-9][0-9]_*.py"))
    per_task = {}
    for path in mutants:
        key = path.name[:2]
        submission, must_fail = load_mutant(path, solutions[key])
        report = run_tests(assignments()[key], submission)
        by_test = {r.test: r for r in report.results}
        file_name, _, test = must_fail.partition("::")
        target = by_test.get(test)
        if target is None or not file_name.startswith(f"test_{key}_"):
            problems.append(f"mutant {path.name}: no test {must_fail}")
            continue
        per_task[target.task] = per_task.get(target.task, 0) + 1
        if target.outcome != FAILED:
            problems.append(f"mutant {path.name}: {must_fail} is {target.outcome}, "
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
    print(f"\ncourse check passed: {len(solutions)} sources at full marks, blanks not "
          f"attempted, {len(mutants)} mutants caught, blanks up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
