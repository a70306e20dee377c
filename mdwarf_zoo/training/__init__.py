"""Training: the one resumable loop of the package (:mod:`mdwarf_zoo.training.loop`: the batch
order of every epoch, the per-epoch ``.npz`` checkpoint, resume, validation and progress) and
the ``tf.distribute`` strategies it runs under (:mod:`mdwarf_zoo.training.distribute`), so a
recipe trains on the same batches whether it runs on one device, on the GPUs of one machine or
across machines."""
