"""The paper's analysis (Appendix A.8-A.9): what a defense does inside the victim.

* :mod:`irad.analysis.semantics`: feature distance (Table 18), decision-path similarity
  (Table 19) and the PCA of Fig. 5, as functions on tensors and :func:`semantic_analysis`.
* :mod:`irad.analysis.case`: one image through random resampling and a defense (Figs. 6-8),
  with SampleNet's shift field.
* :mod:`irad.analysis.figures`: the figures (matplotlib, optional).

Commands: ``irad analysis`` (Tables 18-19, Fig. 5) and ``irad visualize`` (Figs. 6-8); see
``docs/analysis.md``.
"""

from irad.analysis.case import (
    DEFAULT_RESAMPLE,
    CaseStudy,
    Panel,
    case_study,
    find_irad,
    make_adversarial,
)
from irad.analysis.semantics import (
    FEATURE_NORMS,
    SemanticAnalysis,
    block_similarity,
    classifier_decision_path,
    decision_path,
    feature_distance,
    format_semantic_tables,
    normalize_features,
    path_similarity,
    pca_2d,
    semantic_analysis,
)

__all__ = [
    "DEFAULT_RESAMPLE",
    "FEATURE_NORMS",
    "CaseStudy",
    "Panel",
    "SemanticAnalysis",
    "block_similarity",
    "case_study",
    "classifier_decision_path",
    "decision_path",
    "feature_distance",
    "find_irad",
    "format_semantic_tables",
    "make_adversarial",
    "normalize_features",
    "path_similarity",
    "pca_2d",
    "semantic_analysis",
]
