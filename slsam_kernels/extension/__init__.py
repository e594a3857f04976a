"""The compiled extension ``slsam_kernels._C`` behind the ``"cpp"`` (CPU tensors) and ``"cuda"``
(CUDA tensors) backends. Importing this package never fails: when the extension is missing,
:data:`~.loader.LOAD_ERROR` says why and both backends report it as their reason."""
