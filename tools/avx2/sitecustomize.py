"""Make this process look like the AVX2-only EPYC to `vnotes` (loaded by tools/as_avx2.sh, never by the book).

`vnotes.runtime` reads the CPU flags from /proc/cpuinfo to decide whether bf16 autocast pays; here the
AVX-512 and AMX flags are hidden from it, so `precision="auto"` trains in fp32 as on that machine. The
kernels' instruction set is lowered by the environment the script sets (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA).
"""

import re

try:
    import vnotes.runtime as _runtime
except ImportError:  # the venv without vnotes: nothing to pretend
    _runtime = None

if _runtime is not None:
    _flags = re.sub(r"\b(avx512\w*|amx\w*)\b", "", _runtime._cpuinfo())
    _runtime._cpuinfo = lambda: _flags
