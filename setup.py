"""Build script. Metadata lives in pyproject.toml; this file only adds the optional extension."""

from setuptools import setup

setup()
