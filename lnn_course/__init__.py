"""lnn_course: the course material built on ``lnn``, kept out of the library's namespace.

* :mod:`lnn_course.checkers`: the checkers the exercise notebooks in ``exercises/`` call (``import
  lnn_course.checkers as chk``) and the autograder's hidden tests import afresh;
* :mod:`lnn_course.guard`: keeps ``lnn``'s reference answers unavailable while a checker runs a student's function.

The otter-grader side (autograders, offline grading) lives in ``scripts/make_exercises.py`` and
``scripts/grade_exercises.py``; see the instructor page ``book/exercises.md``.

It ships in the same wheel as ``lnn`` (``pip install lnn-*.whl`` gives both), so a student environment or an
autograder needs no clone of the repository, which holds the solutions.
"""

__all__ = ["checkers", "guard"]
