"""Architectures, the classifier, its typed checkpoint, Grad-CAM, the OOD score and temperature scaling."""
