"""Units shared by every module."""

import numpy as np

ARCMIN = np.pi / (180.0 * 60.0)
"""One arcminute in radians."""
