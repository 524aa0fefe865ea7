"""Build the Cython extensions of `_core` (metadata lives in pyproject.toml).

Every `_core/<name>.pyx` becomes `_core.<name>`; a `_core/<name>.py` with a same-named
`.pxd` (Cython's pure-Python mode, for state machines) is compiled too, and the compiled
module then shadows the `.py` on import. ISTHMUS_DEBUG=1 adds annotated HTML, line
tracing and bounds checks.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("ISTHMUS_DEBUG") == "1"



def _extensions() -> list:
    sources = sorted(glob.glob("_core/*.pyx"))
    sources += sorted(p[:-4] + ".py" for p in glob.glob("_core/*.pxd")
                      if os.path.exists(p[:-4] + ".py") and not os.path.exists(p[:-4] + ".pyx"))
    return [Extension("_core." + os.path.basename(src).rsplit(".", 1)[0], [src]) for src in sources]


EXTENSIONS = _extensions()

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "cdivision": True,
    "linetrace": DEBUG,
    "profile": False,
    "embedsignature": True,
}
if DEBUG:
    for ext in EXTENSIONS:
        ext.define_macros.append(("CYTHON_TRACE_NOGIL", "1"))

setup(ext_modules=cythonize(EXTENSIONS, compiler_directives=directives, annotate=DEBUG))
