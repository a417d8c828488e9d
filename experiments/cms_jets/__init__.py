"""Flavour tagging, quark/gluon and jet-energy regression on the CMS DeepJet ntuple."""
