"""Build the Cython extensions of `_core` (metadata lives in pyproject.toml).

ISTHMUS_DEBUG=1 adds annotated HTML, line tracing and bounds checks.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("ISTHMUS_DEBUG") == "1"

EXTENSIONS = [
    Extension("_core.rpcframe_c", ["_core/rpcframe_c.pyx"]),
]

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
