"""A stand-alone fake of Site24x7 and Zoho accounts for tests, the demo and benchmarks.

Standard library only. See README.md in this folder.
"""

from .server import Simulator

__all__ = ["Simulator"]
