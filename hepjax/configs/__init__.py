"""Configs shipped with the package (``hepjax train hepjax.configs.NAME[:ARG]``)."""
