"""Regenerates the reference .npy files read by tests/test_npy.cpp (run from this directory)."""
import numpy as np
from numpy.lib import format as npy_format

np.save("f4_3x4.npy", (np.arange(12, dtype=np.float32) / np.float32(3)).reshape(3, 4))
np.save("f8_2x3x5.npy", (np.arange(30) / 7.0 - 2.0).reshape(2, 3, 5))
np.save("f8_scalar.npy", np.array(np.pi))
np.save("f4_empty.npy", np.zeros((0,), dtype=np.float32))
with open("f8_5_v2.npy", "wb") as f:
    npy_format.write_array(f, np.arange(5) * 0.1, version=(2, 0))
with open("f4_2x2_v3.npy", "wb") as f:
    npy_format.write_array(f, np.array([[1.5, -2.25], [1e-3, 3e38]], dtype=np.float32), version=(3, 0))
# Valid numpy files this reader must reject.
np.save("f8_fortran.npy", np.asfortranarray(np.arange(6.0).reshape(2, 3)))
np.save("f8_big_endian.npy", np.arange(3, dtype=">f8"))
