"""Exactly three classes, in this order everywhere: model outputs, model.json, UI, reports."""

CLASSES = ("COVID-19", "Normal", "Pneumonia")
