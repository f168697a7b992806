"""The paper's own CIFAR-10 figures (Cao et al., ICLR 2024), to print beside ours.

Values are (SA, RA, Avg) in %, copied from the tables named in each key; the paper's setting is
a WideResNet-28-10 victim on the full CIFAR-10 test set, ε = 8/255, averaged over three seeds.
Cost (ms per image on an A100) is given where the paper reports it (Table 5).
"""

from __future__ import annotations

from typing import NamedTuple


class PaperRow(NamedTuple):
    sa: float
    ra: float
    avg: float
    cost_ms: float | None = None


#: Table 1: naive image resampling, oblivious AutoAttack.
TABLE1: dict[str, PaperRow] = {
    "none": PaperRow(94.77, 0.0, 47.39),
    "ir-bil-si": PaperRow(85.24, 42.30, 63.77),
    "ir-bil-sv": PaperRow(53.81, 30.24, 42.03),
    "ir-nea-si": PaperRow(94.68, 0.93, 47.81),
    "ir-nea-sv": PaperRow(56.47, 26.27, 41.37),
}

#: Table 2, CIFAR-10 block: oblivious AutoAttack.
TABLE2: dict[str, PaperRow] = {
    "none": PaperRow(94.77, 0.0, 47.39),
    "bit-depth": PaperRow(92.66, 1.05, 46.86),
    "jpeg": PaperRow(83.66, 50.79, 67.23),
    "randomization": PaperRow(93.87, 6.86, 50.37),
    "median": PaperRow(79.66, 42.54, 61.10),
    "nrp": PaperRow(92.89, 3.82, 48.36),
    "stl": PaperRow(90.65, 57.48, 74.07),
    "disco": PaperRow(89.25, 85.63, 87.44),
    "diffpure": PaperRow(89.67, 87.54, 88.61),
    "irad": PaperRow(91.70, 89.72, 90.71),
}

#: Table 3, CIFAR-10 block: BPDA (PGD, 10 steps of 1/255) through the defense.
TABLE3: dict[str, PaperRow] = {
    "none": PaperRow(94.77, 0.02, 47.40),
    "bit-depth": PaperRow(92.66, 0.40, 46.53),
    "jpeg": PaperRow(83.65, 5.50, 44.58),
    "randomization": PaperRow(94.05, 34.81, 64.43),
    "median": PaperRow(79.66, 25.12, 52.39),
    # NRP's Avg. is printed as 52.39 in the paper (the median filter's); (SA + RA) / 2 = 46.58
    "nrp": PaperRow(92.89, 0.27, 52.39),
    "stl": PaperRow(90.65, 2.10, 46.38),
    "disco": PaperRow(89.25, 22.60, 55.93),
    "diffpure": PaperRow(89.15, 87.06, 88.11),
    "irad": PaperRow(91.70, 74.32, 83.01),
}

#: Table 5: full adaptive AutoAttack through defense + classifier.
TABLE5: dict[str, PaperRow] = {
    "diffpure": PaperRow(89.73, 75.12, 82.43, 132.8),
    "disco": PaperRow(89.25, 0.0, 44.63, 0.38),
    "irad": PaperRow(91.70, 0.0, 45.85, 0.68),
    "diffpure-t20": PaperRow(93.66, 8.01, 50.83, 27.25),
    "irad+diffpure-t20": PaperRow(93.42, 74.05, 83.74, 27.70),
}

#: Table 7: stage-1 training task of the implicit representation (IRAD), oblivious AutoAttack.
TABLE7: dict[str, PaperRow] = {
    "clean2clean": PaperRow(93.09, 0.10, 46.60),
    "super-resolution": PaperRow(93.05, 0.20, 46.63),
    "inpainting": PaperRow(93.06, 0.16, 46.61),
    "gaussian": PaperRow(89.75, 24.40, 57.08),
    "pgd": PaperRow(89.59, 76.69, 83.14),
}

#: Table 8: IRAD with different samplers, oblivious AutoAttack.
TABLE8: dict[str, PaperRow] = {
    "none": PaperRow(89.71, 84.60, 87.15),
    "si": PaperRow(53.52, 47.55, 50.54),
    "sv": PaperRow(82.19, 77.90, 80.05),
    "samplenet": PaperRow(91.70, 89.72, 90.71),
}

#: Table 15: reconstruction method combined with SampleNet, oblivious AutoAttack.
TABLE15: dict[str, PaperRow] = {
    "nearest": PaperRow(93.46, 0.96, 47.21),
    "bilinear": PaperRow(92.61, 79.20, 85.91),
    "implicit": PaperRow(91.70, 89.72, 90.71),
}

#: Table 4: the same IRAD (trained with ResNet-18) in front of other classifiers, oblivious AA.
TABLE4: dict[str, PaperRow] = {
    "wrn28-10": PaperRow(91.70, 89.72, 90.71),
    "wrn70-16": PaperRow(93.17, 91.66, 92.42),
    "vgg16-bn": PaperRow(91.53, 90.50, 91.02),
    "resnet34": PaperRow(91.16, 88.82, 89.99),
}

#: Table 17: reconstruction quality, (clean vs adv, clean vs RECONS(adv)).
TABLE17: dict[str, tuple[float, float]] = {
    "psnr": (32.10, 36.01),
    "ssim": (0.9936, 0.9973),
    "fft_low": (0.0626, 0.0506),
    "fft_high": (0.3636, 0.2489),
    "lpips": (0.0771, 0.0169),
}

#: Table 10 (the data of Fig. 4, CIFAR-10 block): RA (%) of DISCO and IRAD in front of a
#: WRN-28-10 under ten attacks run on the classifier alone (oblivious), ε = 8/255. The paper
#: reports RA only; ``avg`` is its "Avg." row (the mean over the ten attacks).
TABLE10: dict[str, dict[str, float]] = {
    "fgsm": {"disco": 64.15, "irad": 92.11},
    "bim": {"disco": 80.55, "irad": 89.64},
    "pgd": {"disco": 83.27, "irad": 89.94},
    "rfgsm": {"disco": 81.08, "irad": 89.97},
    "tpgd": {"disco": 82.13, "irad": 88.77},
    "apgd": {"disco": 82.10, "irad": 89.09},
    "eotpgd": {"disco": 76.83, "irad": 87.56},
    "ffgsm": {"disco": 70.41, "irad": 90.23},
    "mifgsm": {"disco": 45.40, "irad": 82.51},
    "jitter": {"disco": 79.64, "irad": 89.01},
    "avg": {"disco": 74.55, "irad": 88.88},
}

#: Table 13 (A.4, CIFAR-10): transfer-based attacks on a WRN-28-10, ε = 8/255, (SA, RA, Avg)
#: per defense and attack. DiffPure (t = 100) is the paper's row; irad does not run it here.
TABLE13: dict[str, dict[str, PaperRow]] = {
    "none": {
        "vmifgsm": PaperRow(94.77, 0.0, 47.39),
        "vnifgsm": PaperRow(94.77, 0.0, 47.39),
        "admix": PaperRow(94.77, 3.82, 49.30),
    },
    "disco": {
        "vmifgsm": PaperRow(89.24, 50.51, 69.88),
        "vnifgsm": PaperRow(89.24, 52.76, 71.00),
        "admix": PaperRow(89.24, 65.91, 77.58),
    },
    "diffpure": {
        "vmifgsm": PaperRow(89.21, 85.55, 87.38),
        "vnifgsm": PaperRow(89.21, 85.49, 87.35),
        "admix": PaperRow(89.21, 85.23, 87.22),
    },
    "irad": {
        "vmifgsm": PaperRow(91.70, 86.22, 88.96),
        "vnifgsm": PaperRow(91.70, 87.65, 89.68),
        "admix": PaperRow(91.70, 82.39, 87.05),
    },
}
