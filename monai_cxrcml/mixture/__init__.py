"""Student-t and Gaussian mixture models fitted by EM in torch (GPU or CPU), for CXR-CML pseudo-labels."""

from .gaussian import GaussianMixture
from .kmeans import kmeans, kmeans_plusplus, lloyd
from .student_t import StudentTMixture

__all__ = ["StudentTMixture", "GaussianMixture", "kmeans", "kmeans_plusplus", "lloyd"]
