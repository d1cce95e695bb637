"""Membership-inference audit of a trained model (the workflow's ``privacy`` analysis).

:mod:`~medgan.analysis.privacy.attacks` holds the attacks (GAN-Leaks and its calibrated form,
DOMIAS, LOGAN), :mod:`~medgan.analysis.privacy.roc` their scoring (AUC with a patient
bootstrap interval, TPR at low FPR, the verdict), :mod:`~medgan.analysis.privacy.audit` the
member / non-member sets and the split-bias control, :mod:`~medgan.analysis.privacy.run` the
files in and out, :mod:`~medgan.analysis.privacy.figure` the ROC figure.
"""
