"""Every kernel compiles through triton's real GPU path (no GPU needed: PTX for sm_90), which
the interpreter never exercises, and the aligned variants get vector loads."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from slsam_kernels.backends import triton_kernels as triton_backend

pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(
        bool(triton_backend.UNAVAILABLE_REASON),
        reason=f"needs triton with CUDA or TRITON_INTERPRET=1: {triton_backend.UNAVAILABLE_REASON}",
    ),
]

_VECTOR_LOAD = re.compile(r"ld\.global(?:\.\w+)*\.v[248]")


def _cases() -> list[tuple[object, dict[str, str], dict[str, object]]]:
    from slsam_kernels.backends.triton_kernels import adamw, bandit, norms, perturb, restore, sgd

    table = {"table": "*i64", "stride": "i32", "items": "*i64", "item_stride": "i32"}
    geometry = {"CHUNK": 16384, "BLOCK": 1024}
    cases: list[tuple[object, dict[str, str], dict[str, object]]] = []
    for dt in ("*fp32", "*bf16", "*fp16"):
        for aligned in (False, True):
            flags = {"ALIGNED": aligned, **geometry}

            def roles(*names: str, dt: str = dt) -> dict[str, str]:
                return {name: dt for name in names}

            cases += [
                (
                    perturb._perturb_kernel,
                    {**roles("w_base", "g_base", "b_base"), **table, "scales": "*fp32"},
                    {"ADAPTIVE": True, **flags},
                ),
                (restore._copy_kernel, {**roles("dst_base", "src_base"), **table}, flags),
                (
                    norms._partials_kernel,
                    {**roles("g_base", "w_base"), **table, "partials": "*fp32"},
                    {"WEIGHTED": True, "NUM_ROLES": 2, **flags},
                ),
                (
                    adamw._adamw_kernel,
                    {
                        **roles("w_base", "b_base", "g_base", "m_base", "v_base"),
                        **table,
                        "coefs": "*fp32",
                    },
                    # fused=True is declined on a GPU: only the for-loop numerics compile there
                    {"ROUND_ONCE": False, "NUM_COEFS": 10, **flags},
                ),
                (
                    sgd._sgd_kernel,
                    {**roles("w_base", "b_base", "g_base", "buf_base"), **table, "coefs": "*fp32"},
                    {"MOMENTUM": True, "NUM_COEFS": 7, **flags},
                ),
            ]
    cases += [
        (
            norms._sum_partials_kernel,
            {"partials": "*fp32", "table": "*i64", "stride": "i32", "out": "*fp32"},
            {"NUM_ROLES": 1, "BLOCK": 128},
        ),
        *(
            (
                bandit._bandit_kernel,
                {
                    "probs": "*fp32",
                    "active_idx": "*i64",
                    "active_norms": "*fp32",
                    "out": "*fp32",
                    "num_arms": "i32",
                    "num_active": "i32",
                    "budget": "fp32",
                    "lr": "fp32",
                    "exploration": "fp32",
                },
                {"SCALE_FREE": rule, "PROB_FLOOR": 1e-8, "SUM_FLOOR": 1e-5, "BLOCK": 4096},
            )
            for rule in (False, True)
        ),
        (
            bandit._sample_kernel,
            {"probs": "*fp32", "mask_out": "*i8", "num_arms": "i32", "seed": "i32"},
            {"BLOCK": 1024},
        ),
    ]
    return cases


def _compile_all() -> None:
    """Run in a subprocess without the interpreter: compile every case for sm_90."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    for kernel, signature, constexprs in _cases():
        names = list(kernel.arg_names)
        # as triton's launcher specialises them: 16-byte aligned pointers, strides % 16 == 0
        attrs = {
            (names.index(k),): [["tt.divisibility", 16]]
            for k, v in signature.items()
            if v.startswith("*") or k in ("stride", "item_stride")
        }
        source = ASTSource(
            fn=kernel,
            signature={**signature, **dict.fromkeys(constexprs, "constexpr")},
            constexprs={(names.index(k),): v for k, v in constexprs.items()},
            attrs=attrs,
        )
        ptx = triton.compile(source, target=GPUTarget("cuda", 90, 32)).asm["ptx"]
        vectorised = bool(_VECTOR_LOAD.search(ptx))
        name = kernel.fn.__name__
        if constexprs.get("ALIGNED") and not vectorised:
            raise AssertionError(f"{name} {signature} ALIGNED=True compiled to scalar loads")
        print(name, "ok")


def test_kernels_compile_for_a_gpu() -> None:
    try:
        import triton.backends

        has_nvidia = "nvidia" in triton.backends.backends
    except ImportError:
        has_nvidia = False
    if not has_nvidia:
        pytest.skip("needs triton's NVIDIA backend (its bundled ptxas) to compile PTX")
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1"}
    code = "import test_triton_compile as t; t._compile_all()"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=os.path.dirname(__file__),
        env={**env, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.count(" ok") == len(_cases())
