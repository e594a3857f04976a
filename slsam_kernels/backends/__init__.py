"""The backends: each launches kernels for the operations of
:class:`slsam_kernels.ops.protocol.Backend` and imports nothing above it.

``reference`` (pure torch, the ground truth), ``triton_kernels`` (the ``"triton"`` backend; not
named ``triton``, the library it imports) and ``cpp`` (the Python face of the compiled extension
``slsam_kernels._C``: the ``"cpp"`` backend for CPU tensors and ``cpp.cuda`` for CUDA tensors).
"""
