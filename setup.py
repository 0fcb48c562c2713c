"""For pip < 21.3 (Ubuntu 20.04's pip 20.0.2 on JetPack 5.1), which installs in editable mode (`pip3 install -e
'.[device]'`, the bundle README's line) only through a setup.py; everything else is in setup.cfg and pyproject.toml."""

from setuptools import setup

setup()
