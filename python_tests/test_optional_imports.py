"""The optional integrations stay optional: importing the package loads none of them."""

import subprocess
import sys

OPTIONAL = ("transformers", "peft", "accelerate", "lightning", "pytorch_lightning")


def test_importing_the_package_loads_no_optional_framework():
    code = (
        "import sys, slsam_kernels, slsam_kernels.utils, slsam_kernels.integrations, "
        "slsam_kernels.integrations.lightning, slsam_kernels.integrations.accelerate; "
        f"print([m for m in {OPTIONAL!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
