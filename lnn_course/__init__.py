"""lnn_course: the course material built on ``lnn``, kept out of the library's namespace.

* :mod:`lnn_course.checkers`: the checkers the exercise notebooks in ``exercises/`` call (``import
  lnn_course.checkers as chk``) and the autograder's hidden tests import afresh;
* :mod:`lnn_course.guard`: keeps ``lnn``'s reference answers unavailable while a checker runs a student's function;
* :mod:`lnn_course.grading`: the otter-grader side (fresh checkers for hidden tests, the score table).

It ships in the same wheel as ``lnn`` (``pip install lnn-*.whl`` gives both), so a student environment or an
autograder needs no clone of the repository, which holds the solutions.
"""

__all__ = ["checkers", "guard", "grading"]
