"""Measuring one model's size, memory and speed: the machinery behind the ``hardware`` task kind.

* :mod:`~harness.hardware.fingerprint`: the machine a number was measured on (CPU flags, threads,
  libraries, GPU).
* :mod:`~harness.hardware.bandwidth`: memory bandwidth per device and thread count, measured once
  per process: the roofline's denominator.
* :mod:`~harness.hardware.control`: the parent side: one fresh probe process per measurement, a
  time limit, and its failure as :class:`~harness.hardware.control.MeasurementUnavailable`.
* :mod:`~harness.hardware.probe`: the child side, ``python -m harness.hardware.probe REQUEST.json``.
* :mod:`~harness.hardware.record`: a measurement as stored (``details.measurement``), and the
  metrics, details and sample derived from it.

Nothing is re-exported here on purpose: the probe process must import llama.cpp before NumPy
(see :func:`harness.hardware.probe.main`), and importing this package runs before the probe's
own code, so it imports nothing.
"""
