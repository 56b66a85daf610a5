"""The course of the book: the grader (``python -m bn_course.grade``, ``make grade``), the
generator of the blank assignments (``python -m bn_course.make_student``, ``make student``)
and the course check (``python -m bn_course.course_check``, ``make course-check``).

It is installed with bn_lib (``pip install -e .``) so that the assignment notebooks can
``from bn_course.grade import grade`` from any folder. It reads ``assignments/`` from the
repository it sits in, so it runs from a checkout, not from a wheel installed elsewhere.
"""
