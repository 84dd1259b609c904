"""The README quickstart runs and prints what the README says it prints."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _quickstart() -> str:
    text = README.read_text()
    block = text.split("## Quickstart", 1)[1]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


def test_quickstart_output_matches_the_readme():
    code = _quickstart()
    expected = re.search(r"^# (success .*)$", code, re.M).group(1).split()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace("t_max=350.0)", "t_max=350.0, progress=False)"),
                     "README quickstart", "exec"), {})
    lines = out.getvalue().split("\n")
    status, nfev, drift, t_align = lines[0].split()
    assert status == expected[0]
    # nfev: adaptive step counts may move by a few steps with another BLAS's rounding
    assert abs(int(nfev) - int(expected[1])) <= 0.05 * int(expected[1])
    assert float(drift) < 1e-14  # the projection keeps the invariant at rounding
    assert abs(float(t_align) - float(expected[3])) < 0.1  # README rounds to 0.1
    covered = re.search(r"frac_aligned_centres\)\s+# (\S+) (\S+):", code).groups()
    assert lines[1].split() == list(covered)  # centres covered, as the README's comment says
    r_f, r_fp = map(float, lines[2].split())
    assert abs(r_f - 10**-0.5) < 1e-12 and abs(r_fp - 2**-0.5) < 1e-12
