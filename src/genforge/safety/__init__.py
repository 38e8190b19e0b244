"""Safeguards: watermark embedding and detection, safety filters, bias probes, model cards."""
