"""Command-line tools of the book that are not part of bn_lib: the verification report
(``python -m tools.verify``), the course's grader (``python -m tools.grade``), the generator
of the blank assignments (``python -m tools.make_student``) and the course check
(``python -m tools.course_check``)."""
