"""Student-t and Gaussian mixture models fitted by EM in torch (GPU or CPU), for CXR-CML pseudo-labels."""

from .base import BaseMixture
from .gaussian import GaussianMixture
from .kmeans import KMeansSettings, kmeans, kmeans_plusplus, lloyd
from .selection import bic, n_parameters, select_n_components
from .student_t import StudentTMixture

__all__ = [
    "BaseMixture",
    "GaussianMixture",
    "KMeansSettings",
    "StudentTMixture",
    "bic",
    "kmeans",
    "kmeans_plusplus",
    "lloyd",
    "n_parameters",
    "select_n_components",
]
