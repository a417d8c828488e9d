"""Generative models for fast calorimeter simulation (issue 27):
``python -m experiments.generative.run --dataset calo --variant smoke|cpu|full``."""
