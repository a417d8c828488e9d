"""Unsupervised anomaly detection for jets: input checks and representations
(:mod:`hepjax.anomaly.data`), a seeded training loop (:mod:`hepjax.anomaly.train`), anomaly
scores and their figures of merit (:mod:`hepjax.anomaly.scores`), a boosted W -> qq' jet
sample for a second signal (:mod:`hepjax.anomaly.wjets`), and the event-level resonance search:
QCD dijets with a W' -> X Y signal (:mod:`hepjax.anomaly.resonance`) and the dijet-function bump
hunt (:mod:`hepjax.anomaly.bumphunt`). The models are in
:mod:`hepjax.models.autoencoders` and :mod:`hepjax.models.jetclr`.

References: Heimel, Kasieczka, Plehn, Thompson, "QCD or What?", SciPost Phys. 6 (2019) 030;
Farina, Nakai, Shih, "Searching for New Physics with Deep Autoencoders", PRD 101 (2020)
075021; Finke, Kraemer, Morandini, Muck, Oleksiyuk, "Autoencoders for unsupervised anomaly
detection in high energy physics", JHEP 06 (2021) 161; Kasieczka et al., "The LHC Olympics
2020", Rep. Prog. Phys. 84 (2021) 124201; Dillon, Kasieczka, Olischlager, Plehn, Sorrenson,
Vogel, "Symmetries, safety, and self-supervision" (JetCLR), SciPost Phys. 12 (2022) 188,
arXiv:2108.04253.
"""
