"""lyricnn: fine-tune DistilBERT/BERT text classifiers and regressors on a C engine."""
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
    """How the engine was built: version, compiler, OpenMP and threads, BLAS, CUDA."""
    info = dict(_C.build_info())
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
