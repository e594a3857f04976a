"""Integrations with training frameworks. Each lives in its own module and imports its
framework only when imported itself: ``from slsam_kernels.integrations.hf import SAMTrainer``
needs ``pip install transformers``."""
