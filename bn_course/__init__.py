"""The course of the book: the grader (``python -m bn_course.grade``, ``make grade``), the
generator of the blank assignments (``python -m bn_course.make_student``, ``make student``)
and the course check (``python -m bn_course.course_check``, ``make course-check``).

It is installed with bn_lib (``pip install -e .``, or the wheel) so that the assignment
notebooks can ``from bn_course.grade import grade`` from any folder. The graded tests
(``tests/``) ship with it, so the grader also runs from a wheel installed outside the
repository; the learner's code runs in a child process (``learner.py``, ``worker.py``) that
sends back data only (``wire.py``).
"""
