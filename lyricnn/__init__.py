"""lyricnn: fine-tune DistilBERT/BERT text classifiers and regressors on a C engine."""
import os

from ._version import __version__
from ._loader import _C
from ._C import CheckpointError, LyricnnError
from .classifier import SequenceClassifier
from .encoder import Encoder, EncoderOutput
from .estimators import TextClassifier, TextRegressor
from .lstm import LSTMClassifier, LSTMNet, LSTMRegressor, WordVocab
from .tokenizer import BatchEncoding, Tokenizer
from .tuning import TuneResult, tune

__all__ = ["__version__", "build_info", "cuda_info", "set_num_threads", "get_num_threads",
           "LyricnnError", "CheckpointError", "Tokenizer", "BatchEncoding",
           "Encoder", "EncoderOutput", "SequenceClassifier", "TextClassifier",
           "TextRegressor", "WordVocab", "LSTMNet", "LSTMClassifier", "LSTMRegressor", "tune", "TuneResult"]


def build_info():
    """How the engine was built and runs: version, compiler, OpenMP and threads (and how long its threads spin
    at a barrier: omp_wait), BLAS, CUDA, and the CPU code's ISA level (cpu_level: the one running, capped by
    LYRICNN_CPU_LEVEL; cpu_levels: those built)."""
    from . import _loader
    info = dict(_C.build_info())
    info["omp_wait"] = _loader.omp_wait
    info["adaptive_threads"] = os.environ.get("LYRICNN_ADAPTIVE_THREADS", "1").strip() != "0"
    return info


def cuda_info():
    """The CUDA runtime and driver versions and the GPUs (name, compute capability, memory, bf16) the CUDA
    backend sees; lyricnn.LyricnnError with the reason when it is not usable here (a build without CUDA,
    no driver, no GPU). device="cuda" needs it."""
    return _C.cuda_info()


def set_num_threads(n):
    """Set the threads the engine uses (its OpenMP loops and the BLAS)."""
    _C.set_num_threads(n)


def get_num_threads():
    """The threads the engine uses."""
    return _C.get_num_threads()
